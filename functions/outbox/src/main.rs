//! Wiring only: logs, configuration and clients built once, then the handler in `lib.rs`.

use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = shared::wiring::services_from_env().await?;
    run(service_fn(|event| outbox::handle(&services, event))).await
}
