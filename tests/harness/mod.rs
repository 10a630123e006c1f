//! The harness: each test spawns an app (`spawn_app`), builds a small world of its own on it
//! (agents, teams, routing, subscriptions; see `world`) and talks to it as the apps and the
//! telephony provider would. The emulators are the ones `make test` started, shared by every
//! test; the local runner in front of them is the test's own, or one per test binary (`RUNNERS`).
//!
//! Never skipped: without the emulators or the runner binary a test fails and says what to run.

mod http;
mod moto;
mod runner;
mod world;

use std::ops::Deref;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

pub use moto::Moto;
pub use runner::WINDOW_SECONDS;
use runner::{Runner, SECRET, TWILIO_TOKEN};
pub use world::{ADVISORS_EMAIL, Agent, CLOSINGS_EMAIL, World};

/// How tests get a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runners {
    /// Each test starts its own: a fresh table, its own clock and outbox.
    PerTest,
    /// The tests share one runner per test binary, their worlds told apart by their ids; a test
    /// that moves the clock or runs a table-wide job still gets its own (`spawn_app_alone`).
    SharedPerBinary,
}

/// The one switch. `SYSTEM_TESTS_RUNNERS=per-test|shared` overrides it for a run.
///
/// Shared: a runner makes its table, queues, bus rules and schedule groups and starts twelve
/// functions before it answers, so the 55 tests took 353 s with a runner each against 94 s shared
/// (one run of each, one after the other, on two busy cores). A test that needs its own clock or
/// table still gets its own (`spawn_app_alone`).
const RUNNERS: Runners = Runners::SharedPerBinary;

fn runners() -> Runners {
    match std::env::var("SYSTEM_TESTS_RUNNERS").as_deref() {
        Err(_) | Ok("") => RUNNERS,
        Ok("per-test") => Runners::PerTest,
        Ok("shared") => Runners::SharedPerBinary,
        Ok(other) => panic!("SYSTEM_TESTS_RUNNERS={other}: use per-test or shared"),
    }
}

/// A first call may start a function, or compile it when its binary is stale: minutes on 2 cores.
const FIRST_CALL: Duration = Duration::from_secs(15 * 60);

enum Stack {
    Own(Runner),
    Shared(&'static Runner),
}

/// One test's world on a running stack.
pub struct TestApp {
    stack: Stack,
    /// Alone on its runner, so free to move the clock.
    alone: bool,
    pub world: World,
}

impl Deref for TestApp {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A runner of the test's own prints its log's tail as it stops; a shared one goes on, so
        // the failing test gets the lines about its own world.
        if let Stack::Shared(runner) = &self.stack
            && std::thread::panicking()
        {
            eprintln!(
                "the shared runner's log, on this test's world: {}",
                runner.log_tail_with(&self.world.tag)
            );
        }
    }
}

/// An app for a test whose effects stay within its world.
pub fn spawn_app() -> TestApp {
    let world = World::new();
    let stack = match runners() {
        Runners::PerTest => Stack::Own(Runner::start(&log_name(&world))),
        Runners::SharedPerBinary => {
            static SHARED: OnceLock<Runner> = OnceLock::new();
            Stack::Shared(SHARED.get_or_init(|| Runner::start("shared")))
        }
    };
    TestApp {
        stack,
        alone: false,
        world,
    }
}

/// An app on a runner of its own, whatever `RUNNERS` says: for a test whose effects reach past
/// its world, as moving the clock (every schedule of the table fires) or running a job over the
/// whole table.
pub fn spawn_app_alone() -> TestApp {
    let world = World::new();
    TestApp {
        stack: Stack::Own(Runner::start(&log_name(&world))),
        alone: true,
        world,
    }
}

/// An app on a runner of its own with `env` added to the runner's environment: a template
/// parameter set by the variable it gives the functions (`RATE_LIMIT_PER_MINUTE`), as
/// `RATE_LIMIT_PER_MINUTE=... make run` sets it.
pub fn spawn_app_alone_with(env: &[(&str, String)]) -> TestApp {
    let world = World::new();
    TestApp {
        stack: Stack::Own(Runner::start_with(&log_name(&world), env)),
        alone: true,
        world,
    }
}

/// An app on a runner of its own whose SQS, SNS, SES, EventBridge and Scheduler are `moto`'s: for a
/// test that freezes them.
pub fn spawn_app_on(moto: &Moto) -> TestApp {
    let world = World::new();
    TestApp {
        stack: Stack::Own(Runner::start_with(&log_name(&world), &moto.env())),
        alone: true,
        world,
    }
}

/// The test's name (libtest names each test's thread after it) and the world's tag.
fn log_name(world: &World) -> String {
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    format!("{test}-{}", world.tag)
}

impl TestApp {
    /// How many API requests this test's runner has answered so far.
    pub fn api_requests(&self) -> usize {
        self.runner().api_requests()
    }

    fn runner(&self) -> &Runner {
        match &self.stack {
            Stack::Own(r) => r,
            Stack::Shared(r) => r,
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
        let (status, text) = http::send(
            &self.runner().base,
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

    /// A raw request with these headers, as a browser sends it: (status, response headers with
    /// lower-case names, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> http::Answer {
        http::send_full(&self.runner().base, method, path, headers, body, FIRST_CALL)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Every line the functions logged on the runner so far (on a shared runner, other tests'
    /// too).
    pub fn function_log_lines(&self) -> Vec<String> {
        self.runner().function_log_lines()
    }

    /// The base URL of the runner's HTTP API.
    pub fn base(&self) -> &str {
        &self.runner().base
    }

    /// A telephony webhook: a form post to `path_and_query`, signed as Twilio signs it unless
    /// `signature` overrides it. Returns the status and the TwiML.
    pub fn webhook(
        &self,
        path_and_query: &str,
        params: &[(&str, &str)],
        signature: Option<&str>,
    ) -> (u16, String) {
        let base = &self.runner().base;
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let signed = shared::twilio::SignatureValidator::new(TWILIO_TOKEN)
            .sign(&format!("{base}{path_and_query}"), &owned);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", signature.unwrap_or(&signed)),
        ];
        http::send(base, "POST", path_and_query, &headers, &body, FIRST_CALL)
            .unwrap_or_else(|e| panic!("POST {path_and_query}: {e}"))
    }

    /// Everything sent to this world so far (API.md: `GET /_local/outbox`), oldest first: to its
    /// agents, its client, and the advisors' and closings' desks.
    pub fn outbox(&self) -> Vec<Value> {
        let (status, body) = self.call("GET", "/_local/outbox", None, None);
        assert_eq!(status, 200, "{body}");
        let all = body.as_array().cloned().unwrap_or_default();
        all.into_iter()
            .filter(|e| self.world.addressed_here(e))
            .collect()
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

    /// Moves the local clock, firing what falls due on the way; the answer lists what fired.
    pub fn advance(&self, by: &str) -> Value {
        assert!(
            self.alone,
            "a test that moves the clock needs a runner of its own: spawn_app_alone()"
        );
        let (status, body) = self.call(
            "POST",
            "/_local/clock",
            None,
            Some(&json!({"advance": by}).to_string()),
        );
        assert_eq!(status, 200, "advance {by}: {body}");
        body
    }

    /// Moves the local clock to `at` (which must be ahead of it), or less than a second past it
    /// (the clock moves in whole seconds), firing what falls due on the way.
    pub fn advance_to(&self, at: Timestamp) -> Value {
        let ahead = at.duration_since(self.now());
        assert!(ahead.is_positive(), "the clock is already past {at}");
        let seconds = ahead.as_secs() + i64::from(ahead.subsec_nanos() > 0);
        self.advance(&format!("{seconds}s"))
    }

    /// Texts `body` from `from` to the service's number, as AWS delivers it: `POST /_local/sms`,
    /// an SNS notification of the inbound topic to the function subscribed to it (TX-1).
    pub fn text(&self, from: &str, body: &str) {
        let text = json!({"from": from, "body": body}).to_string();
        let (status, answer) = self.call("POST", "/_local/sms", None, Some(&text));
        assert_eq!(status, 202, "{answer}");
    }

    /// Texts as [`Self::text`] and waits for the service's answer to `from`: the outbox entry of
    /// the first text to `from` sent after it.
    pub fn text_answered(&self, from: &str, body: &str) -> Value {
        let before = sms_to(&self.outbox(), from).len();
        self.text(from, body);
        let outbox = self.outbox_until(&format!("the answer to {from}"), |o| {
            sms_to(o, from).len() > before
        });
        outbox
            .into_iter()
            .filter(|e| e["channel"] == "sms" && e["to"] == from)
            .nth(before)
            .expect("waited for it")
    }

    /// Invokes `function` directly with `payload` through the functions' invoke port, bypassing
    /// the runner: how a test delivers an event a second time, as EventBridge and its Scheduler
    /// may (at-least-once delivery). Returns the function's answer; panics if it failed.
    pub fn invoke(&self, function: &str, payload: &Value) -> Value {
        let (status, text) = http::send(
            &format!("http://127.0.0.1:{}", self.runner().invoke_port),
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
        token_signed_at(SECRET, sub, role, None, self.now())
    }

    /// The agent's token.
    pub fn token_of(&self, agent: &Agent) -> String {
        self.token(&agent.id, "agent")
    }

    /// The world's advisor's token, carrying their `email` as advisors' tokens do.
    pub fn advisor(&self) -> String {
        token_signed_at(
            SECRET,
            &self.id("advisor"),
            "advisor",
            Some(&self.advisor_email()),
            self.now(),
        )
    }

    /// The world's closings team member's token.
    pub fn closings(&self) -> String {
        self.token(&self.id("closer"), "closings")
    }

    /// The world's admin's token.
    pub fn admin(&self) -> String {
        self.token(&self.id("admin"), "admin")
    }

    /// Saves the agent's `profile` as the agent; asserts it is saved.
    pub fn save_profile(&self, agent: &Agent, profile: &Value) {
        let (status, body) = self.call(
            "PUT",
            &format!("/agents/{}", agent.id),
            Some(&self.token_of(agent)),
            Some(&profile.to_string()),
        );
        assert_eq!(status, 200, "{}: {body}", agent.id);
        assert_eq!(body["name"], profile["name"], "{body}");
    }

    /// The world's agents `shorts`, each with the world's standard profile saved and its phone
    /// verified by the code texted to it (TX-3).
    pub fn agents<const N: usize>(&self, shorts: [&str; N]) -> [Agent; N] {
        let agents = shorts.map(|short| {
            let agent = self.agent(short);
            self.save_profile(&agent, &self.profile(&agent));
            agent
        });
        self.verify_phones(&agents);
        agents
    }

    /// Proves each agent's phone as the agent would (TX-3): asks for a code, reads it from the
    /// text it arrives in, and types it back. All codes are asked for first, so one wait covers
    /// them all.
    pub fn verify_phones(&self, agents: &[Agent]) {
        for agent in agents {
            let body = json!({"phone": agent.phone}).to_string();
            let path = format!("/agents/{}/phone-verification", agent.id);
            let (status, answer) =
                self.call("POST", &path, Some(&self.token_of(agent)), Some(&body));
            assert_eq!(status, 202, "{}: {answer}", agent.id);
        }
        let code_of = |outbox: &[Value], agent: &Agent| {
            sms_to(outbox, &agent.phone)
                .iter()
                .rev()
                .find_map(|body| Some(body.split("Code: ").nth(1)?.get(..6)?.to_owned()))
        };
        let outbox = self.outbox_until("the verification codes", |o| {
            agents.iter().all(|a| code_of(o, a).is_some())
        });
        for agent in agents {
            let code = code_of(&outbox, agent).expect("waited for it");
            let body = json!({"phone": agent.phone, "code": code}).to_string();
            let path = format!("/agents/{}/phone-verification/confirm", agent.id);
            let (status, answer) =
                self.call("POST", &path, Some(&self.token_of(agent)), Some(&body));
            assert_eq!(status, 200, "{}: {answer}", agent.id);
        }
    }

    /// Team `short` led by `lead` with `members`, set by an admin; returns its id.
    pub fn create_team(&self, short: &str, lead: &Agent, members: &[&Agent]) -> String {
        let id = self.id(short);
        let members: Vec<&str> = members.iter().map(|a| a.id.as_str()).collect();
        let team = json!({"name": short, "leadAgentId": lead.id, "agentIds": members});
        let (status, body) = self.call(
            "PUT",
            &format!("/teams/{id}"),
            Some(&self.admin()),
            Some(&team.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["leadAgentId"], lead.id.as_str(), "{body}");
        id
    }

    /// Lead routing on for `team`, set by its `lead`, with `members` (`(agent, receives)`);
    /// returns the settings saved.
    pub fn route(&self, team: &str, lead: &Agent, members: &[(&Agent, &str)]) -> Value {
        let members: Vec<Value> = members
            .iter()
            .map(|(agent, receives)| json!({"agentId": agent.id, "receives": receives}))
            .collect();
        let routing = json!({"enabled": true, "members": members});
        let (status, body) = self.call(
            "PUT",
            &format!("/teams/{team}/routing"),
            Some(&self.token_of(lead)),
            Some(&routing.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A new referral made by the world's advisor from `body`; returns the answer.
    pub fn create_referral(&self, body: &Value) -> Value {
        let (status, created) = self.call(
            "POST",
            "/referrals",
            Some(&self.advisor()),
            Some(&body.to_string()),
        );
        assert_eq!(status, 201, "{created}");
        created
    }
}

/// A request to any local endpoint (the gateway, an emulator) outside a test's app, as a bench
/// makes many at once: (status, body).
pub fn raw_send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    http::send(base, method, path, headers, body, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{method} {base}{path}: {e}"))
}

/// Starts the instances of the function behind `(method, path, body)` a few at a time, as
/// provisioned concurrency would have them before a busy hour: ten started at once on two busy
/// cores can each take past the runner's 10 s init limit, which measures the machine, not the
/// function. Each request must answer `status` (a refusal that writes nothing).
pub fn warm_up(base: &str, token: &str, (method, path, body): (&str, &str, &str), status: u16) {
    for at_once in [1, 2, 4, 8, 10] {
        std::thread::scope(|scope| {
            for _ in 0..at_once {
                scope.spawn(|| {
                    let auth = format!("Bearer {token}");
                    let headers = [
                        ("Authorization", auth.as_str()),
                        ("Content-Type", "application/json"),
                    ];
                    let (got, answer) = raw_send(base, method, path, &headers, body);
                    assert_eq!(got, status, "warming up {method} {path}: {answer}");
                });
            }
        });
    }
}

/// The `q`-quantile of sorted `samples`, nearest rank, as the benches print them.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A dev token as `local-runner token` makes one, signed with `secret`, issued now.
pub fn token_signed(secret: &str, sub: &str, role: &str) -> String {
    token_signed_at(secret, sub, role, None, Timestamp::now())
}

/// A dev token issued at `now`, valid for an hour from then, with an `email` claim if given.
fn token_signed_at(
    secret: &str,
    sub: &str,
    role: &str,
    email: Option<&str>,
    now: Timestamp,
) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let mut claims = json!({
        "sub": sub, "custom:role": role,
        "iat": now.as_second(), "exp": (now + SignedDuration::from_hours(1)).as_second(),
    });
    if let Some(email) = email {
        claims["email"] = email.into();
    }
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The `to` of an outbox entry.
pub fn to(entry: &Value) -> &str {
    entry["to"].as_str().unwrap_or("")
}

/// The bodies of the texts in `outbox` to `number`, oldest first.
pub fn sms_to<'a>(outbox: &'a [Value], number: &str) -> Vec<&'a str> {
    outbox
        .iter()
        .filter(|e| e["channel"] == "sms" && to(e) == number)
        .filter_map(|e| e["body"].as_str())
        .collect()
}
