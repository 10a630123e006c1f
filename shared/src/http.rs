//! The HTTP edge shared by the API functions: who is calling (the verified token's claims, as
//! API Gateway's JWT authorizer passes them), when (the request's `timeEpoch`), the JSON body,
//! and responses with the JSON error shape of API.md.

use jiff::Timestamp;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::{Actor, AppError, Role, error_body};

/// The caller, from `requestContext.authorizer.jwt.claims` and nothing else (GEN-6).
pub fn actor(req: &Request) -> Result<Actor, AppError> {
    let claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|j| &j.claims),
        _ => None,
    };
    let unauthorized = || AppError::Unauthorized("a verified token is required".into());
    let claims = claims.ok_or_else(unauthorized)?;
    let sub = claims.get("sub").ok_or_else(unauthorized)?;
    let role = match claims.get("custom:role").map(String::as_str) {
        Some("agent") => Role::Agent,
        Some("advisor") => Role::Advisor,
        Some("closings") => Role::Closings,
        Some("admin") => Role::Admin,
        _ => {
            return Err(AppError::Forbidden(
                "the token carries no known role".into(),
            ));
        }
    };
    let user = sub.parse().map_err(|_| unauthorized())?;
    Ok(Actor { user, role })
}

/// When the request arrived, as API Gateway stamped it: handlers never read the system clock.
pub fn now(req: &Request) -> Timestamp {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            Timestamp::from_millisecond(ctx.time_epoch).unwrap_or(Timestamp::UNIX_EPOCH)
        }
        _ => Timestamp::UNIX_EPOCH,
    }
}

/// The path split into segments: `/referrals/r1/claim` → `["referrals", "r1", "claim"]`.
pub fn segments(req: &Request) -> Vec<&str> {
    req.uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        Body::Empty => b"",
        _ => b"",
    }
}

/// The JSON body, refused with 400 when it is missing, malformed or fails validation.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, AppError> {
    let bytes = body_bytes(req);
    if bytes.is_empty() {
        return Err(AppError::BadRequest("a JSON body is required".into()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A form-encoded body's parameters (a telephony webhook's), sorted by name.
pub fn form_params(req: &Request) -> Vec<(String, String)> {
    crate::twilio::parse_form(&String::from_utf8_lossy(body_bytes(req)))
}

/// The path with its query, exactly as requested: what a webhook signature covers.
pub fn path_and_query(req: &Request) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned())
}

/// One header's value.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A TwiML answer, or the JSON error for a refused webhook.
pub fn twiml(result: Result<String, AppError>) -> Response<Body> {
    match result {
        Ok(xml) => Response::builder()
            .status(200)
            .header("content-type", "text/xml")
            .body(Body::Text(xml))
            .unwrap_or_default(),
        Err(e) => error(&e),
    }
}

/// One query parameter.
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .unwrap_or_default()
}

/// The error response; internal causes are logged here and never sent.
pub fn error(e: &AppError) -> Response<Body> {
    if e.status() >= 500 {
        tracing::error!(error = %e, source = ?std::error::Error::source(e), "request failed");
    }
    json(e.status(), &error_body(e))
}

/// Turns a handler's result into the response.
pub fn reply<T: Serialize>(status: u16, result: Result<T, AppError>) -> Response<Body> {
    match result {
        Ok(v) => json(status, &v),
        Err(e) => error(&e),
    }
}

pub fn not_found() -> Response<Body> {
    error(&AppError::NotFound("no such route".into()))
}
