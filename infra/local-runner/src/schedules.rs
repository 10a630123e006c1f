//! Fires schedules by the local clock: the template's recurring `rate(...)` schedules, and the
//! one-time `at(...)` schedules the functions create in the stack's schedule groups (moto stores
//! them but never fires them); and releases the SQS messages sent with a delay (`delays`) when
//! the clock reaches their time, in time order with the schedules.

use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::activity::Activity;
use crate::clock::{Due, LocalClock, earliest};
use crate::delays::DelayedMessages;
use crate::functions::Functions;
use crate::outbox::Outbox;
use crate::template::RecurringSchedule;

/// What EventBridge Scheduler replaces with the schedule's time.
const SCHEDULED_TIME: &str = "<aws.scheduler.scheduled-time>";

/// A one-time schedule found in one of the stack's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    pub group: String,
    pub name: String,
    pub binary: String,
    pub input: Option<String>,
}

/// Something due once: a one-time schedule, or a delayed message (by its id).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Once {
    Schedule(OneTime),
    Message(String),
}

/// What fired, for the clock's answer and the logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fired {
    pub schedule: String,
    pub function: String,
    pub at: Timestamp,
    pub ok: bool,
}

/// `at(2027-01-20T08:00:00)` in `zone` (UTC when absent) as an instant.
pub fn parse_at(expression: &str, zone: Option<&str>) -> Option<Timestamp> {
    let inner = expression.trim().strip_prefix("at(")?.strip_suffix(')')?;
    let civil: DateTime = inner.parse().ok()?;
    let tz = match zone {
        Some(z) if !z.is_empty() => TimeZone::get(z).ok()?,
        _ => TimeZone::UTC,
    };
    civil.to_zoned(tz).ok().map(|z| z.timestamp())
}

/// The function a target ARN names: `arn:aws:lambda:...:function:timers[:qualifier]` → `timers`.
pub fn function_of(arn: &str) -> Option<&str> {
    arn.split_once(":function:")
        .map(|(_, rest)| rest.split(':').next().unwrap_or(rest))
        .filter(|name| !name.is_empty())
}

/// A schedule's input with its scheduled time filled in; `{"time": ...}` when it has none.
pub fn input_at(input: Option<&str>, at: Timestamp) -> Value {
    let time = at.to_string();
    let text = input
        .unwrap_or(r#"{"time": "<aws.scheduler.scheduled-time>"}"#)
        .replace(SCHEDULED_TIME, &time);
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// How long a fire waits for what it caused to settle.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Schedules {
    pub clock: Arc<LocalClock>,
    pub functions: Functions,
    pub outbox: Arc<Outbox>,
    pub scheduler: aws_sdk_scheduler::Client,
    pub groups: Vec<String>,
    pub recurring: Vec<RecurringSchedule>,
    pub activity: Arc<Activity>,
    pub delayed: Arc<DelayedMessages>,
    /// Each recurring schedule's next occurrence. Its lock also makes firing one thing at a time:
    /// the per-second tick and a clock advance never interleave.
    next: Mutex<Vec<Timestamp>>,
}

impl Schedules {
    /// Recurring schedules first fire one interval after `start`. The clock is the one the
    /// delayed messages are held by.
    pub fn new(
        delayed: Arc<DelayedMessages>,
        functions: Functions,
        outbox: Arc<Outbox>,
        scheduler: aws_sdk_scheduler::Client,
        groups: Vec<String>,
        recurring: Vec<RecurringSchedule>,
        activity: Arc<Activity>,
    ) -> Self {
        let clock = delayed.clock().clone();
        // Whole seconds, like the times EventBridge Scheduler hands out.
        let start =
            Timestamp::from_second(clock.now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH);
        let next = recurring.iter().map(|r| start + r.every).collect();
        Schedules {
            clock,
            functions,
            outbox,
            scheduler,
            groups,
            recurring,
            activity,
            delayed,
            next: Mutex::new(next),
        }
    }

    /// The one-time schedules in the stack's groups, by time then name.
    async fn one_time(&self) -> Vec<(Timestamp, OneTime)> {
        let mut found = vec![];
        for group in &self.groups {
            self.one_time_in(group, &mut found).await;
        }
        found.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        found
    }

    async fn one_time_in(&self, group: &str, found: &mut Vec<(Timestamp, OneTime)>) {
        let mut pages = self
            .scheduler
            .list_schedules()
            .group_name(group)
            .into_paginator()
            .items()
            .send();
        let mut names = vec![];
        while let Some(item) = pages.next().await {
            match item {
                Ok(s) => names.extend(s.name),
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_scheduler::error::DisplayErrorContext(&e), "ListSchedules failed");
                    return;
                }
            }
        }
        for name in names {
            let Ok(s) = self
                .scheduler
                .get_schedule()
                .group_name(group)
                .name(&name)
                .send()
                .await
            else {
                continue; // deleted since the listing
            };
            let Some(at) = s
                .schedule_expression()
                .and_then(|e| parse_at(e, s.schedule_expression_timezone()))
            else {
                continue; // recurring ones created at run time are not played
            };
            let Some(target) = s.target() else { continue };
            let Some(binary) = function_of(target.arn()).and_then(|f| self.functions.binary_of(f))
            else {
                tracing::warn!(
                    schedule = name,
                    arn = target.arn(),
                    "schedule target is not a function of this stack"
                );
                continue;
            };
            found.push((
                at,
                OneTime {
                    group: group.to_owned(),
                    name: name.clone(),
                    binary,
                    input: target.input().map(str::to_owned),
                },
            ));
        }
    }

    /// Fires, in time order, everything due up to `until`, each awaited before the next and
    /// the stack settled after it (what it caused happens before anything later fires); the
    /// clock is moved to each fire's time first, so what the function does is stamped then.
    pub async fn fire_due(&self, until: Timestamp) -> Vec<Fired> {
        let mut next = self.next.lock().await;
        let mut fired = vec![];
        // Timers that changes made a moment ago started are in place before any is listed.
        self.activity.settle(SETTLE).await;
        loop {
            // Listed again after every fire: a fire may create or delete one-time schedules and
            // send delayed messages.
            let mut once: Vec<(Timestamp, Once)> = self
                .one_time()
                .await
                .into_iter()
                .map(|(at, s)| (at, Once::Schedule(s)))
                .collect();
            once.extend(
                self.delayed
                    .due_times()
                    .into_iter()
                    .map(|(at, id)| (at, Once::Message(id))),
            );
            let Some((at, due)) = earliest(&next, &once, until) else {
                break;
            };
            self.clock.move_to(at);
            let due = match due {
                Due::Once(Once::Message(id)) => {
                    // Handed to moto undelayed: the queue's poller delivers it from there.
                    let released = self.delayed.release(&id).await;
                    if let Err(e) = &released {
                        tracing::error!(message_id = id, error = e, "delayed message lost");
                    }
                    self.activity.settle(SETTLE).await;
                    if let Err(e) = self.outbox.refresh(self.clock.now()).await {
                        tracing::warn!(error = e, "could not read moto's records");
                    }
                    fired.push(Fired {
                        schedule: format!("delayed message {id}"),
                        function: "sqs".into(),
                        at,
                        ok: released.is_ok(),
                    });
                    continue;
                }
                Due::Once(Once::Schedule(s)) => Due::Once(s),
                Due::Recurring(i) => Due::Recurring(i),
            };
            let (schedule, binary, input) = match due {
                Due::Recurring(i) => {
                    let r = &self.recurring[i];
                    next[i] += r.every;
                    (r.name.clone(), r.binary.clone(), r.input.clone())
                }
                Due::Once(s) => {
                    // Deleted before it runs, as ActionAfterCompletion: DELETE would, and so a
                    // failing target cannot fire again and again.
                    if let Err(e) = self
                        .scheduler
                        .delete_schedule()
                        .group_name(&s.group)
                        .name(&s.name)
                        .send()
                        .await
                    {
                        tracing::warn!(schedule = s.name, error = %aws_sdk_scheduler::error::DisplayErrorContext(&e), "DeleteSchedule failed");
                    }
                    (s.name, s.binary, s.input)
                }
            };
            let payload = input_at(input.as_deref(), at);
            crate::meter::count("scheduler schedule fired", 1);
            let result = self.functions.invoke(&binary, &payload).await;
            self.activity.settle(SETTLE).await;
            if let Err(e) = &result {
                tracing::error!(schedule, function = binary, error = %e, "scheduled invocation failed");
            } else {
                tracing::info!(schedule, function = binary, at = %at, "schedule fired");
            }
            if let Err(e) = self.outbox.refresh_if_sent(self.clock.now()).await {
                tracing::warn!(error = e, "could not read moto's records");
            }
            fired.push(Fired {
                schedule,
                function: binary,
                at,
                ok: result.is_ok(),
            });
        }
        fired
    }

    /// Moves the clock forward by `by`, firing everything due on the way.
    pub async fn advance(&self, by: jiff::SignedDuration) -> Vec<Fired> {
        let target = self.clock.now() + by;
        let fired = self.fire_due(target).await;
        self.clock.move_to(target);
        fired
    }

    /// Fires what falls due in real time, once a second.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            self.fire_due(self.clock.now()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_expressions_are_read_in_their_zone() {
        assert_eq!(
            parse_at("at(2027-01-20T08:00:00)", None),
            Some("2027-01-20T08:00:00Z".parse().unwrap())
        );
        assert_eq!(
            parse_at("at(2027-01-20T08:00:00)", Some("America/Los_Angeles")),
            Some("2027-01-20T16:00:00Z".parse().unwrap())
        );
        assert_eq!(parse_at("rate(1 day)", None), None);
    }

    #[test]
    fn a_target_arn_names_its_function() {
        assert_eq!(
            function_of("arn:aws:lambda:us-east-1:123456789012:function:timers"),
            Some("timers")
        );
        assert_eq!(
            function_of("arn:aws:lambda:us-east-1:123456789012:function:timers:live"),
            Some("timers")
        );
        assert_eq!(function_of("arn:aws:sqs:us-east-1:123456789012:q"), None);
    }

    #[test]
    fn the_scheduled_time_is_filled_in() {
        let at: Timestamp = "2027-01-15T16:00:00Z".parse().unwrap();
        assert_eq!(
            input_at(
                Some(r#"{"time": "<aws.scheduler.scheduled-time>", "job": "billing"}"#),
                at
            ),
            serde_json::json!({"time": "2027-01-15T16:00:00Z", "job": "billing"})
        );
        assert_eq!(
            input_at(None, at),
            serde_json::json!({"time": "2027-01-15T16:00:00Z"})
        );
    }
}
