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
    // Nothing received yet: nothing owed yet (PPL-11); each referral is priced when delivered.
    assert_eq!(sub["cycleAmount"], "0.00", "{sub}");
    assert_eq!(sub["quotaThisCycle"], 3, "{sub}");
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
/// day 29 or 59; each charge emails a receipt and shows in the subscription. Ana receives
/// nothing, so each charge is nothing (PPL-11).
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
        receipt.contains(id) && receipt.contains("no referrals received, nothing charged"),
        "{receipt}"
    );
    let v = subscription(&app, &ana, &sub);
    let charges = v["charges"].as_array().cloned().unwrap_or_default();
    assert_eq!(charges.len(), 1, "{v}");
    assert_eq!(
        (&charges[0]["cycle"], &charges[0]["amount"]),
        (&json!(1), &json!("0.00"))
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
        json!([{"subscriptionId": sub["id"], "cycle": 1, "amount": "0.00"}]),
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

// ---- PPL-10 to PPL-13: what a subscriber receives, is charged, changes and returns.

/// `agent` signs up for `types` in `zips`, `per_cycle` a cycle; returns the subscription's path.
fn signs_up(app: &TestApp, agent: &Agent, zips: &[&str], types: &[&str], per_cycle: u32) -> String {
    let body = json!({"zips": zips, "clientTypes": types, "referralsPerCycle": per_cycle});
    let (status, sub) = app.call(
        "POST",
        "/ppl/subscriptions",
        Some(&app.token_of(agent)),
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{sub}");
    format!("/ppl/subscriptions/{}", sub["id"].as_str().unwrap())
}

/// A zip of this world outside the Bay Area (`10xxx`: $45 a buyer, $65 a seller).
fn east_zip(app: &TestApp) -> String {
    format!("10{}", &app.zip[2..])
}

/// A pay-per-lead `client_type` in `zip` for client `name`, offered to `offered` (exactly);
/// returns its id.
fn ppl_lead(app: &TestApp, client_type: &str, zip: &str, name: &str, offered: &[&Agent]) -> String {
    let mut body = app.referral("ppl", client_type);
    body["zip"] = zip.into();
    body["client"]["name"] = name.into();
    // Each lead a client of its own: a duplicate is something else (PPL-13).
    body["client"]["email"] = format!(
        "{}.{}",
        name.replace(' ', ".").to_lowercase(),
        app.client.email
    )
    .into();
    let created = app.create_referral(&body);
    let mut to: Vec<&str> = created["offeredTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    to.sort_unstable();
    let mut expected: Vec<&str> = offered.iter().map(|a| a.id.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(to, expected, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// No subscriber can take this lead now: it is offered to nobody and waits in the advisors'
/// queue (RC-2).
fn nobody_takes(app: &TestApp, client_type: &str, zip: &str) {
    let mut body = app.referral("ppl", client_type);
    body["zip"] = zip.into();
    let (status, answer) = app.call(
        "POST",
        "/referrals",
        Some(&app.advisor()),
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["offeredTo"], json!([]), "{answer}");
    assert!(answer["unassignedSince"].is_string(), "{answer}");
}

fn claims(app: &TestApp, id: &str, agent: &Agent) -> (u16, Value) {
    app.call(
        "POST",
        &format!("/referrals/{id}/claim"),
        Some(&app.token_of(agent)),
        None,
    )
}

fn view_at(app: &TestApp, path: &str, agent: &Agent) -> Value {
    let (status, view) = app.call("GET", path, Some(&app.token_of(agent)), None);
    assert_eq!(status, 200, "{view}");
    view
}

/// A charge as (cycle, amount, [(referral, price)]).
type ChargeRow = (u64, String, Vec<(String, String)>);

fn charges(view: &Value) -> Vec<ChargeRow> {
    view["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let paid = c["referrals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["referralId"].as_str().unwrap().to_owned(),
                        r["price"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (
                c["cycle"].as_u64().unwrap(),
                c["amount"].as_str().unwrap().to_owned(),
                paid,
            )
        })
        .collect()
}

/// PPL-10: two subscribers are offered the same referral; one wins it; only the winner's quota
/// moves, and at the cycle's end only the winner is charged for it.
#[test]
fn ppl_10_two_subscribers_offered_one_referral_only_the_winner_s_quota_and_charge_move() {
    let app = spawn_app_alone();
    let [ana, dee] = app.agents(["ana", "dee"]);
    let zip = app.zip.clone();
    let ana_sub = signs_up(&app, &ana, &[&zip], &["seller"], 1);
    let dee_sub = signs_up(&app, &dee, &[&zip], &["seller"], 1);
    let started = timestamp(&view_at(&app, &ana_sub, &ana)["startedAt"]);
    let id = ppl_lead(&app, "seller", &zip, "Sam Seller", &[&ana, &dee]);
    assert_eq!(claims(&app, &id, &ana).0, 200);
    let (status, lost) = claims(&app, &id, &dee);
    assert_eq!((status, error_code(&lost)), (409, "taken"), "{lost}");
    assert_eq!(view_at(&app, &ana_sub, &ana)["deliveredThisCycle"], 1);
    assert_eq!(view_at(&app, &dee_sub, &dee)["deliveredThisCycle"], 0);
    // Ana's one referral of the cycle is used; Dee, who lost, still has room.
    ppl_lead(&app, "seller", &zip, "Pat Seller", &[&dee]);
    app.advance_to(started + days(31));
    let ana_charges = charges(&view_at(&app, &ana_sub, &ana));
    assert_eq!(
        ana_charges,
        vec![(1, "90.00".into(), vec![(id, "90.00".into())])]
    );
    let dee_charges = charges(&view_at(&app, &dee_sub, &dee));
    assert_eq!(
        dee_charges,
        vec![(1, "0.00".into(), vec![])],
        "Dee claimed nothing"
    );
}

/// PPL-10: several referrals claimed at once by a subscriber with room for one: one claim wins,
/// the others answer 409 `quota_reached`, and one referral is received.
#[test]
fn ppl_10_concurrent_claims_never_pass_the_quota() {
    let app = spawn_app();
    let [ana] = app.agents(["ana"]);
    let zip = app.zip.clone();
    let sub = signs_up(&app, &ana, &[&zip], &["seller"], 1);
    let leads: Vec<String> = (0..4)
        .map(|i| ppl_lead(&app, "seller", &zip, &format!("Client {i}"), &[&ana]))
        .collect();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let claims: Vec<_> = leads
            .iter()
            .map(|id| scope.spawn(|| claims(&app, id, &ana)))
            .collect();
        claims.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let won = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(won, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(
            (*status, error_code(body)),
            (409, "quota_reached"),
            "{body}"
        );
    }
    assert_eq!(view_at(&app, &sub, &ana)["deliveredThisCycle"], 1);
}

/// PPL-11: each referral is priced by its own client type and zip when delivered; a cycle is
/// charged the sum, and its receipt lists each referral with its price. Two months of Ana's
/// receipts are printed (`--nocapture`).
#[test]
fn ppl_11_a_cycle_is_charged_the_sum_of_its_referrals_own_prices_listed_on_the_receipt() {
    let app = spawn_app_alone();
    let [ana] = app.agents(["ana"]);
    let (bay, east) = (app.zip.clone(), east_zip(&app));
    let sub = signs_up(&app, &ana, &[&bay, &east], &["buyer", "seller"], 5);
    let started = timestamp(&view_at(&app, &sub, &ana)["startedAt"]);
    // Cycle 1: a Bay Area seller ($90) and an east-coast buyer ($45).
    let seller = ppl_lead(&app, "seller", &bay, "Sam Seller", &[&ana]);
    let buyer = ppl_lead(&app, "buyer", &east, "Bo Buyer", &[&ana]);
    for id in [&seller, &buyer] {
        assert_eq!(claims(&app, id, &ana).0, 200);
    }
    app.advance_to(started + days(31));
    // Cycle 2: a Bay Area buyer ($60).
    let second = ppl_lead(&app, "buyer", &bay, "Bea Buyer", &[&ana]);
    assert_eq!(claims(&app, &second, &ana).0, 200);
    app.advance_to(started + days(61));
    let view = view_at(&app, &sub, &ana);
    assert_eq!(
        charges(&view),
        vec![
            (
                1,
                "135.00".into(),
                vec![
                    (seller.clone(), "90.00".into()),
                    (buyer.clone(), "45.00".into())
                ]
            ),
            (2, "60.00".into(), vec![(second.clone(), "60.00".into())]),
        ],
        "{view}"
    );
    let outbox = app.outbox();
    let receipts = emails(&outbox, &ana, RECEIPT);
    assert_eq!(receipts.len(), 2, "{receipts:#?}");
    let first = receipts[0]["body"].as_str().unwrap();
    assert!(
        first.contains(&format!("{seller} seller in {bay}: $90"))
            && first.contains(&format!("{buyer} buyer in {east}: $45"))
            && first.contains(": $135."),
        "{first}"
    );
    // Counted as a reader says it: two referrals, then one referral.
    assert!(first.contains("): 2 referrals received."), "{first}");
    let second = receipts[1]["body"].as_str().unwrap();
    assert!(second.contains("): 1 referral received."), "{second}");
    for r in &receipts {
        println!(
            "{}\n{}\n",
            r["subject"].as_str().unwrap(),
            r["body"].as_str().unwrap()
        );
    }
    // GEN-2: each paid referral's history has its charge.
    let (status, r) = app.call(
        "GET",
        &format!("/referrals/{seller}"),
        Some(&app.token_of(&ana)),
        None,
    );
    assert_eq!(status, 200, "{r}");
    let charged: Vec<&Value> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "charged")
        .collect();
    assert_eq!(charged.len(), 1, "{r}");
    assert_eq!(
        (&charged[0]["cycle"], &charged[0]["amount"]),
        (&json!(1), &json!("90.00"))
    );
}

/// PPL-11: a cycle with nothing received charges nothing, and the receipt says so.
#[test]
fn ppl_11_a_cycle_with_nothing_received_charges_nothing_and_says_so() {
    let app = spawn_app_alone();
    let ana = app.agents(["ana"])[0].clone();
    let sub = ana_signs_up(&app, &ana);
    let run = json!({"time": timestamp(&sub["startedAt"]) + days(30)});
    let first = app.invoke("ppl-billing", &run);
    assert_eq!(first["charged"][0]["amount"], "0.00", "{first}");
    let outbox = app.outbox_until("the receipt", |o| emails(o, &ana, RECEIPT).len() == 1);
    let receipt = emails(&outbox, &ana, RECEIPT)[0]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        receipt.contains("no referrals received, nothing charged"),
        "{receipt}"
    );
}

/// PPL-12: a change of client types reaches the next delivery and a change of quota the next
/// cycle; a cancel stops deliveries, the cycle under way is charged for what it received, and
/// nothing after. Each shows in the next charge.
#[test]
fn ppl_12_a_change_and_a_cancel_are_reflected_in_the_next_charges() {
    let app = spawn_app_alone();
    let [ana] = app.agents(["ana"]);
    let zip = app.zip.clone();
    let sub = signs_up(&app, &ana, &[&zip], &["seller"], 1);
    let started = timestamp(&view_at(&app, &sub, &ana)["startedAt"]);
    let change = json!({"clientTypes": ["buyer"], "referralsPerCycle": 2});
    let (status, changed) = app.call(
        "PUT",
        &sub,
        Some(&app.token_of(&ana)),
        Some(&change.to_string()),
    );
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (
            &changed["quotaThisCycle"],
            &changed["nextQuota"]["referralsPerCycle"]
        ),
        (&json!(1), &json!(2)),
        "{changed}"
    );
    // Buyers at once, sellers no more; still one this cycle.
    nobody_takes(&app, "seller", &zip);
    let b1 = ppl_lead(&app, "buyer", &zip, "Bo Buyer", &[&ana]);
    assert_eq!(claims(&app, &b1, &ana).0, 200);
    nobody_takes(&app, "buyer", &zip);
    app.advance_to(started + days(31));
    // Two in the next cycle.
    let b2 = ppl_lead(&app, "buyer", &zip, "Bea Buyer", &[&ana]);
    let b3 = ppl_lead(&app, "buyer", &zip, "Bob Buyer", &[&ana]);
    for id in [&b2, &b3] {
        assert_eq!(claims(&app, id, &ana).0, 200);
    }
    let (status, cancelled) = app.call("DELETE", &sub, Some(&app.token_of(&ana)), None);
    assert_eq!(
        (status, &cancelled["status"]),
        (200, &json!("cancelled")),
        "{cancelled}"
    );
    nobody_takes(&app, "buyer", &zip);
    let (status, body) = app.call(
        "PUT",
        &sub,
        Some(&app.token_of(&ana)),
        Some(&change.to_string()),
    );
    assert_eq!((status, error_code(&body)), (409, "cancelled"), "{body}");
    app.advance_to(started + days(95));
    let view = view_at(&app, &sub, &ana);
    assert_eq!(
        charges(&view),
        vec![
            (1, "60.00".into(), vec![(b1, "60.00".into())]),
            (
                2,
                "120.00".into(),
                vec![(b2, "60.00".into()), (b3, "60.00".into())]
            ),
        ],
        "{view}"
    );
    assert!(view.get("nextChargeAt").is_none(), "{view}");
    assert_eq!(emails(&app.outbox(), &ana, RECEIPT).len(), 2);
}

/// PPL-12, GEN-4: someone else's subscription cannot be changed or cancelled, and a change out
/// of bounds is refused; neither writes anything.
#[test]
fn ppl_12_only_its_agent_changes_a_subscription_within_bounds() {
    let app = spawn_app();
    let [ana, dee] = app.agents(["ana", "dee"]);
    let zip = app.zip.clone();
    let sub = signs_up(&app, &ana, &[&zip], &["seller"], 1);
    let change = json!({"referralsPerCycle": 3}).to_string();
    let (status, body) = app.call("PUT", &sub, Some(&app.token_of(&dee)), Some(&change));
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let (status, body) = app.call("DELETE", &sub, Some(&app.token_of(&dee)), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    for bad in [
        json!({"referralsPerCycle": 1000}),
        json!({"zips": []}),
        json!({"colour": "red"}),
    ] {
        let (status, body) = app.call(
            "PUT",
            &sub,
            Some(&app.token_of(&ana)),
            Some(&bad.to_string()),
        );
        assert_eq!(
            (status, error_code(&body)),
            (400, "bad_request"),
            "{bad}: {body}"
        );
    }
    let view = view_at(&app, &sub, &ana);
    assert_eq!(
        (
            &view["status"],
            &view["referralsPerCycle"],
            view.get("nextQuota")
        ),
        (&json!("active"), &json!(1), None),
        "{view}"
    );
}

/// PPL-13: a referral returned within 7 days of its claim is not charged and frees its place;
/// the return and its reason are in its history. After 7 days: 409 `too_late`.
#[test]
fn ppl_13_a_return_within_7_days_is_not_charged_and_after_is_too_late() {
    let app = spawn_app_alone();
    let [ana] = app.agents(["ana"]);
    let zip = app.zip.clone();
    let sub = signs_up(&app, &ana, &[&zip], &["seller"], 1);
    let started = timestamp(&view_at(&app, &sub, &ana)["startedAt"]);
    let r1 = ppl_lead(&app, "seller", &zip, "Sam Seller", &[&ana]);
    assert_eq!(claims(&app, &r1, &ana).0, 200);
    let returns = format!("{sub}/returns");
    let back = json!({"referralId": r1, "reason": "wrong_contact"}).to_string();
    let (status, body) = app.call("POST", &returns, Some(&app.token_of(&ana)), Some(&back));
    assert_eq!(status, 200, "{body}");
    let (_, r) = app.call(
        "GET",
        &format!("/referrals/{r1}"),
        Some(&app.token_of(&ana)),
        None,
    );
    let returned: Vec<&Value> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "returned")
        .collect();
    assert_eq!(returned.len(), 1, "{r}");
    assert_eq!(returned[0]["reason"], "wrong_contact", "{r}");
    // Its place is free: Ana is offered the next one and receives it.
    let r2 = ppl_lead(&app, "seller", &zip, "Pat Seller", &[&ana]);
    assert_eq!(claims(&app, &r2, &ana).0, 200);
    app.advance_to(started + days(8));
    let late = json!({"referralId": r2, "reason": "wrong_contact"}).to_string();
    let (status, body) = app.call("POST", &returns, Some(&app.token_of(&ana)), Some(&late));
    assert_eq!((status, error_code(&body)), (409, "too_late"), "{body}");
    app.advance_to(started + days(31));
    let view = view_at(&app, &sub, &ana);
    assert_eq!(
        charges(&view),
        vec![(1, "90.00".into(), vec![(r2, "90.00".into())])],
        "{view}"
    );
}

/// PPL-13: a referral whose cycle has been charged cannot be returned, even within its 7 days:
/// 409 `already_charged`, and nothing is written (no return in its history, the charge as it
/// was).
#[test]
fn ppl_13_a_return_once_its_cycle_is_charged_is_refused_and_writes_nothing() {
    let app = spawn_app_alone();
    let [ana] = app.agents(["ana"]);
    let zip = app.zip.clone();
    let sub = signs_up(&app, &ana, &[&zip], &["seller"], 1);
    let started = timestamp(&view_at(&app, &sub, &ana)["startedAt"]);
    // Received on day 28; its cycle is charged on day 30, within the 7 days.
    app.advance_to(started + days(28));
    let r1 = ppl_lead(&app, "seller", &zip, "Sam Seller", &[&ana]);
    assert_eq!(claims(&app, &r1, &ana).0, 200);
    app.advance_to(started + days(31));
    let charged = vec![(
        1,
        "90.00".to_owned(),
        vec![(r1.clone(), "90.00".to_owned())],
    )];
    assert_eq!(charges(&view_at(&app, &sub, &ana)), charged);
    let back = json!({"referralId": r1, "reason": "wrong_contact"}).to_string();
    let (status, body) = app.call(
        "POST",
        &format!("{sub}/returns"),
        Some(&app.token_of(&ana)),
        Some(&back),
    );
    assert_eq!(
        (status, error_code(&body)),
        (409, "already_charged"),
        "{body}"
    );
    let (status, r) = app.call(
        "GET",
        &format!("/referrals/{r1}"),
        Some(&app.token_of(&ana)),
        None,
    );
    assert_eq!(status, 200, "{r}");
    let history = r["history"].as_array().unwrap();
    assert!(!history.iter().any(|e| e["type"] == "returned"), "{r}");
    assert_eq!(charges(&view_at(&app, &sub, &ana)), charged);
}
