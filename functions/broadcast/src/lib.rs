//! The broadcast queue's consumer: each message is one notification to one agent on one channel.
//! Failures are reported per message, so only those are delivered again.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::app::Services;
use shared::app::broadcast::deliver;
use shared::ports::BroadcastMessage;

pub async fn handle(s: &Services, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    for record in event.payload.records {
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("notification", message_id = %id, request_id = %event.context.request_id);
        let _guard = span.enter();
        let message: BroadcastMessage = match record.body.as_deref().map(serde_json::from_str) {
            Some(Ok(m)) => m,
            // A message that cannot be read never will be: fail it, so it reaches the
            // dead-letter queue instead of blocking the batch.
            _ => {
                tracing::error!("unreadable broadcast message");
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
        if let Err(e) = deliver(s, &message, now).await {
            tracing::warn!(referral_id = %message.referral_id, error = %e, "delivery failed");
            response.batch_item_failures.push(failure(id));
        }
    }
    Ok(response)
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}
