//! The permission check: every AWS request a function makes comes here (its `AWS_ENDPOINT_URL`),
//! is checked against that function's policy, and goes on to the emulator that plays the service
//! (DynamoDB Local for `dynamodb`, moto for the rest), or is refused the way the service refuses
//! it:
//! - JSON protocols (DynamoDB, SQS, EventBridge): 400 with `__type` `AccessDeniedException`;
//! - SNS (query protocol): 403 with an XML `AuthorizationError`;
//! - REST (SESv2, Scheduler): 403 with `x-amzn-ErrorType: AccessDeniedException`;
//!
//! and the message AWS gives: "User: arn:aws:sts::...:assumed-role/<role>/<function> is not
//! authorized to perform: <action> on resource: <arn> because no identity-based policy allows
//! the <action> action".
//!
//! The function is known by the access key id in its signature's `Credential=` (each function
//! gets its own, as each deployed function's role gets its own credentials). Every grant a
//! request used, and every refusal, is recorded: in memory (`GET /_local/permissions`) and, when
//! `LOCAL_PERMISSIONS_LOG` names a directory, as JSON lines there, from which
//! `local-runner permissions` reports what no run used.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

use crate::authorize::{self, Protocol};
use crate::cloudformation::ACCOUNT;
use crate::iam::{Check, Decision, Grant, Policy};

/// A function as the check knows it.
pub struct Caller {
    /// The deployed function name (the session name in the assumed-role ARN).
    pub name: String,
    /// The execution role's name.
    pub role: String,
    pub policy: Policy,
}

impl Caller {
    fn principal(&self) -> String {
        format!(
            "arn:aws:sts::{ACCOUNT}:assumed-role/{}/{}",
            self.role, self.name
        )
    }
}

/// A request the check refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Denial {
    pub function: String,
    pub action: String,
    pub resource: String,
}

/// One line of the permission log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The template the runner played (its canonical path).
    pub template: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub used: Option<Grant>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub denied: Option<Denial>,
}

/// What the check saw: the grants used and the requests refused.
pub struct Usage {
    template: String,
    log: Option<PathBuf>,
    seen: Mutex<(BTreeSet<Grant>, BTreeSet<Denial>)>,
}

impl Usage {
    pub fn new(template: String, log: Option<PathBuf>) -> Self {
        Usage {
            template,
            log,
            seen: Mutex::new((BTreeSet::new(), BTreeSet::new())),
        }
    }

    fn append(&self, record: &Record) {
        let Some(path) = &self.log else { return };
        let mut line = serde_json::to_string(record).expect("a record serializes");
        line.push('\n');
        // One write of the whole line: calls checked at once (a function's requests sent
        // together) would otherwise interleave their records' pieces in the file.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the permission log");
        }
    }

    fn used(&self, grants: Vec<Grant>) {
        let fresh: Vec<Grant> = {
            let mut seen = self.seen.lock().expect("usage lock");
            grants
                .into_iter()
                .filter(|g| seen.0.insert(g.clone()))
                .collect()
        };
        for g in fresh {
            self.append(&Record {
                template: self.template.clone(),
                used: Some(g),
                denied: None,
            });
        }
    }

    fn denied(&self, denial: Denial) {
        let fresh = self
            .seen
            .lock()
            .expect("usage lock")
            .1
            .insert(denial.clone());
        if fresh {
            self.append(&Record {
                template: self.template.clone(),
                used: None,
                denied: Some(denial),
            });
        }
    }

    /// `{"used": [...], "denied": [...]}` for `GET /_local/permissions`.
    pub fn summary(&self) -> serde_json::Value {
        let seen = self.seen.lock().expect("usage lock");
        json!({"used": seen.0, "denied": seen.1})
    }
}

pub struct Proxy {
    /// By access key id.
    pub callers: BTreeMap<String, Caller>,
    pub dynamodb: String,
    pub moto: String,
    pub usage: Arc<Usage>,
    pub http: reqwest::Client,
    /// Where the number each published text went out from is kept for the outbox.
    pub origins: Arc<crate::outbox::TextOrigins>,
    /// Told of every SNS and SES request, so the outbox reads moto only after one.
    pub sends: Arc<crate::outbox::Sends>,
    /// SQS messages sent with a delay, held until the local clock reaches their time.
    pub delayed: Arc<crate::delays::DelayedMessages>,
}

/// The origination number of an SNS `Publish` to a phone number (query protocol), if it set one.
fn text_origin(body: &[u8]) -> Option<String> {
    let fields: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    if fields.get("Action").map(String::as_str) != Some("Publish")
        || !fields.contains_key("PhoneNumber")
    {
        return None;
    }
    let entry = fields.iter().find_map(|(k, v)| {
        (v == "AWS.MM.SMS.OriginationNumber")
            .then(|| k.strip_suffix(".Name"))
            .flatten()
    })?;
    fields.get(&format!("{entry}.Value.StringValue")).cloned()
}

/// Whether a query-protocol body carries `field` (`Action=...`).
fn body_is(body: &[u8], field: &str) -> bool {
    body.split(|b| *b == b'&').any(|f| f == field.as_bytes())
}

/// `<MessageId>` of SNS's answer.
fn message_id(answer: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(answer).ok()?;
    let start = text.find("<MessageId>")? + "<MessageId>".len();
    let end = start + text[start..].find("</MessageId>")?;
    Some(text[start..end].to_owned())
}

/// `Credential=AKID/date/region/service/aws4_request` of a SigV4 `Authorization` header.
fn credential(authorization: &str) -> Option<(&str, &str, &str)> {
    let scope = authorization.split("Credential=").nth(1)?;
    let scope = scope.split([',', ' ']).next()?;
    let mut parts = scope.split('/');
    let key = parts.next()?;
    let _date = parts.next()?;
    let region = parts.next()?;
    let service = parts.next()?;
    Some((key, region, service))
}

fn message(principal: &str, check: &Check, explicit: bool) -> String {
    let why = if explicit {
        "with an explicit deny in an identity-based policy".to_owned()
    } else {
        format!(
            "because no identity-based policy allows the {} action",
            check.action
        )
    };
    format!(
        "User: {principal} is not authorized to perform: {} on resource: {} {why}",
        check.action, check.resource
    )
}

type Reply = Response<Full<Bytes>>;

/// The refusal as `protocol` answers it.
fn refusal(service: &str, protocol: Protocol, text: &str) -> Reply {
    let request_id = ulid::Ulid::new().to_string();
    let builder = Response::builder().header("x-amzn-requestid", &request_id);
    let (status, builder, body) = match protocol {
        Protocol::Json => (
            StatusCode::BAD_REQUEST,
            builder.header(
                "content-type",
                if service == "dynamodb" || service == "sqs" {
                    "application/x-amz-json-1.0"
                } else {
                    "application/x-amz-json-1.1"
                },
            ),
            json!({
                "__type": "com.amazon.coral.service#AccessDeniedException",
                "Message": text,
                "message": text,
            })
            .to_string(),
        ),
        Protocol::Query => {
            let (code, namespace) = if service == "sns" {
                (
                    "AuthorizationError",
                    "http://sns.amazonaws.com/doc/2010-03-31/",
                )
            } else {
                ("AccessDenied", "http://queue.amazonaws.com/doc/2012-11-05/")
            };
            let escaped = text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            (
                StatusCode::FORBIDDEN,
                builder.header("content-type", "text/xml"),
                format!(
                    "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{escaped}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
                ),
            )
        }
        Protocol::Rest => (
            StatusCode::FORBIDDEN,
            builder
                .header("content-type", "application/json")
                .header("x-amzn-errortype", "AccessDeniedException"),
            json!({"Message": text, "message": text}).to_string(),
        ),
    };
    builder
        .status(status)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

impl Proxy {
    /// Serves on a free port of 127.0.0.1 and returns the endpoint the functions are given.
    pub async fn start(self) -> std::io::Result<String> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let proxy = Arc::new(self);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let proxy = proxy.clone();
                        async move { Ok::<_, Infallible>(proxy.handle(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(endpoint)
    }

    async fn handle(&self, req: Request<Incoming>) -> Reply {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let Some((key, region, service)) = header("authorization")
            .as_deref()
            .and_then(credential)
            .map(|(k, r, s)| (k.to_owned(), r.to_owned(), s.to_owned()))
        else {
            return refusal(
                "unknown",
                Protocol::Rest,
                "Missing Authentication Token: the request is not signed",
            );
        };
        let Some(caller) = self.callers.get(&key) else {
            let r = refusal(
                &service,
                Protocol::Json,
                "The security token included in the request is invalid.",
            );
            return r;
        };
        let target = header("x-amz-target");
        let request = authorize::Request {
            service: &service,
            region: &region,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            target: target.as_deref(),
            body: &body,
        };
        let call = match authorize::call(&request) {
            Ok(c) => c,
            Err(problem) => {
                tracing::error!(
                    function = caller.name,
                    service,
                    problem,
                    "AccessDenied: the request cannot be checked"
                );
                let protocol = if target.is_some() {
                    Protocol::Json
                } else {
                    Protocol::Rest
                };
                return refusal(
                    &service,
                    protocol,
                    &format!("{problem}; the local permission check refuses what it cannot read"),
                );
            }
        };
        let mut used = vec![];
        for check in &call.checks {
            match caller.policy.decide(check) {
                Decision::Allowed(grants) => used.extend(grants),
                Decision::Denied { explicit } => {
                    let text = message(&caller.principal(), check, explicit);
                    tracing::warn!(
                        function = caller.name,
                        operation = call.operation,
                        action = check.action,
                        resource = check.resource,
                        "AccessDenied"
                    );
                    self.usage.denied(Denial {
                        function: caller.policy.function.clone(),
                        action: check.action.clone(),
                        resource: check.resource.clone(),
                    });
                    return refusal(&service, call.protocol, &text);
                }
            }
        }
        self.usage.used(used);
        crate::meter::aws_request(&caller.policy.function, &service, &call.operation, &body);
        if service == "sqs"
            && call.operation == "SendMessage"
            && let Some((delay, undelayed)) = crate::delays::delay_of(&body)
        {
            return self.hold(delay, &parts, undelayed);
        }
        let origin = (service == "sns").then(|| text_origin(&body)).flatten();
        self.forward(&service, parts, body, origin).await
    }

    /// Keeps a delayed `SendMessage` for the local clock and answers it as SQS does.
    fn hold(
        &self,
        delay: jiff::SignedDuration,
        parts: &hyper::http::request::Parts,
        body: Bytes,
    ) -> Reply {
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "host" | "content-length" | "connection" | "transfer-encoding"
                )
            })
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let id = self.delayed.hold(delay, path_and_query, headers, body);
        tracing::info!(message_id = id, delay = %delay, "delayed message held for the local clock");
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amzn-requestid", ulid::Ulid::new().to_string())
            .body(Full::new(Bytes::from(json!({"MessageId": id}).to_string())))
            .expect("a valid response")
    }

    async fn forward(
        &self,
        service: &str,
        parts: hyper::http::request::Parts,
        body: Bytes,
        text_origin: Option<String>,
    ) -> Reply {
        let base = if service == "dynamodb" {
            &self.dynamodb
        } else {
            &self.moto
        };
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = self
            .http
            .request(parts.method.clone(), format!("{base}{path_and_query}"));
        for (name, value) in &parts.headers {
            if !matches!(
                name.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding"
            ) {
                request = request.header(name, value);
            }
        }
        let sent_body = body.clone();
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(service, error = %e, "the emulator did not answer");
                return Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Full::new(Bytes::from(format!(
                        "the emulator did not answer: {e}"
                    ))))
                    .expect("a valid response");
            }
        };
        let mut reply = Response::builder().status(response.status().as_u16());
        for (name, value) in response.headers() {
            if !matches!(
                name.as_str(),
                "content-length" | "connection" | "transfer-encoding"
            ) {
                reply = reply.header(name, value);
            }
        }
        let bytes = response.bytes().await.unwrap_or_default();
        if service == "sns" && body_is(&sent_body, "Action=CreatePlatformEndpoint") {
            crate::meter::endpoint(&sent_body, &bytes);
        }
        if let (Some(from), Some(id)) = (text_origin, message_id(&bytes)) {
            self.origins.record(id, from);
        }
        // Marked once moto has answered, so a read after this finds what was sent.
        if matches!(service, "sns" | "ses") {
            self.sends.mark();
        }
        reply.body(Full::new(bytes)).expect("a valid response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_at_once_stay_one_a_line() {
        let dir = std::env::temp_dir().join(format!("permissions-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let usage = Usage::new("t.yaml".into(), Some(dir.join("log.jsonl")));
        std::thread::scope(|scope| {
            for t in 0..8 {
                let usage = &usage;
                scope.spawn(move || {
                    for n in 0..100 {
                        usage.used(vec![Grant {
                            function: format!("F{t}"),
                            action: "dynamodb:Query".into(),
                            resource: format!("${{ReferralTable.Arn}}/index/{n}"),
                        }]);
                    }
                });
            }
        });
        let records = crate::permissions::read_log(&dir, "t.yaml").unwrap();
        assert_eq!(records.len(), 800);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_signature_names_key_region_and_service() {
        let h = "AWS4-HMAC-SHA256 Credential=LOCALCLAIM/20270101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0";
        assert_eq!(credential(h), Some(("LOCALCLAIM", "us-east-1", "dynamodb")));
        assert_eq!(credential("Bearer x"), None);
    }

    #[test]
    fn refusals_take_each_protocols_shape() {
        let check = Check::new(
            "dynamodb:Query",
            "arn:aws:dynamodb:us-east-1:123456789012:table/t",
        );
        let text = message(
            "arn:aws:sts::123456789012:assumed-role/ClaimFunctionRole/claim",
            &check,
            false,
        );
        assert_eq!(
            text,
            "User: arn:aws:sts::123456789012:assumed-role/ClaimFunctionRole/claim is not authorized to perform: dynamodb:Query on resource: arn:aws:dynamodb:us-east-1:123456789012:table/t because no identity-based policy allows the dynamodb:Query action"
        );
        let json = refusal("dynamodb", Protocol::Json, &text);
        assert_eq!(json.status(), 400);
        let sns = refusal("sns", Protocol::Query, &text);
        assert_eq!(sns.status(), 403);
        let rest = refusal("scheduler", Protocol::Rest, &text);
        assert_eq!(rest.status(), 403);
        assert_eq!(rest.headers()["x-amzn-errortype"], "AccessDeniedException");
    }
}
