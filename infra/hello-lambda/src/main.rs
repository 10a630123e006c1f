//! Hello, world on lambda_runtime: echoes its event. It is never deployed; `make bench` builds
//! it with the functions' release profile and compares their cold starts with its own.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
