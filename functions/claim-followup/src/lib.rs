//! After a claim, off the claim's path: the client's details to the winner (PPL-3), the winner's
//! speed to lead (GEN-1) and their reminders (RM-1). Fed by the bus rule on `ReferralClaimed`.

use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use shared::app::Services;
use shared::app::claim::after_claim;
use shared::domain::values::{AgentId, ReferralId};

/// The EventBridge envelope, with the parts this function reads.
#[derive(Debug, Deserialize)]
pub struct ClaimedEvent {
    pub time: jiff::Timestamp,
    pub detail: ClaimedDetail,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedDetail {
    pub referral_id: ReferralId,
    pub agent_id: AgentId,
}

pub async fn handle(s: &Services, event: LambdaEvent<ClaimedEvent>) -> Result<(), Error> {
    let e = event.payload;
    after_claim(s, &e.detail.referral_id, &e.detail.agent_id, e.time).await?;
    Ok(())
}
