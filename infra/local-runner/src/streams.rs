//! The table's stream as Lambda's event source mapping plays it: DynamoDB Local's stream is read
//! shard by shard, each record is matched against the function's filter patterns (Lambda's
//! filter criteria, the EventBridge pattern syntax), and the matching ones are delivered in
//! batches as `{"Records": [...]}`. Records the function reports in `batchItemFailures` (or all
//! of a batch that errs or times out) are delivered again with a growing pause, as the
//! template's `MaximumRetryAttempts` and `MaximumRecordAgeInSeconds` say; one given up is
//! reported to the `OnFailure` queue, as Lambda reports it (the record's place in the stream,
//! not the record).
//!
//! The streams API is spoken as plain JSON over HTTP: its records are already in the attribute
//! form Lambda delivers (`{"S": "..."}`), so they pass through untouched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::activity::{Activity, IDLE, Pulse};
use crate::functions::Functions;
use crate::template::StreamSource;

/// The pause before a failed record's first retry, doubled for each retry after it up to
/// `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// A record waiting for its (next) delivery.
#[derive(Debug, Clone)]
struct Pending {
    record: Value,
    shard: String,
    /// Deliveries that failed so far.
    failures: u32,
    read: Instant,
    due: Instant,
}

/// Where reading one shard has got to.
#[derive(Debug, Default)]
struct Shard {
    iterator: Option<String>,
    /// The sequence number of the last record read.
    last: Option<String>,
    closed: bool,
}

pub struct StreamPoller {
    pub http: reqwest::Client,
    /// Stamps each record's `ApproximateCreationDateTime`, as AWS stamps it when the change is
    /// written: the local clock's time, which a moved clock is ahead of DynamoDB Local's.
    pub clock: Arc<crate::clock::LocalClock>,
    /// DynamoDB Local's endpoint, which serves the streams API too.
    pub endpoint: String,
    pub functions: Functions,
    pub stream_arn: String,
    pub source: StreamSource,
    pub region: String,
    pub activity: Arc<Activity>,
    pub pulse: Arc<Pulse>,
    /// The `OnFailure` queue's URL, when the template names one.
    pub failure_queue: Option<(aws_sdk_sqs::Client, String)>,
}

/// Whether `event` matches an EventBridge-style pattern: every key of the pattern is present,
/// objects match recursively, and an array of alternatives matches when any one does (a literal,
/// or `{"exists": true|false}`).
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Some(pattern) = pattern.as_object() else {
        return false;
    };
    pattern.iter().all(|(key, wanted)| {
        let field = event.get(key);
        match wanted {
            Value::Object(_) => field.is_some_and(|f| matches(wanted, f)),
            Value::Array(alternatives) => alternatives.iter().any(|alt| match alt {
                Value::Object(o) => match o.get("exists").and_then(Value::as_bool) {
                    Some(exists) => field.is_some() == exists,
                    None => false,
                },
                literal => field == Some(literal),
            }),
            _ => false,
        }
    })
}

/// An attribute value as DynamoDB's stream writes it on AWS. DynamoDB Local writes an empty map
/// as `{}`, where AWS writes `{"M": {}}` (and a Lambda reading AWS's form refuses Local's).
fn as_aws_writes_it(value: &mut Value) {
    let Value::Object(typed) = value else { return };
    if typed.is_empty() {
        typed.insert("M".to_owned(), json!({}));
        return;
    }
    if let Some(Value::Object(map)) = typed.get_mut("M") {
        map.values_mut().for_each(as_aws_writes_it);
    } else if let Some(Value::Array(list)) = typed.get_mut("L") {
        list.iter_mut().for_each(as_aws_writes_it);
    }
}

impl StreamPoller {
    fn wanted(&self, record: &Value) -> bool {
        self.source.filters.is_empty() || self.source.filters.iter().any(|p| matches(p, record))
    }

    /// One call of the streams API.
    async fn call(&self, operation: &str, body: Value) -> Result<Value, String> {
        let response = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDBStreams_20120810.{operation}"))
            // DynamoDB Local runs with -sharedDb: any credentials reach the same tables.
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=local/20260101/{}/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                    self.region
                ),
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{operation}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{operation}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{operation}: {e}"))
    }

    /// Reads every shard from its start, forever: open shards keep their iterator; closed ones
    /// end; new ones are found by describing the stream again. An iterator that stops working
    /// (they expire) is taken again after the last record read.
    pub async fn run(self) {
        let mut shards: BTreeMap<String, Shard> = BTreeMap::new();
        let mut pending: Vec<Pending> = Vec::new();
        loop {
            let cycle = self.activity.begin(&self.pulse);
            let mut fetched = 0;
            if let Err(e) = self.discover(&mut shards).await {
                tracing::warn!(error = %e, "describing the table's stream failed");
            }
            for (id, shard) in shards.iter_mut() {
                if shard.closed {
                    continue;
                }
                let iterator = match shard.iterator.clone() {
                    Some(i) => i,
                    None => match self.iterator(id, shard.last.as_deref()).await {
                        Ok(i) => i,
                        Err(e) => {
                            tracing::warn!(shard = id, error = %e, "no iterator for the shard");
                            continue;
                        }
                    },
                };
                match self
                    .call("GetRecords", json!({"ShardIterator": iterator}))
                    .await
                {
                    Ok(out) => {
                        for mut record in out["Records"].as_array().cloned().unwrap_or_default() {
                            if let Some(seq) = record["dynamodb"]["SequenceNumber"].as_str() {
                                shard.last = Some(seq.to_owned());
                            }
                            record["eventSourceARN"] = json!(self.stream_arn);
                            record["dynamodb"]["ApproximateCreationDateTime"] =
                                json!(self.clock.now().as_millisecond() as f64 / 1000.0);
                            for image in ["Keys", "NewImage", "OldImage"] {
                                if let Some(Value::Object(item)) = record["dynamodb"].get_mut(image)
                                {
                                    item.values_mut().for_each(as_aws_writes_it);
                                }
                            }
                            if self.wanted(&record) {
                                let now = Instant::now();
                                pending.push(Pending {
                                    record,
                                    shard: id.clone(),
                                    failures: 0,
                                    read: now,
                                    due: now,
                                });
                                fetched += 1;
                            }
                        }
                        shard.iterator = out["NextShardIterator"].as_str().map(str::to_owned);
                        shard.closed = shard.iterator.is_none();
                    }
                    Err(e) => {
                        tracing::debug!(shard = id, error = %e, "iterator refused; taking another");
                        shard.iterator = None;
                    }
                }
            }
            let due = pending.iter().filter(|p| p.due <= Instant::now()).count();
            let worked = fetched > 0 || due > 0;
            pending = self.deliver(pending).await;
            self.activity
                .end(&self.pulse, cycle, worked || !pending.is_empty());
            if worked {
                self.activity.nudge_others(&self.pulse);
            } else {
                self.pulse.rest(IDLE).await;
            }
        }
    }

    /// An iterator after `last`, or from the shard's start.
    async fn iterator(&self, shard: &str, last: Option<&str>) -> Result<String, String> {
        let mut request = json!({"StreamArn": self.stream_arn, "ShardId": shard});
        match last {
            Some(seq) => {
                request["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                request["SequenceNumber"] = json!(seq);
            }
            None => request["ShardIteratorType"] = json!("TRIM_HORIZON"),
        }
        self.call("GetShardIterator", request).await?["ShardIterator"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no iterator returned".to_owned())
    }

    async fn discover(&self, shards: &mut BTreeMap<String, Shard>) -> Result<(), String> {
        let out = self
            .call("DescribeStream", json!({"StreamArn": self.stream_arn}))
            .await?;
        for shard in out["StreamDescription"]["Shards"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if let Some(id) = shard["ShardId"].as_str() {
                shards.entry(id.to_owned()).or_default();
            }
        }
        Ok(())
    }

    /// Delivers the records that are due in batches; returns those waiting, with the failed
    /// ones to be delivered again after their pause.
    async fn deliver(&self, pending: Vec<Pending>) -> Vec<Pending> {
        let now = Instant::now();
        let (due, mut waiting): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|p| p.due <= now);
        for batch in due.chunks(self.source.batch_size) {
            let records: Vec<Value> = batch.iter().map(|p| p.record.clone()).collect();
            let failed: Vec<String> = match self
                .functions
                .invoke(&self.source.binary, &json!({"Records": records}))
                .await
            {
                Ok(answer) => answer["batchItemFailures"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(function = %self.source.binary, error = %e, "stream batch failed");
                    batch
                        .iter()
                        .map(|p| sequence(&p.record).to_owned())
                        .collect()
                }
            };
            for p in batch {
                if !failed.iter().any(|f| f == sequence(&p.record)) {
                    continue;
                }
                let mut p = p.clone();
                p.failures += 1;
                let exhausted = self.source.retries.is_some_and(|r| p.failures > r);
                let too_old = self.source.max_age.is_some_and(|a| p.read.elapsed() > a);
                if exhausted || too_old {
                    let condition = if exhausted {
                        "RetryAttemptsExhausted"
                    } else {
                        "RecordAgeExceeded"
                    };
                    self.give_up(&p, condition).await;
                } else {
                    let pause = FIRST_PAUSE
                        .saturating_mul(1 << (p.failures - 1).min(16))
                        .min(MAX_PAUSE);
                    p.due = Instant::now() + pause;
                    waiting.push(p);
                }
            }
        }
        waiting
    }

    /// Reports a record given up to the `OnFailure` queue, in the form Lambda sends.
    async fn give_up(&self, p: &Pending, condition: &str) {
        let seq = sequence(&p.record);
        tracing::error!(
            sequence = seq,
            failures = p.failures,
            condition,
            "stream record given up"
        );
        let Some((sqs, url)) = &self.failure_queue else {
            return;
        };
        let report = json!({
            "requestContext": {
                "functionArn": format!("arn:aws:lambda:{}:123456789012:function:{}", self.region, self.source.binary),
                "condition": condition,
                "approximateInvokeCount": p.failures,
            },
            "version": "1.0",
            "timestamp": jiff::Timestamp::now().to_string(),
            "DDBStreamBatchInfo": {
                "shardId": p.shard,
                "startSequenceNumber": seq,
                "endSequenceNumber": seq,
                "batchSize": 1,
                "streamArn": self.stream_arn,
            },
        });
        if let Err(e) = sqs
            .send_message()
            .queue_url(url)
            .message_body(report.to_string())
            .send()
            .await
        {
            tracing::error!(error = %e, "the OnFailure queue refused the report");
        }
    }
}

fn sequence(record: &Value) -> &str {
    record["dynamodb"]["SequenceNumber"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(event_name: &str, old: Value) -> Value {
        json!({
            "eventName": event_name,
            "dynamodb": {
                "Keys": {"PK": {"S": "REF#r1"}, "SK": {"S": "REFERRAL"}},
                "NewImage": {"assignment": {"M": {"agentId": {"S": "ana"}}}},
                "OldImage": old,
            }
        })
    }

    #[test]
    fn an_empty_map_reaches_the_function_as_aws_writes_it() {
        let mut codes = json!({"M": {"empty": {}, "list": {"L": [{}, {"S": "x"}]}}});
        as_aws_writes_it(&mut codes);
        assert_eq!(
            codes,
            json!({"M": {"empty": {"M": {}}, "list": {"L": [{"M": {}}, {"S": "x"}]}}})
        );
        let mut top = json!({});
        as_aws_writes_it(&mut top);
        assert_eq!(top, json!({"M": {}}));
    }

    #[test]
    fn the_templates_outbox_filters_match_outbox_items_and_claims_only() {
        let w = crate::template::parse(shared::dynamodb::table::TEMPLATE).unwrap();
        let source = w
            .stream_sources
            .iter()
            .find(|s| s.binary == "outbox")
            .unwrap();
        let any = |record: &Value| source.filters.iter().any(|p| matches(p, record));
        assert!(any(&claimed(
            "MODIFY",
            json!({"assignment": {"NULL": true}})
        )));
        assert!(any(&claimed("INSERT", Value::Null)));
        // A stage change of an assigned referral is not a claim.
        let already = json!({"assignment": {"M": {"agentId": {"S": "ana"}}}});
        assert!(!any(&claimed("MODIFY", already)));
        // Nor is anything that is not the referral item.
        let mut history = claimed("INSERT", Value::Null);
        history["dynamodb"]["Keys"]["SK"] = json!({"S": "HIST#1"});
        assert!(!any(&history));
        // A committed outbox item is delivered when it is inserted, not when its TTL removes it.
        let mut effects = claimed("INSERT", Value::Null);
        effects["dynamodb"]["Keys"]["SK"] = json!({"S": "EFFECTS"});
        assert!(any(&effects));
        effects["eventName"] = json!("REMOVE");
        assert!(!any(&effects));
    }

    #[test]
    fn patterns_match_literals_alternatives_and_existence() {
        let event = json!({"a": "x", "b": {"c": 1}});
        assert!(matches(&json!({"a": ["y", "x"]}), &event));
        assert!(!matches(&json!({"a": ["y"]}), &event));
        assert!(matches(&json!({"b": {"c": [1]}}), &event));
        assert!(matches(&json!({"b": {"c": [{"exists": true}]}}), &event));
        assert!(matches(&json!({"d": [{"exists": false}]}), &event));
        assert!(!matches(&json!({"d": [{"exists": true}]}), &event));
    }
}
