//! The `events/` fixtures for handler tests: the same files `cargo lambda invoke --data-file`
//! sends, so tests and local invocations exercise one set of events.

use std::path::PathBuf;

/// `events/<function>/<name>.json` in this workspace.
pub fn path(function: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(function)
        .join(format!("{name}.json"))
}

pub fn json(function: &str, name: &str) -> serde_json::Value {
    let p = path(function, name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A fixture as a typed event, such as an SQS batch or a schedule's input.
pub fn event<T: serde::de::DeserializeOwned>(function: &str, name: &str) -> T {
    serde_json::from_value(json(function, name))
        .unwrap_or_else(|e| panic!("{function}/{name}: {e}"))
}

/// An API Gateway request from its JSON.
#[cfg(feature = "http")]
pub fn request(value: &serde_json::Value) -> lambda_http::Request {
    lambda_http::request::from_str(&value.to_string())
        .unwrap_or_else(|e| panic!("not an API Gateway event: {e}"))
}

#[cfg(feature = "http")]
pub fn http_event(function: &str, name: &str) -> lambda_http::Request {
    request(&json(function, name))
}

/// The status and JSON body of a response.
#[cfg(feature = "http")]
pub fn response(resp: &lambda_http::Response<lambda_http::Body>) -> (u16, serde_json::Value) {
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    };
    (resp.status().as_u16(), body)
}
