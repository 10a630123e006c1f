//! Outbound calls through Twilio's REST API (it lives with the AWS adapters because it is the
//! other provider the functions send through; the webhook side is in `crate::twilio`).

use std::fmt;

use async_trait::async_trait;
use serde::Deserialize;

use crate::domain::values::Phone;
use crate::ports::{SendError, Telephony};

/// Twilio's production API; the local stack points `base_url` at its stand-in instead.
pub const TWILIO_API: &str = "https://api.twilio.com";

/// Where and as whom to place calls.
#[derive(Clone)]
pub struct TwilioConfig {
    /// `https://api.twilio.com` in production ([`TWILIO_API`]), without a trailing path.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: String,
    /// The caller id: a Twilio number of the account.
    pub from: Phone,
}

impl fmt::Debug for TwilioConfig {
    // The auth token signs webhooks and authorises calls: it must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

/// Places outbound calls with Twilio's Calls API.
#[derive(Debug, Clone)]
pub struct TwilioTelephony {
    http: reqwest::Client,
    config: TwilioConfig,
    calls_url: String,
}

impl TwilioTelephony {
    /// `http` is built once by the caller (connection pools outlive invocations).
    pub fn new(http: reqwest::Client, config: TwilioConfig) -> Self {
        let calls_url = format!(
            "{}/2010-04-01/Accounts/{}/Calls.json",
            config.base_url.trim_end_matches('/'),
            config.account_sid
        );
        Self {
            http,
            config,
            calls_url,
        }
    }
}

/// The part of Twilio's call resource we need.
#[derive(Deserialize)]
struct CallResource {
    sid: String,
}

/// Twilio's error body: `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
#[derive(Deserialize)]
struct TwilioErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// A Twilio call that failed in a way worth retrying, with what Twilio or the network said.
#[derive(Debug, thiserror::Error)]
#[error("Twilio create call failed: {0}")]
struct TwilioCallError(String, #[source] Option<reqwest::Error>);

fn transport_error(err: reqwest::Error) -> SendError {
    if err.is_builder() {
        // A request that could not be built (a malformed base URL) will never go out.
        SendError::Rejected(format!("Twilio create call: {err}"))
    } else {
        SendError::Retryable(Box::new(TwilioCallError(err.to_string(), Some(err))))
    }
}

#[async_trait]
impl Telephony for TwilioTelephony {
    /// Twilio requests `url` (POST) when the call connects, and posts to `status_callback`
    /// once it has ended, whatever the outcome (busy, no answer, failed, completed): that single
    /// event is enough to count failed claim calls (LR-10).
    #[tracing::instrument(skip_all)]
    async fn call(
        &self,
        to: &Phone,
        url: &str,
        status_callback: &str,
    ) -> Result<String, SendError> {
        let form = [
            ("To", to.as_str()),
            ("From", self.config.from.as_str()),
            ("Url", url),
            ("Method", "POST"),
            ("StatusCallback", status_callback),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "completed"),
        ];
        let response = self
            .http
            .post(&self.calls_url)
            .basic_auth(&self.config.account_sid, Some(&self.config.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let body = response.text().await.map_err(transport_error)?;
        if status.is_success() {
            let call: CallResource = serde_json::from_str(&body).map_err(|e| {
                SendError::Retryable(Box::new(TwilioCallError(
                    format!("unreadable call resource ({e})"),
                    None,
                )))
            })?;
            return Ok(call.sid);
        }
        Err(failure("create call", status, &body))
    }

    /// Twilio's "update a call": the call follows `twiml` from now on (moved into a
    /// conference, or told goodbye and hung up).
    #[tracing::instrument(skip_all)]
    async fn update(&self, call_sid: &str, twiml: &str) -> Result<(), SendError> {
        let url = format!(
            "{}/{call_sid}.json",
            self.calls_url.trim_end_matches(".json")
        );
        let response = self
            .http
            .post(&url)
            .basic_auth(&self.config.account_sid, Some(&self.config.auth_token))
            .form(&[("Twiml", twiml)])
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let body = response.text().await.map_err(transport_error)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(failure("update call", status, &body))
        }
    }
}

/// A refused or failed request, by what Twilio said: throttling and server faults are retried,
/// the rest (an unknown number, a call already over) never change.
fn failure(operation: &str, status: reqwest::StatusCode, body: &str) -> SendError {
    let said = match serde_json::from_str::<TwilioErrorBody>(body) {
        Ok(TwilioErrorBody {
            code: Some(code),
            message,
        }) => format!("{status}: {code}: {}", message.unwrap_or_default()),
        _ => status.to_string(),
    };
    if status.as_u16() == 429 || status.is_server_error() {
        SendError::Retryable(Box::new(TwilioCallError(said, None)))
    } else {
        SendError::Rejected(format!("Twilio {operation} failed: {said}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use super::*;
    use crate::encoding::base64_encode;

    /// What the stand-in server saw.
    struct Captured {
        request_line: String,
        headers: BTreeMap<String, String>,
        form: Vec<(String, String)>,
    }

    /// A one-request HTTP server on a free local port that answers `status` with `body`.
    /// Plain std threads: the request is tiny and this keeps the test free of extra runtime
    /// features.
    fn stand_in(status: &'static str, body: &'static str) -> (String, JoinHandle<Captured>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let (head, length) = loop {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "client closed before sending headers");
                raw.extend_from_slice(&buf[..n]);
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    raw.drain(..end + 4);
                    break (head, length);
                }
            };
            while raw.len() < length {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "client closed mid-body");
                raw.extend_from_slice(&buf[..n]);
            }
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
            let mut lines = head.lines();
            let request_line = lines.next().unwrap().to_owned();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let form = crate::twilio::parse_form(&raw);
            Captured {
                request_line,
                headers,
                form,
            }
        });
        (base, handle)
    }

    fn telephony(base_url: String) -> TwilioTelephony {
        TwilioTelephony::new(
            crate::aws::http::build(),
            TwilioConfig {
                base_url: format!("{base_url}/"),
                account_sid: "AC123".into(),
                auth_token: "secret-token".into(),
                from: "+14155550100".parse().unwrap(),
            },
        )
    }

    #[tokio::test]
    async fn twilio_call_posts_the_form_with_basic_auth_and_returns_the_sid() {
        let (base, server) = stand_in("201 Created", r#"{"sid": "CA42", "status": "queued"}"#);
        let sid = telephony(base)
            .call(
                &"+14155550123".parse().unwrap(),
                "https://api.example.com/twilio/voice/claim?referral=r-1&agent=a-1",
                "https://api.example.com/twilio/voice/status?referral=r-1",
            )
            .await
            .unwrap();
        assert_eq!(sid, "CA42");

        let seen = server.join().unwrap();
        assert_eq!(
            seen.request_line,
            "POST /2010-04-01/Accounts/AC123/Calls.json HTTP/1.1"
        );
        assert_eq!(
            seen.headers["authorization"],
            format!("Basic {}", base64_encode(b"AC123:secret-token"))
        );
        assert_eq!(
            seen.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        let form: BTreeMap<&str, &str> = seen
            .form
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            form,
            BTreeMap::from([
                ("From", "+14155550100"),
                ("Method", "POST"),
                (
                    "StatusCallback",
                    "https://api.example.com/twilio/voice/status?referral=r-1"
                ),
                ("StatusCallbackEvent", "completed"),
                ("StatusCallbackMethod", "POST"),
                ("To", "+14155550123"),
                (
                    "Url",
                    "https://api.example.com/twilio/voice/claim?referral=r-1&agent=a-1"
                ),
            ])
        );
    }

    #[tokio::test]
    async fn twilio_refusals_are_rejected_and_overload_is_retryable() {
        let (base, server) = stand_in(
            "400 Bad Request",
            r#"{"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}"#,
        );
        let err = telephony(base)
            .call(&"+14155550123".parse().unwrap(), "https://x/", "https://y/")
            .await
            .unwrap_err();
        server.join().unwrap();
        match err {
            SendError::Rejected(text) => {
                assert!(text.contains("21211: Invalid 'To' Phone Number"), "{text}")
            }
            other => panic!("expected rejected, got {other:?}"),
        }

        let (base, server) = stand_in("503 Service Unavailable", "{}");
        let err = telephony(base)
            .call(&"+14155550123".parse().unwrap(), "https://x/", "https://y/")
            .await
            .unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, SendError::Retryable(_)), "{err:?}");
    }

    #[test]
    fn twilio_config_debug_hides_the_auth_token() {
        let shown = format!("{:?}", telephony("http://127.0.0.1:1".into()));
        assert!(!shown.contains("secret-token"), "{shown}");
    }
}
