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
    tracing::info!(at = %now, charged = run.charged.len(), failed = run.failed.len(), "billing run");
    // Every subscription was tried; one that failed fails the run, so the schedule retries it
    // (what was charged stays charged once) and, failing still, it is parked where an alarm sees
    // it.
    if let Some((sub, e)) = run.failed.iter().find(|(_, e)| e.is_retryable()) {
        return Err(format!("billing subscription {sub} failed: {e}").into());
    }
    let charged: Vec<_> = run
        .charged
        .iter()
        .map(|(id, cycle, amount)| serde_json::json!({"subscriptionId": id, "cycle": cycle, "amount": amount}))
        .collect();
    Ok(serde_json::json!({"charged": charged}))
}
