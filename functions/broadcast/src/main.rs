//! Wiring only: logs, this function's settings and clients built once, then the handler in
//! `lib.rs`.

use lambda_runtime::{Error, service_fn};
use shared::telemetry::run;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init()?;
    let sdk = shared::wiring::sdk().await;
    let services = shared::wiring::services(&sdk, &[])?;
    let senders = shared::wiring::senders(&sdk)?;
    run(service_fn(|event| {
        broadcast::handle(&services, &senders, event)
    }))
    .await
}
