//! After a claim, off the claim's path: the client's details to the winner (PPL-3), the winner's
//! speed to lead (GEN-1), their reminders (RM-1), and `ReferralClaimed` on the bus. Fed by the
//! table's stream, filtered (in the template) to referrals that became assigned, so the claim
//! itself is one conditional write and nothing else.
//!
//! Records that fail are reported by sequence number and come back; each effect happens once
//! however often a record is delivered (GEN-5).

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use shared::app::Services;
use shared::app::claim::after_claim;
use shared::domain::referral::Assignment;
use shared::domain::values::{AgentId, ReferralId};

/// A claim as the stream shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    pub referral_id: ReferralId,
    pub agent_id: AgentId,
    pub claimed_at: jiff::Timestamp,
}

/// The parts of a referral item this function reads.
#[derive(Deserialize)]
struct ReferralImage {
    id: ReferralId,
    #[serde(default)]
    assignment: Option<Assignment>,
}

/// The claim a record shows: a referral item that became assigned (created assigned, or updated
/// from unassigned). Anything else is `None`, whatever the filter let through.
pub fn claim_of(record: &EventRecord) -> Option<Claim> {
    let change = &record.change;
    let sort_key: Option<String> = change
        .keys
        .get("SK")
        .and_then(|v| serde_dynamo::from_attribute_value(v.clone()).ok());
    if sort_key.as_deref() != Some("REFERRAL") {
        return None;
    }
    let image = |item: &serde_dynamo::Item| -> Option<ReferralImage> {
        serde_dynamo::from_item(item.clone()).ok()
    };
    let new = image(&change.new_image)?;
    let assignment = new.assignment?;
    let newly = match record.event_name.as_str() {
        "INSERT" => true,
        "MODIFY" => image(&change.old_image).is_some_and(|old| old.assignment.is_none()),
        _ => false,
    };
    newly.then_some(Claim {
        referral_id: new.id,
        agent_id: assignment.agent_id,
        claimed_at: assignment.claimed_at,
    })
}

pub async fn handle(
    s: &Services,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let mut response = DynamoDbEventResponse::default();
    for record in &event.payload.records {
        let Some(claim) = claim_of(record) else {
            continue;
        };
        // "Now" is the claim's own time: a redelivery does the same thing.
        if let Err(e) = after_claim(s, &claim.referral_id, &claim.agent_id, claim.claimed_at).await
        {
            tracing::error!(error = %e, referral_id = %claim.referral_id, "claim follow-up failed");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}
