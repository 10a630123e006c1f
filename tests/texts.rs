//! Texts and identity (TX): who a phone number identifies, texts both ways, opt-outs, and the
//! bounds on guessing.

use serde_json::{Value, json};

use crate::harness::{Agent, TestApp, error_code, sms_to, spawn_app};

/// The service's own number (the template's `SmsOriginationNumber`, locally).
const SERVICE_NUMBER: &str = "+15005550009";

/// Team `bay` led by ana (the fallback agent), with cy taking sellers; a seller referral offered
/// to both. Returns ana, cy, the referral's id and cy's claim code.
fn offered(app: &TestApp) -> (Agent, Agent, String, String) {
    let [ana, cy] = app.agents(["ana", "cy"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.into();
    let id = app.create_referral(&body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outbox = app.outbox_until("the offer to cy", |o| {
        sms_to(o, &cy.phone).iter().any(|b| b.contains("Reply #"))
    });
    let offer = sms_to(&outbox, &cy.phone)
        .into_iter()
        .find(|b| b.contains("Reply #"))
        .unwrap()
        .to_owned();
    let digits: String = offer
        .split("Reply #")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (ana, cy, id, format!("#{digits}"))
}

fn assigned(app: &TestApp, id: &str, agent: &Agent) -> Value {
    let (status, view) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.token_of(agent)),
        None,
    );
    assert_eq!(status, 200, "{view}");
    view["assignedAgentId"].clone()
}

/// TX-1: offers go out from the service's own number, so a reply comes back to the service.
#[test]
fn tx_1_texts_go_out_from_the_services_number() {
    let app = spawn_app();
    let (_, cy, _, _) = offered(&app);
    let outbox = app.outbox();
    let offer = outbox
        .iter()
        .find(|e| e["channel"] == "sms" && e["to"] == cy.phone.as_str())
        .unwrap();
    assert_eq!(offer["from"], SERVICE_NUMBER, "{offer}");
}

/// TX-1 (LR-9, PPL-3): cy's reply to the offer, delivered as AWS delivers a text to the
/// service's number (an SNS notification to the claim function), claims the referral; the
/// answer comes back from the service's number, and her message reaches the client.
#[test]
fn tx_1_a_claim_by_text_reply_delivered_as_aws_delivers_it() {
    let app = spawn_app();
    let (_, cy, id, code) = offered(&app);
    let answer = app.text_answered(&cy.phone, &format!("{code} Hi Casey, Cy here."));
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .starts_with("The referral is yours"),
        "{answer}"
    );
    assert_eq!(answer["from"], SERVICE_NUMBER, "{answer}");
    assert_eq!(assigned(&app, &id, &cy), cy.id.as_str());
    let outbox = app.outbox_until("the text relayed to the client", |o| {
        !sms_to(o, &app.client.phone).is_empty()
    });
    assert_eq!(
        sms_to(&outbox, &app.client.phone),
        ["Cy Agent, your agent: Hi Casey, Cy here."]
    );
}

/// TX-1: the client's reply to the relayed text reaches the agent who has the referral.
#[test]
fn tx_1_a_clients_reply_reaches_the_assigned_agent() {
    let app = spawn_app();
    let (_, cy, _, code) = offered(&app);
    app.text_answered(&cy.phone, &format!("{code} Hi Casey, Cy here."));
    app.outbox_until("the text relayed to the client", |o| {
        !sms_to(o, &app.client.phone).is_empty()
    });
    app.text(&app.client.phone, "Great, call me after 5");
    let outbox = app.outbox_until("the client's reply at cy's phone", |o| {
        sms_to(o, &cy.phone)
            .iter()
            .any(|b| b.contains("call me after 5"))
    });
    let reply = sms_to(&outbox, &cy.phone)
        .into_iter()
        .find(|b| b.contains("call me after 5"))
        .unwrap();
    assert_eq!(reply, "Casey Client, your client: Great, call me after 5");
}

/// TX-1, TX-3: a text from a number the service does not know, or that no agent proved, gets a
/// short answer and changes nothing: even with a live claim code, the offer stays open.
#[test]
fn tx_1_tx_3_a_text_from_an_unknown_or_unverified_number_gets_a_short_answer_and_changes_nothing() {
    let app = spawn_app();
    let (ana, _, id, code) = offered(&app);
    // Dee saved a profile with her number but never proved it (TX-3): she is nobody here.
    let dee = app.agent("dee");
    app.save_profile(&dee, &app.profile(&dee));
    let answer = app.text_answered(&dee.phone, &format!("{code} mine!"));
    let body = answer["body"].as_str().unwrap();
    assert!(
        body.contains("registered agents") && body.len() < 160,
        "{answer}"
    );
    assert!(assigned(&app, &id, &ana).is_null());
}

/// TX-3: a number another agent proved is refused to a second agent, however it is written:
/// saved in a profile, or offered for verification (409 `phone_taken`), and nothing is texted
/// to it for the second agent.
#[test]
fn tx_3_a_second_agent_is_refused_a_verified_number() {
    let app = spawn_app();
    let [ana] = app.agents(["ana"]);
    let mallory = app.agent("mallory");
    // The same number as ana's, written the way people write it.
    let digits = &ana.phone[2..];
    let written = format!("+1 ({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..]);
    let mut profile = app.profile(&mallory);
    profile["cellPhone"] = written.clone().into();
    let (status, body) = app.call(
        "PUT",
        &format!("/agents/{}", mallory.id),
        Some(&app.token_of(&mallory)),
        Some(&profile.to_string()),
    );
    assert_eq!((status, error_code(&body)), (409, "phone_taken"), "{body}");
    let texts_before = app.outbox().len();
    let (status, body) = app.call(
        "POST",
        &format!("/agents/{}/phone-verification", mallory.id),
        Some(&app.token_of(&mallory)),
        Some(&json!({"phone": written}).to_string()),
    );
    assert_eq!((status, error_code(&body)), (409, "phone_taken"), "{body}");
    assert_eq!(
        app.outbox().len(),
        texts_before,
        "no code texted for mallory"
    );
    // Mallory's profile was never saved.
    let (status, _) = app.call(
        "PUT",
        &format!("/agents/{}/vacation", mallory.id),
        Some(&app.token_of(&mallory)),
        Some(r#"{"start": "2027-01-01", "end": "2027-01-02"}"#),
    );
    assert_eq!(status, 404);
}

/// TX-3: a number saved in a profile but never proved identifies nobody: a call to the PIN line
/// from it is turned away politely and asked for nothing.
#[test]
fn tx_3_an_unverified_number_identifies_nobody_on_the_pin_line() {
    let app = spawn_app();
    let dee = app.agent("dee");
    app.save_profile(&dee, &app.profile(&dee));
    let sid = app.sid("CA", 1);
    let call = [("From", dee.phone.as_str()), ("CallSid", sid.as_str())];
    let (status, xml) = app.webhook("/twilio/voice/pin", &call, None);
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("a phone you verified"), "{xml}");
    assert!(!xml.contains("<Gather"), "{xml}");
}

/// TX-3: a number is written in international form, and one no country issues is refused.
#[test]
fn tx_3_a_number_no_country_issues_is_refused() {
    let app = spawn_app();
    let dee = app.agent("dee");
    let mut profile = app.profile(&dee);
    profile["cellPhone"] = "+10995550123".into();
    let (status, body) = app.call(
        "PUT",
        &format!("/agents/{}", dee.id),
        Some(&app.token_of(&dee)),
        Some(&profile.to_string()),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
}

/// TX-5: "call me to claim" places at most 2 calls per agent and referral; a third request is
/// answered 429 `rate_limited` and rings nobody.
#[test]
fn tx_5_a_third_claim_call_request_is_refused_and_rings_nobody() {
    let app = spawn_app();
    let (_, cy, id, _) = offered(&app);
    let ask = || {
        app.call(
            "POST",
            &format!("/referrals/{id}/claim"),
            Some(&app.token_of(&cy)),
            Some(r#"{"by": "call"}"#),
        )
    };
    for _ in 0..2 {
        let (status, body) = ask();
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = ask();
    assert_eq!((status, error_code(&body)), (429, "rate_limited"), "{body}");
    let calls = |o: &[Value]| {
        o.iter()
            .filter(|e| e["channel"] == "call" && e["to"] == cy.phone.as_str())
            .count()
    };
    app.outbox_until("the two claim calls", |o| calls(o) == 2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(calls(&app.outbox()), 2);
}
