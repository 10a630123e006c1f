//! Lead routing and pay-per-lead delivery end to end, through the local gateway: the broadcast
//! by SMS, push and email (through the real queue, SNS and SESv2 on moto), and every way to
//! claim: the app, a text, a claim call, the PIN line; and 20 agents racing for one referral.

mod common;

use std::collections::BTreeSet;

use common::{Runner, email, error_code, phone, profile, token};
use serde_json::{Value, json};

const CLIENT_PHONE: &str = "+14155559876";
const CLIENT_EMAIL: &str = "casey@example.com";

fn new_referral(program: &str, client_type: &str, team: Option<&str>) -> String {
    let mut body = json!({
        "program": program,
        "client": {"name": "Casey Client", "phone": CLIENT_PHONE, "email": CLIENT_EMAIL},
        "clientType": client_type, "zip": "94110",
        "priceRange": {"min": "600000", "max": "800000"}, "timeline": "1-3 months",
        "briefing": format!("Casey prefers texts at {CLIENT_PHONE}."),
    });
    if let Some(team) = team {
        body["teamId"] = team.into();
    }
    body.to_string()
}

fn create(runner: &Runner, body: &str) -> Value {
    let advisor = token("advisor-1", "advisor");
    let (status, created) = runner.call("POST", "/referrals", Some(&advisor), Some(body));
    assert_eq!(status, 201, "{created}");
    created
}

fn to(entry: &Value) -> &str {
    entry["to"].as_str().unwrap_or("")
}

fn sms_to<'a>(outbox: &'a [Value], number: &str) -> Vec<&'a str> {
    outbox
        .iter()
        .filter(|e| e["channel"] == "sms" && to(e) == number)
        .filter_map(|e| e["body"].as_str())
        .collect()
}

/// The claim code in the latest offer texted to `number` for referral text containing `needle`.
fn claim_code(outbox: &[Value], number: &str) -> String {
    let offer = sms_to(outbox, number)
        .into_iter()
        .rev()
        .find(|b| b.contains("Reply #"))
        .unwrap_or_else(|| panic!("no offer with a claim code to {number}"));
    let rest = offer.split("Reply #").nth(1).unwrap();
    format!(
        "#{}",
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    )
}

/// The path and query of a webhook URL the service handed to the telephony provider.
fn local_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..]
}

fn calls_to(outbox: &[Value], number: &str) -> Vec<Value> {
    outbox
        .iter()
        .filter(|e| e["channel"] == "call" && to(e) == number)
        .cloned()
        .collect()
}

fn view(runner: &Runner, id: &str, who: &str) -> (u16, Value) {
    runner.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&token(who, "agent")),
        None,
    )
}

#[test]
fn routing_and_pay_per_lead_from_intake_to_every_kind_of_claim() {
    let runner = common::start("routing-e2e");
    let admin = token("admin-1", "admin");

    // Team bay-team: ana leads (the fallback agent), ben takes buyers only, cy sellers only.
    let team = r#"{"name": "Bay Team", "leadAgentId": "ana", "agentIds": ["ben", "cy"]}"#;
    let (status, body) = runner.call("PUT", "/teams/bay-team", Some(&admin), Some(team));
    assert_eq!(status, 200, "{body}");
    for (agent, n) in [("ana", 1), ("ben", 2), ("cy", 3)] {
        let name = format!("{}{} Agent", agent[..1].to_uppercase(), &agent[1..]);
        let (status, body) = runner.call(
            "PUT",
            &format!("/agents/{agent}"),
            Some(&token(agent, "agent")),
            Some(&profile(&name, n).to_string()),
        );
        assert_eq!(status, 200, "{agent}: {body}");
    }
    let routing = r#"{"enabled": true, "members": [
        {"agentId": "ben", "receives": "buyer"}, {"agentId": "cy", "receives": "seller"}]}"#;
    let (status, body) = runner.call(
        "PUT",
        "/teams/bay-team/routing",
        Some(&token("ana", "agent")),
        Some(routing),
    );
    assert_eq!(status, 200, "{body}");
    let (ana, ben, cy) = (phone(1), phone(2), phone(3));

    // LR-1, LR-2: a seller goes to the fallback agent and the seller member, on every channel;
    // the buyer-only member never hears of it.
    let seller = create(
        &runner,
        &new_referral("routing", "seller", Some("bay-team")),
    );
    let seller_id = seller["id"].as_str().unwrap().to_owned();
    assert_eq!(seller["offeredTo"], json!(["ana", "cy"]), "{seller}");
    let outbox = runner.outbox_until("the seller offer to ana and cy", |o| {
        [&ana, &cy].iter().all(|p| !sms_to(o, p).is_empty())
            && o.iter().filter(|e| e["channel"] == "email").count() >= 2
            && o.iter().filter(|e| e["channel"] == "push").count() >= 2
    });
    assert!(sms_to(&outbox, &ben).is_empty(), "ben takes buyers only");
    assert!(
        outbox
            .iter()
            .all(|e| to(e) != email("Ben Agent") && !to(e).contains("device-ben")),
        "{outbox:#?}"
    );

    // LR-9 text claiming: cy replies with her code; the rest of her text reaches the client.
    let code = claim_code(&outbox, &cy);
    let text = format!("{code} Hi Casey, this is Cy. Free for a call at 5?");
    let sms = [
        ("From", cy.as_str()),
        ("To", "+15005550006"),
        ("Body", text.as_str()),
        ("MessageSid", "SM00000000000000000000000000000001"),
    ];
    let (status, xml) = runner.webhook("/twilio/sms", &sms, None);
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<Message>The referral is yours"), "{xml}");
    let (status, mine) = view(&runner, &seller_id, "cy");
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["assignedAgentId"], "cy", "{mine}");
    assert_eq!(mine["client"]["phone"], CLIENT_PHONE, "{mine}");
    // GEN-5: the provider repeats the webhook: no second claim, no second relay (counted
    // below), and the answer it missed.
    let (status, xml) = runner.webhook("/twilio/sms", &sms, None);
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<Message>Sent to your client."), "{xml}");
    // The loser's text claims nothing and is told so.
    let ana_code = claim_code(&outbox, &ana);
    let late = format!("{ana_code} Hello Casey!");
    let (status, xml) = runner.webhook(
        "/twilio/sms",
        &[
            ("From", ana.as_str()),
            ("Body", late.as_str()),
            ("MessageSid", "SM00000000000000000000000000000002"),
        ],
        None,
    );
    assert_eq!(status, 200);
    assert!(xml.contains("another agent claimed"), "{xml}");
    let (status, offered) = view(&runner, &seller_id, "ana");
    assert_eq!(status, 200, "{offered}");
    assert!(offered.get("client").is_none(), "GEN-3: {offered}");
    // PPL-3: the winner's email with the client's details, sent once the claim is processed.
    let outbox = runner.outbox_until("the client's details emailed to cy", |o| {
        o.iter().any(|e| {
            e["channel"] == "email"
                && to(e) == email("Cy Agent")
                && e["body"].as_str().unwrap_or("").contains(CLIENT_PHONE)
        })
    });
    let relayed = sms_to(&outbox, CLIENT_PHONE);
    assert_eq!(
        relayed,
        ["Cy Agent, your agent: Hi Casey, this is Cy. Free for a call at 5?"]
    );

    // GEN-6: a forged webhook is refused and claims nothing.
    let buyer = create(&runner, &new_referral("routing", "buyer", Some("bay-team")));
    let buyer_id = buyer["id"].as_str().unwrap().to_owned();
    assert_eq!(buyer["offeredTo"], json!(["ana", "ben"]), "{buyer}");
    let outbox = runner.outbox_until("the buyer offer to ben", |o| {
        sms_to(o, &ben).iter().any(|b| b.contains("Reply #"))
    });
    let ben_code = claim_code(&outbox, &ben);
    let forged_text = format!("{ben_code} hi");
    let (status, body) = runner.webhook(
        "/twilio/sms",
        &[
            ("From", ben.as_str()),
            ("Body", forged_text.as_str()),
            ("MessageSid", "SM00000000000000000000000000000003"),
        ],
        Some("bm90IGEgc2lnbmF0dXJl"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("invalid_signature"), "{body}");
    let (_, still_open) = view(&runner, &buyer_id, "ben");
    assert!(still_open["assignedAgentId"].is_null(), "{still_open}");

    // LR-9 digital call claiming: ben asks for a call, hears the lead, presses 1.
    let (status, calling) = runner.call(
        "POST",
        &format!("/referrals/{buyer_id}/claim"),
        Some(&token("ben", "agent")),
        Some(r#"{"by": "call"}"#),
    );
    assert_eq!(status, 202, "{calling}");
    let outbox = runner.outbox_until("the claim call to ben", |o| !calls_to(o, &ben).is_empty());
    let call = calls_to(&outbox, &ben).pop().unwrap();
    let url = local_path(call["url"].as_str().unwrap()).to_owned();
    assert!(call["statusCallback"].as_str().is_some(), "{call}");
    let answered = [("CallSid", "CA00000000000000000000000000000001")];
    let (status, xml) = runner.webhook(&url, &answered, None);
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains(r#"<Gather numDigits="1""#) && xml.contains("Press 1"),
        "{xml}"
    );
    let pressed = [
        ("CallSid", "CA00000000000000000000000000000001"),
        ("Digits", "1"),
    ];
    let (status, xml) = runner.webhook(&url, &pressed, None);
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("The referral is yours"), "{xml}");
    let (_, bens) = view(&runner, &buyer_id, "ben");
    assert_eq!(bens["assignedAgentId"], "ben", "{bens}");

    // LR-10: two failed claim calls, then the PIN line.
    let third = create(
        &runner,
        &new_referral("routing", "seller", Some("bay-team")),
    );
    let third_id = third["id"].as_str().unwrap().to_owned();
    let cy_token = token("cy", "agent");
    let claim_path = format!("/referrals/{third_id}/claim");
    let (status, body) = runner.call(
        "POST",
        &claim_path,
        Some(&cy_token),
        Some(r#"{"by": "call"}"#),
    );
    assert_eq!(status, 202, "{body}");
    let outbox = runner.outbox_until("the first claim call to cy", |o| {
        calls_to(o, &cy).len() == 1
    });
    let first = calls_to(&outbox, &cy).pop().unwrap();
    let status_path = local_path(first["statusCallback"].as_str().unwrap()).to_owned();
    let no_answer = [
        ("CallSid", "CA00000000000000000000000000000011"),
        ("CallStatus", "no-answer"),
    ];
    let (status, _) = runner.webhook(&status_path, &no_answer, None);
    assert_eq!(status, 200);
    runner.outbox_until("the second claim call to cy", |o| {
        calls_to(o, &cy).len() == 2
    });
    let busy = [
        ("CallSid", "CA00000000000000000000000000000012"),
        ("CallStatus", "busy"),
    ];
    let (status, _) = runner.webhook(&status_path, &busy, None);
    assert_eq!(status, 200);
    let outbox = runner.outbox_until("the PIN texted to cy", |o| {
        sms_to(o, &cy).iter().any(|b| b.contains("PIN: "))
    });
    assert_eq!(calls_to(&outbox, &cy).len(), 2, "no third call");
    let pin_sms = sms_to(&outbox, &cy)
        .into_iter()
        .find(|b| b.contains("PIN: "))
        .unwrap();
    assert!(pin_sms.contains("+15005550007"), "the PIN line: {pin_sms}");
    let pin: String = pin_sms.split("PIN: ").nth(1).unwrap()[..6].to_owned();
    let pin_call = [
        ("From", cy.as_str()),
        ("CallSid", "CA00000000000000000000000000000013"),
    ];
    let (status, xml) = runner.webhook("/twilio/voice/pin", &pin_call, None);
    assert_eq!(status, 200);
    assert!(xml.contains(r#"<Gather numDigits="6""#), "{xml}");
    let wrong = if pin == "000000" { "111111" } else { "000000" };
    let (_, xml) = runner.webhook(
        "/twilio/voice/pin",
        &[pin_call[0], pin_call[1], ("Digits", wrong)],
        None,
    );
    assert!(xml.contains("2 tries left"), "{xml}");
    let (_, xml) = runner.webhook(
        "/twilio/voice/pin",
        &[pin_call[0], pin_call[1], ("Digits", pin.as_str())],
        None,
    );
    assert!(xml.contains("The referral is yours"), "{xml}");
    let (_, cys) = view(&runner, &third_id, "cy");
    assert_eq!(cys["assignedAgentId"], "cy", "{cys}");

    // WT-4 / LR-1: 20 pay-per-lead subscribers race for one referral; exactly one wins.
    let racers: Vec<String> = (1..=20).map(|i| format!("p{i:02}")).collect();
    let mut subscriptions = Vec::new();
    for (i, racer) in racers.iter().enumerate() {
        let t = token(racer, "agent");
        let mut p = profile(&format!("Racer {racer}"), 10 + i as u32);
        p["clientTypes"] = json!(["seller"]);
        let (status, body) = runner.call(
            "PUT",
            &format!("/agents/{racer}"),
            Some(&t),
            Some(&p.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        let sign_up = r#"{"zips": ["94110"], "clientTypes": ["seller"], "referralsPerCycle": 5}"#;
        let (status, body) = runner.call("POST", "/ppl/subscriptions", Some(&t), Some(sign_up));
        assert_eq!(status, 201, "{body}");
        subscriptions.push(format!(
            "/ppl/subscriptions/{}",
            body["id"].as_str().unwrap()
        ));
    }
    let ppl = create(&runner, &new_referral("ppl", "seller", None));
    let ppl_id = ppl["id"].as_str().unwrap().to_owned();
    let offered: BTreeSet<String> = ppl["offeredTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(offered, racers.iter().cloned().collect(), "{ppl}");
    // PPL-9: each subscriber's cycle counts the delivery.
    for (racer, path) in racers.iter().zip(&subscriptions) {
        let (status, sub) = runner.call("GET", path, Some(&token(racer, "agent")), None);
        assert_eq!(
            (status, &sub["deliveredThisCycle"]),
            (200, &json!(1)),
            "{sub}"
        );
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(racers.len()));
    let results: Vec<(String, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = racers
            .iter()
            .map(|racer| {
                let barrier = barrier.clone();
                let (runner, path) = (&runner, format!("/referrals/{ppl_id}/claim"));
                scope.spawn(move || {
                    let t = token(racer, "agent");
                    barrier.wait();
                    let (status, body) = runner.call("POST", &path, Some(&t), None);
                    (racer.clone(), status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .map(|(r, _, _)| r)
        .collect();
    assert_eq!(winners.len(), 1, "{results:#?}");
    for (racer, status, body) in &results {
        if racer != winners[0] {
            assert_eq!(
                (*status, error_code(body)),
                (409, "taken"),
                "{racer}: {body}"
            );
        }
    }
    let (_, won) = view(&runner, &ppl_id, winners[0]);
    assert_eq!(won["assignedAgentId"], winners[0].as_str(), "{won}");
    // PPL-5: a pay-per-lead referral cannot be declined.
    let loser = racers.iter().find(|r| *r != winners[0]).unwrap();
    let (status, body) = runner.call(
        "POST",
        &format!("/referrals/{ppl_id}/decline"),
        Some(&token(loser, "agent")),
        None,
    );
    assert_eq!(
        (status, error_code(&body)),
        (409, "not_declinable"),
        "{body}"
    );

    // GEN-3: of everything sent, only the winners' emails carry the client's phone or email;
    // the one message addressed to the client is the relayed text.
    let winner_emails: BTreeSet<String> = [
        email("Cy Agent"),
        email("Ben Agent"),
        email(&format!("Racer {}", winners[0])),
    ]
    .into();
    let outbox = runner.outbox_until("the winners' emails", |o| {
        winner_emails.iter().all(|w| {
            o.iter().any(|e| {
                to(e) == w.as_str() && e["body"].as_str().unwrap_or("").contains(CLIENT_EMAIL)
            })
        })
    });
    for entry in &outbox {
        let content = format!(
            "{} {} {}",
            entry["subject"].as_str().unwrap_or(""),
            entry["body"].as_str().unwrap_or(""),
            entry["url"].as_str().unwrap_or("")
        );
        let leaks = content.contains(CLIENT_PHONE) || content.contains(CLIENT_EMAIL);
        if leaks {
            assert!(
                entry["channel"] == "email" && winner_emails.contains(to(entry)),
                "GEN-3: the client's contact details in {entry:#}"
            );
        }
        if to(entry) == CLIENT_PHONE {
            assert!(
                entry["channel"] == "sms"
                    && entry["body"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("Cy Agent, your agent:"),
                "{entry:#}"
            );
        }
    }
}
