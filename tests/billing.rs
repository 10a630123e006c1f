//! Pay-per-lead sign-up and the scheduled jobs: the template's recurring schedules (the daily
//! billing sweep, the biweekly reminders) fired by the local clock, with what they send read
//! back from the outbox.
//!
//! A schedule delivered twice (EventBridge Scheduler delivers at least once) is played by
//! invoking the function again with the very input the schedule fired with.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::harness::{Agent, TestApp, error_code, spawn_app, spawn_app_alone};

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

/// The emails to `agent` whose subject starts with `subject`, oldest first.
fn emails<'a>(outbox: &'a [Value], agent: &Agent, subject: &str) -> Vec<&'a Value> {
    outbox
        .iter()
        .filter(|m| m["channel"] == "email" && m["to"] == agent.email.as_str())
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

/// Ana signs up for 3 sellers a cycle in the world's (94xxx) zip; returns the subscription.
fn ana_signs_up(app: &TestApp, ana: &Agent) -> Value {
    let signup = json!({"zips": [app.zip], "clientTypes": ["seller"], "referralsPerCycle": 3});
    let (status, sub) = app.call(
        "POST",
        "/ppl/subscriptions",
        Some(&app.token_of(ana)),
        Some(&signup.to_string()),
    );
    assert_eq!(status, 201, "{sub}");
    sub
}

/// Ana's view of her subscription, with a token fresh at the local clock's time.
fn subscription(app: &TestApp, ana: &Agent, sub: &Value) -> Value {
    let path = format!("/ppl/subscriptions/{}", sub["id"].as_str().unwrap());
    let (status, view) = app.call("GET", &path, Some(&app.token_of(ana)), None);
    assert_eq!(status, 200, "{view}");
    view
}

/// A routing referral for `team`'s client `name` (a team without lead routing offers it to its
/// lead alone), claimed by `agent` in the app; returns its id and when it was claimed.
fn claimed(
    app: &TestApp,
    team: &str,
    client_type: &str,
    name: &str,
    agent: &Agent,
) -> (String, Timestamp) {
    let mut body = app.referral("routing", client_type);
    body["teamId"] = team.into();
    body["client"]["name"] = name.into();
    let id = app.create_referral(&body)["id"]
        .as_str()
        .expect("the new referral's id")
        .to_owned();
    let tok = app.token_of(agent);
    let (status, body) = app.call("POST", &format!("/referrals/{id}/claim"), Some(&tok), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agentId"], agent.id.as_str(), "{body}");
    let (status, view) = app.call("GET", &format!("/referrals/{id}"), Some(&tok), None);
    assert_eq!(status, 200, "{view}");
    let won = view["history"]
        .as_array()
        .and_then(|h| {
            h.iter()
                .find(|e| e["type"] == "claim_attempt" && e["won"] == true)
        })
        .unwrap_or_else(|| panic!("the claim is in the history: {view}"));
    (id, timestamp(&won["at"]))
}

fn move_stage(app: &TestApp, id: &str, agent: &Agent, stage: &str) {
    let (status, body) = app.call(
        "POST",
        &format!("/referrals/{id}/stage"),
        Some(&app.token_of(agent)),
        Some(&json!({"stage": stage}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
}

/// Ana leads `bay` and claims a seller and a buyer, then updates the seller, so the buyer has
/// gone longest without an update; Dee leads `mission`, claims one and closes it. Returns them
/// and when Ana's first claim was made, once each claim's follow-up (the client's details by
/// email, which starts the agent's reminders) has been sent.
fn ana_and_dee_claim(app: &TestApp) -> (Agent, Agent, Timestamp) {
    let [ana, dee] = app.agents(["ana", "dee"]);
    let bay = app.create_team("bay", &ana, &[]);
    let mission = app.create_team("mission", &dee, &[]);
    let (seller, first) = claimed(app, &bay, "seller", "Casey Seller", &ana);
    claimed(app, &bay, "buyer", "Drew Buyer", &ana);
    move_stage(app, &seller, &ana, "connected");
    let (closed, _) = claimed(app, &mission, "buyer", "Erin Closed", &dee);
    move_stage(app, &closed, &dee, "closed");
    app.outbox_until("the claim emails", |o| {
        emails(o, &ana, "Your new referral").len() == 2
            && emails(o, &dee, "Your new referral").len() == 1
    });
    (ana, dee, first)
}

/// PPL-1: an agent signs up with zips, client types and referrals per cycle, priced by client
/// type and area; the first charge falls due 30 days on (PPL-2). Only that agent reads it.
#[test]
fn ppl_1_an_agent_signs_up_with_a_quota_priced_by_client_type_and_area() {
    let app = spawn_app();
    let [ana, dee] = app.agents(["ana", "dee"]);
    let sub = ana_signs_up(&app, &ana);
    assert_eq!(sub["agentId"], ana.id.as_str(), "{sub}");
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
    let (status, body) = app.call("GET", &path, Some(&app.token_of(&dee)), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
}

/// PPL-2: the daily sweep charges a subscription on day 30 and day 60 after sign-up, never on
/// day 29 or 59; each charge emails a receipt and shows in the subscription.
#[test]
fn ppl_2_charged_on_day_30_and_60_each_with_a_receipt() {
    let app = spawn_app_alone();
    let ana = app.agents(["ana"])[0].clone();
    let sub = ana_signs_up(&app, &ana);
    let id = sub["id"].as_str().unwrap();
    let started = timestamp(&sub["startedAt"]);

    // Through day 29 nothing is charged: the sweep has run every day, and nothing was due.
    app.advance_to(started + days(30));
    assert!(emails(&app.outbox(), &ana, RECEIPT).is_empty());
    assert_eq!(subscription(&app, &ana, &sub)["charges"], json!([]));

    // On day 30 (30 to 31 days after sign-up) that day's sweep charges the first cycle and emails
    // the receipt.
    let advanced = app.advance_to(started + days(31));
    let outbox = app.outbox();
    let receipts = emails(&outbox, &ana, RECEIPT);
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
    let v = subscription(&app, &ana, &sub);
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
    // The charge is the day-30 sweep's, at the time the schedule fired.
    assert_eq!(timestamp(&last_run(&advanced, "ppl-billing")), charged_at);

    // Through day 59 still one charge; on day 60 the second.
    app.advance_to(started + days(60));
    assert_eq!(emails(&app.outbox(), &ana, RECEIPT).len(), 1);
    app.advance_to(started + days(61));
    let outbox = app.outbox();
    let receipts = emails(&outbox, &ana, RECEIPT);
    assert_eq!(receipts.len(), 2, "{receipts:#?}");
    assert!(
        receipts[1]["subject"]
            .as_str()
            .unwrap()
            .ends_with("cycle 2")
    );
    let v = subscription(&app, &ana, &sub);
    let cycles: Vec<&Value> = v["charges"]
        .as_array()
        .map(|c| c.iter().map(|c| &c["cycle"]).collect())
        .unwrap_or_default();
    assert_eq!(cycles, vec![&json!(1), &json!(2)], "{v}");
    let second = timestamp(&v["charges"][1]["at"]);
    assert!(second >= started + days(60) && second < started + days(61));
    assert_eq!(timestamp(&v["nextChargeAt"]), started + days(90), "{v}");
}

/// PPL-2, GEN-5: a billing sweep delivered twice with the same input (EventBridge Scheduler
/// delivers at least once) charges once and sends one receipt.
#[test]
fn ppl_2_a_billing_sweep_delivered_twice_charges_once() {
    // The sweep reads the whole table: a runner of its own.
    let app = spawn_app_alone();
    let ana = app.agents(["ana"])[0].clone();
    let sub = ana_signs_up(&app, &ana);
    let run =
        json!({"time": timestamp(&sub["startedAt"]) + days(30) + SignedDuration::from_hours(1)});
    let first = app.invoke("ppl-billing", &run);
    assert_eq!(
        first["charged"],
        json!([{"subscriptionId": sub["id"], "cycle": 1, "amount": "270.00"}]),
        "{first}"
    );
    app.outbox_until("the receipt", |o| emails(o, &ana, RECEIPT).len() == 1);
    let again = app.invoke("ppl-billing", &run);
    assert_eq!(again["charged"], json!([]), "{again}");
    assert_eq!(emails(&app.outbox(), &ana, RECEIPT).len(), 1);
    assert_eq!(
        subscription(&app, &ana, &sub)["charges"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// RM-1: two weeks after a claim, and two weeks after that, the agent gets one email listing
/// their active referrals, the longest without an update first; not before; an agent whose
/// referrals are all closed gets none.
#[test]
fn rm_1_reminded_every_two_weeks_of_active_referrals_longest_waiting_first() {
    let app = spawn_app_alone();
    let (ana, dee, claimed) = ana_and_dee_claim(&app);
    // The job runs daily; an agent's reminder falls due two weeks after their claim.
    let hour = SignedDuration::from_hours(1);
    app.advance_to(claimed + days(14) - hour);
    assert!(emails(&app.outbox(), &ana, REMINDER).is_empty());
    app.advance_to(claimed + days(15));
    let outbox = app.outbox();
    let reminders = emails(&outbox, &ana, REMINDER);
    assert_eq!(reminders.len(), 1, "{reminders:#?}");
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
    assert!(emails(&outbox, &dee, REMINDER).is_empty());

    app.advance_to(claimed + days(28) - hour);
    assert_eq!(emails(&app.outbox(), &ana, REMINDER).len(), 1);
    app.advance_to(claimed + days(29));
    let outbox = app.outbox();
    assert_eq!(emails(&outbox, &ana, REMINDER).len(), 2);
    assert!(emails(&outbox, &dee, REMINDER).is_empty());
}

/// RM-2, GEN-5: a reminder run delivered twice with the same input reminds nobody twice.
#[test]
fn rm_2_a_reminder_run_delivered_twice_reminds_once() {
    // The run reads the whole table: a runner of its own.
    let app = spawn_app_alone();
    let (ana, _, claimed) = ana_and_dee_claim(&app);
    let run = json!({"time": claimed + days(15)});
    let first = app.invoke("reminders", &run);
    assert_eq!(first["reminded"], json!([ana.id]), "{first}");
    app.outbox_until("the reminder", |o| emails(o, &ana, REMINDER).len() == 1);
    let again = app.invoke("reminders", &run);
    assert_eq!(again["reminded"], json!([]), "{again}");
    assert_eq!(emails(&app.outbox(), &ana, REMINDER).len(), 1);
}
