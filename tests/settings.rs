//! The settings API through the local gateway: who may set teams, profiles, fee agreements,
//! vacations and lead routing, and what the lead reads back.

use jiff::ToSpan;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use crate::harness::{TestApp, error_code, spawn_app, token_signed};

/// Team `bay` led by `ana`, with `ben` and `cy`, every profile saved.
fn bay_team(app: &TestApp) -> String {
    let [ana, ben, cy] = app.agents(["ana", "ben", "cy"]);
    app.create_team("bay", &ana, &[&ben, &cy])
}

/// GEN-6: the gateway refuses a call with no token, or with one it did not sign, before any
/// function runs.
#[test]
fn gen_6_a_call_without_a_verified_token_is_refused() {
    let app = spawn_app();
    let path = format!("/teams/{}", app.id("bay"));
    let (status, body) = app.call("PUT", &path, None, Some("{}"));
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    let forged = token_signed("not-the-secret", &app.id("admin"), "admin");
    let (status, body) = app.call("PUT", &path, Some(&forged), Some("{}"));
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
}

/// GEN-6: a token's role decides: admins set teams and fee agreements, agents may not.
#[test]
fn gen_6_only_an_admin_sets_teams_and_fee_agreements() {
    let app = spawn_app();
    let [ana, ben] = app.agents(["ana", "ben"]);
    let team = json!({"name": "bay", "leadAgentId": ana.id, "agentIds": [ben.id]}).to_string();
    let path = format!("/teams/{}", app.id("bay"));
    let (status, body) = app.call("PUT", &path, Some(&app.token_of(&ana)), Some(&team));
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    app.create_team("bay", &ana, &[&ben]);

    let agreement = format!("/agents/{}/agreement", ana.id);
    let (status, body) = app.call(
        "PUT",
        &agreement,
        Some(&app.admin()),
        Some(r#"{"feePercent": 25}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call(
        "PUT",
        &agreement,
        Some(&app.token_of(&ben)),
        Some(r#"{"feePercent": 90}"#),
    );
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
}

/// GEN-6: an agent saves their own profile, never another agent's.
#[test]
fn gen_6_an_agent_edits_only_their_own_profile() {
    let app = spawn_app();
    let [ana, ben] = app.agents(["ana", "ben"]);
    let (status, body) = app.call(
        "PUT",
        &format!("/agents/{}", ana.id),
        Some(&app.token_of(&ben)),
        Some(&app.profile(&ana).to_string()),
    );
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
}

/// GEN-4: a malformed body is refused with a JSON error.
#[test]
fn gen_4_a_malformed_body_is_refused_with_a_json_error() {
    let app = spawn_app();
    let ben = app.agent("ben");
    let (status, body) = app.call(
        "PUT",
        &format!("/agents/{}", ben.id),
        Some(&app.token_of(&ben)),
        Some("{\"name\": "),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
}

/// LR-7: an agent sets a vacation and clears it; while it lasts, the team's referrals are not
/// offered to them; once it is cleared, they are again.
#[test]
fn lr_7_a_member_on_vacation_is_not_offered_referrals() {
    let app = spawn_app();
    let [ana, ben] = app.agents(["ana", "ben"]);
    let team = app.create_team("bay", &ana, &[&ben]);
    app.route(&team, &ana, &[(&ben, "both")]);
    let mut referral = app.referral("routing", "seller");
    referral["teamId"] = team.into();

    let today = app
        .now()
        .to_zoned(TimeZone::get("America/Los_Angeles").unwrap())
        .date();
    let vacation = json!({"start": today - 1.day(), "end": today + 1.day()}).to_string();
    let path = format!("/agents/{}/vacation", ben.id);
    let ben_token = app.token_of(&ben);
    let (status, body) = app.call("PUT", &path, Some(&ben_token), Some(&vacation));
    assert_eq!(status, 200, "{body}");
    assert!(body["vacation"].is_object(), "{body}");
    let away = app.create_referral(&referral);
    assert_eq!(away["offeredTo"], json!([ana.id]), "{away}");

    let (status, body) = app.call("DELETE", &path, Some(&ben_token), None);
    assert_eq!(status, 200, "{body}");
    assert!(body["vacation"].is_null(), "{body}");
    let back = app.create_referral(&referral);
    assert_eq!(back["offeredTo"], json!([ana.id, ben.id]), "{back}");
}

/// LR-4: until the lead changes it, the fallback agent is the team lead.
#[test]
fn lr_4_the_fallback_agent_is_the_team_lead_by_default() {
    let app = spawn_app();
    let team = bay_team(&app);
    let ana = app.agent("ana");
    let (status, body) = app.call(
        "GET",
        &format!("/teams/{team}/routing"),
        Some(&app.token_of(&ana)),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fallbackAgentId"], ana.id.as_str(), "{body}");
}

/// LR-2: the lead routes to members, each receiving buyers, sellers or both (the fallback agent
/// always among them); more than 10 members is refused, and the refusal changes nothing.
#[test]
fn lr_2_a_lead_routes_to_up_to_10_members_each_by_client_type() {
    let app = spawn_app();
    let team = bay_team(&app);
    let [ana, ben, cy] = [app.agent("ana"), app.agent("ben"), app.agent("cy")];
    let lead = app.token_of(&ana);
    let path = format!("/teams/{team}/routing");
    let routing = json!({"enabled": true, "members": [
        {"agentId": ben.id, "receives": "buyer", "warmTransfer": true},
        {"agentId": cy.id, "receives": "seller"}]});
    let (status, body) = app.call("PUT", &path, Some(&lead), Some(&routing.to_string()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true, "{body}");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(3), "{body}");

    let members: Vec<Value> = (1..=11)
        .map(|i| json!({"agentId": app.id(&format!("member-{i}")), "receives": "both"}))
        .collect();
    let eleven = json!({"enabled": true, "members": members}).to_string();
    let (status, body) = app.call("PUT", &path, Some(&lead), Some(&eleven));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");

    // What was saved is what the lead reads back.
    let (status, body) = app.call("GET", &path, Some(&lead), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(3), "{body}");
}
