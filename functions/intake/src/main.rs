//! Wiring only: logs, this function's settings and clients built once, then the handler in
//! `lib.rs`.

use lambda_http::{Error, Request, service_fn};
use shared::telemetry::run_http;

use shared::wiring::Setting;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init()?;
    let sdk = shared::wiring::sdk().await;
    let services = shared::wiring::services(
        &sdk,
        &[
            Setting::AppBaseUrl,
            Setting::WarmTransferLine,
            Setting::WarmTransferTimeout,
            // A pay-per-lead referral is priced when it is delivered (PPL-11).
            Setting::Prices,
            Setting::RateLimit,
            // Keys the index duplicates are found by (RC-4).
            Setting::ContactKeySecret,
        ],
    )?;
    run_http(service_fn(|req: Request| intake::handle(&services, req))).await
}
