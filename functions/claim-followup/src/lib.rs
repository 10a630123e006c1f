//! After a claim, off the claim's path: the client's details to the winner (PPL-3), the winner's
//! speed to lead (GEN-1), their reminders (RM-1), and `ReferralClaimed` on the bus. Fed by the
//! table's stream, filtered (in the template) to referrals that became assigned, so the claim
//! itself is one conditional write and nothing else.
//!
//! Records that fail are reported by sequence number and come back; each effect happens once
//! however often a record is delivered (GEN-5).

use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::app::Services;
use shared::app::claim::after_claim;
use shared::domain::values::{AgentId, ReferralId};

/// A DynamoDB stream batch, with the parts this function reads.
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records")]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    #[serde(rename = "eventName")]
    pub event_name: String,
    pub dynamodb: Change,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    pub keys: Value,
    #[serde(default)]
    pub new_image: Value,
    #[serde(default)]
    pub old_image: Value,
    pub sequence_number: String,
}

/// The partial-failure answer of a stream batch.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// A claim as the stream shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    pub referral_id: ReferralId,
    pub agent_id: AgentId,
    pub claimed_at: jiff::Timestamp,
}

fn string<'a>(image: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(image, |v, key| v.get(key))
        .and_then(Value::as_str)
}

impl StreamRecord {
    /// The claim this record shows: a referral item that became assigned (created assigned, or
    /// updated from unassigned). Anything else is `None`, whatever the filter let through.
    pub fn claim(&self) -> Option<Claim> {
        let d = &self.dynamodb;
        if string(&d.keys, &["SK", "S"]) != Some("REFERRAL") {
            return None;
        }
        let assigned = |image: &Value| image.get("assignment").and_then(|a| a.get("M")).cloned();
        let new = assigned(&d.new_image)?;
        let newly = match self.event_name.as_str() {
            "INSERT" => true,
            "MODIFY" => assigned(&d.old_image).is_none(),
            _ => false,
        };
        if !newly {
            return None;
        }
        Some(Claim {
            referral_id: string(&d.new_image, &["id", "S"])?.parse().ok()?,
            agent_id: string(&new, &["agentId", "S"])?.parse().ok()?,
            claimed_at: string(&new, &["claimedAt", "S"])?.parse().ok()?,
        })
    }
}

pub async fn handle(s: &Services, event: LambdaEvent<StreamEvent>) -> Result<BatchResponse, Error> {
    let mut response = BatchResponse::default();
    for record in &event.payload.records {
        let Some(claim) = record.claim() else {
            continue;
        };
        // "Now" is the claim's own time: a redelivery does the same thing.
        if let Err(e) = after_claim(s, &claim.referral_id, &claim.agent_id, claim.claimed_at).await
        {
            tracing::error!(error = %e, referral_id = %claim.referral_id, "claim follow-up failed");
            response.batch_item_failures.push(ItemFailure {
                item_identifier: record.dynamodb.sequence_number.clone(),
            });
        }
    }
    Ok(response)
}
