//! The scheduled jobs end to end through the local runner: the template's recurring schedules
//! (the daily billing sweep, the biweekly reminders) fired by the local clock, against DynamoDB
//! Local and moto, with what they send read back from the outbox.
//!
//! A schedule delivered twice (EventBridge Scheduler delivers at least once) is played by
//! invoking the function again, through cargo lambda's invoke port, with the very input the
//! schedule fired with.
//!
//! One runner and one timeline: a sign-up and some claims, then two months of clock.
//!
//! Never skipped: without the emulators or cargo-lambda it fails and says what is missing.

mod common;

use common::{Runner, error_code, profile};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const ANA_EMAIL: &str = "ana@agents.example.com";
const DEE_EMAIL: &str = "dee@agents.example.com";
const RECEIPT: &str = "Pay per lead receipt";
const REMINDER: &str = "Update your";

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

/// The time the last run of `function` fired at, from the clock's answer.
fn last_run(advanced: &Value, function: &str) -> Value {
    advanced["fired"]
        .as_array()
        .and_then(|f| f.iter().rev().find(|f| f["function"] == function))
        .map(|f| f["at"].clone())
        .unwrap_or_else(|| panic!("{function} did not run: {advanced}"))
}

/// A routing referral for `team`'s client `name` (a team without lead routing offers it to its
/// lead alone), created by an advisor; returns its id.
fn new_referral(runner: &Runner, team: &str, client_type: &str, name: &str) -> String {
    let advisor = runner.token("advisor-1", "advisor");
    let body = json!({
        "program": "routing", "teamId": team,
        "client": {"name": name, "phone": "+14155559876", "email": "casey@example.com"},
        "clientType": client_type, "zip": "94110",
        "priceRange": {"min": "600000", "max": "800000"}, "timeline": "1-3 months",
        "briefing": "Wants to move before the school year."
    });
    let (status, created) = runner.call(
        "POST",
        "/referrals",
        Some(&advisor),
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{created}");
    created["id"]
        .as_str()
        .expect("the new referral's id")
        .to_owned()
}

/// `agent` claims referral `id` in the app; returns when it was claimed.
fn claim(runner: &Runner, id: &str, agent: &str) -> Timestamp {
    let tok = runner.token(agent, "agent");
    let path = format!("/referrals/{id}/claim");
    let (status, body) = runner.call("POST", &path, Some(&tok), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agentId"], agent, "{body}");
    let (status, view) = runner.call("GET", &format!("/referrals/{id}"), Some(&tok), None);
    assert_eq!(status, 200, "{view}");
    let won = view["history"]
        .as_array()
        .and_then(|h| {
            h.iter()
                .find(|e| e["type"] == "claim_attempt" && e["won"] == true)
        })
        .unwrap_or_else(|| panic!("the claim is in the history: {view}"));
    timestamp(&won["at"])
}

fn move_stage(runner: &Runner, id: &str, agent: &str, stage: &str) {
    let (status, body) = runner.call(
        "POST",
        &format!("/referrals/{id}/stage"),
        Some(&runner.token(agent, "agent")),
        Some(&json!({"stage": stage}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn scheduled_jobs_by_the_local_clock() {
    let runner = common::start("jobs-e2e");
    let admin = runner.token("admin-1", "admin");
    for (team, lead) in [("bay-team", "ana"), ("mission-team", "dee")] {
        let body = json!({"name": team, "leadAgentId": lead, "agentIds": []}).to_string();
        let path = format!("/teams/{team}");
        let (status, body) = runner.call("PUT", &path, Some(&admin), Some(&body));
        assert_eq!(status, 200, "{body}");
    }
    for (agent, n) in [("ana", 1), ("dee", 4)] {
        let name = format!("{}{}", agent[..1].to_uppercase(), &agent[1..]);
        let (status, body) = runner.call(
            "PUT",
            &format!("/agents/{agent}"),
            Some(&runner.token(agent, "agent")),
            Some(&profile(&name, n).to_string()),
        );
        assert_eq!(status, 200, "{body}");
    }
    let subscription = ppl_1_ana_signs_up(&runner);
    let claimed = ana_and_dee_claim(&runner);
    rm_1_rm_2_reminders_on_day_14_and_28_once_and_none_without_active_referrals(&runner, claimed);
    ppl_2_charged_on_day_30_and_60_once_each_with_a_receipt(&runner, &subscription);
}

/// PPL-1: an agent signs up with zips, client types and referrals per cycle, priced by client
/// type and area; the first charge falls due 30 days on (PPL-2). Only that agent reads it.
fn ppl_1_ana_signs_up(runner: &Runner) -> Value {
    let ana = runner.token("ana", "agent");
    let signup = json!({"zips": ["94110"], "clientTypes": ["seller"], "referralsPerCycle": 3});
    let (status, sub) = runner.call(
        "POST",
        "/ppl/subscriptions",
        Some(&ana),
        Some(&signup.to_string()),
    );
    assert_eq!(status, 201, "{sub}");
    assert_eq!(sub["agentId"], "ana", "{sub}");
    let started = timestamp(&sub["startedAt"]);
    assert_eq!(timestamp(&sub["nextChargeAt"]), started + days(30), "{sub}");
    // A seller in a 94xxx zip: $90.00 a referral (the development price table), 3 a cycle.
    assert_eq!(sub["cycleAmount"], "270.00", "{sub}");
    assert_eq!(sub["charges"], json!([]), "{sub}");
    assert_eq!(
        (&sub["cycle"], &sub["deliveredThisCycle"]),
        (&json!(0), &json!(0)),
        "{sub}"
    );
    let path = format!("/ppl/subscriptions/{}", sub["id"].as_str().unwrap());
    let (status, body) = runner.call("GET", &path, Some(&runner.token("dee", "agent")), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    sub
}

/// Ana claims a seller and a buyer and updates the seller, so the buyer has gone longest without
/// an update; Dee claims one and closes it. Returns when Ana's first claim was made.
fn ana_and_dee_claim(runner: &Runner) -> Timestamp {
    let seller = new_referral(runner, "bay-team", "seller", "Casey Seller");
    let claimed = claim(runner, &seller, "ana");
    let buyer = new_referral(runner, "bay-team", "buyer", "Drew Buyer");
    claim(runner, &buyer, "ana");
    move_stage(runner, &seller, "ana", "connected");
    let closed = new_referral(runner, "mission-team", "buyer", "Erin Closed");
    claim(runner, &closed, "dee");
    move_stage(runner, &closed, "dee", "closed");
    // Each claim's follow-up (the client's details by email) starts the agent's reminders.
    runner.outbox_until("the claim emails", |o| {
        emails(o, ANA_EMAIL, "Your new referral").len() == 2
            && emails(o, DEE_EMAIL, "Your new referral").len() == 1
    });
    claimed
}

/// RM-1, RM-2: two weeks after a claim, and two weeks after that, the agent gets one email
/// listing their active referrals, the longest without an update first; never twice in one
/// period, even when the run is delivered twice (GEN-5); an agent whose referrals are all
/// closed gets none.
fn rm_1_rm_2_reminders_on_day_14_and_28_once_and_none_without_active_referrals(
    runner: &Runner,
    claimed: Timestamp,
) {
    // The job runs daily; an agent's reminder falls due two weeks after their claim.
    let hour = jiff::SignedDuration::from_hours(1);
    runner.advance_to(claimed + days(14) - hour);
    assert!(emails(&runner.outbox(), ANA_EMAIL, REMINDER).is_empty());
    let advanced = runner.advance_to(claimed + days(15));
    let outbox = runner.outbox();
    let reminders = emails(&outbox, ANA_EMAIL, REMINDER);
    assert_eq!(reminders.len(), 1, "{advanced}\n{reminders:#?}");
    assert!(
        reminders[0]["subject"]
            .as_str()
            .unwrap()
            .contains("2 active"),
        "{}",
        reminders[0]
    );
    let body = reminders[0]["body"].as_str().unwrap();
    let (drew, casey) = (body.find("Drew Buyer"), body.find("Casey Seller"));
    assert!(drew.is_some() && casey.is_some() && drew < casey, "{body}");
    assert!(emails(&outbox, DEE_EMAIL, REMINDER).is_empty());

    let again = runner.invoke(
        "reminders",
        &json!({"time": last_run(&advanced, "reminders")}),
    );
    assert_eq!(again["reminded"], json!([]), "{again}");
    assert_eq!(emails(&runner.outbox(), ANA_EMAIL, REMINDER).len(), 1);

    runner.advance_to(claimed + days(28) - hour);
    assert_eq!(emails(&runner.outbox(), ANA_EMAIL, REMINDER).len(), 1);
    runner.advance_to(claimed + days(29));
    let outbox = runner.outbox();
    assert_eq!(emails(&outbox, ANA_EMAIL, REMINDER).len(), 2);
    assert!(emails(&outbox, DEE_EMAIL, REMINDER).is_empty());
}

/// PPL-2, GEN-5: the daily sweep charges a subscription on day 30 and day 60 after sign-up,
/// never on day 29, and once per cycle even when the sweep is delivered twice; each charge
/// emails a receipt and shows in the subscription.
fn ppl_2_charged_on_day_30_and_60_once_each_with_a_receipt(runner: &Runner, sub: &Value) {
    let id = sub["id"].as_str().unwrap();
    let path = format!("/ppl/subscriptions/{id}");
    let started = timestamp(&sub["startedAt"]);
    // Tokens expire by the local clock: a fresh one after each move.
    let view = || {
        let (status, view) = runner.call("GET", &path, Some(&runner.token("ana", "agent")), None);
        assert_eq!(status, 200, "{view}");
        view
    };

    // Through day 29 nothing is charged: the sweep has run every day, and nothing was due.
    runner.advance_to(started + days(30));
    assert!(emails(&runner.outbox(), ANA_EMAIL, RECEIPT).is_empty());
    assert_eq!(view()["charges"], json!([]));

    // On day 30 (30 to 31 days after sign-up) that day's sweep charges the first cycle and emails
    // the receipt.
    let advanced = runner.advance_to(started + days(31));
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
        receipt.contains(id) && receipt.contains("3 referrals at $90.00 each, $270.00 charged"),
        "{receipt}"
    );
    let v = view();
    let charges = v["charges"].as_array().cloned().unwrap_or_default();
    assert_eq!(charges.len(), 1, "{v}");
    assert_eq!(
        (&charges[0]["cycle"], &charges[0]["amount"]),
        (&json!(1), &json!("270.00"))
    );
    let charged_at = timestamp(&charges[0]["at"]);
    assert!(
        charged_at >= started + days(30) && charged_at < started + days(31),
        "charged at {charged_at}, signed up at {started}"
    );
    assert_eq!(timestamp(&v["nextChargeAt"]), started + days(60), "{v}");

    // The sweep that charged, delivered again: nothing more.
    let run = last_run(&advanced, "ppl-billing");
    assert_eq!(timestamp(&run), charged_at);
    let again = runner.invoke("ppl-billing", &json!({"time": run}));
    assert_eq!(again["charged"], json!([]), "{again}");
    assert_eq!(emails(&runner.outbox(), ANA_EMAIL, RECEIPT).len(), 1);
    assert_eq!(view()["charges"].as_array().map(Vec::len), Some(1));

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
    let v = view();
    let cycles: Vec<&Value> = v["charges"]
        .as_array()
        .map(|c| c.iter().map(|c| &c["cycle"]).collect())
        .unwrap_or_default();
    assert_eq!(cycles, vec![&json!(1), &json!(2)], "{v}");
    let second = timestamp(&v["charges"][1]["at"]);
    assert!(second >= started + days(60) && second < started + days(61));
    assert_eq!(timestamp(&v["nextChargeAt"]), started + days(90), "{v}");
}
