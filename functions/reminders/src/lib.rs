//! The biweekly reminders job (RM-1, RM-2), fired by a recurring schedule whose input carries
//! the scheduled time, so a replay is deterministic.

use lambda_runtime::{Error, LambdaEvent};
use shared::app::Services;
use shared::app::reminders::run_reminders;
use shared::schedule::ScheduledRun;

pub async fn handle(
    s: &Services,
    event: LambdaEvent<ScheduledRun>,
) -> Result<serde_json::Value, Error> {
    let now = event.payload.time;
    let run = run_reminders(s, now).await?;
    tracing::info!(at = %now, reminded = run.reminded.len(), failed = run.failed.len(), "reminders sent");
    // Every agent was tried; one that failed fails the run, so the schedule retries it (the
    // others are done and stay done) and, failing still, it is parked where an alarm sees it.
    if let Some((agent, e)) = run.failed.into_iter().find(|(_, e)| e.is_retryable()) {
        return Err(format!("the reminder of agent {agent} failed: {e}").into());
    }
    Ok(serde_json::json!({"reminded": run.reminded}))
}
