//! The local runner holds every function to the policy its template entry grants, as AWS would:
//! the same claim race on a template whose claim function lacks `dynamodb:BatchWriteItem` and on
//! the template as written. The loser's attempt is kept in the referral's history by a batch
//! write; without the permission that write is refused (AccessDenied) and the loser gets a 500
//! instead of 409 `taken`, which is what a deploy of such a template would answer.
//!
//! Each test starts a runner of its own on the emulators `make test` runs. Never skipped:
//! without the emulators it fails and says what is missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serde_norway::Value as Yaml;

const SECRET: &str = "permissions-secret";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fresh_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "permissions-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of `infra/template.yaml` in which `function`'s policy statements lack `action`.
fn template_without(function: &str, action: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    let mut doc: Yaml = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let policies = doc
        .get_mut("Resources")
        .and_then(|r| r.get_mut(function))
        .and_then(|f| f.get_mut("Properties"))
        .and_then(|p| p.get_mut("Policies"))
        .and_then(Yaml::as_sequence_mut)
        .unwrap_or_else(|| panic!("{function} has no Policies"));
    let mut removed = 0;
    for policy in policies {
        let Some(statements) = policy.get_mut("Statement").and_then(Yaml::as_sequence_mut) else {
            continue;
        };
        for statement in statements {
            if let Some(actions) = statement.get_mut("Action").and_then(Yaml::as_sequence_mut) {
                let before = actions.len();
                actions.retain(|a| a.as_str() != Some(action));
                removed += before - actions.len();
            }
        }
    }
    assert!(removed > 0, "{function} is not granted {action}");
    let copy = fresh_dir().join("template.yaml");
    std::fs::write(&copy, serde_norway::to_string(&doc).unwrap()).unwrap();
    copy
}

/// `local-runner serve` on a fresh table and free ports, and the process group it leads
/// (stopped, the functions with it, when this is dropped).
struct Runner {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Runner {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test started; no memory is touched.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Runner {
    fn start(name: &str, template: Option<&Path>) -> Runner {
        for var in ["DYNAMODB_ENDPOINT", "MOTO_ENDPOINT"] {
            assert!(
                std::env::var(var).is_ok(),
                "{var} is not set: this test needs the emulators. Run `make test`, or \
                 `infra/local/stack.sh start && eval \"$(infra/local/stack.sh env)\"`"
            );
        }
        let api = free_port();
        let table = format!("{name}-{}", ulid::Ulid::new().to_string().to_lowercase());
        let log = fresh_dir().join("runner.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_local-runner"));
        command
            .args(["serve", "--table", &table, "--no-reload"])
            .args(["--api-port", &api.to_string()])
            .args(["--invoke-port", &free_port().to_string()])
            .env("LOCAL_JWT_SECRET", SECRET)
            .env_remove("LOCAL_TEMPLATE")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        if let Some(t) = template {
            command.env("LOCAL_TEMPLATE", t);
        }
        let mut runner = Runner {
            child: command.spawn().expect("the runner starts"),
            base: format!("127.0.0.1:{api}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        while runner.call("GET", "/_local/clock", None, None).0 != 200 {
            if let Some(status) = runner.child.try_wait().unwrap() {
                panic!("the runner exited ({status}):\n{}", runner.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the runner did not answer in 180 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        runner
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One JSON request; (0, Null) when the gateway does not answer.
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let Ok(mut stream) = TcpStream::connect(&self.base) else {
            return (0, Value::Null);
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(600)))
            .unwrap();
        let body = body.unwrap_or("");
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.base,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        if stream.read_to_string(&mut response).is_err() {
            return (0, Value::Null);
        }
        let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (
            status,
            serde_json::from_str(rest).unwrap_or(Value::String(rest.to_owned())),
        )
    }
}

/// A dev token, as `local-runner token` makes it.
fn token(sub: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_local-runner"))
        .args(["token", "--sub", sub, "--role", role])
        .env("LOCAL_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Ana (the team's lead and fallback agent) and Ben (its sellers' member) are both offered a
/// seller; Ben claims it first, then Ana. Returns Ana's answer.
fn claim_race(runner: &Runner, tag: &str) -> (u16, Value) {
    let (ana, ben, team) = (
        format!("ana-{tag}"),
        format!("ben-{tag}"),
        format!("team-{tag}"),
    );
    let admin = token("admin-1", "admin");
    let body = json!({"name": "Proof Team", "leadAgentId": ana, "agentIds": [ben]}).to_string();
    let (status, answer) = runner.call("PUT", &format!("/teams/{team}"), Some(&admin), Some(&body));
    assert_eq!(status, 200, "{answer}");
    for (n, agent) in [&ana, &ben].into_iter().enumerate() {
        let profile = json!({
            "name": format!("Agent {agent}"), "email": format!("{agent}@agents.example.com"),
            "cellPhone": format!("+1628555{:04}", 7100 + n), "licensed": true,
            "zips": ["94110"], "clientTypes": ["buyer", "seller"], "warmTransfer": true,
            "pushToken": format!("device-{agent}"), "timeZone": "America/Los_Angeles"
        });
        let (status, answer) = runner.call(
            "PUT",
            &format!("/agents/{agent}"),
            Some(&token(agent, "agent")),
            Some(&profile.to_string()),
        );
        assert_eq!(status, 200, "{agent}: {answer}");
    }
    let routing = json!({"enabled": true, "members": [{"agentId": ben, "receives": "seller"}]});
    let (status, answer) = runner.call(
        "PUT",
        &format!("/teams/{team}/routing"),
        Some(&token(&ana, "agent")),
        Some(&routing.to_string()),
    );
    assert_eq!(status, 200, "{answer}");
    let referral = json!({
        "program": "routing", "teamId": team, "clientType": "seller", "zip": "94110",
        "client": {"name": "Casey Client", "phone": "+16285559876", "email": "casey@example.com"},
        "priceRange": {"min": "600000", "max": "800000"}, "timeline": "1-3 months",
        "briefing": "Selling a 3-bed Victorian"
    });
    let (status, created) = runner.call(
        "POST",
        "/referrals",
        Some(&token("advisor-1", "advisor")),
        Some(&referral.to_string()),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["offeredTo"], json!([ana, ben]), "{created}");
    let claim = format!("/referrals/{}/claim", created["id"].as_str().unwrap());
    let (status, answer) = runner.call("POST", &claim, Some(&token(&ben, "agent")), None);
    assert_eq!(status, 200, "ben wins: {answer}");
    runner.call("POST", &claim, Some(&token(&ana, "agent")), None)
}

/// What the runner's permission check allowed and refused (`GET /_local/permissions`).
fn permissions(runner: &Runner) -> Value {
    let (status, body) = runner.call("GET", "/_local/permissions", None, None);
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn without_batch_write_the_losing_claim_fails_with_access_denied() {
    let template = template_without("ClaimFunction", "dynamodb:BatchWriteItem");
    let runner = Runner::start("permissions-denied", Some(&template));
    let (status, body) = claim_race(&runner, "denied");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal", "{body}");
    let checked = permissions(&runner);
    let refused: Vec<&Value> = checked["denied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["function"] == "ClaimFunction" && d["action"] == "dynamodb:BatchWriteItem")
        .collect();
    assert_eq!(refused.len(), 1, "{checked}");
    assert!(
        refused[0]["resource"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:dynamodb:us-east-1:123456789012:table/permissions-denied-"),
        "{checked}"
    );
    // The function saw AWS's refusal, as it would deployed.
    let log = runner.log_text();
    assert!(
        log.contains("AccessDeniedException")
            && log.contains("is not authorized to perform: dynamodb:BatchWriteItem"),
        "the claim function's log shows no AccessDenied:\n{log}"
    );
}

#[test]
fn with_the_template_as_written_the_loser_hears_taken() {
    let runner = Runner::start("permissions-granted", None);
    let (status, body) = claim_race(&runner, "granted");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "taken", "{body}");
    let checked = permissions(&runner);
    assert_eq!(checked["denied"], json!([]), "{checked}");
    assert!(
        checked["used"].as_array().unwrap().iter().any(|g| {
            g["function"] == "ClaimFunction"
                && g["action"] == "dynamodb:BatchWriteItem"
                && g["resource"] == "${ReferralTable.Arn}"
        }),
        "{checked}"
    );
}
