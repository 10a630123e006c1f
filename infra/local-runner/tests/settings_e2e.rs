//! The settings API end to end through the local runner: real DynamoDB Local and moto (started
//! by `make test`), `cargo lambda watch` serving the settings function, and the runner's gateway
//! checking tokens and building API Gateway's events.
//!
//! Never skipped: without the emulators or cargo-lambda it fails and says what is missing.

mod common;

use common::{error_code, profile, token, token_signed};
use serde_json::{Value, json};

#[test]
fn the_settings_api_through_the_local_gateway() {
    let runner = common::start("settings-e2e");
    let admin = token("admin-1", "admin");
    let ana = token("ana", "agent");
    let ben = token("ben", "agent");
    let cy = token("cy", "agent");

    // The gateway's refusals, before any function runs.
    let (status, body) = runner.call("PUT", "/teams/bay-team", None, Some("{}"));
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    let forged = token_signed("not-the-secret", "admin-1", "admin");
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
            Some(&profile(&name, n).to_string()),
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
    let (status, body) = runner.call(
        "PUT",
        "/agents/ana",
        Some(&ben),
        Some(&profile("Ana", 1).to_string()),
    );
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
