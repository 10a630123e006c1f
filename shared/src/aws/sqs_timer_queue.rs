//! Short timers on SQS (the warm-transfer window, claim-call retries): each is one message,
//! delayed until its time, that the timers function consumes. SQS holds a message back to the
//! second, where EventBridge Scheduler fires somewhere in the minute after its time.

use async_trait::async_trait;
use jiff::SignedDuration;

use super::error::send_error;
use crate::aws::OnFirstUse;
use crate::effects::{MAX_TIMER_DELAY, Timer, TimerEvent};
use crate::ports::{SendError, TimerQueue};

/// Sends timers as delayed messages to one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsTimerQueue {
    client: OnFirstUse<aws_sdk_sqs::Client>,
    queue_url: String,
}

impl SqsTimerQueue {
    /// `queue_url` is the timer queue's URL, as SQS calls take it.
    pub fn new(
        client: impl Into<OnFirstUse<aws_sdk_sqs::Client>>,
        queue_url: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            queue_url: queue_url.into(),
        }
    }
}

/// The delay in whole seconds SQS takes: rounded up, so a timer never fires before its time,
/// and within SQS's 0 to 900.
pub fn delay_seconds(delay: SignedDuration) -> i32 {
    let capped = delay.clamp(SignedDuration::ZERO, MAX_TIMER_DELAY);
    let whole = capped.as_secs() + i64::from(capped.subsec_nanos() > 0);
    i32::try_from(whole).unwrap_or(0)
}

#[async_trait]
impl TimerQueue for SqsTimerQueue {
    async fn delay(&self, timer: &Timer, delay: SignedDuration) -> Result<(), SendError> {
        let event = TimerEvent {
            payload: timer.payload.clone(),
            time: timer.at,
        };
        let body = serde_json::to_string(&event)
            .map_err(|e| SendError::Rejected(format!("timer payload: {e}")))?;
        self.client
            .get()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds(delay))
            .send()
            .await
            .map_err(|e| send_error("SQS SendMessage", e))?;
        tracing::info!(timer = timer.name, at = %timer.at, delay_seconds = delay_seconds(delay), "timer queued");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wt_12_delays_round_up_to_whole_seconds_within_what_sqs_takes() {
        assert_eq!(delay_seconds(SignedDuration::from_secs(90)), 90);
        assert_eq!(delay_seconds(SignedDuration::from_millis(89_200)), 90);
        assert_eq!(delay_seconds(SignedDuration::from_secs(-3)), 0);
        assert_eq!(delay_seconds(SignedDuration::from_secs(4_000)), 900);
    }
}
