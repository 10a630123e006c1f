//! What one referral costs on AWS, from intake to Closed-Paid, for each program: every AWS
//! request the functions make (counted on the wire by the local runner's permission check, by
//! service and operation), every Lambda invocation, HTTP API request, event-source batch and
//! schedule fired, read from `GET /_local/requests` before and after the referral's life, and
//! priced with AWS's public prices (`PRICES`). Printed per 1 000 referrals with its breakdown.
//!
//! A figure, not a rule: `make bench` runs it (`cargo test -p system-tests --test system cost --
//! --ignored --nocapture`); `make test` does not.
//!
//! Left out, as they do not scale with referrals: the pollers' empty receives, the daily sweeps'
//! own invocations, a PPL subscription's sign-up and monthly charge; and the reminders a
//! referral earns while it waits (one email every two weeks, RM-1), which depend on how long it
//! takes to close.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{Agent, TestApp, spawn_app_alone, to};

/// AWS's public list prices in US dollars, us-east-1, as published in 2025 (DynamoDB on-demand
/// after its November 2024 cut). Check them against the price pages before quoting a figure.
///
/// Each counted request maps to (unit price, units per request, what it is). DynamoDB requests
/// are priced as one request unit each (items under 1 KB; a larger item costs a unit per KB),
/// a transaction's items as two each; Lambda's duration assumes 128 MB for 25 ms on arm64.
const PRICES: &[(&str, f64, f64, &str)] = &[
    (
        "apigateway HTTP API request",
        1.00e-6,
        1.0,
        "API Gateway HTTP API, per request",
    ),
    (
        "dynamodb PutItem",
        0.625e-6,
        1.0,
        "DynamoDB write request unit",
    ),
    (
        "dynamodb UpdateItem",
        0.625e-6,
        1.0,
        "DynamoDB write request unit",
    ),
    (
        "dynamodb DeleteItem",
        0.625e-6,
        1.0,
        "DynamoDB write request unit",
    ),
    (
        "dynamodb BatchWriteItem",
        0.625e-6,
        1.0,
        "DynamoDB write request unit",
    ),
    (
        "dynamodb TransactWriteItems items",
        0.625e-6,
        2.0,
        "DynamoDB write request unit (x2 in a transaction)",
    ),
    (
        "dynamodb GetItem",
        0.125e-6,
        1.0,
        "DynamoDB read request unit",
    ),
    (
        "dynamodb Query",
        0.125e-6,
        1.0,
        "DynamoDB read request unit (per 4 KB page)",
    ),
    (
        "dynamodb BatchGetItem",
        0.125e-6,
        1.0,
        "DynamoDB read request unit",
    ),
    (
        "dynamodb TransactGetItems items",
        0.125e-6,
        2.0,
        "DynamoDB read request unit (x2 in a transaction)",
    ),
    ("sqs SendMessage", 0.40e-6, 1.0, "SQS standard, per request"),
    (
        "sqs SendMessageBatch",
        0.40e-6,
        1.0,
        "SQS standard, per request",
    ),
    (
        "sqs ReceiveMessage (event source)",
        0.40e-6,
        1.0,
        "SQS standard, per request",
    ),
    (
        "sqs DeleteMessageBatch (event source)",
        0.40e-6,
        1.0,
        "SQS standard, per request",
    ),
    (
        "sns Publish SMS",
        0.00581,
        1.0,
        "SMS to a US number, base price (carrier fees extra)",
    ),
    (
        "sns Publish push",
        1.00e-6,
        1.0,
        "SNS publish + mobile push delivery",
    ),
    (
        "sns OptInPhoneNumber",
        0.0,
        1.0,
        "SNS SMS management (no charge)",
    ),
    (
        "sns CreatePlatformEndpoint",
        0.0,
        1.0,
        "SNS endpoint management (no charge)",
    ),
    ("ses SendEmail", 0.10e-3, 1.0, "SES outbound email"),
    ("events PutEvents", 1.00e-6, 1.0, "EventBridge custom event"),
    (
        "scheduler CreateSchedule",
        0.0,
        1.0,
        "Scheduler API (no charge)",
    ),
    (
        "scheduler UpdateSchedule",
        0.0,
        1.0,
        "Scheduler API (no charge)",
    ),
    (
        "scheduler DeleteSchedule",
        0.0,
        1.0,
        "Scheduler API (no charge)",
    ),
    (
        "scheduler schedule fired",
        1.00e-6,
        1.0,
        "Scheduler invocation",
    ),
];

/// Lambda: $0.20 per million requests plus arm64 duration ($0.0000133334 per GB-second) at
/// 128 MB for 25 ms.
const LAMBDA_PER_INVOCATION: f64 = 0.20e-6 + 0.0000133334 * 0.125 * 0.025;

/// Not AWS, counted but not priced here: the telephony provider's calls are billed per minute.
const UNPRICED_PREFIX: &str = "twilio ";

/// The runner's counts so far, once what the stack was doing has settled: in all, and the AWS
/// requests by function (prefixed `<function>: `).
fn counts(app: &TestApp) -> BTreeMap<String, u64> {
    app.outbox();
    let (status, body) = app.call("GET", "/_local/requests", None, None);
    assert_eq!(status, 200, "{body}");
    let flat = |v: &Value, prefix: &str| -> Vec<(String, u64)> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, n)| (format!("{prefix}{k}"), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut counts: BTreeMap<String, u64> = flat(&body["counts"], "").into_iter().collect();
    for (function, requests) in body["byFunction"].as_object().expect("byFunction") {
        counts.extend(flat(requests, &format!("{function}: ")));
    }
    counts
}

/// The AWS requests each function made in `after` since `before`, on one line each.
fn by_function(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    let mut lines: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (key, n) in after {
        let Some((function, request)) = key.split_once(": ") else {
            continue;
        };
        let n = n - before.get(key).copied().unwrap_or(0);
        if n > 0 {
            lines
                .entry(function)
                .or_default()
                .push(format!("{request} {n}"));
        }
    }
    lines
        .into_iter()
        .map(|(f, r)| format!("{f}: {}", r.join(", ")))
        .collect()
}

/// What one referral's life added, as `(what, count, dollars)`, and the total in dollars.
fn priced(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> (Vec<(String, u64, Option<f64>)>, f64) {
    let mut rows = Vec::new();
    let mut total = 0.0;
    for (what, n) in after.iter().filter(|(k, _)| !k.contains(": ")) {
        let n = n - before.get(what).copied().unwrap_or(0);
        if n == 0 || what.ends_with("TransactWriteItems") || what.ends_with("TransactGetItems") {
            // A transaction is priced by its items.
            if n > 0 {
                rows.push((what.clone(), n, Some(0.0)));
            }
            continue;
        }
        let price = if let Some(function) = what.strip_prefix("lambda Invoke ") {
            let _ = function;
            Some(LAMBDA_PER_INVOCATION * n as f64)
        } else if what.starts_with(UNPRICED_PREFIX) {
            None
        } else {
            let (_, unit, units, _) = PRICES
                .iter()
                .find(|(name, ..)| *name == what)
                .unwrap_or_else(|| panic!("no price for {what}: add it to PRICES"));
            Some(unit * units * n as f64)
        };
        total += price.unwrap_or(0.0);
        rows.push((what.clone(), n, price));
    }
    (rows, total)
}

fn print(program: &str, rows: &[(String, u64, Option<f64>)], total: f64, functions: &[String]) {
    println!(
        "\ncost per referral, {program}: ${:.4} per referral, ${:.2} per 1 000",
        total,
        total * 1000.0
    );
    println!("  {:<44} {:>6} {:>12}", "request", "count", "$ per 1 000");
    let mut sorted = rows.to_vec();
    sorted.sort_by(|a, b| {
        b.2.unwrap_or(0.0)
            .total_cmp(&a.2.unwrap_or(0.0))
            .then(a.0.cmp(&b.0))
    });
    for (what, n, price) in sorted {
        let price = price.map_or("not AWS".to_owned(), |p| format!("{:.4}", p * 1000.0));
        println!("  {what:<44} {n:>6} {price:>12}");
    }
    println!("  AWS requests by function:");
    for line in functions {
        println!("    {line}");
    }
}

fn agents(app: &TestApp, prefix: &str, n: usize) -> Vec<Agent> {
    let agents: Vec<Agent> = (1..=n)
        .map(|i| app.agent(&format!("{prefix}{i}")))
        .collect();
    for agent in &agents {
        app.save_profile(agent, &app.profile(agent));
    }
    app.verify_phones(&agents);
    agents
}

fn ok(
    app: &TestApp,
    agent: Option<&Agent>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let token = agent.map_or_else(|| app.closings(), |a| app.token_of(a));
    let body = body.map(|b| b.to_string());
    let (status, answer) = app.call(method, path, Some(&token), body.as_deref());
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

/// `winner` takes referral `id` in the app; `losers` try after and are told it is taken.
fn race(app: &TestApp, id: &str, winner: &Agent, losers: &[&Agent]) {
    ok(
        app,
        Some(winner),
        "POST",
        &format!("/referrals/{id}/claim"),
        None,
    );
    for loser in losers {
        let (status, body) = app.call(
            "POST",
            &format!("/referrals/{id}/claim"),
            Some(&app.token_of(loser)),
            None,
        );
        assert_eq!(status, 409, "{body}");
    }
    app.outbox_until("the client's details to the winner", |o| {
        o.iter()
            .any(|e| e["channel"] == "email" && to(e) == winner.email)
    });
}

/// The winner works the referral to Closed, and the closings team records the payment.
fn to_closed_paid(app: &TestApp, id: &str, agent: &Agent) {
    let stage = format!("/referrals/{id}/stage");
    for body in [
        json!({"stage": "connected"}),
        json!({"stage": "met_with_person"}),
        json!({"stage": "in_escrow", "salePrice": "750000", "closeDate": "2030-03-01"}),
        json!({"stage": "closed"}),
    ] {
        ok(app, Some(agent), "POST", &stage, Some(body));
    }
    ok(app, None, "POST", &format!("/referrals/{id}/payment"), None);
    app.outbox_until("the closing documents", |o| {
        o.iter()
            .any(|e| e["channel"] == "email" && e["attachments"].is_array())
    });
}

fn created_id(created: &Value) -> String {
    created["id"]
        .as_str()
        .expect("the new referral's id")
        .to_owned()
}

#[test]
#[ignore = "a figure, run by make bench"]
fn cost_per_referral_from_intake_to_closed_paid_for_each_program() {
    // Routing: a team of five with lead routing; all five offered, one wins, two are too late.
    let app = spawn_app_alone();
    let members = agents(&app, "r", 5);
    let team = app.create_team("bay", &members[0], &members[1..].iter().collect::<Vec<_>>());
    let rules: Vec<(&Agent, &str)> = members.iter().map(|a| (a, "both")).collect();
    app.route(&team, &members[0], &rules);
    let before = counts(&app);
    let mut body = app.referral("routing", "buyer");
    body["teamId"] = team.into();
    let id = created_id(&app.create_referral(&body));
    app.outbox_until("the five offers", |o| {
        members
            .iter()
            .all(|a| o.iter().any(|e| e["channel"] == "sms" && to(e) == a.phone))
    });
    race(&app, &id, &members[1], &[&members[2], &members[3]]);
    to_closed_paid(&app, &id, &members[1]);
    let after = counts(&app);
    let (rows, total) = priced(&before, &after);
    print(
        "routing, 5 members",
        &rows,
        total,
        &by_function(&before, &after),
    );
    drop(app);

    // Warm transfer: five agents alerted; one wins in the app, two respond late; the system
    // calls the winner (who keys in the alert's code) and the advisor; the advisor brings the
    // client in and leaves; the call ends and the two late responders are introduced.
    let app = spawn_app_alone();
    let warm = agents(&app, "w", 5);
    let before = counts(&app);
    let mut body = app.referral("warm_transfer", "seller");
    body["advisorPhone"] = app.advisor_phone().into();
    let client_call = app.sid("CA", 300);
    body["clientCallSid"] = client_call.clone().into();
    let id = created_id(&app.create_referral(&body));
    let outbox = app.outbox_until("the five alerts", |o| {
        warm.iter()
            .all(|a| o.iter().any(|e| e["channel"] == "sms" && to(e) == a.phone))
    });
    let winner = &warm[0];
    let code: String = outbox
        .iter()
        .rev()
        .find(|e| e["channel"] == "sms" && to(e) == winner.phone)
        .and_then(|e| e["body"].as_str())
        .and_then(|b| b.split("(#").nth(1))
        .map(|after| after.chars().take_while(char::is_ascii_digit).collect())
        .expect("the alert's code");
    ok(
        &app,
        Some(winner),
        "POST",
        &format!("/referrals/{id}/claim"),
        None,
    );
    for late in &warm[1..3] {
        let (status, body) = app.call(
            "POST",
            &format!("/referrals/{id}/claim"),
            Some(&app.token_of(late)),
            None,
        );
        assert_eq!(status, 409, "{body}");
    }
    let leg = |o: &[Value], number: &str| -> Option<Value> {
        o.iter()
            .find(|e| e["channel"] == "call" && to(e) == number)
            .cloned()
    };
    let outbox = app.outbox_until("the calls to the winner and the advisor", |o| {
        leg(o, &winner.phone).is_some() && leg(o, &app.advisor_phone()).is_some()
    });
    let (agent_call, advisor_call) = (
        leg(&outbox, &winner.phone).unwrap(),
        leg(&outbox, &app.advisor_phone()).unwrap(),
    );
    let answer = |call: &Value, digits: Option<&str>| {
        let path = call["url"]
            .as_str()
            .unwrap()
            .strip_prefix(app.base())
            .unwrap()
            .to_owned();
        let mut params = vec![
            ("CallSid", call["callSid"].as_str().unwrap()),
            ("To", to(call)),
            ("From", "+15005550006"),
        ];
        if let Some(d) = digits {
            params.push(("Digits", d));
        }
        let (status, xml) = app.webhook(&path, &params, None);
        assert_eq!(status, 200, "{xml}");
    };
    answer(&agent_call, None);
    answer(&agent_call, Some(&code));
    answer(&advisor_call, None);
    let (agent_sid, advisor_sid) = (
        agent_call["callSid"].as_str().unwrap(),
        advisor_call["callSid"].as_str().unwrap(),
    );
    let conference = app.sid("CF", 1);
    let callback = |seq: u32, event: &str, call: Option<(&str, &str)>| {
        let seq = seq.to_string();
        let mut params = vec![
            ("ConferenceSid", conference.as_str()),
            ("SequenceNumber", seq.as_str()),
            ("StatusCallbackEvent", event),
        ];
        if let Some((sid, label)) = call {
            params.push(("CallSid", sid));
            params.push(("ParticipantLabel", label));
        }
        let (status, xml) = app.webhook(
            &format!("/twilio/voice/conference?referralId={id}"),
            &params,
            None,
        );
        assert_eq!(status, 200, "{event}: {xml}");
    };
    callback(1, "conference-start", None);
    callback(2, "participant-join", Some((advisor_sid, "advisor")));
    callback(3, "participant-join", Some((agent_sid, "agent")));
    let (status, connected) = app.call(
        "POST",
        &format!("/warm-transfers/{id}/connect-client"),
        Some(&app.advisor()),
        None,
    );
    assert_eq!(status, 200, "{connected}");
    callback(4, "participant-join", Some((&client_call, "client")));
    callback(5, "participant-leave", Some((advisor_sid, "advisor")));
    callback(6, "participant-leave", Some((agent_sid, "agent")));
    callback(7, "conference-end", None);
    app.outbox_until("the two introductions", |o| {
        o.iter()
            .filter(|e| {
                e["channel"] == "sms" && e["body"].as_str().unwrap_or("").contains("introduced")
            })
            .count()
            >= 2
    });
    app.outbox_until("the client's details to the winner", |o| {
        o.iter()
            .any(|e| e["channel"] == "email" && to(e) == winner.email)
    });
    to_closed_paid(&app, &id, winner);
    let after = counts(&app);
    let (rows, total) = priced(&before, &after);
    print(
        "warm transfer, 5 alerted",
        &rows,
        total,
        &by_function(&before, &after),
    );
    drop(app);

    // PPL: three subscribers in the zip; the first to claim takes it, one is too late.
    let app = spawn_app_alone();
    let subscribers = agents(&app, "p", 3);
    for agent in &subscribers {
        let signup = json!({"zips": [app.zip], "clientTypes": ["buyer"], "referralsPerCycle": 5});
        ok(
            &app,
            Some(agent),
            "POST",
            "/ppl/subscriptions",
            Some(signup),
        );
    }
    let before = counts(&app);
    let id = created_id(&app.create_referral(&app.referral("ppl", "buyer")));
    app.outbox_until("the offers to the subscribers", |o| {
        subscribers
            .iter()
            .all(|a| o.iter().any(|e| e["channel"] == "sms" && to(e) == a.phone))
    });
    race(&app, &id, &subscribers[0], &[&subscribers[1]]);
    to_closed_paid(&app, &id, &subscribers[0]);
    let after = counts(&app);
    let (rows, total) = priced(&before, &after);
    print(
        "PPL, 3 subscribers",
        &rows,
        total,
        &by_function(&before, &after),
    );
}
