//! What an operator of the deployed stack reads: the functions' logs, which carry ids and
//! outcomes, never a client's contacts.

use crate::harness::{sms_to, spawn_app_alone, to};

/// A referral from intake to a claim by text, the agent's text relayed to the client, the
/// client's answer relayed to the agent and the client's details emailed to the agent: not one
/// line any function logged on the way carries the client's phone number or email address, in
/// any form.
#[test]
fn the_functions_logs_of_a_referral_from_intake_to_relayed_texts_carry_no_client_contacts() {
    let app = spawn_app_alone();
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
    // The number as E.164 and as its ten national digits; the address whole and its local part.
    let national = client.phone.trim_start_matches("+1");
    let local_part = client.email.split('@').next().unwrap_or_default();
    for contact in [
        client.phone.as_str(),
        national,
        client.email.as_str(),
        local_part,
    ] {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(contact)).collect();
        assert!(leaks.is_empty(), "{contact} is in the logs:\n{leaks:#?}");
    }
}
