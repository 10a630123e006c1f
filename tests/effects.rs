//! EF-1 on the local stack: the effects a change owes are committed with it and performed from
//! the table's stream, so an AWS endpoint that stalls mid-flow (moto stopped with `kill -STOP`:
//! connections open, no answer, the functions time out and are retried) delays them, and loses
//! or repeats none.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, ToSpan};
use serde_json::{Value, json};

use crate::harness::{Agent, CLOSINGS_EMAIL, Moto, TestApp, sms_to, spawn_app_on};

/// Longer than the outbox function's 10 s timeout: every relay it started while moto was stopped
/// dies, and the stream hands the batch to it again.
const FROZEN: Duration = Duration::from_secs(15);

fn as_agent(app: &TestApp, agent: &Agent, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = app.call(
        method,
        path,
        Some(&app.token_of(agent)),
        Some(&body.to_string()),
    );
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

/// A seller for team `team` asking `max` at most, routed to `cy`, claimed by her in the app. Each
/// referral of the test has its own price range, so its offers read differently from the others'.
fn seller_claimed_by(app: &TestApp, team: &str, cy: &Agent, max: &str) -> String {
    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.into();
    body["priceRange"]["max"] = max.into();
    let id = app.create_referral(&body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    as_agent(
        app,
        cy,
        "POST",
        &format!("/referrals/{id}/claim"),
        json!({}),
    );
    id
}

/// What a message is, for counting: the same channel, recipient, subject and body twice is one
/// message sent twice.
fn key(m: &Value) -> String {
    format!(
        "{} {} {} {}",
        m["channel"], m["to"], m["subject"], m["body"]
    )
}

/// EF-1: with moto (SQS, SNS, SES, EventBridge, Scheduler) stopped, a referral is created, claimed
/// and moved to In Escrow, and another to Coming Soon: each user is answered at once. When moto
/// goes on, every offer, the client's details, the closing documents and the Coming Soon timer
/// arrive, each once.
#[test]
fn ef_1_a_stalled_aws_endpoint_delays_every_effect_and_loses_or_repeats_none() {
    let moto = Moto::start();
    let app = spawn_app_on(&moto);
    let [ana, cy] = app.agents(["ana", "cy"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);
    let today = app
        .now()
        .to_zoned(TimeZone::get("America/Los_Angeles").unwrap())
        .date();
    let list_date = today + 3.days();

    moto.freeze();
    let escrow = seller_claimed_by(&app, &team, &cy, "800000");
    as_agent(
        &app,
        &cy,
        "POST",
        &format!("/referrals/{escrow}/stage"),
        json!({"stage": "in_escrow", "salePrice": "800000", "closeDate": "2030-03-01"}),
    );
    let listed = seller_claimed_by(&app, &team, &cy, "900000");
    as_agent(
        &app,
        &cy,
        "POST",
        &format!("/referrals/{listed}/stage"),
        json!({"stage": "coming_soon", "listDate": list_date}),
    );
    std::thread::sleep(FROZEN);
    moto.thaw();

    let documents = |o: &[Value]| {
        o.iter()
            .filter(|m| m["attachments"] == json!([format!("closing-documents-{escrow}-1.pdf")]))
            .count()
    };
    let details = |o: &[Value]| {
        o.iter()
            .filter(|m| m["channel"] == "email" && m["to"] == cy.email.as_str())
            .filter(|m| {
                m["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(&app.client.phone))
            })
            .count()
    };
    // The texts after the codes that verified their phones (TX-3): the offers.
    let offers = |o: &[Value], phone: &str| {
        sms_to(o, phone)
            .iter()
            .filter(|b| !b.starts_with("Code: "))
            .count()
    };
    app.outbox_until("the offers, the client's details and the documents", |o| {
        offers(o, &ana.phone) >= 2
            && offers(o, &cy.phone) >= 2
            && details(o) >= 2
            && documents(o) >= 2
    });
    // What a retry sent twice would have arrived by now.
    std::thread::sleep(Duration::from_secs(5));
    let outbox = app.outbox();
    let mut counts = BTreeMap::<String, usize>::new();
    for m in &outbox {
        *counts.entry(key(m)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:#?}");
    assert_eq!(offers(&outbox, &ana.phone), 2, "{outbox:#?}");
    assert_eq!(offers(&outbox, &cy.phone), 2, "{outbox:#?}");
    assert_eq!(details(&outbox), 2, "{outbox:#?}");
    let mut to: Vec<&str> = outbox
        .iter()
        .filter(|m| documents(std::slice::from_ref(m)) == 1)
        .filter_map(|m| m["to"].as_str())
        .collect();
    to.sort_unstable();
    let mut expected = vec![cy.email.as_str(), CLOSINGS_EMAIL];
    expected.sort_unstable();
    assert_eq!(to, expected, "{outbox:#?}");

    let midnight = list_date
        .to_zoned(TimeZone::get("America/Los_Angeles").unwrap())
        .unwrap()
        .timestamp();
    let advanced = app.advance_to(midnight + SignedDuration::from_mins(1));
    let fired = advanced["fired"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["schedule"] == format!("coming-soon-{listed}"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(fired, 1, "{advanced}");
    let (status, view) = app.call(
        "GET",
        &format!("/referrals/{listed}"),
        Some(&app.token_of(&cy)),
        None,
    );
    assert_eq!((status, &view["stage"]), (200, &json!("listing")), "{view}");
}
