//! What an operator of the deployed stack reads: the functions' logs, which carry ids and
//! outcomes, never a client's contacts.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Agent, TestApp, sms_to, spawn_app_alone, to};

/// A routing referral offered to cy by text and claimed by cy's text (`#code` and a message for
/// the client): returns cy.
fn claimed_by_text(app: &TestApp) -> Agent {
    let [ana, cy] = app.agents(["ana", "cy"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.into();
    app.create_referral(&body);
    let outbox = app.outbox_until("the offer to cy", |o| {
        sms_to(o, &cy.phone).iter().any(|b| b.contains("Reply #"))
    });
    let offer = sms_to(&outbox, &cy.phone)
        .into_iter()
        .find(|b| b.contains("Reply #"))
        .expect("waited for it");
    let code: String = offer
        .split("Reply #")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    app.text_answered(&cy.phone, &format!("#{code} Hi Casey, Cy here"));
    cy
}

/// The client's phone as E.164 and as its ten national digits, their address whole and its
/// local part: what no log line may carry.
fn client_contacts(app: &TestApp) -> [String; 4] {
    let client = &app.client;
    [
        client.phone.clone(),
        client.phone.trim_start_matches("+1").to_owned(),
        client.email.clone(),
        client
            .email
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned(),
    ]
}

/// A referral from intake to a claim by text, the agent's text relayed to the client, the
/// client's answer relayed to the agent and the client's details emailed to the agent: not one
/// line any function logged on the way carries the client's phone number or email address, in
/// any form.
#[test]
fn the_functions_logs_of_a_referral_from_intake_to_relayed_texts_carry_no_client_contacts() {
    let app = spawn_app_alone();
    let cy = claimed_by_text(&app);
    app.text(&app.client.phone, "Call me after 5");
    let client = &app.client;
    app.outbox_until(
        "the client's text relayed and the details emailed to cy",
        |o| {
            sms_to(o, &cy.phone)
                .iter()
                .any(|b| b.contains("Call me after 5"))
                && o.iter().any(|e| {
                    e["channel"] == "email"
                        && to(e) == cy.email
                        && e["body"].as_str().unwrap_or("").contains(&client.phone)
                })
                && sms_to(o, &client.phone)
                    .iter()
                    .any(|b| b.contains("Cy here"))
        },
    );

    let lines = app.function_log_lines();
    assert!(
        lines.iter().any(|l| l.contains("\"claimed\"")),
        "the functions logged the claim: {} lines",
        lines.len()
    );
    for contact in client_contacts(&app) {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(&contact)).collect();
        assert!(leaks.is_empty(), "{contact} is in the logs:\n{leaks:#?}");
    }
}

/// The functions' lines in CloudWatch's embedded metric format (`{"_aws": ...}` after the
/// runner's `[function]` label), parsed.
fn metric_lines(app: &TestApp) -> Vec<Value> {
    app.function_log_lines()
        .iter()
        .filter_map(|l| l.split_once("] ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

/// The metric line counting `metric` for `channel`, if one was written.
fn metric<'a>(lines: &'a [Value], metric: &str, channel: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l.get(metric).is_some() && l["Channel"] == channel)
}

/// A referral offered by text and claimed by text: the functions write metric lines in
/// CloudWatch's embedded metric format for the texts sent (by channel) and for the claim won
/// (by channel, with its speed to lead in milliseconds, by program and channel), in the stack's
/// namespace, each with its invocation's request id, and not one of them carries the client's
/// phone or email.
#[test]
fn the_functions_write_metric_lines_for_the_alerts_sent_and_the_claim_won_with_its_speed_to_lead() {
    let app = spawn_app_alone();
    let cy = claimed_by_text(&app);
    app.outbox_until("the client's details emailed to cy", |o| {
        o.iter()
            .any(|e| e["channel"] == "email" && to(e) == cy.email)
    });
    // Each invocation writes its metrics as it ends: the claim's follow-up has ended by now,
    // and its lines reach the runner's log within moments.
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let lines = metric_lines(&app);
        let complete = metric(&lines, "AlertsSent", "sms").is_some()
            && metric(&lines, "ClaimsWon", "sms").is_some()
            && metric(&lines, "SpeedToLead", "sms").is_some();
        if complete || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    let sent = metric(&lines, "AlertsSent", "sms").expect("the texts sent are counted, by channel");
    let meta = &sent["_aws"]["CloudWatchMetrics"][0];
    assert!(
        meta["Namespace"]
            .as_str()
            .is_some_and(|n| n.starts_with("ReferralRouting/")),
        "{sent}"
    );
    assert_eq!(
        meta["Dimensions"],
        serde_json::json!([["Channel"]]),
        "{sent}"
    );
    let named = meta["Metrics"].as_array().into_iter().flatten();
    assert!(
        named
            .into_iter()
            .any(|m| m == &serde_json::json!({"Name": "AlertsSent", "Unit": "Count"})),
        "{sent}"
    );
    assert!(
        sent["AlertsSent"].as_u64().is_some_and(|n| n >= 1),
        "{sent}"
    );

    let won = metric(&lines, "ClaimsWon", "sms").expect("the claim won is counted, by channel");
    assert_eq!(won["ClaimsWon"], 1, "{won}");
    let speed = metric(&lines, "SpeedToLead", "sms").expect("the claim's speed to lead");
    assert_eq!(speed["Program"], "routing", "{speed}");
    assert_eq!(
        speed["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        serde_json::json!([{"Name": "SpeedToLead", "Unit": "Milliseconds"}])
    );
    let ms = speed["SpeedToLead"][0].as_f64();
    assert!(ms.is_some_and(|ms| ms >= 0.0), "{speed}");

    for line in &lines {
        assert!(
            line["RequestId"].as_str().is_some_and(|id| !id.is_empty()),
            "a metric line without its request id: {line}"
        );
        let text = line.to_string();
        for contact in client_contacts(&app) {
            assert!(!text.contains(&contact), "{contact} is in {text}");
        }
    }
}
