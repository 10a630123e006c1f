//! Event source mappings, played by polling moto's SQS: a template `SQS` event gets its batches
//! as Lambda would send them (partial failures left for redelivery, so moto's visibility timeout
//! and redrive policy apply), and a bus rule's queue gets each EventBridge event delivered to
//! its function as the payload itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{Map, Value, json};

use crate::activity::{Activity, IDLE, Pulse};
use crate::clock::LocalClock;
use crate::functions::Functions;
use crate::outbox::Outbox;

/// How often a bus event that keeps failing is tried before it is dropped (EventBridge retries
/// too, then gives up).
const RULE_ATTEMPTS: i64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Lambda's SQS event: `{"Records": [...]}`, with `batchItemFailures` in the answer.
    SqsBatch,
    /// The message body is an EventBridge event, delivered as is.
    BusEvent,
}

/// How many pollers read one queue at most. Lambda reads a queue with five at first and adds
/// more while it has a backlog, each batch a concurrent invocation; here one always polls and
/// the others join while batches come back full, each resting again once it finds the queue
/// empty. (A mapping's `MaximumConcurrency` is at least 2.)
pub const POLLERS: usize = 5;

pub struct QueuePoller {
    pub sqs: aws_sdk_sqs::Client,
    pub functions: Functions,
    pub clock: Arc<LocalClock>,
    pub outbox: Arc<Outbox>,
    pub queue_url: String,
    pub queue_arn: String,
    pub binary: String,
    pub batch_size: i32,
    pub delivery: Delivery,
    pub region: String,
    pub activity: Arc<Activity>,
    pub pulse: Arc<Pulse>,
    /// The poller that always polls; the others rest until `backlog`.
    pub leader: bool,
    /// Told when a batch came back full: the queue has more than one poller takes at once.
    pub backlog: Arc<tokio::sync::Notify>,
}

/// One message as a Lambda SQS record.
pub fn sqs_record(m: &Message, queue_arn: &str, region: &str, sent_ms: i64) -> Value {
    let attribute = |name: MessageSystemAttributeName| {
        m.attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    let message_attributes: Map<String, Value> = m
        .message_attributes()
        .map(|attrs| {
            attrs
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({
                            "stringValue": v.string_value(),
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": v.data_type(),
                        }),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "md5OfBody": m.md5_of_body(),
        "attributes": {
            "ApproximateReceiveCount": attribute(MessageSystemAttributeName::ApproximateReceiveCount),
            "SentTimestamp": sent_ms.to_string(),
            "SenderId": "123456789012",
            "ApproximateFirstReceiveTimestamp": sent_ms.to_string(),
        },
        "messageAttributes": message_attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
}

/// The message ids a function reported as failed; all of them when its answer is not a batch
/// response (Lambda treats an error that way too).
pub fn failed_ids(answer: Option<&Value>, all: &[String]) -> Vec<String> {
    let Some(answer) = answer else {
        return all.to_vec();
    };
    answer
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .map(|failures| {
            failures
                .iter()
                .filter_map(|f| f.get("itemIdentifier").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl QueuePoller {
    pub async fn run(self) {
        loop {
            let cycle = self.activity.begin(&self.pulse);
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(self.batch_size)
                // No long poll: the pulse's rest is the wait, and settling can cut it short.
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            let messages = match received {
                Ok(r) => r.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(queue = self.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "ReceiveMessage failed");
                    self.activity.end(&self.pulse, cycle, true);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                self.activity.end(&self.pulse, cycle, false);
                if self.leader {
                    self.pulse.rest(IDLE).await;
                } else {
                    self.pulse.rest_until(&self.backlog).await;
                }
                continue;
            }
            if i32::try_from(messages.len()).is_ok_and(|n| n >= self.batch_size) {
                self.backlog.notify_waiters();
            }
            let done = match self.delivery {
                Delivery::SqsBatch => {
                    // Lambda's poller is billed for the receive that found the batch and the
                    // delete of what was done; its empty polls cost the same with no referral.
                    crate::meter::count("sqs ReceiveMessage (event source)", 1);
                    crate::meter::count("sqs DeleteMessageBatch (event source)", 1);
                    self.deliver_batch(&messages).await
                }
                Delivery::BusEvent => self.deliver_events(&messages).await,
            };
            self.delete(&messages, &done).await;
            if let Err(e) = self.outbox.refresh_if_sent(self.clock.now()).await {
                tracing::warn!(error = e, "could not read moto's records");
            }
            self.activity.end(&self.pulse, cycle, true);
            self.activity.nudge_others(&self.pulse);
        }
    }

    /// Returns the receipt handles to delete.
    async fn deliver_batch(&self, messages: &[Message]) -> Vec<String> {
        let sent_ms = self.clock.now().as_millisecond();
        let records: Vec<Value> = messages
            .iter()
            .map(|m| sqs_record(m, &self.queue_arn, &self.region, sent_ms))
            .collect();
        let ids: Vec<String> = messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_owned))
            .collect();
        let answer = match self
            .functions
            .invoke(&self.binary, &json!({ "Records": records }))
            .await
        {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(function = self.binary, error = %e, "batch failed; every message stays for redelivery");
                None
            }
        };
        let failed = failed_ids(answer.as_ref(), &ids);
        if !failed.is_empty() {
            tracing::warn!(function = self.binary, failed = ?failed, "messages left for redelivery");
        }
        messages
            .iter()
            .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
            .filter_map(|m| m.receipt_handle().map(str::to_owned))
            .collect()
    }

    async fn deliver_events(&self, messages: &[Message]) -> Vec<String> {
        let mut done = vec![];
        for m in messages {
            let event: Value =
                serde_json::from_str(m.body().unwrap_or("null")).unwrap_or(Value::Null);
            let receives: i64 = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            match self.functions.invoke(&self.binary, &event).await {
                Ok(_) => done.extend(m.receipt_handle().map(str::to_owned)),
                Err(e) if receives >= RULE_ATTEMPTS => {
                    tracing::error!(function = self.binary, error = %e, receives, "bus event dropped after repeated failures");
                    done.extend(m.receipt_handle().map(str::to_owned));
                }
                Err(e) => {
                    tracing::warn!(function = self.binary, error = %e, receives, "bus event failed; will retry");
                }
            }
        }
        done
    }

    async fn delete(&self, messages: &[Message], receipts: &[String]) {
        if receipts.is_empty() {
            return;
        }
        let by_handle: HashMap<&str, &Message> = messages
            .iter()
            .filter_map(|m| m.receipt_handle().map(|h| (h, m)))
            .collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter(|(_, h)| by_handle.contains_key(h.as_str()))
            .filter_map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(queue = self.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "DeleteMessageBatch failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reported_failures_stay_and_an_error_keeps_them_all() {
        let all = vec!["a".to_owned(), "b".to_owned()];
        let answer = json!({"batchItemFailures": [{"itemIdentifier": "b"}]});
        assert_eq!(failed_ids(Some(&answer), &all), vec!["b".to_owned()]);
        assert!(failed_ids(Some(&json!({"batchItemFailures": []})), &all).is_empty());
        assert!(failed_ids(Some(&Value::Null), &all).is_empty());
        assert_eq!(failed_ids(None, &all), all);
    }

    #[test]
    fn a_record_looks_like_lambdas() {
        let m = Message::builder()
            .message_id("m-1")
            .receipt_handle("rh-1")
            .body("{\"x\":1}")
            .build();
        let r = sqs_record(
            &m,
            "arn:aws:sqs:us-east-1:123456789012:q",
            "us-east-1",
            1_798_761_600_000,
        );
        assert_eq!(r["messageId"], "m-1");
        assert_eq!(r["receiptHandle"], "rh-1");
        assert_eq!(r["attributes"]["SentTimestamp"], "1798761600000");
        assert_eq!(r["eventSourceARN"], "arn:aws:sqs:us-east-1:123456789012:q");
        assert_eq!(r["eventSource"], "aws:sqs");
    }
}
