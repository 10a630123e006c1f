//! The local HTTP API: the template's routes on their production paths, with API Gateway's JWT
//! check and its version 2.0 event; plus the local-only endpoints (`/_local/clock`,
//! `/_local/outbox`, `/_local/permissions`) and the telephony stand-in.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::activity::Activity;
use crate::clock::{LocalClock, parse_advance};
use crate::cors::Cors;
use crate::functions::Functions;
use crate::outbox::Outbox;
use crate::schedules::Schedules;
use crate::template::Route;
use crate::{console, jwt, telephony};

pub struct Gateway {
    pub routes: Vec<Route>,
    pub secret: String,
    pub functions: Functions,
    pub clock: Arc<LocalClock>,
    pub outbox: Arc<Outbox>,
    pub schedules: Arc<Schedules>,
    pub activity: Arc<Activity>,
    /// What the permission check allowed and refused.
    pub permissions: Arc<crate::proxy::Usage>,
    /// The account the telephony stand-in accepts calls from.
    pub twilio: telephony::Account,
    /// The gateway's own URL, which webhook URLs and their signatures name.
    pub public_base: String,
    /// The HTTP API's CORS configuration, if the template's parameters name any origin.
    pub cors: Option<Cors>,
    /// The service's own number (`SMS_ORIGINATION_NUMBER`) and, for each function subscribed to
    /// the inbound SMS topic, its binary and the topic's ARN: where `POST /_local/sms` delivers.
    pub texts: InboundTexts,
}

#[derive(Debug, Clone, Default)]
pub struct InboundTexts {
    pub number: String,
    pub subscribers: Vec<(String, String)>,
}

/// A text sent to the service's number, as End User Messaging SMS publishes it to the topic of
/// the number's two-way destination, in the SNS notification Lambda receives (TX-1).
pub fn inbound_text_event(
    topic_arn: &str,
    from: &str,
    to: &str,
    body: &str,
    now: Timestamp,
) -> Value {
    let message_id = ulid::Ulid::new().to_string().to_lowercase();
    let message = json!({
        "originationNumber": from,
        "destinationNumber": to,
        "messageKeyword": "KEYWORD_LOCAL",
        "messageBody": body,
        "inboundMessageId": message_id,
        "previousPublishedMessageId": "",
    });
    json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic_arn}:{message_id}"),
        "Sns": {
            "Type": "Notification",
            "MessageId": ulid::Ulid::new().to_string().to_lowercase(),
            "TopicArn": topic_arn,
            "Subject": null,
            "Message": message.to_string(),
            "Timestamp": now.to_string(),
            "SignatureVersion": "1",
            "Signature": "",
            "SigningCertUrl": "",
            "UnsubscribeUrl": "",
            "MessageAttributes": {}
        }
    }]})
}

/// How long an answer waits for moto's records, to stamp what the function sent.
const STAMP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long reading the outbox waits for the stack to settle.
const OUTBOX_SETTLE: std::time::Duration = std::time::Duration::from_secs(15);

type Reply = Response<Full<Bytes>>;

fn json_reply(status: u16, body: &Value) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid status and header")
}

fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// The path parameters when `path` fits the template `/teams/{teamId}/routing`; `{name+}` takes
/// the rest of the path.
pub fn match_path(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    let mut actual = path.split('/').filter(|s| !s.is_empty());
    let mut wanted = template.split('/').filter(|s| !s.is_empty()).peekable();
    while let Some(w) = wanted.next() {
        if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix("+}")) {
            let rest: Vec<&str> = actual.by_ref().collect();
            if rest.is_empty() || wanted.peek().is_some() {
                return None;
            }
            params.insert(name.to_owned(), rest.join("/"));
            return Some(params);
        }
        let a = actual.next()?;
        match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) => {
                params.insert(name.to_owned(), a.to_owned());
            }
            None if w == a => {}
            None => return None,
        }
    }
    actual.next().is_none().then_some(params)
}

/// The route API Gateway would pick: method and path match, the most literal segments win.
pub fn find_route<'a>(
    routes: &'a [Route],
    method: &str,
    path: &str,
) -> Option<(&'a Route, BTreeMap<String, String>)> {
    routes
        .iter()
        .filter(|r| r.method == method || r.method == "ANY")
        .filter_map(|r| match_path(&r.path, path).map(|p| (r, p)))
        .max_by_key(|(r, _)| {
            let literal = r
                .path
                .split('/')
                .filter(|s| !s.is_empty() && !s.starts_with('{'))
                .count();
            (literal, r.method != "ANY")
        })
}

/// The bearer token of the request, if any.
fn bearer(req: &hyper::http::request::Parts) -> Option<&str> {
    req.headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// API Gateway's HTTP API event, payload format 2.0.
pub fn api_event(
    route: &Route,
    parts: &hyper::http::request::Parts,
    params: &BTreeMap<String, String>,
    body: &[u8],
    claims: Option<&Map<String, Value>>,
    now: Timestamp,
) -> Value {
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        // Repeated headers are joined with commas, as API Gateway does.
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let raw_query = parts.uri.query().unwrap_or("");
    let mut query = Map::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(k.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    let path = parts.uri.path();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let mut context = json!({
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": header("host").split(':').next().unwrap_or("127.0.0.1"),
        "domainPrefix": "local",
        "stage": "$default",
        "requestId": ulid::Ulid::new().to_string(),
        "routeKey": route.key(),
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000").to_string(),
        "timeEpoch": now.as_millisecond(),
        "http": {
            "method": parts.method.as_str(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": header("user-agent"),
        },
    });
    if let Some(claims) = claims {
        context["authorizer"] =
            json!({"jwt": {"claims": jwt::claims_as_strings(claims), "scopes": null}});
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.key(),
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": false,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !params.is_empty() {
        event["pathParameters"] = json!(params);
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = Value::String(text.to_owned()),
            Err(_) => {
                event["body"] = Value::String(STANDARD.encode(body));
                event["isBase64Encoded"] = Value::Bool(true);
            }
        }
    }
    event
}

/// The function's answer as an HTTP response. A bare JSON answer (no `statusCode`) is a 200 with
/// that JSON, as API Gateway treats it.
pub fn function_reply(answer: &Value) -> Reply {
    let Some(status) = answer.get("statusCode").and_then(Value::as_u64) else {
        return json_reply(200, answer);
    };
    let mut builder = Response::builder().status(status as u16);
    for key in ["multiValueHeaders", "headers"] {
        if let Some(headers) = answer.get(key).and_then(Value::as_object) {
            for (name, value) in headers {
                let values = match value {
                    Value::Array(vs) => vs
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    Value::String(s) => vec![s.clone()],
                    other => vec![other.to_string()],
                };
                for v in values {
                    builder = builder.header(name.as_str(), v);
                }
            }
        }
    }
    for cookie in answer
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(c) = cookie.as_str() {
            builder = builder.header("set-cookie", c);
        }
    }
    let body = answer.get("body").and_then(Value::as_str).unwrap_or("");
    let bytes = if answer.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        STANDARD.decode(body).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    builder
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| {
            error_reply(
                502,
                "bad_gateway",
                "the function's response is not valid HTTP",
            )
        })
}

impl Gateway {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Reply, Infallible> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(error_reply(400, "bad_request", "could not read the body")),
        };
        let path = parts.uri.path().to_owned();
        let method = parts.method.as_str().to_owned();
        if let Some(preflight) = self.cors.as_ref().and_then(|c| c.preflight(&parts)) {
            tracing::info!(method, path, status = 204, "preflight");
            return Ok(preflight);
        }
        let mut reply = match (method.as_str(), path.as_str()) {
            ("GET", p) if console::asset(p).is_some() => {
                let (kind, text) = console::asset(p).expect("matched");
                Response::builder()
                    .header("content-type", kind)
                    .header("cache-control", "no-store")
                    .body(Full::new(Bytes::from_static(text.as_bytes())))
                    .expect("a valid header")
            }
            ("POST", "/_local/token") => {
                match console::mint_token(&self.secret, &body, jiff::Timestamp::now()) {
                    Ok(token) => json_reply(200, &token),
                    Err(e) => error_reply(400, "bad_request", &e.to_string()),
                }
            }
            ("POST", "/_local/sign") => {
                match console::sign_webhook(&self.twilio.auth_token, &self.public_base, &body) {
                    Ok(signed) => json_reply(200, &signed),
                    Err(e) => error_reply(400, "bad_request", &e.to_string()),
                }
            }
            ("GET", "/_local/clock") => json_reply(200, &json!({"now": self.clock.now()})),
            ("POST", "/_local/clock") => self.advance(&body).await,
            ("GET", "/_local/permissions") => json_reply(200, &self.permissions.summary()),
            ("GET", "/_local/requests") => json_reply(200, &crate::meter::snapshot()),
            ("POST", "/_local/sms") => self.inbound_text(&body).await,
            ("GET", "/_local/outbox") => {
                // What was sent includes what the changes so far caused, as on AWS a moment
                // later.
                self.activity.settle(OUTBOX_SETTLE).await;
                if let Err(e) = self.outbox.refresh(self.clock.now()).await {
                    tracing::warn!(error = e, "could not read moto's records");
                }
                json_reply(200, &json!(self.outbox.entries()))
            }
            ("POST", p) if telephony::is_create_call(p) => {
                let authorization = parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                if !self.twilio.authenticates(p, authorization) {
                    return Ok(json_reply(
                        401,
                        &json!({"code": 20003, "message": "Authenticate", "status": 401}),
                    ));
                }
                crate::meter::count("twilio Calls create", 1);
                match telephony::record_call(&body, self.clock.now()) {
                    Ok(call) => {
                        let sid = call.call_sid.clone();
                        self.outbox.push(call);
                        json_reply(201, &json!({"sid": sid, "status": "queued"}))
                    }
                    Err(e) => error_reply(400, "bad_request", &e.to_string()),
                }
            }
            ("POST", p) if telephony::updated_call(p).is_some() => {
                let authorization = parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                if !self.twilio.authenticates(p, authorization) {
                    return Ok(json_reply(
                        401,
                        &json!({"code": 20003, "message": "Authenticate", "status": 401}),
                    ));
                }
                let call = telephony::updated_call(p).unwrap_or_default();
                crate::meter::count("twilio Calls update", 1);
                match telephony::record_update(call, &body, self.clock.now()) {
                    Ok(update) => {
                        self.outbox.push(update);
                        json_reply(200, &json!({"sid": call, "status": "in-progress"}))
                    }
                    Err(e) => error_reply(400, "bad_request", &e.to_string()),
                }
            }
            _ => {
                crate::meter::count("apigateway HTTP API request", 1);
                self.route(&parts, &body).await
            }
        };
        if let Some(cors) = &self.cors {
            cors.decorate(&parts, &mut reply);
        }
        tracing::info!(method, path, status = reply.status().as_u16(), "request");
        Ok(reply)
    }

    /// `POST /_local/sms` `{"from", "body"}`: the text reaches every function subscribed to the
    /// inbound topic as an SNS notification, invoked as SNS invokes Lambda (asynchronously, so
    /// a failed invocation is tried twice more); answered once they ran.
    async fn inbound_text(&self, body: &[u8]) -> Reply {
        let text = serde_json::from_slice::<Value>(body).ok();
        let field = |name: &str| {
            text.as_ref()
                .and_then(|t| t.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(from), Some(message)) = (field("from"), field("body")) else {
            return error_reply(
                400,
                "bad_request",
                r#"expected {"from": "+1...", "body": "..."}"#,
            );
        };
        if self.texts.subscribers.is_empty() {
            return error_reply(
                404,
                "not_found",
                "no function is subscribed to an SMS topic",
            );
        }
        for (binary, topic) in &self.texts.subscribers {
            let event =
                inbound_text_event(topic, &from, &self.texts.number, &message, self.clock.now());
            for attempt in 1..=3 {
                match self.functions.invoke(binary, &event).await {
                    Ok(_) => break,
                    Err(e) => tracing::warn!(binary, attempt, error = %e, "inbound text failed"),
                }
            }
        }
        json_reply(202, &json!({"to": self.texts.number}))
    }

    async fn advance(&self, body: &[u8]) -> Reply {
        let by = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            v.get("advance")
                .and_then(Value::as_str)
                .and_then(parse_advance)
        });
        let Some(by) = by else {
            return error_reply(
                400,
                "bad_request",
                r#"expected {"advance": "30d"} (units d, h, m, s)"#,
            );
        };
        let fired = self.schedules.advance(by).await;
        json_reply(200, &json!({"now": self.clock.now(), "fired": fired}))
    }

    async fn route(&self, parts: &hyper::http::request::Parts, body: &[u8]) -> Reply {
        let Some((route, params)) =
            find_route(&self.routes, parts.method.as_str(), parts.uri.path())
        else {
            return error_reply(404, "not_found", "no such route");
        };
        let now = self.clock.now();
        let claims = if route.authorized {
            let Some(token) = bearer(parts) else {
                return error_reply(401, "unauthorized", "a bearer token is required");
            };
            // Tokens live in real time, as Cognito's do: moving the local clock on moves the
            // service's time, not the caller's credentials.
            match jwt::verify(&self.secret, token, jiff::Timestamp::now()) {
                Ok(claims) => Some(claims),
                Err(e) => return error_reply(401, "unauthorized", &e.to_string()),
            }
        } else {
            None
        };
        let event = api_event(route, parts, &params, body, claims.as_ref(), now);
        let result = self.functions.invoke(&route.binary, &event).await;
        self.activity.nudge_streams();
        // Stamps what the function sent with the time it was sent, not the next outbox read;
        // never holds the answer back for long: API Gateway's answer waits for no emulator.
        match tokio::time::timeout(STAMP_WAIT, self.outbox.refresh_if_sent(self.clock.now())).await
        {
            Ok(Err(e)) => tracing::warn!(error = e, "could not read moto's records"),
            Err(_) => tracing::warn!("moto did not answer; what was sent is stamped later"),
            Ok(Ok(())) => {}
        }
        match result {
            Ok(answer) => function_reply(&answer),
            Err(e) => {
                tracing::error!(function = route.binary, error = %e, "invocation failed");
                error_reply(
                    502,
                    "function_failed",
                    "the function failed; see the runner's log",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            authorized: true,
            binary: "settings".into(),
        }
    }

    #[test]
    fn path_templates_match_and_capture() {
        let p = match_path("/teams/{teamId}/routing", "/teams/bay-team/routing").unwrap();
        assert_eq!(p["teamId"], "bay-team");
        assert!(match_path("/teams/{teamId}/routing", "/teams/bay-team").is_none());
        assert!(match_path("/teams/{teamId}", "/teams/bay-team/routing").is_none());
        assert!(match_path("/teams/{teamId}", "/agents/bay-team").is_none());
        assert_eq!(match_path("/twilio/sms", "/twilio/sms/").unwrap().len(), 0);
        let p = match_path("/files/{proxy+}", "/files/a/b.pdf").unwrap();
        assert_eq!(p["proxy"], "a/b.pdf");
        assert!(match_path("/files/{proxy+}", "/files").is_none());
    }

    #[test]
    fn the_most_specific_route_for_the_method_wins() {
        let routes = vec![
            route("GET", "/referrals/{id}"),
            route("POST", "/referrals/{id}/claim"),
            route("ANY", "/referrals/{id}/{action}"),
        ];
        let (r, p) = find_route(&routes, "POST", "/referrals/r1/claim").unwrap();
        assert_eq!(r.path, "/referrals/{id}/claim");
        assert_eq!(p["id"], "r1");
        let (r, _) = find_route(&routes, "POST", "/referrals/r1/decline").unwrap();
        assert_eq!(r.method, "ANY");
        assert!(find_route(&routes, "DELETE", "/referrals/r1").is_none());
    }

    #[test]
    fn the_event_carries_claims_time_and_parameters_where_api_gateway_puts_them() {
        let req = Request::builder()
            .method("PUT")
            .uri("/teams/bay-team/routing?x=1&x=2")
            .header("host", "127.0.0.1:3000")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let mut claims = Map::new();
        claims.insert("sub".into(), "ana".into());
        claims.insert("custom:role".into(), "agent".into());
        claims.insert("exp".into(), 1_900_000_000.into());
        let r = route("PUT", "/teams/{teamId}/routing");
        let params = match_path(&r.path, parts.uri.path()).unwrap();
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let e = api_event(
            &r,
            &parts,
            &params,
            b"{\"enabled\":true}",
            Some(&claims),
            now,
        );
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "PUT /teams/{teamId}/routing");
        assert_eq!(e["rawPath"], "/teams/bay-team/routing");
        assert_eq!(e["rawQueryString"], "x=1&x=2");
        assert_eq!(e["queryStringParameters"]["x"], "1,2");
        assert_eq!(e["pathParameters"]["teamId"], "bay-team");
        assert_eq!(e["body"], "{\"enabled\":true}");
        assert_eq!(e["isBase64Encoded"], false);
        let ctx = &e["requestContext"];
        assert_eq!(ctx["timeEpoch"], 1_798_761_600_000_i64);
        assert_eq!(ctx["time"], "01/Jan/2027:00:00:00 +0000");
        assert_eq!(ctx["http"]["method"], "PUT");
        assert_eq!(ctx["authorizer"]["jwt"]["claims"]["sub"], "ana");
        assert_eq!(ctx["authorizer"]["jwt"]["claims"]["exp"], "1900000000");
    }

    #[test]
    fn a_function_answer_becomes_the_http_response() {
        let reply = function_reply(&json!({
            "statusCode": 422,
            "headers": {"content-type": "application/json"},
            "body": "{\"error\":{}}",
            "isBase64Encoded": false
        }));
        assert_eq!(reply.status(), 422);
        assert_eq!(reply.headers()["content-type"], "application/json");
        assert_eq!(function_reply(&json!({"ok": true})).status(), 200);
    }
}
