//! The table's stream, from committed state (EF-1): the outbox items every change commits, each
//! relayed to its services (deliveries to the broadcast queue, events to the bus, timers to the
//! scheduler); and the referrals that became assigned, whose claim owes the client's details to
//! the winner (PPL-3), their speed to lead (GEN-1), their reminders (RM-1) and `ReferralClaimed`.
//! Filtered in the template to those two kinds of record, so a claim is one conditional write
//! and nothing else, and no change's effects leave before it is stored.
//!
//! Records are handled in stream order. The first that fails is reported by its sequence number
//! and the rest are left for the retry, which starts there: effects keep their order (a timer
//! started by one change and stopped by the next ends stopped). Every step is safe to repeat, so
//! a redelivery performs what it missed and duplicates nothing (GEN-5); what keeps failing goes
//! to the failure destination, where an alarm sees it.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures_util::future::join_all;
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use shared::app::claim::after_claim;
use shared::app::outbox::{self, Relay};
use shared::app::{AppError, Services};
use shared::domain::referral::Assignment;
use shared::domain::values::{AgentId, ReferralId};
use shared::effects::Effects;
use tracing::Instrument;

/// A claim as the stream shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    pub referral_id: ReferralId,
    pub agent_id: AgentId,
    pub claimed_at: jiff::Timestamp,
}

/// What a stream record asks of this function.
#[derive(Debug)]
pub enum Work {
    /// A change's committed effects, to perform.
    Effects(Effects),
    /// A referral that became assigned, to follow up.
    Claimed(Claim),
    /// Anything else the filter let through.
    Nothing,
}

/// The parts of a referral item this function reads.
#[derive(Deserialize)]
struct ReferralImage {
    id: ReferralId,
    #[serde(default)]
    assignment: Option<Assignment>,
}

/// The record's item's key attribute `name` (`PK` or `SK`).
fn key(record: &EventRecord, name: &str) -> Option<String> {
    record
        .change
        .keys
        .get(name)
        .and_then(|v| serde_dynamo::from_attribute_value(v.clone()).ok())
}

/// What `record` asks for: a newly inserted outbox item, or a referral item that became assigned
/// (created assigned, or updated from unassigned).
pub fn work_of(record: &EventRecord) -> Result<Work, AppError> {
    let change = &record.change;
    match key(record, "SK").as_deref() {
        Some("EFFECTS") if record.event_name == "INSERT" => {
            let effects: Effects = serde_dynamo::from_item(change.new_image.clone())
                .map_err(|e| AppError::BadRequest(format!("an unreadable outbox item: {e}")))?;
            Ok(Work::Effects(effects))
        }
        Some("REFERRAL") => {
            let image = |item: &serde_dynamo::Item| -> Option<ReferralImage> {
                serde_dynamo::from_item(item.clone()).ok()
            };
            let Some(new) = image(&change.new_image) else {
                return Ok(Work::Nothing);
            };
            let Some(assignment) = new.assignment else {
                return Ok(Work::Nothing);
            };
            let newly = match record.event_name.as_str() {
                "INSERT" => true,
                "MODIFY" => image(&change.old_image).is_some_and(|old| old.assignment.is_none()),
                _ => false,
            };
            Ok(if newly {
                Work::Claimed(Claim {
                    referral_id: new.id,
                    agent_id: assignment.agent_id,
                    claimed_at: assignment.claimed_at,
                })
            } else {
                Work::Nothing
            })
        }
        _ => Ok(Work::Nothing),
    }
}

/// When the record's change was written, as the stream stamps it: short timers are delayed by
/// what is left of them from then (WT-12).
fn committed_at(record: &EventRecord) -> jiff::Timestamp {
    let at = record.change.approximate_creation_date_time;
    jiff::Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

async fn perform(s: &Services, relay: &Relay, record: &EventRecord) -> Result<(), AppError> {
    match work_of(record)? {
        Work::Effects(effects) => outbox::relay(relay, &effects, committed_at(record)).await,
        // "Now" is the claim's own time: a redelivery does the same thing.
        Work::Claimed(c) => after_claim(s, &c.referral_id, &c.agent_id, c.claimed_at).await,
        Work::Nothing => Ok(()),
    }
}

/// Performs a stream batch. The records of one item are performed in the stream's order, and
/// the items at once (as Lambda's `ParallelizationFactor` keeps order per key only): fifty new
/// referrals' alerts are relayed side by side, not one after another. When a record fails for
/// a while, its item stops there, and the earliest such record is reported, so that the stream
/// delivers it and everything after it again (records done twice are relayed twice; each
/// effect's key keeps it once).
pub async fn handle(
    s: &Services,
    relay: &Relay,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let records = &event.payload.records;
    let mut items: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let item = key(record, "PK");
        match items.iter_mut().find(|(k, _)| *k == item) {
            Some((_, order)) => order.push(i),
            None => items.push((item, vec![i])),
        }
    }
    let request_id = &event.context.request_id;
    let stopped = join_all(items.iter().map(|(_, order)| async move {
        for &i in order {
            let record = &records[i];
            let sequence = record.change.sequence_number.as_deref().unwrap_or("");
            let span = tracing::info_span!("record", sequence, request_id = %request_id);
            match perform(s, relay, record).instrument(span.clone()).await {
                Ok(()) => {}
                Err(e) if !e.is_retryable() => {
                    span.in_scope(|| tracing::error!(error = %e, "stream record refused"));
                    shared::telemetry::effect_parked();
                }
                Err(e) => {
                    span.in_scope(|| {
                        tracing::warn!(error = %e, "stream record failed; the stream retries from here")
                    });
                    return Some(i);
                }
            }
        }
        None
    }))
    .await;
    let mut response = DynamoDbEventResponse::default();
    if let Some(first) = stopped.into_iter().flatten().min() {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = records[first].change.sequence_number.clone();
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}
