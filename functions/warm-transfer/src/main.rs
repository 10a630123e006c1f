//! Wiring only: logs, this function's settings and clients built once, then the handler in
//! `lib.rs`.

use lambda_http::{Error, Request, run, service_fn};

use shared::wiring::Setting;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sdk = shared::wiring::sdk().await;
    let services = shared::wiring::services(
        &sdk,
        &[
            Setting::AppBaseUrl,
            Setting::PublicBaseUrl,
            Setting::RateLimit,
        ],
    )?;
    run(service_fn(|req: Request| {
        warm_transfer::handle(&services, req)
    }))
    .await
}
