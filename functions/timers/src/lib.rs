//! Timers falling due: a Coming Soon referral lists on its date (ST-3); a warm transfer's
//! response window ends (WT-6). The payload is the one the change that started the timer
//! committed (`shared::effects::TimerPayload`); "now" is the time the timer was due, so a
//! repeated firing does the same thing, once.

use lambda_runtime::{Error, LambdaEvent};
use shared::app::Services;
use shared::app::pipeline::list_on_date;
use shared::app::warm_transfer;
use shared::effects::{TimerEvent, TimerPayload};

pub async fn handle(
    s: &Services,
    event: LambdaEvent<TimerEvent>,
) -> Result<serde_json::Value, Error> {
    let TimerEvent { payload, time } = event.payload;
    match payload {
        TimerPayload::ListOnDate { referral_id } => {
            let listed = list_on_date(s, &referral_id, time).await?;
            tracing::info!(referral_id = %referral_id, listed, "coming soon timer");
            Ok(serde_json::json!({"referralId": referral_id, "listed": listed}))
        }
        TimerPayload::WarmTransferTimeout { referral_id } => {
            let timed_out = warm_transfer::time_out(s, &referral_id, time).await?;
            tracing::info!(referral_id = %referral_id, timed_out, "warm transfer timer");
            Ok(serde_json::json!({"referralId": referral_id, "timedOut": timed_out}))
        }
    }
}
