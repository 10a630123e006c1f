//! The closing documents (ES-1, ES-2): fed by the bus rule on `StageChanged` into In Escrow.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use shared::app::Services;
use shared::app::escrow::send_escrow_documents;
use shared::domain::stage::Stage;
use shared::domain::values::ReferralId;

/// The `StageChanged` event as the bus delivers it.
pub type StageChangedEvent = EventBridgeEvent<StageChangedDetail>;

#[derive(Debug, Deserialize, Serialize)]
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
    // The event's own time, so a redelivery does the same thing.
    let time = e
        .time
        .and_then(|t| jiff::Timestamp::from_millisecond(t.timestamp_millis()).ok())
        .ok_or("the event has no time")?;
    let sent = send_escrow_documents(s, &e.detail.referral_id, e.detail.escrow_entry, time).await?;
    tracing::info!(referral_id = %e.detail.referral_id, escrow_entry = e.detail.escrow_entry, sent, "escrow documents");
    Ok(serde_json::json!({"sent": sent}))
}
