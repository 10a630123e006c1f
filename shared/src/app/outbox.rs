//! The outbox's consumer (EF-1): performs what each change committed, fed by the table's stream.
//! Deliveries go to the broadcast queue in as few calls as its batches allow, events to the bus,
//! short timers to the timer queue as delayed messages (WT-12) and the others to the scheduler.
//! Each forwarding is safe to repeat (deliveries carry their own
//! idempotency keys, event consumers are idempotent, timers are named), so a batch retried after
//! a failure halfway performs what it missed and duplicates nothing that anyone notices.

use std::sync::Arc;

use jiff::Timestamp;

use super::AppError;
use crate::effects::{Delivery, Effect, Effects, MAX_TIMER_DELAY, Timer};
use crate::ports::{BroadcastQueue, EventBus, Scheduler, TimerQueue};

/// The services effects are forwarded to.
#[derive(Clone)]
pub struct Relay {
    pub queue: Arc<dyn BroadcastQueue>,
    pub bus: Arc<dyn EventBus>,
    pub scheduler: Arc<dyn Scheduler>,
    pub timers: Arc<dyn TimerQueue>,
}

/// Performs every effect of one outbox item, committed at `committed` (the stream record's
/// time). An error is a transient failure of a forwarding call: the stream delivers the item
/// again.
pub async fn relay(s: &Relay, effects: &Effects, committed: Timestamp) -> Result<(), AppError> {
    let deliveries: Vec<Delivery> = effects
        .items
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    if !deliveries.is_empty() {
        s.queue.enqueue(&deliveries).await?;
    }
    for effect in &effects.items {
        match effect {
            Effect::Deliver(_) => {}
            Effect::Publish(event) => s.bus.publish(event).await?,
            Effect::StartTimer(timer) => start_timer(s, timer, committed).await?,
            Effect::StopTimer { name } => s.scheduler.stop(name).await?,
        }
    }
    tracing::info!(key = %effects.key, effects = effects.items.len(), "effects relayed");
    Ok(())
}

/// A short timer due within the longest delay SQS takes goes to the timer queue, delayed by
/// what is left of it, so it fires within seconds of its time (WT-12); any other goes to the
/// scheduler, which fires within the minute. Delayed from the commit, not from now: a relay
/// that runs late does not push the timer later by as much.
async fn start_timer(s: &Relay, timer: &Timer, committed: Timestamp) -> Result<(), AppError> {
    let left = timer.at.duration_since(committed);
    if timer.payload.is_short() && left <= MAX_TIMER_DELAY {
        s.timers.delay(timer, left).await?;
    } else {
        s.scheduler.start(timer).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::services;
    use crate::effects::{Message, Recipient, Timer, TimerPayload};
    use crate::memory::Sent;
    use crate::ports::DomainEvent;

    fn effects() -> Effects {
        Effects::new("created#r1")
            .with(Effect::Deliver(Delivery {
                key: "notify#r1#a1#sms".into(),
                referral_id: Some("r1".parse().unwrap()),
                to: Recipient::Agent {
                    agent_id: "a1".parse().unwrap(),
                },
                message: Message::Sms { body: "hi".into() },
            }))
            .with(Effect::Publish(DomainEvent::WarmTransferCompleted {
                referral_id: "r1".parse().unwrap(),
            }))
            .with(Effect::StartTimer(Timer {
                name: "wt-timeout-r1".into(),
                at: "2026-01-01T00:01:30Z".parse().unwrap(),
                payload: TimerPayload::WarmTransferTimeout {
                    referral_id: "r1".parse().unwrap(),
                },
            }))
    }

    #[tokio::test]
    async fn ef_1_each_committed_effect_is_forwarded_to_its_service() {
        let (_, _, outbox) = services();
        relay(
            &crate::memory::relay_of(&outbox),
            &effects(),
            "2026-01-01T00:00:00Z".parse().unwrap(),
        )
        .await
        .unwrap();
        let sent = outbox.sent();
        assert!(matches!(&sent[0], Sent::Queued(d) if d.key == "notify#r1#a1#sms"));
        assert!(matches!(&sent[1], Sent::Event(t, _) if t == "WarmTransferCompleted"));
        assert!(matches!(&sent[2], Sent::Delayed { timer, .. } if timer.name == "wt-timeout-r1"));
        assert_eq!(sent.len(), 3);
    }

    /// WT-12: the warm-transfer window is a message delayed by what is left of it when the
    /// change committed, to the second; a date-based timer goes to the scheduler.
    #[tokio::test]
    async fn wt_12_short_timers_are_delayed_messages_and_dates_are_schedules() {
        let (_, _, outbox) = services();
        let committed: Timestamp = "2026-01-01T00:00:00.400Z".parse().unwrap();
        let listing = Timer {
            name: "coming-soon-r1".into(),
            at: "2026-01-01T00:05:00Z".parse().unwrap(),
            payload: TimerPayload::ListOnDate {
                referral_id: "r1".parse().unwrap(),
            },
        };
        let effects = effects().with(Effect::StartTimer(listing.clone()));
        relay(&crate::memory::relay_of(&outbox), &effects, committed)
            .await
            .unwrap();
        let sent = outbox.sent();
        assert!(
            matches!(&sent[2], Sent::Delayed { timer, delay } if timer.name == "wt-timeout-r1" && *delay == jiff::SignedDuration::from_millis(89_600)),
            "{sent:?}"
        );
        assert_eq!(sent[3], Sent::Scheduled(listing));
        // A window longer than SQS can delay is left to the scheduler.
        let (_, _, outbox) = services();
        relay(
            &crate::memory::relay_of(&outbox),
            &effects,
            "2025-12-31T23:40:00Z".parse().unwrap(),
        )
        .await
        .unwrap();
        assert!(matches!(&outbox.sent()[2], Sent::Scheduled(t) if t.name == "wt-timeout-r1"));
    }
}
