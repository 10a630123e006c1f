//! The HTTP edge shared by the API functions: who is calling (the verified token's claims, as
//! API Gateway's JWT authorizer passes them), when (the request's `timeEpoch`), the JSON body,
//! and responses with the JSON error shape of API.md.

use std::future::Future;
use std::str::FromStr;

use jiff::Timestamp;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::{Actor, AppError, Role, error_body};

/// A function's routes, each declared once: API Gateway's route key (`"POST /referrals/{id}/claim"`,
/// as the template's `HttpApi` events and the OpenAPI document write it) and what answers it.
pub type Routes<R> = [(&'static str, R)];

/// The (method, path) pairs of `routes`.
pub fn route_pairs<R>(routes: &Routes<R>) -> Vec<(&'static str, &'static str)> {
    routes
        .iter()
        .filter_map(|(key, _)| key.split_once(' '))
        .collect()
}

/// What a route answers: JSON with its status, or TwiML for the telephony provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Json(u16, String),
    Twiml(String),
}

impl Reply {
    /// `value` as JSON; a view that cannot be encoded is an internal error, never an empty body.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Self, AppError> {
        Ok(Reply::Json(status, serde_json::to_string(value)?))
    }

    /// `value` as JSON with 200.
    pub fn ok<T: Serialize>(value: &T) -> Result<Self, AppError> {
        Self::json(200, value)
    }

    fn into_response(self) -> Response<Body> {
        let (status, content_type, body) = match self {
            Reply::Json(status, body) => (status, "application/json", body),
            Reply::Twiml(xml) => (200, "text/xml", xml),
        };
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Body::Text(body))
            .unwrap_or_default()
    }
}

/// The route API Gateway matched (`requestContext.routeKey`).
pub fn route_key(req: &Request) -> Option<&str> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.as_deref(),
        _ => None,
    }
}

/// Answers `req` with the route its route key names in `routes`, or 404 when there is none;
/// errors become the JSON error of API.md.
pub async fn dispatch<R, F, Fut>(routes: &Routes<R>, req: Request, answer: F) -> Response<Body>
where
    R: Copy,
    F: FnOnce(R, Request) -> Fut,
    Fut: Future<Output = Result<Reply, AppError>>,
{
    // Bounded before anything is parsed (EF-4): API Gateway would pass up to 10 MB.
    if body_bytes(&req).len() > crate::app::limits::BODY_BYTES {
        return error(&AppError::TooLarge {
            limit: crate::app::limits::BODY_BYTES,
        });
    }
    let key = route_key(&req).unwrap_or_default();
    let Some((_, route)) = routes.iter().find(|(k, _)| *k == key) else {
        return error(&AppError::NotFound(format!(
            "no route {} {}",
            req.method(),
            req.uri().path()
        )));
    };
    match answer(*route, req).await {
        Ok(reply) => reply.into_response(),
        Err(e) => error(&e),
    }
}

/// A path parameter of the matched route, parsed: `{id}` of `/referrals/{id}` as a `ReferralId`.
pub fn path<T>(req: &Request, name: &str) -> Result<T, AppError>
where
    T: FromStr,
    T::Err: Into<AppError>,
{
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .ok_or_else(|| AppError::BadRequest(format!("the path lacks {name}")))?
        .parse()
        .map_err(Into::into)
}

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

/// One claim of the caller's verified token, if it carries it.
pub fn claim(req: &Request, name: &str) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .and_then(|j| j.claims.get(name).cloned()),
        _ => None,
    }
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
    crate::twilio::parse_form(body_bytes(req))
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

/// One query parameter.
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(route_key: &str) -> Request {
        event_with_id(route_key, "r-1")
    }

    fn event_with_id(route_key: &str, id: &str) -> Request {
        let (method, path) = route_key.split_once(' ').unwrap_or(("GET", "/"));
        let event = serde_json::json!({
            "version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": "",
            "headers": {}, "isBase64Encoded": false, "pathParameters": {"id": id},
            "requestContext": {"routeKey": route_key, "timeEpoch": 0,
                "http": {"method": method, "path": path}},
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Route {
        One,
    }

    const ROUTES: &Routes<Route> = &[("GET /things/{id}", Route::One)];

    fn body(resp: &Response<Body>) -> serde_json::Value {
        match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn gen_4_the_route_key_picks_the_route_and_its_typed_path_parameter() {
        let resp = dispatch(ROUTES, event("GET /things/{id}"), |route, req| async move {
            assert_eq!(route, Route::One);
            let id: crate::domain::values::ReferralId = path(&req, "id")?;
            Reply::ok(&serde_json::json!({"id": id}))
        })
        .await;
        assert_eq!(
            (resp.status().as_u16(), body(&resp)["id"].clone()),
            (200, "r-1".into())
        );
    }

    #[tokio::test]
    async fn gen_4_an_unknown_route_is_404_with_the_json_error_shape() {
        let resp = dispatch(ROUTES, event("POST /things"), |_, _| async {
            Reply::ok(&"unreachable")
        })
        .await;
        assert_eq!(resp.status().as_u16(), 404);
        assert_eq!(body(&resp)["error"]["code"], "not_found");
        assert!(
            body(&resp)["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("no route")
        );
    }

    #[tokio::test]
    async fn gen_4_a_malformed_path_parameter_is_400() {
        let resp = dispatch(
            ROUTES,
            event_with_id("GET /things/{id}", "no spaces"),
            |_, req| async move {
                let id: crate::domain::values::ReferralId = path(&req, "id")?;
                Reply::ok(&id)
            },
        )
        .await;
        assert_eq!(resp.status().as_u16(), 400);
        assert_eq!(body(&resp)["error"]["code"], "bad_request");
    }

    #[tokio::test]
    async fn ef_4_a_body_over_64_kb_is_413_and_reaches_no_route() {
        let big = "x".repeat(crate::app::limits::BODY_BYTES + 1);
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "GET /things/{id}", "rawPath": "/things/r-1",
            "rawQueryString": "", "headers": {}, "isBase64Encoded": false,
            "pathParameters": {"id": "r-1"}, "body": big,
            "requestContext": {"routeKey": "GET /things/{id}", "timeEpoch": 0,
                "http": {"method": "GET", "path": "/things/r-1"}},
        });
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        let resp = dispatch(ROUTES, req, |_, _| async {
            panic!("a body over the limit reaches no route")
        })
        .await;
        assert_eq!(resp.status().as_u16(), 413);
        assert_eq!(body(&resp)["error"]["code"], "too_large");
    }
}
