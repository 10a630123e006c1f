//! The claim under load: 5 000 claims racing over 100 pay-per-lead referrals, each offered to
//! the same 50 agents, through the local gateway, while the offers' 10 000 texts and pushes go
//! out. Every referral must end with exactly one winner, the one agent answered 200, and every
//! other claimant answered 409 `taken`. The p99 claim time is printed as a ratio to the median
//! raw conditional write to DynamoDB Local made under the same load, side by side.
//!
//! A figure, not a rule: `make bench` runs it (`cargo test -p system-tests --test system load::
//! -- --ignored --nocapture`); `make test` does not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Agent, TestApp, error_code, quantile, spawn_app_alone_with};

const REFERRALS: usize = 100;
const AGENTS: usize = 50;
/// Claims in flight at once: one per agent.
const THREADS: usize = AGENTS;

/// One claim: the referral's and the agent's index, the status, the error code, the time taken.
type Outcome = (usize, usize, u16, String, Duration);

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One DynamoDB JSON request to DynamoDB Local, signed with a throwaway key (it checks the
/// header's shape, not the signature).
fn dynamodb(operation: &str, body: &Value) -> (u16, String) {
    let endpoint =
        std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT (make bench sets it)");
    let target = format!("DynamoDB_20120810.{operation}");
    let headers = [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", target.as_str()),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host;x-amz-target, Signature=0",
        ),
    ];
    crate::harness::raw_send(&endpoint, "POST", "/", &headers, &body.to_string())
}

/// A conditional put of a fresh item: the raw write a claim's own write is.
fn raw_conditional_write(table: &str, n: usize) -> Duration {
    let body = json!({
        "TableName": table,
        "Item": {"PK": {"S": format!("RAW#{n}")}, "SK": {"S": "RAW"}, "agent": {"S": "a"}},
        "ConditionExpression": "attribute_not_exists(PK)",
    });
    let started = Instant::now();
    let (status, answer) = dynamodb("PutItem", &body);
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    took
}

fn scratch_table() -> String {
    let table = format!("load-raw-{}", ulid::Ulid::new().to_string().to_lowercase());
    let (status, answer) = dynamodb(
        "CreateTable",
        &json!({
            "TableName": table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"}
            ],
            "KeySchema": [
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"}
            ]
        }),
    );
    assert_eq!(status, 200, "{answer}");
    table
}

/// 50 agents subscribed to every buyer of the world's zip, a quota past the run's referrals.
fn subscribers(app: &TestApp) -> Vec<Agent> {
    let agents: Vec<Agent> = (1..=AGENTS).map(|i| app.agent(&format!("l{i}"))).collect();
    for agent in &agents {
        app.save_profile(agent, &app.profile(agent));
        let signup = json!({"zips": [app.zip], "clientTypes": ["buyer"], "referralsPerCycle": 100});
        let (status, answer) = app.call(
            "POST",
            "/ppl/subscriptions",
            Some(&app.token_of(agent)),
            Some(&signup.to_string()),
        );
        assert_eq!(status, 201, "{answer}");
    }
    app.verify_phones(&agents);
    agents
}

/// 100 buyers, each a client of their own, each offered to all 50.
fn referrals(app: &TestApp) -> Vec<String> {
    (0..REFERRALS)
        .map(|i| {
            let mut body = app.referral("ppl", "buyer");
            body["client"]["name"] = format!("Load Client {i}").into();
            body["client"]["email"] = format!("load.{i}.{}", app.client.email).into();
            body["client"]["phone"] = app.client_phone(i as u64).into();
            let created = app.create_referral(&body);
            assert_eq!(
                created["offeredTo"].as_array().map(Vec::len),
                Some(AGENTS),
                "{created}"
            );
            created["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
#[ignore = "a figure, run by make bench"]
fn load_5000_claims_over_100_referrals_one_winner_each() {
    // Each agent claims a hundred times in a minute: the per-caller limit is not what is
    // measured here.
    let app = spawn_app_alone_with(&[("RATE_LIMIT_PER_MINUTE", "1000000".into())]);
    let agents = subscribers(&app);
    let ids = referrals(&app);
    let tokens: Vec<String> = agents.iter().map(|a| app.token_of(a)).collect();
    let table = scratch_table();
    let base = app.base().to_owned();
    // A claim of a referral that does not exist runs the claim function and writes nothing.
    crate::harness::warm_up(
        &base,
        &tokens[0],
        ("POST", "/referrals/01ARZ3NDEKTSV4RRFFQ69G5FAV/claim", ""),
        404,
    );

    // Each agent claims every referral, in an order of their own.
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let raw: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    std::thread::scope(|scope| {
        // The baseline, under the same load: raw conditional writes, one after another.
        {
            let (raw, done, table) = (raw.clone(), done.clone(), table.clone());
            scope.spawn(move || {
                let mut n = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let took = raw_conditional_write(&table, n);
                    raw.lock().unwrap().push(took);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        let workers: Vec<_> = (0..THREADS)
            .map(|agent| {
                let (outcomes, ids, token, base) = (outcomes.clone(), &ids, &tokens[agent], &base);
                scope.spawn(move || {
                    let mut order: Vec<usize> = (0..ids.len()).collect();
                    fastrand::Rng::with_seed(agent as u64).shuffle(&mut order);
                    for r in order {
                        let path = format!("/referrals/{}/claim", ids[r]);
                        let auth = format!("Bearer {token}");
                        let headers = [
                            ("Authorization", auth.as_str()),
                            ("Content-Type", "application/json"),
                        ];
                        let t = Instant::now();
                        let (status, body) =
                            crate::harness::raw_send(base, "POST", &path, &headers, "");
                        let took = t.elapsed();
                        let code = serde_json::from_str::<Value>(&body)
                            .map(|b| error_code(&b).to_owned())
                            .unwrap_or_default();
                        outcomes
                            .lock()
                            .unwrap()
                            .push((r, agent, status, code, took));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a claimant thread");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let wall = started.elapsed();

    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), REFERRALS * AGENTS);
    let mut winners: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for (r, agent, status, code, _) in outcomes.iter() {
        match status {
            200 => winners.entry(*r).or_default().push(*agent),
            409 => *refused.entry(code.clone()).or_default() += 1,
            other => panic!("a claim answered {other} {code}"),
        }
    }
    let doubles = winners.values().filter(|w| w.len() > 1).count();
    println!(
        "\nload: {} claims over {REFERRALS} referrals by {AGENTS} agents in {:.1} s; referrals with two winners: {doubles}; refused: {refused:?}",
        outcomes.len(),
        wall.as_secs_f64()
    );
    assert_eq!(doubles, 0, "a referral with two winners: {winners:?}");
    assert_eq!(winners.len(), REFERRALS, "every referral has a winner");
    assert_eq!(
        refused.get("taken"),
        Some(&(REFERRALS * AGENTS - REFERRALS)),
        "{refused:?}"
    );
    // The stored winner is the one answered 200.
    for (r, id) in ids.iter().enumerate() {
        let (status, view) = app.call(
            "GET",
            &format!("/referrals/{id}"),
            Some(&app.closings()),
            None,
        );
        assert_eq!(status, 200, "{view}");
        let winner = &agents[winners[&r][0]];
        assert_eq!(view["assignedAgentId"], winner.id.as_str(), "{view}");
    }

    let mut claims: Vec<f64> = outcomes.iter().map(|o| millis(o.4)).collect();
    claims.sort_by(f64::total_cmp);
    let mut writes: Vec<f64> = raw.lock().unwrap().iter().copied().map(millis).collect();
    writes.sort_by(f64::total_cmp);
    let raw_median = quantile(&writes, 0.5);
    println!(
        "  claim through the gateway (ms): p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1} ({} claims)",
        quantile(&claims, 0.5),
        quantile(&claims, 0.9),
        quantile(&claims, 0.99),
        claims[claims.len() - 1],
        claims.len()
    );
    println!(
        "  raw conditional write under the same load (ms): p50 {raw_median:.1}, p90 {:.1}, p99 {:.1} ({} writes)",
        quantile(&writes, 0.9),
        quantile(&writes, 0.99),
        writes.len()
    );
    println!(
        "  p99 claim / median raw conditional write: {:.2}x",
        quantile(&claims, 0.99) / raw_median
    );
}
