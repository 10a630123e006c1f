//! Wiring only: logs, this function's settings and clients built once, then the handler in
//! `lib.rs`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sdk = shared::wiring::sdk().await;
    let services = shared::wiring::services(&sdk, &[])?;
    run(service_fn(|req: Request| {
        ppl_subscriptions::handle(&services, req)
    }))
    .await
}
