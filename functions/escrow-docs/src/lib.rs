//! The closing documents (ES-1, ES-2): fed by the bus rule on `StageChanged` into In Escrow.

use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use shared::app::Services;
use shared::app::escrow::send_escrow_documents;
use shared::domain::stage::Stage;
use shared::domain::values::ReferralId;

/// The EventBridge envelope, with the parts this function reads.
#[derive(Debug, Deserialize)]
pub struct StageChangedEvent {
    pub time: jiff::Timestamp,
    pub detail: StageChangedDetail,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageChangedDetail {
    pub referral_id: ReferralId,
    pub to: Stage,
    pub escrow_entry: u32,
}

pub async fn handle(
    s: &Services,
    event: LambdaEvent<StageChangedEvent>,
) -> Result<serde_json::Value, Error> {
    let e = event.payload;
    // The rule routes only In Escrow entries; anything else is not this function's to act on.
    if e.detail.to != Stage::InEscrow {
        return Ok(serde_json::json!({"sent": false}));
    }
    let sent =
        send_escrow_documents(s, &e.detail.referral_id, e.detail.escrow_entry, e.time).await?;
    tracing::info!(referral_id = %e.detail.referral_id, escrow_entry = e.detail.escrow_entry, sent, "escrow documents");
    Ok(serde_json::json!({"sent": sent}))
}
