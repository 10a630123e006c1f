//! The input of a recurring schedule: its scheduled time, which the job takes as "now".
//!
//! EventBridge Scheduler passes it through the input template `{"time":
//! "<aws.scheduler.scheduled-time>"}`; an EventBridge scheduled-rule event carries the same `time`
//! field, so either trigger works.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledRun {
    pub time: Timestamp,
}
