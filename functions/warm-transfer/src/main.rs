//! Wiring only: logs, configuration and clients built once, then the handler in `lib.rs`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = shared::wiring::services_from_env().await?;
    run(service_fn(|req: Request| {
        warm_transfer::handle(&services, req)
    }))
    .await
}
