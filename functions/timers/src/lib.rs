//! One-time schedules falling due: a Coming Soon referral lists on its date (ST-3); a warm
//! transfer's response window ends (WT-6).

use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use shared::app::Services;
use shared::app::pipeline::list_on_date;
use shared::app::warm_transfer;
use shared::domain::values::ReferralId;

/// The input a one-time schedule was created with.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Timer {
    ListOnDate {
        #[serde(rename = "referralId")]
        referral_id: ReferralId,
        time: jiff::Timestamp,
    },
    WarmTransferTimeout {
        #[serde(rename = "referralId")]
        referral_id: ReferralId,
        time: jiff::Timestamp,
    },
}

pub async fn handle(s: &Services, event: LambdaEvent<Timer>) -> Result<serde_json::Value, Error> {
    match event.payload {
        Timer::ListOnDate { referral_id, time } => {
            let listed = list_on_date(s, &referral_id, time).await?;
            tracing::info!(referral_id = %referral_id, listed, "coming soon timer");
            Ok(serde_json::json!({"referralId": referral_id, "listed": listed}))
        }
        Timer::WarmTransferTimeout { referral_id, time } => {
            let timed_out = warm_transfer::time_out(s, &referral_id, time).await?;
            tracing::info!(referral_id = %referral_id, timed_out, "warm transfer timer");
            Ok(serde_json::json!({"referralId": referral_id, "timedOut": timed_out}))
        }
    }
}
