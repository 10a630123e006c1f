//! Lead routing and pay-per-lead delivery through the local gateway: the broadcast by SMS, push
//! and email (through the real queue, SNS and SESv2 on moto), and every way to claim: the app, a
//! text, a claim call, the PIN line; and 20 agents racing for one referral. Caps, the advisors'
//! queue, the contact deadline and duplicates are in `recovery`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::harness::{Agent, TestApp, error_code, sms_to, spawn_app, spawn_app_alone, to};

mod recovery;

/// Team `bay`: `ana` leads it (the fallback agent), `ben` takes buyers only, `cy` sellers only.
struct Bay {
    team: String,
    ana: Agent,
    ben: Agent,
    cy: Agent,
}

fn bay_team(app: &TestApp) -> Bay {
    let [ana, ben, cy] = app.agents(["ana", "ben", "cy"]);
    let team = app.create_team("bay", &ana, &[&ben, &cy]);
    app.route(&team, &ana, &[(&ben, "buyer"), (&cy, "seller")]);
    Bay { team, ana, ben, cy }
}

impl Bay {
    /// A new referral for the team, offered (as its answer says) to the fallback agent and the
    /// member taking `client_type`; returns its id.
    fn referral(&self, app: &TestApp, client_type: &str) -> String {
        let mut body = app.referral("routing", client_type);
        body["teamId"] = self.team.clone().into();
        body["briefing"] = format!("Casey prefers texts at {}.", app.client.phone).into();
        let created = app.create_referral(&body);
        let member = if client_type == "seller" {
            &self.cy
        } else {
            &self.ben
        };
        assert_eq!(
            created["offeredTo"],
            json!([self.ana.id, member.id]),
            "{created}"
        );
        created["id"].as_str().unwrap().to_owned()
    }
}

/// The claim code in the `nth` (from 1) offer texted to `agent`, once it has arrived.
fn claim_code(app: &TestApp, agent: &Agent, nth: usize) -> String {
    let outbox = app.outbox_until(&format!("offer {nth} to {}", agent.id), |o| {
        offers(o, agent).len() >= nth
    });
    let offer = offers(&outbox, agent)[nth - 1];
    let rest = offer.split("Reply #").nth(1).unwrap();
    format!(
        "#{}",
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    )
}

fn offers<'a>(outbox: &'a [Value], agent: &Agent) -> Vec<&'a str> {
    sms_to(outbox, &agent.phone)
        .into_iter()
        .filter(|b| b.contains("Reply #"))
        .collect()
}

/// The path and query of a webhook URL the service handed to the telephony provider.
fn local_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..]
}

fn calls_to(outbox: &[Value], agent: &Agent) -> Vec<Value> {
    outbox
        .iter()
        .filter(|e| e["channel"] == "call" && to(e) == agent.phone)
        .cloned()
        .collect()
}

fn view(app: &TestApp, id: &str, agent: &Agent) -> (u16, Value) {
    app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.token_of(agent)),
        None,
    )
}

/// The text cy sends to claim with her code (what follows the code is for the client); the
/// answer texted back to her.
fn cy_claims_by_text(app: &TestApp, bay: &Bay, code: &str) -> String {
    let text = format!("{code} Hi Casey, this is Cy. Free for a call at 5?");
    let answer = app.text_answered(&bay.cy.phone, &text);
    answer["body"].as_str().unwrap().to_owned()
}

/// What the client receives of cy's text.
const RELAYED: &str = "Cy Agent, your agent: Hi Casey, this is Cy. Free for a call at 5?";

/// The relayed texts the client has received, once there is one.
fn relayed(app: &TestApp) -> Vec<String> {
    let outbox = app.outbox_until("the text relayed to the client", |o| {
        !sms_to(o, &app.client.phone).is_empty()
    });
    sms_to(&outbox, &app.client.phone)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The email with the client's details to `agent`, sent once the claim is processed.
fn details_emailed(app: &TestApp, agent: &Agent) -> Vec<Value> {
    app.outbox_until(
        &format!("the client's details emailed to {}", agent.id),
        |o| {
            o.iter().any(|e| {
                e["channel"] == "email"
                    && to(e) == agent.email
                    && e["body"].as_str().unwrap_or("").contains(&app.client.phone)
            })
        },
    )
}

/// Ben asks for a claim call on referral `id`, hears the lead and presses 1.
fn ben_claims_by_call(app: &TestApp, bay: &Bay, id: &str) {
    let (status, calling) = app.call(
        "POST",
        &format!("/referrals/{id}/claim"),
        Some(&app.token_of(&bay.ben)),
        Some(r#"{"by": "call"}"#),
    );
    assert_eq!(status, 202, "{calling}");
    let outbox = app.outbox_until("the claim call to ben", |o| {
        !calls_to(o, &bay.ben).is_empty()
    });
    let call = calls_to(&outbox, &bay.ben).pop().unwrap();
    let url = local_path(call["url"].as_str().unwrap()).to_owned();
    assert!(call["statusCallback"].as_str().is_some(), "{call}");
    let sid = app.sid("CA", 1);
    let answered = [("CallSid", sid.as_str())];
    let (status, xml) = app.webhook(&url, &answered, None);
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains(r#"<Gather numDigits="1""#) && xml.contains("Press 1"),
        "{xml}"
    );
    let pressed = [("CallSid", sid.as_str()), ("Digits", "1")];
    let (status, xml) = app.webhook(&url, &pressed, None);
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("The referral is yours"), "{xml}");
}

/// Cy asks for a claim call on referral `id`; it fails (no answer) and is placed again only
/// when its retry's timer falls due on the local clock (WT-12); the retry fails too (busy); she
/// is texted the PIN line and a PIN, calls it, enters a wrong PIN and then hers. Moves the
/// clock: the app must be alone.
fn cy_claims_by_pin(app: &TestApp, bay: &Bay, id: &str) {
    let cy = &bay.cy;
    let (status, body) = app.call(
        "POST",
        &format!("/referrals/{id}/claim"),
        Some(&app.token_of(cy)),
        Some(r#"{"by": "call"}"#),
    );
    assert_eq!(status, 202, "{body}");
    let outbox = app.outbox_until("the first claim call to cy", |o| calls_to(o, cy).len() == 1);
    let first = calls_to(&outbox, cy).pop().unwrap();
    let status_path = local_path(first["statusCallback"].as_str().unwrap()).to_owned();
    let (first_sid, second_sid) = (app.sid("CA", 11), app.sid("CA", 12));
    let no_answer = [("CallSid", first_sid.as_str()), ("CallStatus", "no-answer")];
    // Reported twice, as the provider may: one failure, one retry.
    for _ in 0..2 {
        let (status, _) = app.webhook(&status_path, &no_answer, None);
        assert_eq!(status, 200);
    }
    // WT-12: the retry is a timer a minute on, not a call at once.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        calls_to(&app.outbox(), cy).len(),
        1,
        "no second call before the retry's time"
    );
    let delay = shared::app::phone::CLAIM_CALL_RETRY_DELAY.as_secs();
    app.advance(&format!("{}s", delay + 1));
    app.outbox_until("the second claim call to cy", |o| {
        calls_to(o, cy).len() == 2
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(calls_to(&app.outbox(), cy).len(), 2, "exactly one retry");
    let busy = [("CallSid", second_sid.as_str()), ("CallStatus", "busy")];
    let (status, _) = app.webhook(&status_path, &busy, None);
    assert_eq!(status, 200);
    let outbox = app.outbox_until("the PIN texted to cy", |o| {
        sms_to(o, &cy.phone).iter().any(|b| b.contains("PIN: "))
    });
    assert_eq!(calls_to(&outbox, cy).len(), 2, "no third call");
    let pin_sms = sms_to(&outbox, &cy.phone)
        .into_iter()
        .find(|b| b.contains("PIN: "))
        .unwrap();
    assert!(pin_sms.contains("+15005550007"), "the PIN line: {pin_sms}");
    let pin: String = pin_sms.split("PIN: ").nth(1).unwrap()[..6].to_owned();
    let pin_sid = app.sid("CA", 13);
    let pin_call = [("From", cy.phone.as_str()), ("CallSid", pin_sid.as_str())];
    let (status, xml) = app.webhook("/twilio/voice/pin", &pin_call, None);
    assert_eq!(status, 200);
    assert!(xml.contains(r#"<Gather numDigits="6""#), "{xml}");
    let wrong = if pin == "000000" { "111111" } else { "000000" };
    let (_, xml) = app.webhook(
        "/twilio/voice/pin",
        &[pin_call[0], pin_call[1], ("Digits", wrong)],
        None,
    );
    assert!(xml.contains("2 tries left"), "{xml}");
    let (_, xml) = app.webhook(
        "/twilio/voice/pin",
        &[pin_call[0], pin_call[1], ("Digits", pin.as_str())],
        None,
    );
    assert!(xml.contains("The referral is yours"), "{xml}");
}

/// Pay-per-lead subscribers `shorts` for sellers in the world's zip, 5 referrals a cycle each;
/// returns each with their subscription's path.
fn subscribers(app: &TestApp, shorts: &[String]) -> Vec<(Agent, String)> {
    shorts
        .iter()
        .map(|short| {
            let agent = app.agent(short);
            let mut profile = app.profile(&agent);
            profile["clientTypes"] = json!(["seller"]);
            app.save_profile(&agent, &profile);
            let sign_up =
                json!({"zips": [app.zip], "clientTypes": ["seller"], "referralsPerCycle": 5});
            let (status, body) = app.call(
                "POST",
                "/ppl/subscriptions",
                Some(&app.token_of(&agent)),
                Some(&sign_up.to_string()),
            );
            assert_eq!(status, 201, "{body}");
            let path = format!("/ppl/subscriptions/{}", body["id"].as_str().unwrap());
            (agent, path)
        })
        .collect()
}

/// A pay-per-lead seller, offered (as its answer says) to exactly `agents`; returns its id.
fn ppl_referral(app: &TestApp, agents: &[&Agent]) -> String {
    let created = app.create_referral(&app.referral("ppl", "seller"));
    let offered: BTreeSet<&str> = created["offeredTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(offered, expected, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// LR-2 (and LR-4): a seller goes to the fallback agent and the seller member, by SMS, push and
/// email; the buyer-only member hears nothing of it.
#[test]
fn lr_2_a_seller_reaches_the_fallback_and_the_seller_member_only() {
    let app = spawn_app();
    let bay = bay_team(&app);
    // What came before the referral (the codes that verified their phones) is not about it.
    let before = app.outbox().len();
    bay.referral(&app, "seller");
    let outbox = app.outbox_until(
        "the seller offer to ana and cy by SMS, email and push",
        |o| {
            [&bay.ana, &bay.cy].iter().all(|a| {
                [&a.phone, &a.email, &a.device]
                    .iter()
                    .all(|address| o.iter().any(|e| to(e) == address.as_str()))
            })
        },
    );
    let ben = [&bay.ben.phone, &bay.ben.email, &bay.ben.device];
    assert!(
        outbox[before..]
            .iter()
            .all(|e| !ben.iter().any(|b| to(e) == b.as_str())),
        "ben takes buyers only: {outbox:#?}"
    );
}

/// LR-9 text claiming: cy replies with her code; she is told the referral is hers, sees the
/// client's contacts, and the rest of her text reaches the client.
#[test]
fn lr_9_a_text_reply_with_the_code_claims_and_reaches_the_client() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let id = bay.referral(&app, "seller");
    let code = claim_code(&app, &bay.cy, 1);
    let answer = cy_claims_by_text(&app, &bay, &code);
    assert!(answer.starts_with("The referral is yours"), "{answer}");
    let (status, mine) = view(&app, &id, &bay.cy);
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["assignedAgentId"], bay.cy.id.as_str(), "{mine}");
    assert_eq!(mine["client"]["phone"], app.client.phone.as_str(), "{mine}");
    assert_eq!(relayed(&app), [RELAYED]);
}

/// GEN-5: SNS delivers the inbound text's notification twice (at least once, as AWS may): no
/// second claim, no second relay, no second answer.
#[test]
fn gen_5_a_text_delivered_twice_claims_relays_and_answers_once() {
    let app = spawn_app();
    let bay = bay_team(&app);
    bay.referral(&app, "seller");
    let code = claim_code(&app, &bay.cy, 1);
    let message = json!({
        "originationNumber": bay.cy.phone, "destinationNumber": "+15005550009",
        "messageBody": format!("{code} Hi Casey, this is Cy. Free for a call at 5?"),
        "inboundMessageId": format!("in-{}", app.tag),
    });
    let event = json!({"Records": [{"EventSource": "aws:sns", "Sns": {
        "Type": "Notification", "MessageId": "n-1",
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:inbound-sms",
        "Message": message.to_string(), "Timestamp": app.now().to_string(),
    }}]});
    app.invoke("claim", &event);
    app.invoke("claim", &event);
    details_emailed(&app, &bay.cy);
    assert_eq!(relayed(&app), [RELAYED]);
    let answers: Vec<String> = sms_to(&app.outbox(), &bay.cy.phone)
        .into_iter()
        .filter(|b| b.contains("The referral is yours"))
        .map(str::to_owned)
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
}

/// LR-1: the first to claim is assigned; a later text claims nothing, is told so, and its
/// sender sees no client contacts (GEN-3).
#[test]
fn lr_1_a_text_after_the_first_claim_is_told_another_agent_claimed() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let id = bay.referral(&app, "seller");
    let (cy_code, ana_code) = (claim_code(&app, &bay.cy, 1), claim_code(&app, &bay.ana, 1));
    cy_claims_by_text(&app, &bay, &cy_code);
    let late = format!("{ana_code} Hello Casey!");
    let answer = app.text_answered(&bay.ana.phone, &late);
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .contains("another agent claimed"),
        "{answer}"
    );
    let (status, offered) = view(&app, &id, &bay.ana);
    assert_eq!(status, 200, "{offered}");
    assert!(offered.get("client").is_none(), "GEN-3: {offered}");
    assert_eq!(
        view(&app, &id, &bay.cy).1["assignedAgentId"],
        bay.cy.id.as_str()
    );
}

/// PPL-3: once a text claims the referral, the client's contact details are emailed to the
/// winner.
#[test]
fn ppl_3_the_winner_gets_the_clients_details_by_email() {
    let app = spawn_app();
    let bay = bay_team(&app);
    bay.referral(&app, "seller");
    let code = claim_code(&app, &bay.cy, 1);
    cy_claims_by_text(&app, &bay, &code);
    let outbox = details_emailed(&app, &bay.cy);
    let body = |e: &Value| e["body"].as_str().unwrap_or("").to_owned();
    let details = outbox
        .iter()
        .find(|e| to(e) == bay.cy.email && body(e).contains(&app.client.phone))
        .unwrap();
    assert!(body(details).contains(&app.client.email), "{details}");
}

/// LR-9 digital call claiming: ben asks for a call, hears the lead, presses 1, and has it.
#[test]
fn lr_9_a_claim_call_claims_when_the_agent_presses_1() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let id = bay.referral(&app, "buyer");
    ben_claims_by_call(&app, &bay, &id);
    let (_, bens) = view(&app, &id, &bay.ben);
    assert_eq!(bens["assignedAgentId"], bay.ben.id.as_str(), "{bens}");
}

/// LR-10, WT-12: a claim call that does not reach the agent is placed again by a timer, once,
/// when its time comes on the local clock and not before; the second failure brings a text with
/// the PIN line and a PIN, which claims by phone (a wrong PIN first, with tries left).
#[test]
fn lr_10_wt_12_a_failed_claim_call_is_retried_once_on_its_timer_then_a_pin_claims_by_phone() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let id = bay.referral(&app, "seller");
    cy_claims_by_pin(&app, &bay, &id);
    let (_, cys) = view(&app, &id, &bay.cy);
    assert_eq!(cys["assignedAgentId"], bay.cy.id.as_str(), "{cys}");
}

/// LR-1 (and WT-4's one winner at the same instant): 20 pay-per-lead subscribers claim one
/// referral at once; exactly one wins and every other is told it is taken.
#[test]
fn lr_1_twenty_agents_claim_one_referral_at_once_and_exactly_one_wins() {
    let app = spawn_app();
    let shorts: Vec<String> = (1..=20).map(|i| format!("p{i:02}")).collect();
    let racers: Vec<Agent> = subscribers(&app, &shorts)
        .into_iter()
        .map(|(agent, _)| agent)
        .collect();
    let id = ppl_referral(&app, &racers.iter().collect::<Vec<_>>());
    let barrier = std::sync::Barrier::new(racers.len());
    let results: Vec<(&Agent, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = racers
            .iter()
            .map(|racer| {
                let (app, barrier, path) = (&app, &barrier, format!("/referrals/{id}/claim"));
                scope.spawn(move || {
                    let t = app.token_of(racer);
                    barrier.wait();
                    let (status, body) = app.call("POST", &path, Some(&t), None);
                    (racer, status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&Agent> = results
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .map(|(r, _, _)| *r)
        .collect();
    assert_eq!(winners.len(), 1, "{results:#?}");
    for (racer, status, body) in &results {
        if *racer != winners[0] {
            assert_eq!(
                (*status, error_code(body)),
                (409, "taken"),
                "{}: {body}",
                racer.id
            );
        }
    }
    let (_, won) = view(&app, &id, winners[0]);
    assert_eq!(won["assignedAgentId"], winners[0].id.as_str(), "{won}");
}

/// PPL-5: a pay-per-lead referral cannot be declined, while it is open nor once it is taken.
#[test]
fn ppl_5_a_pay_per_lead_referral_cannot_be_declined() {
    let app = spawn_app();
    let subs = subscribers(&app, &["p01".into(), "p02".into()]);
    let (p01, p02) = (&subs[0].0, &subs[1].0);
    let id = ppl_referral(&app, &[p01, p02]);
    let decline = format!("/referrals/{id}/decline");
    let (status, body) = app.call("POST", &decline, Some(&app.token_of(p02)), None);
    assert_eq!(
        (status, error_code(&body)),
        (409, "not_declinable"),
        "{body}"
    );
    let (status, body) = app.call(
        "POST",
        &format!("/referrals/{id}/claim"),
        Some(&app.token_of(p01)),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call("POST", &decline, Some(&app.token_of(p02)), None);
    assert_eq!(
        (status, error_code(&body)),
        (409, "not_declinable"),
        "{body}"
    );
}

/// GEN-3: a referral claimed every way (by text with a relayed message, by a claim call, by PIN,
/// and a pay-per-lead one in the app): of everything sent, only the winners' emails carry the
/// client's phone or email, and the one message to the client is the relayed text.
#[test]
fn gen_3_of_everything_sent_only_the_winners_emails_carry_the_clients_contacts() {
    // Alone: the claim by PIN moves the clock to its claim call's retry.
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    bay.referral(&app, "seller");
    let code = claim_code(&app, &bay.cy, 1);
    cy_claims_by_text(&app, &bay, &code);
    let buyer = bay.referral(&app, "buyer");
    ben_claims_by_call(&app, &bay, &buyer);
    let third = bay.referral(&app, "seller");
    cy_claims_by_pin(&app, &bay, &third);
    let subs = subscribers(&app, &["p01".into()]);
    let p01 = &subs[0].0;
    let ppl = ppl_referral(&app, &[p01]);
    let (status, body) = app.call(
        "POST",
        &format!("/referrals/{ppl}/claim"),
        Some(&app.token_of(p01)),
        None,
    );
    assert_eq!(status, 200, "{body}");

    let winners: BTreeSet<&str> = [&bay.cy, &bay.ben, p01]
        .iter()
        .map(|a| a.email.as_str())
        .collect();
    let outbox = app.outbox_until("the winners' emails", |o| {
        winners.iter().all(|w| {
            o.iter().any(|e| {
                to(e) == *w && e["body"].as_str().unwrap_or("").contains(&app.client.email)
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
        if content.contains(&app.client.phone) || content.contains(&app.client.email) {
            assert!(
                entry["channel"] == "email" && winners.contains(to(entry)),
                "GEN-3: the client's contact details in {entry:#}"
            );
        }
        if to(entry) == app.client.phone {
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
