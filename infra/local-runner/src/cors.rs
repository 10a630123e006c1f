//! The HTTP API's CORS as API Gateway plays it from the template's `CorsConfiguration`: it
//! answers a browser's preflight (`OPTIONS` with `Access-Control-Request-Method`) itself, before
//! any authorizer, and adds `Access-Control-Allow-Origin` to every answer for an allowed origin.
//! An origin it does not allow gets the same answers without any CORS header, so the browser
//! refuses them. Without a configuration (no origins: the template's default) there is no CORS.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::http::request::Parts;
use serde_json::Value;

use crate::cloudformation::{Mode, Stack};
use crate::template::Template;

type Reply = Response<Full<Bytes>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub max_age: Option<u64>,
}

/// A list property: a list, or a comma-separated string as a `CommaDelimitedList` resolves.
fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => vec![],
    }
}

impl Cors {
    /// The `HttpApi`'s `CorsConfiguration` with the stack's parameter values; `None` when the
    /// API has none (or it allows no origin).
    pub fn from_template(template: &Template, stack: &Stack) -> Result<Option<Cors>, String> {
        let Some(config) = template
            .resources()
            .values()
            .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::HttpApi"))
            .find_map(|r| r.pointer("/Properties/CorsConfiguration").cloned())
        else {
            return Ok(None);
        };
        let resolved = stack
            .resolve(&config, Mode::Local)
            .map_err(|e| format!("the HttpApi's CorsConfiguration: {e}"))?;
        Ok(resolved.and_then(|c| Cors::from_configuration(&c)))
    }

    pub fn from_configuration(c: &Value) -> Option<Cors> {
        if c == &Value::Bool(true) {
            // SAM's shorthand: every origin.
            return Some(Cors {
                origins: vec!["*".into()],
                methods: vec!["*".into()],
                headers: vec!["*".into()],
                max_age: None,
            });
        }
        let cors = Cors {
            origins: list(c.get("AllowOrigins")),
            methods: list(c.get("AllowMethods")),
            headers: list(c.get("AllowHeaders")),
            max_age: c.get("MaxAge").and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }),
        };
        (!cors.origins.is_empty()).then_some(cors)
    }

    /// The request's `Origin` when this configuration allows it.
    pub fn allowed<'a>(&self, parts: &'a Parts) -> Option<&'a str> {
        let origin = parts.headers.get("origin")?.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }

    /// API Gateway's own answer to a preflight: 204, with the CORS headers only for an allowed
    /// origin.
    pub fn preflight(&self, parts: &Parts) -> Option<Reply> {
        let is_preflight = parts.method == hyper::Method::OPTIONS
            && parts.headers.contains_key("access-control-request-method");
        if !is_preflight {
            return None;
        }
        let mut builder = Response::builder().status(204);
        if let Some(origin) = self.allowed(parts) {
            builder = builder
                .header("access-control-allow-origin", origin)
                .header("access-control-allow-methods", self.methods.join(","))
                .header("access-control-allow-headers", self.headers.join(","))
                .header("vary", "origin");
            if let Some(age) = self.max_age {
                builder = builder.header("access-control-max-age", age.to_string());
            }
        }
        Some(
            builder
                .body(Full::new(Bytes::new()))
                .expect("a valid status and headers"),
        )
    }

    /// Adds `Access-Control-Allow-Origin` to an answer for an allowed origin, replacing any the
    /// function set, as API Gateway does.
    pub fn decorate(&self, parts: &Parts, reply: &mut Reply) {
        let Some(origin) = self.allowed(parts) else {
            return;
        };
        if let Ok(value) = origin.parse() {
            let headers = reply.headers_mut();
            headers.insert("access-control-allow-origin", value);
            headers.insert("vary", hyper::header::HeaderValue::from_static("origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;
    use serde_json::json;

    fn parts(method: &str, origin: &str, preflight: bool) -> Parts {
        let mut b = Request::builder()
            .method(method)
            .uri("/referrals")
            .header("origin", origin);
        if preflight {
            b = b.header("access-control-request-method", "POST");
        }
        b.body(()).unwrap().into_parts().0
    }

    fn cors() -> Cors {
        Cors::from_configuration(&json!({
            "AllowOrigins": ["https://app.example.com"],
            "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["authorization", "content-type", "idempotency-key"],
            "MaxAge": 600
        }))
        .unwrap()
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_names_the_methods_and_headers() {
        let reply = cors()
            .preflight(&parts("OPTIONS", "https://app.example.com", true))
            .unwrap();
        assert_eq!(reply.status(), 204);
        let h = reply.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-methods"], "GET,POST");
        assert_eq!(
            h["access-control-allow-headers"],
            "authorization,content-type,idempotency-key"
        );
        assert_eq!(h["access-control-max-age"], "600");
    }

    #[test]
    fn a_refused_origin_gets_no_cors_header() {
        let reply = cors()
            .preflight(&parts("OPTIONS", "https://evil.example.net", true))
            .unwrap();
        assert_eq!(reply.status(), 204);
        assert!(!reply.headers().contains_key("access-control-allow-origin"));
        assert!(cors().preflight(&parts("OPTIONS", "x", false)).is_none());
    }

    #[test]
    fn no_origins_is_no_cors() {
        assert_eq!(
            Cors::from_configuration(&json!({"AllowOrigins": [], "AllowMethods": ["GET"]})),
            None
        );
        assert_eq!(
            Cors::from_configuration(&json!({"AllowOrigins": "a,b"}))
                .unwrap()
                .origins,
            vec!["a", "b"]
        );
    }
}
