//! The outbox's consumer (EF-1): performs what each change committed, fed by the table's stream.
//! Deliveries go to the broadcast queue in as few calls as its batches allow, events to the bus,
//! timers to the scheduler. Each forwarding is safe to repeat (deliveries carry their own
//! idempotency keys, event consumers are idempotent, timers are named), so a batch retried after
//! a failure halfway performs what it missed and duplicates nothing that anyone notices.

use super::{AppError, Services};
use crate::effects::{Delivery, Effect, Effects};

/// Performs every effect of one outbox item. An error is a transient failure of a forwarding
/// call: the stream delivers the item again.
pub async fn relay(s: &Services, effects: &Effects) -> Result<(), AppError> {
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
            Effect::StartTimer(timer) => s.scheduler.start(timer).await?,
            Effect::StopTimer { name } => s.scheduler.stop(name).await?,
        }
    }
    tracing::info!(key = %effects.key, effects = effects.items.len(), "effects relayed");
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
        let (s, _, outbox) = services();
        relay(&s, &effects()).await.unwrap();
        let sent = outbox.sent();
        assert!(matches!(&sent[0], Sent::Queued(d) if d.key == "notify#r1#a1#sms"));
        assert!(matches!(&sent[1], Sent::Event(t, _) if t == "WarmTransferCompleted"));
        assert!(matches!(&sent[2], Sent::Scheduled(t) if t.name == "wt-timeout-r1"));
        assert_eq!(sent.len(), 3);
    }
}
