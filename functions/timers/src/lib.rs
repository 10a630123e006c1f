//! Timers falling due: a Coming Soon referral lists on its date (ST-3); a warm transfer's
//! response window ends (WT-6); an offer unclaimed for 24 hours goes to the advisors (RC-2).
//! The payload is the one the change that started the timer committed
//! (`shared::effects::TimerPayload`); "now" is the time the timer was due, so a repeated firing
//! does the same thing, once.

use lambda_runtime::{Error, LambdaEvent};
use shared::app::Services;
use shared::app::pipeline::list_on_date;
use shared::app::{unassigned, warm_transfer};
use shared::effects::{TimerEvent, TimerPayload};

/// Fires one timer. A transient failure is an error, so the timer is retried (and parked when
/// it keeps failing); a refusal (a referral that is gone) never changes on a retry, so it is
/// answered as the timer's outcome (EF-2).
pub async fn handle(
    s: &Services,
    event: LambdaEvent<TimerEvent>,
) -> Result<serde_json::Value, Error> {
    let TimerEvent { payload, time } = event.payload;
    let outcome = match &payload {
        TimerPayload::ListOnDate { referral_id } => list_on_date(s, referral_id, time)
            .await
            .map(|listed| serde_json::json!({"referralId": referral_id, "listed": listed})),
        TimerPayload::WarmTransferTimeout { referral_id } => {
            warm_transfer::time_out(s, referral_id, time)
                .await
                .map(|done| serde_json::json!({"referralId": referral_id, "timedOut": done}))
        }
        TimerPayload::Unclaimed { referral_id } => {
            unassigned::escalate_unclaimed(s, referral_id, time)
                .await
                .map(|sent| serde_json::json!({"referralId": referral_id, "toAdvisors": sent}))
        }
    };
    match outcome {
        Ok(answer) => {
            tracing::info!(?payload, %answer, "timer fired");
            Ok(answer)
        }
        Err(e) if !e.is_retryable() => {
            tracing::warn!(?payload, error = %e, "timer refused");
            Ok(serde_json::json!({"refused": e.code()}))
        }
        Err(e) => Err(e.into()),
    }
}
