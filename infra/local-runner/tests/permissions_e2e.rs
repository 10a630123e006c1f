//! The local runner holds every function to the policy its template entry grants, as AWS would:
//! the same claim race on a template whose claim function lacks `dynamodb:Query` and on the
//! template as written. The loser's response time is kept by reading the agent's partition
//! (a Query); without the permission that read is refused (AccessDenied) and the loser gets a
//! 500 instead of 409 `taken`, which is what a deploy of such a template would answer.
//!
//! Never skipped: without the emulators it fails and says what is missing.

mod common;

use std::path::PathBuf;

use common::{Runner, error_code, profile, token};
use serde_json::{Value, json};
use serde_norway::Value as Yaml;

/// A copy of `infra/template.yaml` in which `function`'s policy statements lack `action`.
fn template_without(function: &str, action: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
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
    let dir = std::env::temp_dir().join(format!(
        "local-runner-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("template.yaml");
    std::fs::write(&copy, serde_norway::to_string(&doc).unwrap()).unwrap();
    copy
}

/// Ana (the team's lead and fallback agent) and Ben (its sellers' member) are both offered a
/// seller; Ben claims it first, then Ana. Returns Ana's answer.
fn claim_race(runner: &Runner) -> (u16, Value) {
    let admin = token("admin-1", "admin");
    let team = r#"{"name": "Proof Team", "leadAgentId": "ana", "agentIds": ["ben"]}"#;
    let (status, body) = runner.call("PUT", "/teams/proof-team", Some(&admin), Some(team));
    assert_eq!(status, 200, "{body}");
    for (agent, name, n) in [("ana", "Ana Agent", 71), ("ben", "Ben Agent", 72)] {
        let (status, body) = runner.call(
            "PUT",
            &format!("/agents/{agent}"),
            Some(&token(agent, "agent")),
            Some(&profile(name, n).to_string()),
        );
        assert_eq!(status, 200, "{agent}: {body}");
    }
    let routing = r#"{"enabled": true, "members": [{"agentId": "ben", "receives": "seller"}]}"#;
    let (status, body) = runner.call(
        "PUT",
        "/teams/proof-team/routing",
        Some(&token("ana", "agent")),
        Some(routing),
    );
    assert_eq!(status, 200, "{body}");
    let referral = json!({
        "program": "routing", "teamId": "proof-team", "clientType": "seller", "zip": "94110",
        "client": {"name": "Casey Client", "phone": "+14155559876", "email": "casey@example.com"},
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
    assert_eq!(created["offeredTo"], json!(["ana", "ben"]), "{created}");
    let claim = format!("/referrals/{}/claim", created["id"].as_str().unwrap());
    let (status, body) = runner.call("POST", &claim, Some(&token("ben", "agent")), None);
    assert_eq!(status, 200, "ben wins: {body}");
    runner.call("POST", &claim, Some(&token("ana", "agent")), None)
}

/// What the runner's permission check allowed and refused (`GET /_local/permissions`).
fn permissions(runner: &Runner) -> Value {
    let (status, body) = runner.call("GET", "/_local/permissions", None, None);
    assert_eq!(status, 200, "{body}");
    body
}

fn refused(permissions: &Value, function: &str, action: &str) -> Vec<String> {
    permissions["denied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["function"] == function && d["action"] == action)
        .map(|d| d["resource"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn without_dynamodb_query_the_losing_claim_fails_with_access_denied() {
    let template = template_without("ClaimFunction", "dynamodb:Query");
    let runner = common::start_with(
        "permissions-denied",
        &[("LOCAL_TEMPLATE", template.to_str().unwrap())],
    );
    let (status, body) = claim_race(&runner);
    assert_eq!((status, error_code(&body)), (500, "internal"), "{body}");
    let checked = permissions(&runner);
    let tables = refused(&checked, "ClaimFunction", "dynamodb:Query");
    assert_eq!(tables.len(), 1, "{checked}");
    assert!(
        tables[0].starts_with("arn:aws:dynamodb:us-east-1:123456789012:table/permissions-denied-"),
        "{checked}"
    );
    std::fs::remove_dir_all(template.parent().unwrap()).unwrap();
}

#[test]
fn with_the_template_as_written_the_loser_hears_taken() {
    let runner = common::start("permissions-granted");
    let (status, body) = claim_race(&runner);
    assert_eq!((status, error_code(&body)), (409, "taken"), "{body}");
    let checked = permissions(&runner);
    assert_eq!(checked["denied"], json!([]), "{checked}");
    assert!(
        checked["used"].as_array().unwrap().iter().any(|g| {
            g["function"] == "ClaimFunction"
                && g["action"] == "dynamodb:Query"
                && g["resource"] == "${ReferralTable.Arn}"
        }),
        "{checked}"
    );
}
