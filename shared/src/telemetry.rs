//! Structured logs for every function: JSON lines, fields not formatted strings, level from
//! `RUST_LOG` (default info).

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .without_time()
        .with_target(false)
        .init();
}
