//! Access exactly as API.md's table: for each row, every role and relation that may call it is
//! served, and every other caller is refused (403 `forbidden`) with nothing written. Callers: the
//! agent the path names (or who was offered, or holds, the referral), their team lead, another
//! agent, the advisor who created the referral and another advisor, closings and an admin.

use serde_json::{Value, json};

use crate::harness::{Agent, TestApp, error_code, spawn_app};

/// Team `bay` led by ana, with cy taking sellers; dee is an agent of no team. A seller referral
/// offered to the team, claimed by cy, with a note of hers.
struct Bay {
    ana: Agent,
    cy: Agent,
    dee: Agent,
    team: String,
    id: String,
}

fn bay(app: &TestApp) -> Bay {
    let [ana, cy, dee] = app.agents(["ana", "cy", "dee"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.clone().into();
    let id = app.create_referral(&body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bay = Bay {
        ana,
        cy,
        dee,
        team,
        id,
    };
    let (status, answer) = app.call(
        "POST",
        &format!("/referrals/{}/claim", bay.id),
        Some(&app.token_of(&bay.cy)),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let note = json!({"text": "Met Casey at the open house"}).to_string();
    let (status, answer) = app.call(
        "POST",
        &format!("/referrals/{}/notes", bay.id),
        Some(&app.token_of(&bay.cy)),
        Some(&note),
    );
    assert_eq!(status, 200, "{answer}");
    bay
}

/// Another advisor than the one who created the world's referrals.
fn other_advisor(app: &TestApp) -> String {
    app.token(&app.id("advisor-2"), "advisor")
}

/// Asserts that each `(who, token)` gets 403 `forbidden` for the request.
fn refused(app: &TestApp, method: &str, path: &str, body: Option<&str>, who: &[(&str, String)]) {
    for (name, token) in who {
        let (status, answer) = app.call(method, path, Some(token), body);
        assert_eq!(
            (status, error_code(&answer)),
            (403, "forbidden"),
            "{method} {path} as {name}: {answer}"
        );
    }
}

/// Asserts that `token` gets past the access check: any answer but 401 or 403.
fn admitted(app: &TestApp, method: &str, path: &str, body: Option<&str>, token: &str) -> Value {
    let (status, answer) = app.call(method, path, Some(token), body);
    assert!(
        status != 401 && status != 403,
        "{method} {path}: {status} {answer}"
    );
    answer
}

fn has_note(view: &Value) -> bool {
    view["history"]
        .as_array()
        .is_some_and(|h| h.iter().any(|e| e["type"] == "note"))
}

/// `GET /referrals/{id}`: the assigned agent, their team lead and closings see the notes; the
/// client's contacts only the assigned agent and closings (GEN-3); the advisor who created it
/// sees it without notes or contacts; other advisors, admins and agents it was never offered to
/// are refused.
#[test]
fn api_access_get_referral_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let path = format!("/referrals/{}", b.id);
    let view = |token: &str| {
        let (status, view) = app.call("GET", &path, Some(token), None);
        assert_eq!(status, 200, "{view}");
        view
    };
    let mine = view(&app.token_of(&b.cy));
    assert!(
        mine["client"]["phone"].is_string() && has_note(&mine),
        "{mine}"
    );
    let lead = view(&app.token_of(&b.ana));
    assert!(lead["client"].is_null() && has_note(&lead), "{lead}");
    let closings = view(&app.closings());
    assert!(
        closings["client"]["phone"].is_string() && has_note(&closings),
        "{closings}"
    );
    let advisor = view(&app.advisor());
    assert!(
        advisor["client"].is_null() && !has_note(&advisor),
        "{advisor}"
    );
    let text = advisor.to_string();
    assert!(
        !text.contains(&app.client.phone) && !text.contains(&app.client.email),
        "{advisor}"
    );
    assert!(
        !advisor["history"].as_array().unwrap().is_empty(),
        "the rest of the history"
    );
    refused(
        &app,
        "GET",
        &path,
        None,
        &[
            ("another advisor", other_advisor(&app)),
            ("an admin", app.admin()),
            ("an agent it was never offered to", app.token_of(&b.dee)),
        ],
    );
}

/// `GET /referrals/{id}` for an agent it was offered to and who does not hold it: the lead
/// details, no contacts and no history.
#[test]
fn api_access_get_referral_offered_agent_sees_no_contacts() {
    let app = spawn_app();
    let [ana, cy] = app.agents(["ana", "cy"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.into();
    let id = app.create_referral(&body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, view) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.token_of(&cy)),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert!(view["client"].is_null(), "{view}");
    assert_eq!(view["history"], json!([]), "{view}");
    assert!(!view.to_string().contains(&app.client.email), "{view}");
}

/// `POST /referrals/{id}/notes`: the assigned agent and their team lead; closings reads the
/// notes but adds none; nobody else adds one, and a refused note is not written.
#[test]
fn api_access_notes_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let path = format!("/referrals/{}/notes", b.id);
    let note = json!({"text": "A note from the lead"}).to_string();
    let (status, answer) = app.call("POST", &path, Some(&app.token_of(&b.ana)), Some(&note));
    assert_eq!(status, 200, "the team lead: {answer}");
    let stray = json!({"text": "stray note"}).to_string();
    refused(
        &app,
        "POST",
        &path,
        Some(&stray),
        &[
            ("closings", app.closings()),
            ("the advisor", app.advisor()),
            ("an admin", app.admin()),
            ("another agent", app.token_of(&b.dee)),
        ],
    );
    let (_, view) = app.call(
        "GET",
        &format!("/referrals/{}", b.id),
        Some(&app.token_of(&b.cy)),
        None,
    );
    assert!(
        !view.to_string().contains("stray note"),
        "nothing written: {view}"
    );
}

/// `POST /referrals/{id}/stage`: the assigned agent and their team lead.
#[test]
fn api_access_stage_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let path = format!("/referrals/{}/stage", b.id);
    let connected = json!({"stage": "connected"}).to_string();
    let (status, answer) = app.call("POST", &path, Some(&app.token_of(&b.cy)), Some(&connected));
    assert_eq!(status, 200, "{answer}");
    let met = json!({"stage": "met_with_person"}).to_string();
    let (status, answer) = app.call("POST", &path, Some(&app.token_of(&b.ana)), Some(&met));
    assert_eq!(status, 200, "the team lead: {answer}");
    let voicemail = json!({"stage": "failed", "failReason": "other"}).to_string();
    refused(
        &app,
        "POST",
        &path,
        Some(&voicemail),
        &[
            ("closings", app.closings()),
            ("the advisor", app.advisor()),
            ("an admin", app.admin()),
            ("another agent", app.token_of(&b.dee)),
        ],
    );
}

/// `POST /referrals/{id}/payment` and `/correction`: closings only.
#[test]
fn api_access_payment_and_correction_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    for (route, body) in [
        ("payment", json!({})),
        ("correction", json!({"stage": "listing"})),
    ] {
        let path = format!("/referrals/{}/{route}", b.id);
        let body = body.to_string();
        // Not closed and not in escrow yet: closings is let in and told why not (409).
        admitted(&app, "POST", &path, Some(&body), &app.closings());
        refused(
            &app,
            "POST",
            &path,
            Some(&body),
            &[
                ("the assigned agent", app.token_of(&b.cy)),
                ("the team lead", app.token_of(&b.ana)),
                ("the advisor", app.advisor()),
                ("an admin", app.admin()),
            ],
        );
    }
}

/// `POST /referrals/{id}/claim` and `/decline`: agents it was offered to (the team lead for the
/// team); staff roles never.
#[test]
fn api_access_claim_and_decline_by_role() {
    let app = spawn_app();
    let [ana, cy, dee] = app.agents(["ana", "cy", "dee"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.into();
    let id = app.create_referral(&body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let staff = || {
        vec![
            ("the advisor", app.advisor()),
            ("closings", app.closings()),
            ("an admin", app.admin()),
            ("an agent it was not offered to", app.token_of(&dee)),
        ]
    };
    refused(
        &app,
        "POST",
        &format!("/referrals/{id}/decline"),
        None,
        &staff(),
    );
    refused(
        &app,
        "POST",
        &format!("/referrals/{id}/claim"),
        None,
        &staff(),
    );
    let (status, answer) = app.call(
        "POST",
        &format!("/referrals/{id}/claim"),
        Some(&app.token_of(&cy)),
        None,
    );
    assert_eq!(status, 200, "{answer}");
}

/// `GET /agents/{agentId}/referrals`: the agent and their team lead.
#[test]
fn api_access_agent_referrals_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let path = format!("/agents/{}/referrals", b.cy.id);
    for token in [app.token_of(&b.cy), app.token_of(&b.ana)] {
        let (status, answer) = app.call("GET", &path, Some(&token), None);
        assert_eq!(status, 200, "{answer}");
    }
    refused(
        &app,
        "GET",
        &path,
        None,
        &[
            ("another agent", app.token_of(&b.dee)),
            ("the advisor", app.advisor()),
            ("closings", app.closings()),
            ("an admin", app.admin()),
        ],
    );
}

/// `GET, PUT /teams/{teamId}/routing`: the team lead.
#[test]
fn api_access_routing_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let path = format!("/teams/{}/routing", b.team);
    let (status, routing) = app.call("GET", &path, Some(&app.token_of(&b.ana)), None);
    assert_eq!(status, 200, "{routing}");
    let others = || {
        vec![
            ("a member", app.token_of(&b.cy)),
            ("another agent", app.token_of(&b.dee)),
            ("the advisor", app.advisor()),
            ("closings", app.closings()),
            ("an admin", app.admin()),
        ]
    };
    refused(&app, "GET", &path, None, &others());
    let off = json!({"enabled": false, "members": []}).to_string();
    refused(&app, "PUT", &path, Some(&off), &others());
}

/// `PUT /teams/{teamId}` and `PUT /agents/{agentId}/agreement`: admins.
#[test]
fn api_access_teams_and_agreements_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let team = json!({"name": "bay", "leadAgentId": b.dee.id, "agentIds": [b.dee.id]}).to_string();
    let agreement = json!({"feePercent": "30"}).to_string();
    let others = || {
        vec![
            ("the team lead", app.token_of(&b.ana)),
            ("the advisor", app.advisor()),
            ("closings", app.closings()),
        ]
    };
    refused(
        &app,
        "PUT",
        &format!("/teams/{}", b.team),
        Some(&team),
        &others(),
    );
    let agreement_path = format!("/agents/{}/agreement", b.cy.id);
    let mut agents_own = others();
    agents_own.push(("the agent", app.token_of(&b.cy)));
    refused(&app, "PUT", &agreement_path, Some(&agreement), &agents_own);
    let (status, answer) = app.call("PUT", &agreement_path, Some(&app.admin()), Some(&agreement));
    assert_eq!(status, 200, "{answer}");
    // The team is still ana's: no refused call changed it.
    let (status, _) = app.call(
        "GET",
        &format!("/teams/{}/routing", b.team),
        Some(&app.token_of(&b.ana)),
        None,
    );
    assert_eq!(status, 200);
}

/// `PUT /agents/{agentId}`, its vacation and phone verification: the agent alone.
#[test]
fn api_access_profile_vacation_and_phone_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let others = || {
        vec![
            ("another agent", app.token_of(&b.dee)),
            ("the team lead", app.token_of(&b.ana)),
            ("the advisor", app.advisor()),
            ("closings", app.closings()),
            ("an admin", app.admin()),
        ]
    };
    let profile = app.profile(&b.cy).to_string();
    refused(
        &app,
        "PUT",
        &format!("/agents/{}", b.cy.id),
        Some(&profile),
        &others(),
    );
    let vacation = json!({"start": "2027-01-01", "end": "2027-01-02"}).to_string();
    let vacation_path = format!("/agents/{}/vacation", b.cy.id);
    refused(&app, "PUT", &vacation_path, Some(&vacation), &others());
    refused(&app, "DELETE", &vacation_path, None, &others());
    let phone = json!({"phone": b.cy.phone}).to_string();
    let verify = format!("/agents/{}/phone-verification", b.cy.id);
    refused(&app, "POST", &verify, Some(&phone), &others());
    let code = json!({"phone": b.cy.phone, "code": "123456"}).to_string();
    refused(
        &app,
        "POST",
        &format!("{verify}/confirm"),
        Some(&code),
        &others(),
    );
    let (status, answer) = app.call(
        "PUT",
        &vacation_path,
        Some(&app.token_of(&b.cy)),
        Some(&vacation),
    );
    assert_eq!(status, 200, "{answer}");
}

/// `POST /referrals`: advisors; `POST /warm-transfers/{id}/complete`: advisors.
#[test]
fn api_access_new_referrals_and_completions_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = b.team.clone().into();
    let body = body.to_string();
    let others = || {
        vec![
            ("an agent", app.token_of(&b.cy)),
            ("closings", app.closings()),
            ("an admin", app.admin()),
        ]
    };
    refused(&app, "POST", "/referrals", Some(&body), &others());
    let complete = format!("/warm-transfers/{}/complete", b.id);
    refused(&app, "POST", &complete, None, &others());
    // Not a warm transfer: the advisor is let in and told so.
    let answer = admitted(&app, "POST", &complete, None, &app.advisor());
    assert_eq!(error_code(&answer), "not_a_warm_transfer", "{answer}");
}

/// `GET /closings/referrals`: closings.
#[test]
fn api_access_closings_desk_by_role() {
    let app = spawn_app();
    let b = bay(&app);
    let (status, answer) = app.call("GET", "/closings/referrals", Some(&app.closings()), None);
    assert_eq!(status, 200, "{answer}");
    refused(
        &app,
        "GET",
        "/closings/referrals",
        None,
        &[
            ("an agent", app.token_of(&b.cy)),
            ("the advisor", app.advisor()),
            ("an admin", app.admin()),
        ],
    );
}

/// The pay-per-lead routes: agents sign up; a subscription is its agent's alone.
#[test]
fn api_access_ppl_subscriptions_by_role() {
    let app = spawn_app();
    let [cy, dee] = app.agents(["cy", "dee"]);
    let sign_up =
        json!({"zips": [app.zip], "clientTypes": ["seller"], "referralsPerCycle": 2}).to_string();
    refused(
        &app,
        "POST",
        "/ppl/subscriptions",
        Some(&sign_up),
        &[
            ("the advisor", app.advisor()),
            ("closings", app.closings()),
            ("an admin", app.admin()),
        ],
    );
    let (status, sub) = app.call(
        "POST",
        "/ppl/subscriptions",
        Some(&app.token_of(&cy)),
        Some(&sign_up),
    );
    assert_eq!(status, 201, "{sub}");
    let path = format!("/ppl/subscriptions/{}", sub["id"].as_str().unwrap());
    let others = || {
        vec![
            ("another agent", app.token_of(&dee)),
            ("the advisor", app.advisor()),
            ("closings", app.closings()),
            ("an admin", app.admin()),
        ]
    };
    refused(&app, "GET", &path, None, &others());
    refused(&app, "PUT", &path, Some(&sign_up), &others());
    let ret = json!({"referralId": "r-none", "reason": "duplicate"}).to_string();
    refused(
        &app,
        "POST",
        &format!("{path}/returns"),
        Some(&ret),
        &others(),
    );
    refused(&app, "DELETE", &path, None, &others());
    let (status, view) = app.call("GET", &path, Some(&app.token_of(&cy)), None);
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view["status"], "active",
        "no refused call cancelled it: {view}"
    );
}
