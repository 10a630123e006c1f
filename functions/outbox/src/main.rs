//! Wiring only: logs, this function's settings and clients built once, then the handler in
//! `lib.rs`.

use lambda_runtime::{Error, service_fn};
use shared::telemetry::run;
use shared::wiring::Setting;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init()?;
    let sdk = shared::wiring::sdk().await;
    // The webhook URLs of a warm transfer's calls, placed on its win (WT-10).
    let services = shared::wiring::services(&sdk, &[Setting::PublicBaseUrl])?;
    let relay = shared::wiring::relay(&sdk)?;
    run(service_fn(|event| outbox::handle(&services, &relay, event))).await
}
