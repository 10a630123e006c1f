//! Timers falling due: a Coming Soon referral lists on its date (ST-3); a warm transfer's
//! response window ends (WT-6); an offer unclaimed for 24 hours goes to the advisors (RC-2); an
//! agent who recorded no contact by the team's deadline loses the referral (RC-1); a duplicate's
//! first look is over and the rest of the team is offered it (RC-4); a claim call that failed
//! is placed again (LR-10).
//! Date-based timers arrive from EventBridge Scheduler as the timer event itself; short ones
//! (WT-12) as delayed messages on the timer queue, a batch of records each carrying one. The
//! payload is the one the change that started the timer committed
//! (`shared::effects::TimerPayload`); "now" is the time the timer was due, so a repeated firing
//! does the same thing, once.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use shared::app::pipeline::list_on_date;
use shared::app::{AppError, Services, contact, offer, phone, unassigned, warm_transfer};
use shared::effects::{TimerEvent, TimerPayload};

/// What invokes the function: a schedule, or the timer queue's event source mapping.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    // First: an SQS event has no `action`, so it never reads as a timer event.
    Schedule(TimerEvent),
    Queue(SqsEvent),
}

/// Fires one scheduled timer, or a batch of queued ones. A transient failure is an error (for
/// a schedule) or the message's batch item failure (for the queue), so the timer is retried and
/// parked when it keeps failing; a refusal (a referral that is gone) never changes on a retry,
/// so it is answered as the timer's outcome (EF-2).
pub async fn handle(
    s: &Services,
    event: LambdaEvent<Invocation>,
) -> Result<serde_json::Value, Error> {
    match event.payload {
        Invocation::Schedule(timer) => Ok(fire(s, timer).await?),
        Invocation::Queue(batch) => {
            let mut response = SqsBatchResponse::default();
            for record in batch.records {
                let id = record.message_id.clone().unwrap_or_default();
                let span = tracing::info_span!("timer", message_id = %id, request_id = %event.context.request_id);
                let _guard = span.enter();
                let timer = record
                    .body
                    .as_deref()
                    .map(serde_json::from_str::<TimerEvent>);
                let failed = match timer {
                    Some(Ok(timer)) => fire(s, timer).await.is_err(),
                    // Never readable: failed, so it is parked in the dead-letter queue.
                    _ => {
                        tracing::error!("unreadable timer message");
                        shared::telemetry::effect_parked();
                        true
                    }
                };
                if failed {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    response.batch_item_failures.push(failure);
                }
            }
            Ok(serde_json::to_value(response)?)
        }
    }
}

async fn fire(s: &Services, timer: TimerEvent) -> Result<serde_json::Value, AppError> {
    let TimerEvent { payload, time } = timer;
    let outcome = match &payload {
        TimerPayload::ListOnDate { referral_id } => list_on_date(s, referral_id, time)
            .await
            .map(|listed| serde_json::json!({"referralId": referral_id, "listed": listed})),
        TimerPayload::WarmTransferTimeout { referral_id } => {
            warm_transfer::time_out(s, referral_id, time)
                .await
                .map(|done| serde_json::json!({"referralId": referral_id, "timedOut": done}))
        }
        TimerPayload::Unclaimed { referral_id } => {
            unassigned::escalate_unclaimed(s, referral_id, time)
                .await
                .map(|sent| serde_json::json!({"referralId": referral_id, "toAdvisors": sent}))
        }
        TimerPayload::ContactDeadline {
            referral_id,
            agent_id,
        } => contact::contact_deadline_passed(s, referral_id, agent_id, time)
            .await
            .map(|taken| {
                serde_json::json!({"referralId": referral_id, "agentId": agent_id, "takenBack": taken})
            }),
        TimerPayload::FirstLookOver { referral_id } => offer::offer_to_rest(s, referral_id, time)
            .await
            .map(|offered| serde_json::json!({"referralId": referral_id, "offered": offered})),
        TimerPayload::ClaimCallRetry {
            referral_id,
            agent_id,
            call,
        } => phone::retry_claim_call(s, referral_id, agent_id, *call, time)
            .await
            .map(|placed| serde_json::json!({"referralId": referral_id, "callPlaced": placed})),
    };
    match outcome {
        Ok(answer) => {
            tracing::info!(?payload, %answer, "timer fired");
            Ok(answer)
        }
        Err(e) if !e.is_retryable() => {
            tracing::warn!(?payload, error = %e, "timer refused");
            Ok(serde_json::json!({"refused": e.code()}))
        }
        Err(e) => {
            tracing::warn!(?payload, error = %e, "timer failed; it is retried");
            Err(e)
        }
    }
}
