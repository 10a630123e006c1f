//! The HTTP API against its document, `infra/openapi.yaml`, as the web and mobile teams generate
//! their clients from it: schemathesis (`.local/venv/bin/st`, pinned in `infra/local/stack.sh`)
//! sends generated requests to every route of a runner of its own and checks each answer:
//! no 5xx, a documented status, a body of the documented schema, a 4xx for a body outside the
//! schema (types, required fields, limits), a 401 without a token. A second run, at the same
//! time, gives every route valid requests with a token of a role it is not for, and a check of
//! `tests/contract/hooks.py` holds that none of them succeeds. Each run prints its figures (time,
//! cases, each phase's time), and the test the requests the API answered.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use crate::harness::{TestApp, spawn_app_alone_with};

/// Each operation of the document by the role it is for (API.md's "who"); the webhooks carry
/// Twilio's signature instead of a token.
const ROLES: [(&str, &[&str]); 6] = [
    ("admin", &["putTeam", "putAgreement"]),
    (
        "agent",
        &[
            "putAgent",
            "putVacation",
            "deleteVacation",
            "requestPhoneVerification",
            "confirmPhoneVerification",
            "agentReferrals",
            "getRouting",
            "putRouting",
            "getReferral",
            "claimReferral",
            "declineReferral",
            "changeStage",
            "addNote",
        ],
    ),
    // Apart: their `{id}` is a subscription's.
    (
        "agent",
        &[
            "signUp",
            "getSubscription",
            "changeSubscription",
            "cancelSubscription",
            "returnReferral",
        ],
    ),
    (
        "advisor",
        &[
            "createReferral",
            "completeWarmTransfer",
            "connectClient",
            "unassignedReferrals",
        ],
    ),
    (
        "closings",
        &["recordPayment", "correctEscrow", "closingsReferrals"],
    ),
    (
        "twilio",
        &[
            "twilioVoiceClaim",
            "twilioVoiceStatus",
            "twilioVoicePin",
            "twilioVoiceWarmTransfer",
            "twilioVoiceConference",
            "twilioVoiceLegChoice",
        ],
    ),
];

/// Who calls a role's routes in the wrong-role run.
fn wrong_role(role: &str) -> &'static str {
    match role {
        "admin" => "agent",
        // Closings and advisors may read a referral; an admin may not.
        "agent" => "admin",
        "advisor" => "agent",
        _ => "advisor",
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_owned()
}

/// The document's operation ids, in order.
fn operation_ids() -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join("infra/openapi.yaml"))
        .expect("infra/openapi.yaml is readable");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("operationId:"))
        .map(|id| id.trim().to_owned())
        .collect()
}

/// The run's configuration: per operation, its role's token and the world's ids in its path;
/// the webhooks (no token to get wrong) only when `webhooks`.
fn config(
    tokens: &[(&str, String)],
    ids_for: impl Fn(&[&str]) -> serde_json::Value,
    webhooks: bool,
) -> String {
    let mut out = String::from(include_str!("contract/schemathesis.toml"));
    for (role, operations) in ROLES {
        let ids = ids_for(operations);
        let list: Vec<String> = operations.iter().map(|o| format!("\"{o}\"")).collect();
        out.push_str(&format!(
            "\n[[operations]]\ninclude-operation-id = [{}]\n",
            list.join(", ")
        ));
        if role == "twilio" && !webhooks {
            out.push_str("enabled = false\n");
        }
        if let Some((_, token)) = tokens.iter().find(|(r, _)| *r == role) {
            out.push_str(&format!(
                "headers = {{ Authorization = \"Bearer {token}\" }}\n"
            ));
        }
        let params: Vec<String> = ids
            .as_object()
            .expect("ids are an object")
            .iter()
            .map(|(k, v)| format!("\"path.{k}\" = {v}"))
            .collect();
        out.push_str(&format!("parameters = {{ {} }}\n", params.join(", ")));
    }
    out
}

/// The summary line and each phase's time of a schemathesis run's output, e.g.
/// `1344 generated, 1344 passed; spec 3.5s, examples 7.0s, coverage 26.3s, fuzzing 8.9s`.
fn figures(stdout: &str) -> String {
    let cases = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" generated,"))
        .unwrap_or("no cases");
    let phases: Vec<String> = stdout
        .lines()
        .filter_map(|l| {
            let (head, time) = l.trim().split_once("(in ")?;
            let time = time.strip_suffix(')')?;
            let name = [
                ("Loaded specification", "spec"),
                ("Examples", "examples"),
                ("Coverage", "coverage"),
                ("Fuzzing", "fuzzing"),
                ("Stateful", "stateful"),
            ]
            .into_iter()
            .find(|(phase, _)| head.contains(phase))?
            .1;
            Some(format!("{name} {time}"))
        })
        .collect();
    format!("{cases}; {}", phases.join(", "))
}

/// One schemathesis run; returns whether it passed and its output, and prints its figures:
/// time, cases (a request each) and each phase's time.
fn schemathesis(app: &TestApp, name: &str, config: &str, wrong_role: bool) -> (bool, String) {
    let st = workspace().join(".local/venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run `infra/local/stack.sh install` (make test does)",
        st.display()
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("contract");
    std::fs::create_dir_all(&dir).expect("the report directory can be created");
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).expect("the configuration can be written");
    let started = Instant::now();
    let output = Command::new(&st)
        .arg("--config-file")
        .arg(&config_path)
        .arg("run")
        .arg(workspace().join("infra/openapi.yaml"))
        .args(["--url", app.base()])
        .arg("--report-junit-path")
        .arg(dir.join(format!("{name}.xml")))
        .arg("--report")
        .arg("junit")
        // Every case of the wrong-role run is a valid request, so each one tries the role
        // check: a malformed body is refused whoever sends it, as the first run proves.
        .args(["--mode", if wrong_role { "positive" } else { "all" }])
        .env(
            "SCHEMATHESIS_HOOKS",
            workspace().join("tests/contract/hooks.py"),
        )
        .env("CONTRACT_WRONG_ROLE", if wrong_role { "1" } else { "" })
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log = dir.join(format!("{name}.log"));
    std::fs::write(&log, format!("{stdout}\n{stderr}")).expect("the log can be written");
    eprintln!(
        "schemathesis {name}: {:.1?}; {}; full output in {}",
        started.elapsed(),
        figures(&stdout),
        log.display()
    );
    (output.status.success(), format!("{stdout}\n{stderr}"))
}

// Run alone, after the other tests, by `make test` (`--ignored`): its thousands of requests
// would otherwise slow the tests that time a stalled emulator past their limits.
#[test]
#[ignore = "run alone by make test's contract step: cargo test --workspace --test system -- --ignored contract::"]
fn openapi_every_route_answers_as_documented_for_its_roles_and_refuses_the_others() {
    let documented = operation_ids();
    let assigned: Vec<&str> = ROLES
        .iter()
        .flat_map(|(_, ops)| ops.iter().copied())
        .collect();
    for id in &documented {
        assert!(
            assigned.contains(&id.as_str()),
            "operation {id} of infra/openapi.yaml has no role in tests/contract.rs's ROLES"
        );
    }

    // A world whose ids every route's path takes: a team led by an agent, a referral offered to
    // them, a subscription of theirs.
    // Schemathesis asks far faster than any person: the rate limit (TX-5) is lifted, so every
    // answer it sees is the route's own.
    let setup = Instant::now();
    let app = spawn_app_alone_with(&[("RATE_LIMIT_PER_MINUTE", "1000000".into())]);
    let [lead] = app.agents(["lead"]);
    let team = app.create_team("team", &lead, &[&lead]);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = json!(team);
    let referral = app.create_referral(&body)["id"]
        .as_str()
        .expect("the referral has an id")
        .to_owned();
    let (status, subscription) = app.call(
        "POST",
        "/ppl/subscriptions",
        Some(&app.token_of(&lead)),
        Some(
            &json!({"zips": [app.zip], "clientTypes": ["buyer"], "referralsPerCycle": 1})
                .to_string(),
        ),
    );
    assert_eq!(status, 201, "{subscription}");
    // The admin's team edits go to a team of their own, so they do not take the lead's team from
    // the lead under the other operations.
    let admin_team = app.id("admin-team");
    let ids = |operations: &[&str]| {
        let id = if operations.contains(&"getSubscription") {
            subscription["id"].clone()
        } else {
            json!(referral)
        };
        let team = if operations.contains(&"putTeam") {
            &admin_team
        } else {
            &team
        };
        json!({"agentId": lead.id, "teamId": team, "id": id, "referralId": referral})
    };

    let tokens = |role_of: &dyn Fn(&str) -> &str| -> Vec<(&'static str, String)> {
        ["admin", "agent", "advisor", "closings"]
            .iter()
            .map(|role| {
                let token = match role_of(role) {
                    "agent" => app.token_of(&lead),
                    "advisor" => app.advisor(),
                    "closings" => app.closings(),
                    _ => app.admin(),
                };
                (*role, token)
            })
            .collect()
    };
    let right = tokens(&|role| role);
    let wrong = tokens(&|role| wrong_role(role));

    eprintln!(
        "contract run: the runner up and its world made in {:.1?}",
        setup.elapsed()
    );
    // The two runs at once: the wrong-role one writes nothing, so neither changes what the
    // other meets, and the stack serves both in about the time of the longer.
    let (started, requests) = (Instant::now(), app.api_requests());
    let (roles, wrong_roles) = std::thread::scope(|scope| {
        let roles = scope.spawn(|| schemathesis(&app, "roles", &config(&right, ids, true), false));
        let wrong_roles = schemathesis(&app, "wrong-roles", &config(&wrong, ids, false), true);
        (roles.join().expect("the roles run ends"), wrong_roles)
    });
    eprintln!(
        "contract run: both runs in {:.1?}, {} requests; {:.1?} in all",
        started.elapsed(),
        app.api_requests() - requests,
        setup.elapsed()
    );
    let (ok, output) = roles;
    assert!(
        ok,
        "schemathesis found answers that break infra/openapi.yaml:\n{output}"
    );
    let (ok, output) = wrong_roles;
    assert!(ok, "a route answered a caller of the wrong role:\n{output}");
}
