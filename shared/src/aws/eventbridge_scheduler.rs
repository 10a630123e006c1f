//! One-time schedules on EventBridge Scheduler (Coming Soon to Listing, the warm-transfer
//! timeout): each fires a Lambda function once with a JSON payload, then deletes itself.

use crate::aws::OnFirstUse;
use async_trait::async_trait;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::error::send_error;
use crate::effects::{Timer, TimerEvent};
use crate::ports::{Scheduler, SendError};

/// Creates, replaces and deletes one-time schedules in one schedule group.
#[derive(Debug, Clone)]
pub struct EventBridgeScheduler {
    client: OnFirstUse<aws_sdk_scheduler::Client>,
    group_name: String,
    target_arn: String,
    role_arn: String,
}

impl EventBridgeScheduler {
    /// `group_name` is the schedule group (schedule names are unique within it);
    /// `target_arn` the Lambda function the schedules invoke; `role_arn` the IAM role Scheduler
    /// assumes to invoke it.
    pub fn new(
        client: impl Into<OnFirstUse<aws_sdk_scheduler::Client>>,
        group_name: impl Into<String>,
        target_arn: impl Into<String>,
        role_arn: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            group_name: group_name.into(),
            target_arn: target_arn.into(),
            role_arn: role_arn.into(),
        }
    }

    /// The timers function as the target, invoked with the timer's payload and its time.
    fn target(&self, timer: &Timer) -> Result<Target, SendError> {
        let event = TimerEvent {
            payload: timer.payload.clone(),
            time: timer.at,
        };
        let input = serde_json::to_string(&event)
            .map_err(|e| SendError::Rejected(format!("timer payload: {e}")))?;
        Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(input)
            .build()
            .map_err(|e| SendError::Rejected(format!("schedule target: {e}")))
    }
}

/// `at(yyyy-mm-ddThh:mm:ss)`, the one-time expression, in UTC (the schedule's time zone is set
/// to UTC as well, so no local-time rules can shift it). Scheduler has minute precision at best;
/// the seconds are kept so the expression says exactly what was asked.
fn at_expression(at: Timestamp) -> String {
    format!(
        "at({})",
        at.to_zoned(TimeZone::UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
}

fn off() -> Result<FlexibleTimeWindow, SendError> {
    // A timed transition must fire when it is due, not somewhere in a window after it.
    FlexibleTimeWindow::builder()
        .mode(FlexibleTimeWindowMode::Off)
        .build()
        .map_err(|e| SendError::Rejected(format!("schedule window: {e}")))
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    /// Creates the schedule; if one with that name exists, replaces it, so moving a date is the
    /// same call as setting it. (UpdateSchedule replaces every field, hence the full set again.)
    #[tracing::instrument(skip(self, timer), fields(name = %timer.name))]
    async fn start(&self, timer: &Timer) -> Result<(), SendError> {
        let name = &timer.name;
        let expression = at_expression(timer.at);
        let created = self
            .client
            .get()
            .create_schedule()
            .name(name)
            .group_name(&self.group_name)
            .schedule_expression(&expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(off()?)
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(self.target(timer)?)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conflict_exception()) =>
            {
                self.client
                    .get()
                    .update_schedule()
                    .name(name)
                    .group_name(&self.group_name)
                    .schedule_expression(&expression)
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(off()?)
                    .action_after_completion(ActionAfterCompletion::Delete)
                    .target(self.target(timer)?)
                    .send()
                    .await
                    .map_err(|e| send_error("Scheduler UpdateSchedule", e))?;
                Ok(())
            }
            Err(e) => Err(send_error("Scheduler CreateSchedule", e)),
        }
    }

    /// Deletes the schedule. One that is gone (already fired and deleted itself, or cancelled
    /// before) is what the caller wanted anyway.
    #[tracing::instrument(skip(self))]
    async fn stop(&self, name: &str) -> Result<(), SendError> {
        match self
            .client
            .get()
            .delete_schedule()
            .name(name)
            .group_name(&self.group_name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(send_error("Scheduler DeleteSchedule", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expression_is_at_in_utc_without_offset() {
        let at: Timestamp = "2026-03-08T09:30:05-08:00".parse().unwrap();
        assert_eq!(at_expression(at), "at(2026-03-08T17:30:05)");
    }
}
