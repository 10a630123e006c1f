//! The broadcast queue's consumer: each message is one delivery (an offer to one agent on one
//! channel, a relayed text, a receipt, a claim call), sent once. Only transient failures are
//! reported, message by message, so only those are delivered again; a refusal is an outcome, and
//! what keeps failing reaches the dead-letter queue (EF-1, EF-2).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use lambda_runtime::{Error, LambdaEvent};
use shared::app::Services;
use shared::app::broadcast::{Senders, deliver};
use shared::effects::Delivery;
use tracing::Instrument;

/// The batch's messages are delivered at once, not one after another: each is its own agent's
/// alert, sent once under its own key, and the last of ten should not wait for the other nine
/// (speed to lead).
pub async fn handle(
    s: &Services,
    senders: &Senders,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let request_id = &event.context.request_id;
    let failed = join_all(event.payload.records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("notification", message_id = %id, request_id = %request_id);
        async move { one(s, senders, record).await.then_some(id) }.instrument(span)
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed.into_iter().flatten().map(failure).collect();
    Ok(response)
}

/// Delivers one message; true if it failed in a way the queue should deliver it again.
async fn one(s: &Services, senders: &Senders, record: SqsMessage) -> bool {
    let message: Delivery = match record.body.as_deref().map(serde_json::from_str) {
        Some(Ok(m)) => m,
        // A message that cannot be read never will be: fail it, so it reaches the dead-letter
        // queue instead of blocking the batch.
        _ => {
            tracing::error!("unreadable broadcast message");
            shared::telemetry::effect_parked();
            return true;
        }
    };
    // The time the message was queued: the notification's time, whatever the delivery delay.
    let now = record
        .attributes
        .get("SentTimestamp")
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    match deliver(s, senders, &message, now).await {
        Ok(outcome) => {
            tracing::info!(key = %message.key, channel = message.channel(), outcome = outcome.name(), "delivered");
            false
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(key = %message.key, error = %e, "delivery failed; it comes back");
            true
        }
        Err(e) => {
            tracing::error!(key = %message.key, error = %e, "delivery refused");
            shared::telemetry::effect_parked();
            false
        }
    }
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}
