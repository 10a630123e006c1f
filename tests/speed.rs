//! Speed to lead of the whole system (DESIGN.md): from `POST /referrals` answered to the last of
//! its alerts (text, push and email to each agent offered) handed to SNS and SES, with 50
//! referrals in flight through the local stack, at the median and the 99th percentile; and from
//! a winning claim to the winner's email with the client's details handed to SES.
//!
//! The floor is the same AWS calls made back to back by a plain program on the same emulators:
//! for each referral, the requests the functions made after intake answered (counted on the
//! wire by the runner, `GET /_local/requests`, divided by the referrals), sent one after another
//! with no queue, stream or function in between, 50 programs at once. Target: at most 1.5x the
//! floor at both percentiles.
//!
//! A figure, not a rule: `make bench` runs it; `make test` does not.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::harness::{Agent, TestApp, quantile, raw_send, spawn_app_alone_with};

const IN_FLIGHT: usize = 50;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn requests(app: &TestApp) -> Value {
    let (status, body) = app.call("GET", "/_local/requests", None, None);
    assert_eq!(status, 200, "{body}");
    body
}

/// When each of `to` was last handed a message at or after `since` (ms), if all were.
fn last_send(requests: &Value, to: &[&str], since: f64) -> Option<f64> {
    let sends = requests["sends"].as_array()?;
    to.iter()
        .map(|who| {
            sends
                .iter()
                .filter(|s| s["to"] == *who && s["at"].as_f64().unwrap_or(0.0) >= since)
                .filter_map(|s| s["at"].as_f64())
                .reduce(f64::max)
        })
        .collect::<Option<Vec<f64>>>()
        .and_then(|ats| ats.into_iter().reduce(f64::max))
}

/// Agent `i` serves zip `zips[i]` alone, subscribed to its buyers.
fn one_agent_per_zip(app: &TestApp) -> (Vec<Agent>, Vec<String>) {
    let zips: Vec<String> = (0..IN_FLIGHT)
        .map(|i| format!("{}{i:02}", &app.zip[..3]))
        .collect();
    let agents: Vec<Agent> = (0..IN_FLIGHT)
        .map(|i| app.agent(&format!("s{i}")))
        .collect();
    for (agent, zip) in agents.iter().zip(&zips) {
        let mut profile = app.profile(agent);
        profile["zips"] = json!([zip]);
        app.save_profile(agent, &profile);
        let signup = json!({"zips": [zip], "clientTypes": ["buyer"], "referralsPerCycle": 10});
        let (status, answer) = app.call(
            "POST",
            "/ppl/subscriptions",
            Some(&app.token_of(agent)),
            Some(&signup.to_string()),
        );
        assert_eq!(status, 201, "{answer}");
    }
    app.verify_phones(&agents);
    (agents, zips)
}

fn ppl_in(app: &TestApp, zip: &str, n: usize) -> Value {
    let mut body = app.referral("ppl", "buyer");
    body["zip"] = zip.into();
    body["client"]["email"] = format!("speed.{n}.{}", app.client.email).into();
    body["client"]["phone"] = app.client_phone(n as u64).into();
    body
}

#[test]
#[ignore = "a figure, run by make bench"]
fn speed_to_lead_of_the_system_with_50_referrals_in_flight_against_the_floor() {
    let app = spawn_app_alone_with(&[("RATE_LIMIT_PER_MINUTE", "1000000".into())]);
    let (agents, zips) = one_agent_per_zip(&app);
    let advisor = app.advisor();
    let base = app.base().to_owned();
    // Intake's instances started (a referral without its fields is refused and writes nothing),
    // and one referral through, so every function has a warm instance, as in a busy hour.
    crate::harness::warm_up(&base, &advisor, ("POST", "/referrals", "{}"), 400);
    let warm = ppl_in(&app, &zips[0], 99);
    let since = now_ms();
    app.create_referral(&warm);
    let a0 = &agents[0];
    let deadline = Instant::now() + Duration::from_secs(120);
    while last_send(&requests(&app), &[&a0.phone, &a0.device, &a0.email], since).is_none() {
        assert!(
            Instant::now() < deadline,
            "the warm-up's alerts never went out"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = requests(&app);

    // 50 referrals at once, one per zip: each alerts its zip's one agent by text, push and email.
    let answered: Vec<f64> = std::thread::scope(|scope| {
        let threads: Vec<_> = zips
            .iter()
            .enumerate()
            .map(|(i, zip)| {
                let (body, advisor, base) = (ppl_in(&app, zip, i).to_string(), &advisor, &base);
                scope.spawn(move || {
                    let auth = format!("Bearer {advisor}");
                    let headers = [
                        ("Authorization", auth.as_str()),
                        ("Content-Type", "application/json"),
                    ];
                    let (status, answer) = raw_send(base, "POST", "/referrals", &headers, &body);
                    assert_eq!(status, 201, "{answer}");
                    now_ms()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let (lasts, after) = loop {
        let after = requests(&app);
        let lasts: Option<Vec<f64>> = agents
            .iter()
            .zip(&answered)
            .map(|(a, at)| last_send(&after, &[&a.phone, &a.device, &a.email], *at))
            .collect();
        if let Some(lasts) = lasts {
            break (lasts, after);
        }
        assert!(
            Instant::now() < deadline,
            "not every alert went out in 180 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut system: Vec<f64> = lasts.iter().zip(&answered).map(|(l, a)| l - a).collect();
    system.sort_by(f64::total_cmp);

    // What the system asked of AWS per referral once intake had answered.
    let per_referral: BTreeMap<String, u64> = after["counts"]
        .as_object()
        .expect("counts")
        .iter()
        .filter_map(|(op, n)| {
            let n = n.as_u64()? - before["counts"][op].as_u64().unwrap_or(0);
            let each = (n as f64 / IN_FLIGHT as f64).round() as u64;
            (each > 0
                && !op.starts_with("lambda ")
                && !op.starts_with("apigateway ")
                && !op.starts_with("scheduler schedule"))
            .then(|| (op.clone(), each))
        })
        .collect();
    let mut floor = floor::run(&per_referral, IN_FLIGHT);
    floor.sort_by(f64::total_cmp);

    println!(
        "\nspeed to lead of the system, {IN_FLIGHT} referrals in flight, intake answered to the \
         last alert handed to SNS and SES (ms): p50 {:.0}, p99 {:.0}",
        quantile(&system, 0.5),
        quantile(&system, 0.99)
    );
    println!("  the floor's calls per referral: {per_referral:?}");
    println!(
        "  floor, the same calls back to back by a plain program, {IN_FLIGHT} at once (ms): p50 \
         {:.0}, p99 {:.0}",
        quantile(&floor, 0.5),
        quantile(&floor, 0.99)
    );
    println!(
        "  system / floor: p50 {:.2}x, p99 {:.2}x (target <= 1.5)",
        quantile(&system, 0.5) / quantile(&floor, 0.5),
        quantile(&system, 0.99) / quantile(&floor, 0.99)
    );

    // A winning claim to the winner's email with the client's details handed to SES.
    let mut to_email = Vec::new();
    for i in 0..10 {
        let agent = &agents[i];
        let created = app.create_referral(&ppl_in(&app, &zips[i], 100 + i));
        let id = created["id"].as_str().unwrap();
        let (status, body) = app.call(
            "POST",
            &format!("/referrals/{id}/claim"),
            Some(&app.token_of(agent)),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let won = now_ms();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The offer's email went before the claim; the next one to the agent is the client's
            // details.
            if let Some(at) = last_send(&requests(&app), &[&agent.email], won) {
                to_email.push(at - won);
                break;
            }
            assert!(Instant::now() < deadline, "no email to the winner");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    to_email.sort_by(f64::total_cmp);
    println!(
        "  winning claim to the winner's email handed to SES, 10 claims (ms): p50 {:.0}, max {:.0}",
        quantile(&to_email, 0.5),
        to_email[to_email.len() - 1]
    );
}

/// The plain program: the same AWS requests straight to the emulators, back to back.
mod floor {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use serde_json::{Value, json};

    use crate::harness::raw_send;

    fn endpoint(var: &str) -> String {
        std::env::var(var).unwrap_or_else(|_| panic!("{var} (make bench sets it)"))
    }

    fn auth(service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=0"
        )
    }

    fn json_call(base: &str, service: &str, target: &str, version: &str, body: &Value) -> Value {
        let (auth, kind) = (auth(service), format!("application/x-amz-json-{version}"));
        let headers = [
            ("Content-Type", kind.as_str()),
            ("X-Amz-Target", target),
            ("Authorization", auth.as_str()),
        ];
        let (status, answer) = raw_send(base, "POST", "/", &headers, &body.to_string());
        assert!(status < 300, "{target}: {status} {answer}");
        serde_json::from_str(&answer).unwrap_or(Value::Null)
    }

    fn query(base: &str, service: &str, fields: &[(&str, &str)]) -> String {
        let auth = auth(service);
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", auth.as_str()),
        ];
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let (status, answer) = raw_send(base, "POST", "/", &headers, &body);
        assert!(status < 300, "{fields:?}: {status} {answer}");
        answer
    }

    fn rest(base: &str, service: &str, path: &str, body: &Value) {
        let auth = auth(service);
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", auth.as_str()),
        ];
        let (status, answer) = raw_send(base, "POST", path, &headers, &body.to_string());
        assert!(status < 300, "{path}: {status} {answer}");
    }

    fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
        let start = text.find(open).map_or(0, |i| i + open.len());
        let end = text[start..].find(close).map_or(text.len(), |i| start + i);
        &text[start..end]
    }

    /// What the requests act on: a table, a queue, a platform endpoint, a verified sender.
    struct Targets {
        dynamodb: String,
        moto: String,
        table: String,
        queue: String,
        endpoint: String,
    }

    fn set_up() -> Targets {
        let (dynamodb, moto) = (endpoint("DYNAMODB_ENDPOINT"), endpoint("MOTO_ENDPOINT"));
        let suffix = ulid::Ulid::new().to_string().to_lowercase();
        let table = format!("floor-{suffix}");
        json_call(
            &dynamodb,
            "dynamodb",
            "DynamoDB_20120810.CreateTable",
            "1.0",
            &json!({
                "TableName": table, "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "SK", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}]
            }),
        );
        let queue = json_call(
            &moto,
            "sqs",
            "AmazonSQS.CreateQueue",
            "1.0",
            &json!({"QueueName": format!("floor-{suffix}")}),
        )["QueueUrl"]
            .as_str()
            .expect("a queue url")
            .to_owned();
        let app = query(
            &moto,
            "sns",
            &[
                ("Action", "CreatePlatformApplication"),
                ("Name", &format!("floor-{suffix}")),
                ("Platform", "GCM"),
                ("Attributes.entry.1.key", "PlatformCredential"),
                ("Attributes.entry.1.value", "key"),
            ],
        );
        let app = between(
            &app,
            "<PlatformApplicationArn>",
            "</PlatformApplicationArn>",
        )
        .to_owned();
        let endpoint = query(
            &moto,
            "sns",
            &[
                ("Action", "CreatePlatformEndpoint"),
                ("PlatformApplicationArn", &app),
                ("Token", &format!("floor-device-{suffix}")),
            ],
        );
        let endpoint = between(&endpoint, "<EndpointArn>", "</EndpointArn>").to_owned();
        rest(
            &moto,
            "ses",
            "/v2/email/identities",
            &json!({"EmailIdentity": "floor@example.com"}),
        );
        Targets {
            dynamodb,
            moto,
            table,
            queue,
            endpoint,
        }
    }

    /// One request of kind `op` (as the runner counts them), on `n`'s own items.
    fn call(t: &Targets, op: &str, n: usize, i: u64) -> bool {
        let key = json!({"PK": {"S": format!("F#{n}#{i}")}, "SK": {"S": "F"}});
        let item = json!({"PK": {"S": format!("F#{n}#{i}")}, "SK": {"S": "F"}, "v": {"S": "x".repeat(200)}});
        let dynamodb = |target: &str, body: Value| {
            json_call(
                &t.dynamodb,
                "dynamodb",
                &format!("DynamoDB_20120810.{target}"),
                "1.0",
                &body,
            );
        };
        match op {
            "dynamodb GetItem" => dynamodb("GetItem", json!({"TableName": t.table, "Key": key})),
            "dynamodb PutItem" => dynamodb("PutItem", json!({"TableName": t.table, "Item": item})),
            "dynamodb UpdateItem" => dynamodb(
                "UpdateItem",
                json!({"TableName": t.table, "Key": key, "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": {"S": "y"}}}),
            ),
            "dynamodb Query" => dynamodb(
                "Query",
                json!({"TableName": t.table, "KeyConditionExpression": "PK = :pk", "ExpressionAttributeValues": {":pk": {"S": format!("F#{n}#0")}}}),
            ),
            "dynamodb TransactWriteItems" => dynamodb(
                "TransactWriteItems",
                json!({"TransactItems": [
                    {"Put": {"TableName": t.table, "Item": item}},
                    {"Put": {"TableName": t.table, "Item": {"PK": {"S": format!("F#{n}#{i}#b")}, "SK": {"S": "F"}}}}
                ]}),
            ),
            "sqs SendMessageBatch" => {
                let entries: Vec<Value> = (0..3)
                    .map(|e| json!({"Id": e.to_string(), "MessageBody": "{\"floor\": true}"}))
                    .collect();
                json_call(
                    &t.moto,
                    "sqs",
                    "AmazonSQS.SendMessageBatch",
                    "1.0",
                    &json!({"QueueUrl": t.queue, "Entries": entries}),
                );
            }
            "sqs SendMessage" => {
                json_call(
                    &t.moto,
                    "sqs",
                    "AmazonSQS.SendMessage",
                    "1.0",
                    &json!({"QueueUrl": t.queue, "MessageBody": "{}"}),
                );
            }
            "sqs ReceiveMessage (event source)" => {
                json_call(
                    &t.moto,
                    "sqs",
                    "AmazonSQS.ReceiveMessage",
                    "1.0",
                    &json!({"QueueUrl": t.queue, "MaxNumberOfMessages": 10}),
                );
            }
            "sqs DeleteMessageBatch (event source)" => {
                // What the receive found is deleted; an empty batch is refused, so a receive
                // stands in when there is nothing, costing the same round trip.
                let got = json_call(
                    &t.moto,
                    "sqs",
                    "AmazonSQS.ReceiveMessage",
                    "1.0",
                    &json!({"QueueUrl": t.queue, "MaxNumberOfMessages": 10}),
                );
                let entries: Vec<Value> = got["Messages"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .enumerate()
                            .map(|(e, m)| json!({"Id": e.to_string(), "ReceiptHandle": m["ReceiptHandle"]}))
                            .collect()
                    })
                    .unwrap_or_default();
                if !entries.is_empty() {
                    json_call(
                        &t.moto,
                        "sqs",
                        "AmazonSQS.DeleteMessageBatch",
                        "1.0",
                        &json!({"QueueUrl": t.queue, "Entries": entries}),
                    );
                }
            }
            "sns Publish SMS" => {
                query(
                    &t.moto,
                    "sns",
                    &[
                        ("Action", "Publish"),
                        ("PhoneNumber", "+14155550100"),
                        ("Message", "A new referral"),
                    ],
                );
            }
            "sns Publish push" => {
                query(
                    &t.moto,
                    "sns",
                    &[
                        ("Action", "Publish"),
                        ("TargetArn", &t.endpoint),
                        ("Message", "A new referral"),
                    ],
                );
            }
            "sns CreatePlatformEndpoint" => {
                query(
                    &t.moto,
                    "sns",
                    &[
                        ("Action", "GetEndpointAttributes"),
                        ("EndpointArn", &t.endpoint),
                    ],
                );
            }
            "ses SendEmail" => rest(
                &t.moto,
                "ses",
                "/v2/email/outbound-emails",
                &json!({"FromEmailAddress": "floor@example.com", "Destination": {"ToAddresses": ["agent@example.com"]},
                        "Content": {"Simple": {"Subject": {"Data": "A new referral"}, "Body": {"Text": {"Data": "Details"}}}}}),
            ),
            "events PutEvents" => {
                json_call(
                    &t.moto,
                    "events",
                    "AWSEvents.PutEvents",
                    "1.1",
                    &json!({"Entries": [{"Source": "floor", "DetailType": "x", "Detail": "{}"}]}),
                );
            }
            _ => return false,
        }
        true
    }

    /// `programs` plain programs at once, each making `per_referral`'s requests back to back;
    /// the milliseconds each took.
    pub fn run(per_referral: &BTreeMap<String, u64>, programs: usize) -> Vec<f64> {
        let targets = set_up();
        let skipped: Vec<&String> = per_referral
            .keys()
            .filter(|op| !op.ends_with(" items") && !call(&targets, op, usize::MAX, 0))
            .collect();
        if !skipped.is_empty() {
            println!("  the floor does not replay: {skipped:?}");
        }
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..programs)
                .map(|n| {
                    let targets = &targets;
                    scope.spawn(move || {
                        let started = Instant::now();
                        for (op, count) in per_referral {
                            for i in 0..*count {
                                call(targets, op, n, i);
                            }
                        }
                        started.elapsed().as_secs_f64() * 1000.0
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        })
    }
}
