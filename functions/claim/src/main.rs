//! Wiring only: logs, this function's settings and clients built once, then the handler in
//! `lib.rs`.

use lambda_runtime::{Error, service_fn};
use shared::telemetry::run;

use shared::wiring::Setting;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init()?;
    let sdk = shared::wiring::sdk().await;
    let services = shared::wiring::services(
        &sdk,
        &[
            Setting::PublicBaseUrl,
            Setting::PinLine,
            Setting::AppBaseUrl,
            Setting::RateLimit,
        ],
    )?;
    let hooks = shared::wiring::webhooks()?;
    // API Gateway's requests and the inbound SMS topic's notifications, on one function.
    run(service_fn(|event| {
        claim::handle_event(&services, &hooks, event)
    }))
    .await
}
