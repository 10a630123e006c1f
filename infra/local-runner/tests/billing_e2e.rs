//! The scheduled jobs end to end through the local runner: the template's recurring schedules
//! (the daily billing sweep, the biweekly reminders) fired by the local clock, against DynamoDB
//! Local and moto, with what they send read back from the outbox.
//!
//! A schedule delivered twice (EventBridge Scheduler delivers at least once) is played by
//! invoking the function again, through cargo lambda's invoke port, with the very input the
//! schedule fired with.
//!
//! Never skipped: without the emulators or cargo-lambda it fails and says what is missing.

mod common;

use common::{error_code, profile, token};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn timestamp(v: &Value) -> Timestamp {
    v.as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

/// The emails to `to` whose subject starts with `subject`, oldest first.
fn emails<'a>(outbox: &'a [Value], to: &str, subject: &str) -> Vec<&'a Value> {
    outbox
        .iter()
        .filter(|m| m["channel"] == "email" && m["to"] == to)
        .filter(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with(subject))
        })
        .collect()
}

const ANA_EMAIL: &str = "ana@agents.example.com";
const RECEIPT: &str = "Pay per lead receipt";

/// PPL-1, PPL-2, GEN-5: a subscription is charged by the daily sweep on day 30 and day 60 after
/// sign-up, never on day 29, and once per cycle even when the sweep is delivered twice; each
/// charge emails a receipt and shows in the subscription.
#[test]
fn ppl_2_charged_on_day_30_and_60_once_each_with_a_receipt() {
    let runner = common::start("billing-e2e");
    let ana = token("ana", "agent");
    let (status, body) = runner.call(
        "PUT",
        "/agents/ana",
        Some(&ana),
        Some(&profile("Ana", 1).to_string()),
    );
    assert_eq!(status, 200, "{body}");

    let signup = json!({"zips": ["94110"], "clientTypes": ["seller"], "referralsPerCycle": 3});
    let (status, sub) = runner.call(
        "POST",
        "/ppl/subscriptions",
        Some(&ana),
        Some(&signup.to_string()),
    );
    assert_eq!(status, 201, "{sub}");
    let id = sub["id"]
        .as_str()
        .expect("the subscription's id")
        .to_owned();
    let path = format!("/ppl/subscriptions/{id}");
    let started = timestamp(&sub["startedAt"]);
    assert_eq!(sub["agentId"], "ana", "{sub}");
    assert_eq!(timestamp(&sub["nextChargeAt"]), started + days(30), "{sub}");
    // A seller in a 94xxx zip: $90.00 a referral (the development price table), 3 a cycle.
    assert_eq!(sub["cycleAmount"], "270.00", "{sub}");
    assert_eq!(sub["charges"], json!([]), "{sub}");

    // Only its agent reads it.
    let (status, body) = runner.call("GET", &path, Some(&token("ben", "agent")), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");

    // Through day 29 nothing is charged: the sweep has run every day, and nothing was due.
    runner.advance_to(started + days(30));
    assert!(emails(&runner.outbox(), ANA_EMAIL, RECEIPT).is_empty());
    // Tokens expire by the local clock: after a month, a fresh one.
    let ana = runner.token("ana", "agent");
    let (status, view) = runner.call("GET", &path, Some(&ana), None);
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["charges"], json!([]), "{view}");

    // On day 30 (30 to 31 days after sign-up) that day's sweep charges the first cycle and emails
    // the receipt.
    runner.advance_to(started + days(31));
    let outbox = runner.outbox();
    let receipts = emails(&outbox, ANA_EMAIL, RECEIPT);
    assert_eq!(receipts.len(), 1, "{receipts:#?}");
    assert!(
        receipts[0]["subject"]
            .as_str()
            .unwrap()
            .ends_with("cycle 1"),
        "{}",
        receipts[0]
    );
    let receipt = receipts[0]["body"].as_str().unwrap();
    assert!(
        receipt.contains(&id) && receipt.contains("3 referrals at $90.00 each, $270.00 charged"),
        "{receipt}"
    );
    let ana = runner.token("ana", "agent");
    let (_, view) = runner.call("GET", &path, Some(&ana), None);
    let charges = view["charges"].as_array().cloned().unwrap_or_default();
    assert_eq!(charges.len(), 1, "{view}");
    assert_eq!(
        (&charges[0]["cycle"], &charges[0]["amount"]),
        (&json!(1), &json!("270.00"))
    );
    let charged_at = timestamp(&charges[0]["at"]);
    assert!(
        charged_at >= started + days(30) && charged_at < started + days(31),
        "charged at {charged_at}, signed up at {started}"
    );
    assert_eq!(
        timestamp(&view["nextChargeAt"]),
        started + days(60),
        "{view}"
    );

    // The same sweep delivered again, with the time it fired at: nothing more is charged.
    let again = runner.invoke("ppl-billing", &json!({"time": charged_at}));
    assert_eq!(again["charged"], json!([]), "{again}");
    assert_eq!(emails(&runner.outbox(), ANA_EMAIL, RECEIPT).len(), 1);
    let (_, view) = runner.call("GET", &path, Some(&ana), None);
    assert_eq!(view["charges"].as_array().map(Vec::len), Some(1), "{view}");

    // Through day 59 still one charge; on day 60 the second.
    runner.advance_to(started + days(60));
    assert_eq!(emails(&runner.outbox(), ANA_EMAIL, RECEIPT).len(), 1);
    runner.advance_to(started + days(61));
    let outbox = runner.outbox();
    let receipts = emails(&outbox, ANA_EMAIL, RECEIPT);
    assert_eq!(receipts.len(), 2, "{receipts:#?}");
    assert!(
        receipts[1]["subject"]
            .as_str()
            .unwrap()
            .ends_with("cycle 2")
    );
    let ana = runner.token("ana", "agent");
    let (_, view) = runner.call("GET", &path, Some(&ana), None);
    let cycles: Vec<&Value> = view["charges"]
        .as_array()
        .map(|c| c.iter().map(|c| &c["cycle"]).collect())
        .unwrap_or_default();
    assert_eq!(cycles, vec![&json!(1), &json!(2)], "{view}");
    let second = timestamp(&view["charges"][1]["at"]);
    assert!(second >= started + days(60) && second < started + days(61));
    assert_eq!(
        timestamp(&view["nextChargeAt"]),
        started + days(90),
        "{view}"
    );
}
