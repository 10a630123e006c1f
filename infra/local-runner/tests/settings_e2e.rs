//! The settings API end to end through the local runner: real DynamoDB Local and moto (started
//! by `make test`), `cargo lambda watch` serving the settings function, and the runner's gateway
//! checking tokens and building API Gateway's events.
//!
//! Never skipped: without the emulators or cargo-lambda it fails and says what is missing.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// The first request makes cargo lambda compile the settings function: minutes on 2 cores.
const FIRST_CALL: Duration = Duration::from_secs(15 * 60);
const SECRET: &str = "e2e-secret";

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
struct Runner {
    child: Child,
    base: String,
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

fn start_runner() -> Runner {
    for name in ["DYNAMODB_ENDPOINT", "MOTO_ENDPOINT"] {
        let url = required_env(name);
        assert!(
            plain_http::reachable(&url),
            "{name}={url} does not answer: start the emulators (`make test` does)"
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
    let table = format!(
        "settings-e2e-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-runner"));
    command
        .args(["serve", "--table", &table, "--no-reload"])
        .args(["--api-port", &api_port.to_string()])
        .args(["--invoke-port", &invoke_port.to_string()])
        .env("LOCAL_JWT_SECRET", SECRET)
        .stdin(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    Runner {
        child: command.spawn().expect("the runner binary starts"),
        base: format!("http://127.0.0.1:{api_port}"),
    }
}

mod plain_http {
    //! A tiny blocking HTTP/1.1 client over std, so the test needs no async runtime or TLS stack.
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn reachable(url: &str) -> bool {
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        TcpStream::connect(addr).is_ok()
    }

    /// Sends one request and returns (status, body).
    pub fn send(
        base: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        timeout: Duration,
    ) -> std::io::Result<(u16, String)> {
        let addr = base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(timeout))?;
        let body = body.unwrap_or("");
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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
                None,
                None,
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

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, text) = plain_http::send(&self.base, method, path, token, body, FIRST_CALL)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }
}

fn token(secret: &str, sub: &str, role: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    let now = Timestamp::now();
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

fn profile(name: &str, n: u32) -> String {
    json!({
        "name": name, "email": format!("{}@agents.example.com", name.to_lowercase()),
        "cellPhone": format!("+1415555{:04}", 100 + n), "licensed": true,
        "zips": ["94110"], "clientTypes": ["buyer", "seller"], "warmTransfer": true,
        "timeZone": "America/Los_Angeles"
    })
    .to_string()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn the_settings_api_through_the_local_gateway() {
    let mut runner = start_runner();
    runner.wait_until_ready();
    let admin = token(SECRET, "admin-1", "admin");
    let ana = token(SECRET, "ana", "agent");
    let ben = token(SECRET, "ben", "agent");
    let cy = token(SECRET, "cy", "agent");

    // The gateway's refusals, before any function runs.
    let (status, body) = runner.call("PUT", "/teams/bay-team", None, Some("{}"));
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    let forged = token("not-the-secret", "admin-1", "admin");
    let (status, body) = runner.call("PUT", "/teams/bay-team", Some(&forged), Some("{}"));
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");

    // The first call compiles the settings function.
    let team = r#"{"name": "Bay Team", "leadAgentId": "ana", "agentIds": ["ben", "cy"]}"#;
    let (status, body) = runner.call("PUT", "/teams/bay-team", Some(&admin), Some(team));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["leadAgentId"], "ana", "{body}");

    for (agent, tok, n) in [("ana", &ana, 1), ("ben", &ben, 2), ("cy", &cy, 3)] {
        let name = format!("{}{}", agent[..1].to_uppercase(), &agent[1..]);
        let (status, body) = runner.call(
            "PUT",
            &format!("/agents/{agent}"),
            Some(tok),
            Some(&profile(&name, n)),
        );
        assert_eq!(status, 200, "{agent}: {body}");
        assert_eq!(body["name"], name.as_str(), "{body}");
    }

    let (status, body) = runner.call(
        "PUT",
        "/agents/ana/agreement",
        Some(&admin),
        Some(r#"{"feePercent": 25}"#),
    );
    assert_eq!(status, 200, "{body}");

    let vacation = r#"{"start": "2027-02-01", "end": "2027-02-07"}"#;
    let (status, body) = runner.call("PUT", "/agents/ben/vacation", Some(&ben), Some(vacation));
    assert_eq!(status, 200, "{body}");
    assert!(body["vacation"].is_object(), "{body}");
    let (status, body) = runner.call("DELETE", "/agents/ben/vacation", Some(&ben), None);
    assert_eq!(status, 200, "{body}");
    assert!(body["vacation"].is_null(), "{body}");

    let (status, body) = runner.call("GET", "/teams/bay-team/routing", Some(&ana), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fallbackAgentId"], "ana", "{body}");
    let routing = r#"{"enabled": true, "members": [{"agentId": "ben", "receives": "buyer", "warmTransfer": true}, {"agentId": "cy", "receives": "seller"}]}"#;
    let (status, body) = runner.call("PUT", "/teams/bay-team/routing", Some(&ana), Some(routing));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true, "{body}");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(3), "{body}");

    // The functions' refusals.
    let (status, body) = runner.call(
        "PUT",
        "/agents/ana/agreement",
        Some(&ben),
        Some(r#"{"feePercent": 90}"#),
    );
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let (status, body) = runner.call("PUT", "/agents/ana", Some(&ben), Some(&profile("Ana", 1)));
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let (status, body) = runner.call("PUT", "/agents/ben", Some(&ben), Some("{\"name\": "));
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    let members: Vec<Value> = (1..=11)
        .map(|i| json!({"agentId": format!("member-{i}"), "receives": "both"}))
        .collect();
    let eleven = json!({"enabled": true, "members": members}).to_string();
    let (status, body) = runner.call("PUT", "/teams/bay-team/routing", Some(&ana), Some(&eleven));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");

    // What was saved is what the lead reads back.
    let (status, body) = runner.call("GET", "/teams/bay-team/routing", Some(&ana), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(3), "{body}");
}
