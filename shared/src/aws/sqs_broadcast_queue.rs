//! The broadcast queue on SQS: one message per delivery (an offer to one agent on one channel,
//! a relayed text, a receipt, a call).

use crate::aws::OnFirstUse;
use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures_util::{StreamExt, stream};

use super::error::send_error;
use crate::effects::Delivery;
use crate::ports::{BroadcastQueue, SendError};

/// SQS takes at most ten entries per `SendMessageBatch`.
const BATCH_LIMIT: usize = 10;
/// Batches in flight at once. A referral offered to fifty agents on two channels is ten batches;
/// one after another, a stream batch of ten such referrals outlasted the function's timeout
/// (`make bench`'s load run, infra/CAPACITY.md).
const BATCHES_AT_ONCE: usize = 10;

/// Enqueues broadcast notifications on one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsBroadcastQueue {
    client: OnFirstUse<aws_sdk_sqs::Client>,
    queue_url: String,
}

impl SqsBroadcastQueue {
    /// `queue_url` is the broadcast queue's URL (not its ARN or name), as SQS calls take it.
    pub fn new(
        client: impl Into<OnFirstUse<aws_sdk_sqs::Client>>,
        queue_url: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            queue_url: queue_url.into(),
        }
    }

    /// Sends one batch and returns the entries SQS did not accept.
    async fn send_batch(
        &self,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<Vec<SendMessageBatchRequestEntry>, SendError> {
        let sent = self
            .client
            .get()
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries.clone()))
            .send()
            .await
            .map_err(|e| send_error("SQS SendMessageBatch", e))?;
        let failed: Vec<SendMessageBatchRequestEntry> = entries
            .into_iter()
            .filter(|entry| sent.failed.iter().any(|f| f.id == entry.id))
            .collect();
        for f in &sent.failed {
            tracing::warn!(
                entry = %f.id,
                code = %f.code,
                sender_fault = f.sender_fault,
                message = f.message.as_deref().unwrap_or(""),
                "SQS did not accept a broadcast message"
            );
        }
        Ok(failed)
    }
}

#[async_trait]
impl BroadcastQueue for SqsBroadcastQueue {
    /// Sends in batches of ten. A batch call can succeed while some of its entries fail (SQS
    /// reports them one by one); those alone are sent once more, right away, since most such
    /// failures are momentary. What still fails is reported as retryable after every batch has
    /// been tried, so one bad batch does not hold back the agents in the others. A retry of the
    /// whole broadcast may enqueue some messages twice; the consumer's idempotency keys make that
    /// harmless.
    async fn enqueue(&self, messages: &[Delivery]) -> Result<(), SendError> {
        let batches = messages
            .chunks(BATCH_LIMIT)
            .map(|chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, message)| entry(i, message))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outcomes: Vec<Result<usize, SendError>> = stream::iter(batches)
            .map(|entries| async move {
                let failed = self.send_batch(entries).await?;
                if failed.is_empty() {
                    Ok(0)
                } else {
                    Ok(self.send_batch(failed).await?.len())
                }
            })
            .buffer_unordered(BATCHES_AT_ONCE)
            .collect()
            .await;
        let mut still_failed = 0;
        for outcome in outcomes {
            still_failed += outcome?;
        }
        if still_failed == 0 {
            Ok(())
        } else {
            Err(SendError::Retryable(
                format!("SQS did not accept {still_failed} broadcast message(s) after one retry")
                    .into(),
            ))
        }
    }
}

/// One batch entry. Ids only need to be unique within their batch, so the position does.
fn entry(index: usize, message: &Delivery) -> Result<SendMessageBatchRequestEntry, SendError> {
    let body = serde_json::to_string(message)
        .map_err(|e| SendError::Rejected(format!("broadcast message as JSON: {e}")))?;
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(body)
        .build()
        .map_err(|e| SendError::Rejected(format!("SQS batch entry: {e}")))
}
