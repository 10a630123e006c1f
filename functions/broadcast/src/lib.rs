//! The broadcast queue's consumer: each message is one delivery (an offer to one agent on one
//! channel, a relayed text, a receipt, a claim call), sent once. Only transient failures are
//! reported, message by message, so only those are delivered again; a refusal is an outcome, and
//! what keeps failing reaches the dead-letter queue (EF-1, EF-2).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::app::Services;
use shared::app::broadcast::{Senders, deliver};
use shared::effects::Delivery;

pub async fn handle(
    s: &Services,
    senders: &Senders,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    for record in event.payload.records {
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("notification", message_id = %id, request_id = %event.context.request_id);
        let _guard = span.enter();
        let message: Delivery = match record.body.as_deref().map(serde_json::from_str) {
            Some(Ok(m)) => m,
            // A message that cannot be read never will be: fail it, so it reaches the
            // dead-letter queue instead of blocking the batch.
            _ => {
                tracing::error!("unreadable broadcast message");
                shared::telemetry::effect_parked();
                response.batch_item_failures.push(failure(id));
                continue;
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
                tracing::info!(key = %message.key, channel = message.channel(), outcome = outcome.name(), "delivered")
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(key = %message.key, error = %e, "delivery failed; it comes back");
                response.batch_item_failures.push(failure(id));
            }
            Err(e) => {
                tracing::error!(key = %message.key, error = %e, "delivery refused");
                shared::telemetry::effect_parked();
            }
        }
    }
    Ok(response)
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}
