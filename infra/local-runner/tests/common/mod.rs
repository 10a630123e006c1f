//! The end-to-end harness: starts the local runner (real DynamoDB Local and moto, started by
//! `make test`; `cargo lambda watch` serving the functions) on free ports with a fresh table, and
//! talks to it as the apps and the telephony provider would.
//!
//! Never skipped: without the emulators or cargo-lambda a test fails and says what is missing.

#![allow(dead_code)] // Each test file uses its own part of the harness.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// The first request to a function makes cargo lambda compile it: minutes on 2 cores.
const FIRST_CALL: Duration = Duration::from_secs(15 * 60);
/// The dev-token secret and the Twilio auth token the runner under test is given.
pub const SECRET: &str = "e2e-secret";
pub const TWILIO_TOKEN: &str = "e2e-twilio-token";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the emulators. Run `make test`, or \
             `infra/local/stack.sh start && eval \"$(infra/local/stack.sh env)\"`"
        )
    })
}

/// The runner's process group, killed (cargo lambda watch and the functions with it) on drop,
/// even when an assertion fails.
pub struct Runner {
    child: Child,
    pub base: String,
    /// cargo lambda's invoke port: a function can be invoked directly with an event of the
    /// test's making, as `cargo lambda invoke` does.
    pub invoke_port: u16,
}

impl Drop for Runner {
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the group this test created; no memory is
        // touched.
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(500));
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Starts a runner on a fresh table named after `name` and waits until its gateway answers.
pub fn start(name: &str) -> Runner {
    start_with(name, &[])
}

/// `start`, with extra environment for the runner and the functions it serves.
pub fn start_with(name: &str, env: &[(&str, &str)]) -> Runner {
    for var in ["DYNAMODB_ENDPOINT", "MOTO_ENDPOINT"] {
        let url = required_env(var);
        assert!(
            plain_http::reachable(&url),
            "{var}={url} does not answer: start the emulators (`make test` does)"
        );
    }
    let cargo_lambda = Command::new("cargo-lambda")
        .args(["lambda", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        cargo_lambda.is_ok_and(|s| s.success()),
        "cargo-lambda is not on PATH: `pip install cargo-lambda` (the Makefile puts .local/venv/bin on PATH)"
    );
    let (api_port, invoke_port) = (free_port(), free_port());
    let table = format!("{name}-{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-runner"));
    command
        .args(["serve", "--table", &table, "--no-reload"])
        .args(["--api-port", &api_port.to_string()])
        .args(["--invoke-port", &invoke_port.to_string()])
        .env("LOCAL_JWT_SECRET", SECRET)
        .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut runner = Runner {
        child: command.spawn().expect("the runner binary starts"),
        base: format!("http://127.0.0.1:{api_port}"),
        invoke_port,
    };
    runner.wait_until_ready();
    runner
}

pub mod plain_http {
    //! A tiny blocking HTTP/1.1 client over std, so the tests need no async runtime or TLS stack.
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn reachable(url: &str) -> bool {
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        TcpStream::connect(addr).is_ok()
    }

    /// Sends one request with `headers` (name, value) and returns (status, body).
    pub fn send(
        base: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
        timeout: Duration,
    ) -> std::io::Result<(u16, String)> {
        let addr = base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(timeout))?;
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Ok((
            status,
            if chunked {
                dechunk(rest)
            } else {
                rest.to_owned()
            },
        ))
    }

    fn dechunk(mut rest: &str) -> String {
        let mut out = String::new();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    }
}

impl Runner {
    fn wait_until_ready(&mut self) {
        // Setup and cargo lambda's start; compilation happens later, on the first call.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok((200, _)) = plain_http::send(
                &self.base,
                "GET",
                "/_local/clock",
                &[],
                "",
                Duration::from_secs(5),
            ) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the runner exited before answering: {status} (see its log above)");
            }
            assert!(
                Instant::now() < deadline,
                "the runner did not answer within 180 s"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A JSON API call with an optional bearer token; the body is parsed as JSON when it is.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let (status, text) = plain_http::send(
            &self.base,
            method,
            path,
            &headers,
            body.unwrap_or(""),
            FIRST_CALL,
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// A telephony webhook: a form post to `path_and_query`, signed as Twilio signs it unless
    /// `signature` overrides it. Returns the status and the TwiML.
    pub fn webhook(
        &self,
        path_and_query: &str,
        params: &[(&str, &str)],
        signature: Option<&str>,
    ) -> (u16, String) {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let signed = shared::twilio::SignatureValidator::new(TWILIO_TOKEN)
            .sign(&format!("{}{path_and_query}", self.base), &owned);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", signature.unwrap_or(&signed)),
        ];
        plain_http::send(
            &self.base,
            "POST",
            path_and_query,
            &headers,
            &body,
            FIRST_CALL,
        )
        .unwrap_or_else(|e| panic!("POST {path_and_query}: {e}"))
    }

    /// Everything sent so far (API.md: `GET /_local/outbox`).
    pub fn outbox(&self) -> Vec<Value> {
        let (status, body) = self.call("GET", "/_local/outbox", None, None);
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Waits until `pred` holds for the outbox (the broadcast queue and the bus are
    /// asynchronous), and returns it.
    pub fn outbox_until(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let outbox = self.outbox();
            if pred(&outbox) {
                return outbox;
            }
            assert!(
                Instant::now() < deadline,
                "waited 120 s for {what}; the outbox has: {}",
                serde_json::to_string_pretty(&outbox).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The local clock's time (`GET /_local/clock`).
    pub fn now(&self) -> Timestamp {
        let (status, body) = self.call("GET", "/_local/clock", None, None);
        assert_eq!(status, 200, "{body}");
        body["now"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("the clock answers with its time: {body}"))
    }

    /// Moves the local clock to `at` (which must be ahead of it), or less than a second past it
    /// (the clock moves in whole seconds), firing what falls due on the way; the clock's answer
    /// lists what fired.
    pub fn advance_to(&self, at: Timestamp) -> Value {
        let ahead = at.duration_since(self.now());
        assert!(ahead.is_positive(), "the clock is already past {at}");
        let seconds = ahead.as_secs() + i64::from(ahead.subsec_nanos() > 0);
        self.advance(&format!("{seconds}s"))
    }

    /// Invokes `function` directly with `payload` through cargo lambda's invoke port, bypassing
    /// the runner: how a test delivers an event a second time, as EventBridge and its Scheduler
    /// may (at-least-once delivery). Returns the function's answer; panics if it failed.
    pub fn invoke(&self, function: &str, payload: &Value) -> Value {
        let (status, text) = plain_http::send(
            &format!("http://127.0.0.1:{}", self.invoke_port),
            "POST",
            &format!("/2015-03-31/functions/{function}/invocations"),
            &[("Content-Type", "application/json")],
            &payload.to_string(),
            FIRST_CALL,
        )
        .unwrap_or_else(|e| panic!("invoke {function}: {e}"));
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        // A function's error comes back as a 200 carrying `errorType` (and a header).
        assert!(
            status == 200 && answer.get("errorType").is_none(),
            "invoke {function}: {status} {answer}"
        );
        answer
    }

    /// A dev token issued at the local clock's time: the gateway checks `exp` against that clock,
    /// so a token issued before the clock moved a month on has expired, as it would have.
    pub fn token(&self, sub: &str, role: &str) -> String {
        token_signed_at(SECRET, sub, role, self.now())
    }

    /// Moves the local clock, firing what falls due on the way.
    pub fn advance(&self, by: &str) -> Value {
        let (status, body) = self.call(
            "POST",
            "/_local/clock",
            None,
            Some(&json!({"advance": by}).to_string()),
        );
        assert_eq!(status, 200, "advance {by}: {body}");
        body
    }
}

/// A dev token as `local-runner token` makes one, signed with `secret`.
pub fn token_signed(secret: &str, sub: &str, role: &str) -> String {
    token_signed_at(secret, sub, role, Timestamp::now())
}

/// A dev token issued at `now`, valid for an hour from then.
pub fn token_signed_at(secret: &str, sub: &str, role: &str, now: Timestamp) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "sub": sub, "custom:role": role,
        "iat": now.as_second(), "exp": (now + SignedDuration::from_hours(1)).as_second(),
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// A dev token the runner under test accepts.
pub fn token(sub: &str, role: &str) -> String {
    token_signed(SECRET, sub, role)
}

/// A complete agent profile serving 94110 for buyers and sellers; `n` makes the cell phone
/// unique (`+1415555` and four digits from 0100 + n).
pub fn profile(name: &str, n: u32) -> Value {
    json!({
        "name": name, "email": email(name),
        "cellPhone": phone(n), "licensed": true,
        "zips": ["94110"], "clientTypes": ["buyer", "seller"], "warmTransfer": true,
        "pushToken": format!("device-{}", slug(name)),
        "timeZone": "America/Los_Angeles"
    })
}

fn slug(name: &str) -> String {
    name.to_lowercase().replace(' ', ".")
}

/// The email of `profile(name, _)`: `Cy Agent` → `cy.agent@agents.example.com`.
pub fn email(name: &str) -> String {
    format!("{}@agents.example.com", slug(name))
}

/// The cell phone of `profile(_, n)`.
pub fn phone(n: u32) -> String {
    format!("+1415555{:04}", 100 + n)
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}
