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
    let reminded = run_reminders(s, now).await?;
    tracing::info!(at = %now, reminded = reminded.len(), "reminders sent");
    Ok(serde_json::json!({"reminded": reminded}))
}
