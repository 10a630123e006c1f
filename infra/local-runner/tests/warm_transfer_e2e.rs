//! Warm transfer end to end, through the local gateway and clock: five agents alerted and racing
//! on the app and the line, the TwiML of each step, the completion with two introductions, a
//! transfer nobody takes, and an opt-out that takes effect on the next transfer.

mod common;

use std::collections::BTreeSet;

use common::{Runner, error_code, phone, profile, token};
use serde_json::{Value, json};

const CLIENT_PHONE: &str = "+14155559876";
const LINE: &str = "+15005550008";
/// The response window the runner's functions are given: long enough that compiling a function
/// on its first call never eats it, short enough to pass by moving the clock.
const WINDOW_SECONDS: i64 = 300;

fn transfer_body() -> String {
    json!({
        "program": "warm_transfer",
        "client": {"name": "Casey Client", "phone": CLIENT_PHONE, "email": "casey@example.com"},
        "clientType": "seller", "zip": "94110",
        "priceRange": {"min": "900000", "max": "1200000"}, "timeline": "this month",
        "briefing": "Inherited a condo, wants it listed before the holidays; worried about repairs.",
    })
    .to_string()
}

fn start_transfer(runner: &Runner) -> Value {
    let advisor = token("advisor-1", "advisor");
    let (status, body) = runner.call("POST", "/referrals", Some(&advisor), Some(&transfer_body()));
    assert_eq!(status, 201, "{body}");
    body
}

fn ids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn to(entry: &Value) -> &str {
    entry["to"].as_str().unwrap_or("")
}

fn line_call(runner: &Runner, from: &str, sid: &str) -> String {
    let (status, xml) = runner.webhook(
        "/twilio/voice/warm-transfer",
        &[("From", from), ("To", LINE), ("CallSid", sid)],
        None,
    );
    assert_eq!(status, 200, "{xml}");
    xml
}

#[test]
fn a_warm_transfer_from_alerts_to_introductions_and_one_nobody_takes() {
    let window = WINDOW_SECONDS.to_string();
    let runner = common::start_with(
        "warm-transfer-e2e",
        &[("WARM_TRANSFER_TIMEOUT_SECONDS", &window)],
    );
    let agents: Vec<String> = (1..=6).map(|i| format!("w{i}")).collect();
    for (i, agent) in agents.iter().enumerate() {
        let mut p = profile(&format!("Agent {agent}"), 40 + i as u32);
        // w6 has not opted in to warm transfers (WT-3, WT-8).
        p["warmTransfer"] = (agent != "w6").into();
        let (status, body) = runner.call(
            "PUT",
            &format!("/agents/{agent}"),
            Some(&token(agent, "agent")),
            Some(&p.to_string()),
        );
        assert_eq!(status, 200, "{body}");
    }
    let phone_of = |agent: &str| phone(40 + agents.iter().position(|a| a == agent).unwrap() as u32);

    // Every function involved answers once before the clock matters: a first call compiles it.
    let advisor = token("advisor-1", "advisor");
    assert_eq!(
        runner
            .call("POST", "/referrals", Some(&advisor), Some("{"))
            .0,
        400
    );
    assert_eq!(
        runner
            .webhook("/twilio/voice/warm-transfer", &[], Some("x"))
            .0,
        403
    );
    let (status, _) = runner.call(
        "POST",
        "/warm-transfers/none/complete",
        Some(&advisor),
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(
        runner
            .call("GET", "/referrals/none", Some(&advisor), None)
            .0,
        404
    );

    // WT-1 to WT-3: five eligible agents alerted at once by push and SMS with the line.
    let started = start_transfer(&runner);
    let id = started["id"].as_str().unwrap().to_owned();
    let alerted = ids(&started["offeredTo"]);
    assert_eq!(alerted, ["w1", "w2", "w3", "w4", "w5"], "{started}");
    assert_eq!(started["warmTransfer"]["line"], LINE, "{started}");
    assert_eq!(
        started["warmTransfer"]["room"],
        format!("wt-{id}"),
        "{started}"
    );
    let outbox = runner.outbox_until("the alerts", |o| {
        alerted.iter().all(|a| {
            o.iter()
                .any(|e| e["channel"] == "sms" && to(e) == phone_of(a))
        }) && o.iter().filter(|e| e["channel"] == "push").count() >= 5
    });
    for entry in &outbox {
        let body = entry["body"].as_str().unwrap_or("");
        assert!(
            !body.contains(CLIENT_PHONE) && !body.contains("casey@"),
            "GEN-3: {entry}"
        );
        if entry["channel"] == "sms" {
            assert!(body.contains(LINE), "the alert carries the line: {body}");
        }
    }
    assert!(
        outbox.iter().all(|e| to(e) != phone_of("w6")),
        "w6 did not opt in"
    );

    // WT-4: all five respond at once, two from the app and three by dialing the line.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(5));
    let answers: Vec<(String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = alerted
            .iter()
            .enumerate()
            .map(|(i, agent)| {
                let (runner, barrier, id, phone) = (&runner, barrier.clone(), &id, phone_of(agent));
                scope.spawn(move || {
                    barrier.wait();
                    let answer = if i < 2 {
                        let (status, body) = runner.call(
                            "POST",
                            &format!("/referrals/{id}/claim"),
                            Some(&token(agent, "agent")),
                            None,
                        );
                        format!("{status} {body}")
                    } else {
                        line_call(runner, &phone, &format!("CA{:032}", i))
                    };
                    (agent.clone(), answer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&(String, String)> = answers
        .iter()
        .filter(|(_, a)| a.starts_with("200 ") || a.contains("<Conference"))
        .collect();
    assert_eq!(winners.len(), 1, "{answers:#?}");
    let winner = winners[0].0.clone();
    for (agent, answer) in &answers {
        if *agent != winner {
            assert!(
                answer.starts_with("409 ") && answer.contains("taken")
                    || answer.contains("Another agent was faster"),
                "{agent}: {answer}"
            );
        }
    }
    // WT-5: the winner, dialing in, is held in the transfer's room and hears the briefing; the
    // advisor starts the conference and bridges the client in.
    let xml = line_call(
        &runner,
        &phone_of(&winner),
        "CA00000000000000000000000000000099",
    );
    assert!(xml.contains("worried about repairs"), "{xml}");
    assert!(
        xml.contains(&format!(
            r#"<Conference startConferenceOnEnter="false" endConferenceOnExit="true">wt-{id}</Conference>"#
        )),
        "{xml}"
    );
    // The briefing and the client are the winner's to see, and the metrics are kept.
    let (status, seen) = runner.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&token(&winner, "agent")),
        None,
    );
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["client"]["phone"], CLIENT_PHONE, "{seen}");
    assert_eq!(seen["warmTransfer"]["alerted"], 5, "{seen}");
    assert_eq!(seen["warmTransfer"]["responded"], 5, "{seen}");
    assert_eq!(seen["warmTransfer"]["outcome"], "connected", "{seen}");
    assert!(
        seen["warmTransfer"]["timeToFirstResponseMs"].is_u64(),
        "{seen}"
    );
    // The response order, as kept in the history (by each response's request time). The five
    // race between instances, as on Lambda: the winner is the response whose write landed first,
    // which a response with an earlier request time can lose to, so the winner need not be first.
    let order: Vec<String> = seen["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["type"] == "claim_attempt")
        .map(|h| h["agentId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order.len(), 5, "{seen}");
    let won: Vec<&Value> = seen["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["type"] == "claim_attempt" && h["won"] == true)
        .collect();
    assert_eq!(won.len(), 1, "{seen}");
    assert_eq!(won[0]["agentId"], winner.as_str(), "{seen}");
    let others: Vec<String> = order.iter().filter(|a| **a != winner).cloned().collect();

    // WT-7: the call ended; the first two later responders are introduced, each with a
    // referral of their own and told by email, SMS and push.
    let complete = format!("/warm-transfers/{id}/complete");
    let (status, body) = runner.call("POST", &complete, Some(&token(&winner, "agent")), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let (status, done) = runner.call("POST", &complete, Some(&advisor), None);
    assert_eq!(status, 200, "{done}");
    let introduced: Vec<String> = done["introduced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["agentId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(introduced, others[..2], "{done}");
    let outbox = runner.outbox_until("the introductions", |o| {
        introduced.iter().all(|a| {
            let email = common::email(&format!("Agent {a}"));
            o.iter().any(|e| e["channel"] == "email" && to(e) == email)
                && o.iter().any(|e| {
                    e["channel"] == "sms"
                        && to(e) == phone_of(a)
                        && e["body"].as_str().unwrap_or("").contains("introduced")
                })
                && o.iter().any(|e| {
                    e["channel"] == "push"
                        && e["body"].as_str().unwrap_or("").contains("introduced")
                        && to(e).contains(&format!("agent.{a}"))
                })
        })
    });
    for a in &introduced {
        let (status, list) = runner.call(
            "GET",
            &format!("/agents/{a}/referrals"),
            Some(&token(a, "agent")),
            None,
        );
        assert_eq!(status, 200, "{list}");
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == format!("{id}-{a}")),
            "{a}: {list}"
        );
    }
    // Completing again introduces nobody twice.
    let (status, again) = runner.call("POST", &complete, Some(&advisor), None);
    assert_eq!(
        (status, &again["introduced"]),
        (200, &done["introduced"]),
        "{again}"
    );
    let intro_sms = |o: &[Value]| {
        o.iter()
            .filter(|e| {
                e["channel"] == "sms" && e["body"].as_str().unwrap_or("").contains("introduced")
            })
            .count()
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(intro_sms(&runner.outbox()), intro_sms(&outbox));

    // WT-6: a transfer nobody takes. When the window closes the advisors are told and the client
    // goes to ordinary routing; a response after that is refused.
    let second = start_transfer(&runner);
    let second_id = second["id"].as_str().unwrap().to_owned();
    runner.advance(&format!("{}s", WINDOW_SECONDS + 5));
    let outbox = runner.outbox_until("the advisors told", |o| {
        o.iter().any(|e| {
            to(e) == "advisors@referrals.example.com"
                && e["body"].as_str().unwrap_or("").contains(&second_id)
        })
    });
    let routed = format!("{second_id}-routed");
    let told = outbox
        .iter()
        .find(|e| to(e) == "advisors@referrals.example.com")
        .unwrap();
    assert!(told["body"].as_str().unwrap().contains(&routed), "{told}");
    let first_alerted = ids(&second["offeredTo"])[0].clone();
    let late = line_call(
        &runner,
        &phone_of(&first_alerted),
        "CA00000000000000000000000000000100",
    );
    assert!(late.contains("has ended"), "{late}");
    let (status, body) = runner.call(
        "POST",
        &format!("/referrals/{second_id}/claim"),
        Some(&token(&first_alerted, "agent")),
        None,
    );
    assert_eq!(status, 409, "{body}");
    // Ordinary routing reaches every agent serving the zip, w6 included.
    runner.outbox_until("the routed offers", |o| {
        o.iter().any(|e| {
            e["channel"] == "sms"
                && to(e) == phone_of("w6")
                && e["body"].as_str().unwrap_or("").contains("Reply #")
        })
    });
    let (status, view) = runner.call(
        "GET",
        &format!("/referrals/{second_id}"),
        Some(&advisor),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["warmTransfer"]["outcome"], "timed_out", "{view}");
    assert_eq!(view["warmTransfer"]["responded"], 0, "{view}");

    // WT-8: w1 opts out; the next transfer alerts the others only.
    let mut p = profile("Agent w1", 40);
    p["warmTransfer"] = false.into();
    let (status, body) = runner.call(
        "PUT",
        "/agents/w1",
        Some(&token("w1", "agent")),
        Some(&p.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let third = start_transfer(&runner);
    let third_alerted: BTreeSet<String> = ids(&third["offeredTo"]).into_iter().collect();
    assert_eq!(
        third_alerted,
        ["w2", "w3", "w4", "w5"].map(String::from).into(),
        "{third}"
    );
}
