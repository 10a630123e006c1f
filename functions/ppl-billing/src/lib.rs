//! The daily pay-per-lead billing sweep (PPL-2), fired by a recurring schedule whose input carries
//! the scheduled time: a replayed or doubled run charges nothing twice.

use lambda_runtime::{Error, LambdaEvent};
use shared::app::Services;
use shared::app::billing::run_billing;
use shared::schedule::ScheduledRun;

pub async fn handle(
    s: &Services,
    event: LambdaEvent<ScheduledRun>,
) -> Result<serde_json::Value, Error> {
    let now = event.payload.time;
    let run = run_billing(s, now).await?;
    tracing::info!(at = %now, charged = run.charged.len(), "billing run");
    let charged: Vec<_> = run
        .charged
        .iter()
        .map(|(id, cycle, amount)| serde_json::json!({"subscriptionId": id, "cycle": cycle, "amount": amount}))
        .collect();
    Ok(serde_json::json!({"charged": charged}))
}
