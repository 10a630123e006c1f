//! Texts and identity (TX): who a phone number identifies, texts both ways, opt-outs, and the
//! bounds on guessing.

use serde_json::{Value, json};

use crate::harness::{Agent, TestApp, error_code, sms_to, spawn_app, spawn_app_alone_with};

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

/// The history of referral `id` as the advisor who created it sees it.
fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, view) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.advisor()),
        None,
    );
    assert_eq!(status, 200, "{view}");
    view["history"].as_array().cloned().unwrap_or_default()
}

/// Waits until the history of referral `id` holds an entry `pred` accepts.
fn history_until(app: &TestApp, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(entry) = history(app, id).into_iter().find(|e| pred(e)) {
            return entry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 120 s for {what} in the history of {id}: {:?}",
            history(app, id)
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// A new seller referral for the team (a client of its own, so it is nobody's duplicate).
fn routed_referral(app: &TestApp, team: &str, client: u32) -> String {
    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.into();
    body["client"]["phone"] = format!("+1628{}", 3_000_000 + client).into();
    body["client"]["email"] = format!("client{client}-{}@example.com", app.tag).into();
    app.create_referral(&body)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// TX-2: cy texts STOP; the next offer reaches her by push and email only, and its history says
/// the text was not sent because she opted out (an outcome, not a retry). She texts START, and
/// the offer after that comes by text again.
#[test]
fn tx_2_stop_then_an_offer_by_push_and_email_only_then_start_brings_texts_back() {
    let app = spawn_app();
    let [ana, cy] = app.agents(["ana", "cy"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);
    app.text(&cy.phone, "STOP");

    let first = routed_referral(&app, &team, 1);
    let not_sent = history_until(&app, &first, "cy's text not sent", |e| {
        e["type"] == "text_not_sent" && e["agentId"] == cy.id.as_str()
    });
    assert_eq!(not_sent["reason"], "opted_out", "{not_sent}");
    let outbox = app.outbox_until("the offer to cy by push and email", |o| {
        let to_cy = |channel: &str, address: &str| {
            o.iter()
                .any(|e| e["channel"] == channel && e["to"] == address)
        };
        to_cy("push", &cy.device) && to_cy("email", &cy.email)
    });
    let offers_to_cy = |o: &[Value]| {
        sms_to(o, &cy.phone)
            .iter()
            .filter(|b| b.contains("Reply #"))
            .count()
    };
    assert_eq!(offers_to_cy(&outbox), 0, "no offer texted to cy");
    // Ana did not opt out: her offer came by text.
    app.outbox_until("ana's offer by text", |o| !sms_to(o, &ana.phone).is_empty());
    let notified_sms = history(&app, &first).into_iter().any(|e| {
        e["type"] == "notified" && e["agentId"] == cy.id.as_str() && e["channel"] == "sms"
    });
    assert!(
        !notified_sms,
        "the history does not claim a text went to cy"
    );

    app.text(&cy.phone, "START");
    let second = routed_referral(&app, &team, 2);
    app.outbox_until("the next offer to cy by text", |o| offers_to_cy(o) == 1);
    assert!(
        history(&app, &second)
            .iter()
            .all(|e| e["type"] != "text_not_sent"),
        "nothing withheld after START"
    );
}

/// TX-5: three wrong claim codes texted from cy's phone lock its code claiming: the fourth try,
/// even with the right code, claims nothing and says why.
#[test]
fn tx_5_three_wrong_codes_by_text_lock_the_phone_even_for_the_right_code() {
    let app = spawn_app();
    let (ana, cy, id, code) = offered(&app);
    let wrong = if code == "#0000" { "#1111" } else { "#0000" };
    for _ in 0..2 {
        let answer = app.text_answered(&cy.phone, &format!("{wrong} hi"));
        assert!(
            answer["body"].as_str().unwrap().contains("does not match"),
            "{answer}"
        );
    }
    let answer = app.text_answered(&cy.phone, &format!("{wrong} hi"));
    assert!(
        answer["body"].as_str().unwrap().contains("locked"),
        "{answer}"
    );
    let answer = app.text_answered(&cy.phone, &format!("{code} Hi Casey"));
    assert!(
        answer["body"].as_str().unwrap().contains("locked"),
        "{answer}"
    );
    assert!(assigned(&app, &id, &ana).is_null(), "nothing claimed");
    assert!(
        sms_to(&app.outbox(), &app.client.phone).is_empty(),
        "nothing relayed to the client"
    );
}

/// TX-5: a caller (the advisor's token) making more requests in a minute than the limit is
/// answered 429 `rate_limited` until the minute ends (the count is one atomic counter, whichever
/// instance serves the request), and the refused request writes nothing: the referral it asked
/// for is never created or offered. The next minute, the advisor is served again. The limit is
/// the template's `RateLimitPerMinute` (300 deployed), set low here so the test is quick.
#[test]
fn tx_5_a_caller_past_the_limit_in_a_minute_gets_429_and_writes_nothing() {
    const LIMIT: usize = 20;
    let app = spawn_app_alone_with(&[("RATE_LIMIT_PER_MINUTE", LIMIT.to_string())]);
    let [ana, cy] = app.agents(["ana", "cy"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);
    let first = routed_referral(&app, &team, 1);
    let offers = |o: &[Value]| {
        sms_to(o, &cy.phone)
            .iter()
            .filter(|b| b.contains("Reply #"))
            .count()
    };
    app.outbox_until("the first offer to cy", |o| offers(o) == 1);
    // From the start of a minute of the service's clock, so the requests below share one.
    let second = app.now().as_second().rem_euclid(60);
    app.advance(&format!("{}s", 60 - second));

    let advisor = app.advisor();
    let path = format!("/referrals/{first}");
    // One by one, so a busy machine's slow starts of new instances cannot answer for the limit.
    let answers: Vec<(u16, Value)> = (0..LIMIT + 5)
        .map(|_| app.call("GET", &path, Some(&advisor), None))
        .collect();
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    let limited = answers
        .iter()
        .filter(|(status, body)| *status == 429 && error_code(body) == "rate_limited")
        .count();
    assert_eq!((served, limited), (LIMIT, 5), "{answers:?}");

    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.clone().into();
    body["client"]["phone"] = "+16283000002".into();
    let (status, answer) = app.call(
        "POST",
        "/referrals",
        Some(&advisor),
        Some(&body.to_string()),
    );
    assert_eq!(
        (status, error_code(&answer)),
        (429, "rate_limited"),
        "{answer}"
    );

    app.advance("60s");
    routed_referral(&app, &team, 3);
    app.outbox_until("the third referral's offer to cy", |o| offers(o) >= 2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        offers(&app.outbox()),
        2,
        "the refused referral was never offered"
    );
}
