//! `make bench`: the targets of DESIGN.md, measured as ratios within one run against the same
//! DynamoDB Local and the same machine, so the machine's speed cancels out.
//!
//! - claim: the claim function's handler, warm, from the API Gateway event to its response, on
//!   the DynamoDB store, against one raw conditional write; target at most 1.3. Two raw writes
//!   are measured: a PutItem of a three-attribute item, and an UpdateItem that assigns an
//!   identical referral (the same item size, indexes and stream records the claim writes).
//!   The store's claim write is timed alone beside them, and a raw put through the SDK's default
//!   HTTP client beside the shared one the functions use. A pay-per-lead claim is timed beside
//!   it: its refused one-write attempt, the subscription read and the transaction that claims
//!   and counts the referral in the cycle (PPL-10).
//! - warm transfer start: the storage and queue round trips of `POST /referrals` for a warm
//!   transfer, counted on the wire; target at most 3.
//! - sweeps: items read by the billing and the reminders due-work queries against items due, at
//!   100 000 records of each kind with 1% due; target at most 1.1.
//! - cold start: each function's release binary against `hello-lambda` (see `cold.rs`): init at
//!   most 2x, peak memory under 40 MB, stripped binary under 10 MB. And what the metrics cost:
//!   the claim function's init and binary against the same function built without them.
//! - peer: the same claim as a Python Lambda with boto3 under `awslambdaric` (see `peer.rs`):
//!   its cold start and warm claim over ours.

mod cold;
mod peer;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use shared::app::intake::{NewReferral, create_referral};
use shared::app::{Actor, Role};
use shared::domain::agent::Agent;
use shared::effects::Delivery;
use shared::memory::in_memory_services;
use shared::ports::{AgentDirectory, BroadcastQueue, SendError};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use jiff::{SignedDuration, Timestamp};
use shared::domain::referral::{
    ClaimChannel, Client as ReferralClient, LeadDetails, PriceRange, Program, Referral,
};
use shared::domain::values::ClientType;
use shared::dynamodb::DynamoDbStore;
use shared::dynamodb::table::{self, TableDeclaration};
use shared::ports::{ClaimOutcome, DueKind, DueWork, ReferralStore};

const CLAIMS: usize = 400;
const PPL_CLAIMS: usize = 200;
/// Spawns of each binary, interleaved: enough for a median and its spread in milliseconds.
const COLD_ROUNDS: usize = 31;
const RECORDS: usize = 100_000;
const DUE_PERCENT: usize = 1;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Counts the requests a DynamoDB client sends, and notes when each is sent and answered, so
/// that requests sent together (without waiting for one another) count as one round trip.
#[derive(Debug, Clone, Default)]
struct Requests(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<Wire>>>);

#[derive(Debug, Clone, Copy)]
enum Wire {
    Sent,
    Answered,
}

impl Requests {
    fn note(&self, what: Wire) {
        self.1.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    }

    /// What has been noted so far, for `round_trips` after it.
    fn mark(&self) -> usize {
        self.1.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The round trips since `mark`: a request sent after another was answered is the next
    /// round trip (it may have waited for that answer); requests sent before any answer came
    /// back travel together.
    fn round_trips(&self, mark: usize) -> usize {
        let wire = self.1.lock().unwrap_or_else(|e| e.into_inner());
        let (mut trips, mut answered) = (0, true);
        for what in &wire[mark..] {
            match what {
                Wire::Sent if answered => {
                    trips += 1;
                    answered = false;
                }
                Wire::Sent => {}
                Wire::Answered => answered = true,
            }
        }
        trips
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "Requests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.note(Wire::Sent);
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.note(Wire::Answered);
        Ok(())
    }
}

/// Counts the queue calls (each a SendMessageBatch of up to ten on SQS).
struct CountingQueue {
    calls: AtomicUsize,
    messages: AtomicUsize,
}

#[async_trait]
impl BroadcastQueue for CountingQueue {
    async fn enqueue(&self, messages: &[Delivery]) -> Result<(), SendError> {
        self.calls
            .fetch_add(messages.len().div_ceil(10), Ordering::SeqCst);
        self.messages.fetch_add(messages.len(), Ordering::SeqCst);
        Ok(())
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The `q` quantile of `xs` (nearest rank).
fn quantile(mut xs: Vec<Duration>, q: f64) -> Duration {
    xs.sort();
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// `xs`'s spread as printed beside its median: the 10th to the 90th percentile.
fn spread(xs: &[Duration]) -> String {
    format!(
        "p10-p90 {:.2?}-{:.2?}",
        quantile(xs.to_vec(), 0.1),
        quantile(xs.to_vec(), 0.9)
    )
}

/// An open referral offered to `a1` and `a2`.
fn referral(id: &str, now: Timestamp) -> Result<Referral, Error> {
    let client = ReferralClient {
        name: "Bench Client".into(),
        phone: "+14155550000".parse()?,
        email: "bench@example.com".parse()?,
    };
    let lead = LeadDetails {
        client_type: ClientType::Buyer,
        zip: "94110".parse()?,
        price_range: PriceRange::new("1".parse()?, "2".parse()?)?,
        timeline: "now".into(),
    };
    Ok(Referral::offered(
        id.parse()?,
        Program::Routing,
        client,
        lead,
        "advisor".parse()?,
        now,
        ["a1".parse()?, "a2".parse()?],
    ))
}

/// The claim function's sample event (`events/claim/claim.json`), agent `a1` claiming `id`.
fn claim_event(id: &str) -> String {
    let mut event = shared::fixtures::json("claim", "claim");
    event["rawPath"] = format!("/referrals/{id}/claim").into();
    event["requestContext"]["http"]["path"] = event["rawPath"].clone();
    event["pathParameters"]["id"] = id.into();
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "a1".into();
    event.to_string()
}

/// The baseline write: one conditional put of a 3-attribute item, timed.
async fn raw_put(client: &Client, table: &str, pk: String) -> Result<Duration, Error> {
    let started = Instant::now();
    client
        .put_item()
        .table_name(table)
        .item("PK", AttributeValue::S(pk))
        .item("SK", AttributeValue::S("RAW".into()))
        .item("agentId", AttributeValue::S("a1".into()))
        .condition_expression("attribute_not_exists(PK)")
        .send()
        .await?;
    Ok(started.elapsed())
}

fn bench_agent(n: usize) -> Result<Agent, Error> {
    Ok(Agent {
        id: format!("agent-{n}").parse()?,
        name: format!("Agent {n}"),
        email: Some(format!("agent-{n}@example.com").parse()?),
        cell_phone: Some(format!("+1415555{:04}", 3000 + n).parse()?),
        office_phone: None,
        licensed: true,
        zips: ["94110".parse()?].into(),
        client_types: [ClientType::Seller].into(),
        warm_transfer: true,
        push_token: Some(format!("device-{n}")),
        time_zone: "America/Los_Angeles".parse()?,
        vacation: None,
        fee_percent: None,
        response_times: Default::default(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .map_err(|_| "DYNAMODB_ENDPOINT is not set: run `make bench`")?;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "bench"))
        .endpoint_url(&endpoint)
        .http_client(shared::aws::http::sdk_client())
        .load()
        .await;
    // The SDK's own HTTP client, to show the process's shared client costs a call nothing.
    let stock = Client::new(
        &aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "bench"))
            .endpoint_url(&endpoint)
            .load()
            .await,
    );
    let requests = Requests::default();
    let client = Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(requests.clone())
            .build(),
    );
    let template: serde_norway::Value = serde_norway::from_str(table::TEMPLATE)?;
    let declaration: TableDeclaration =
        serde_norway::from_value(template["Resources"][table::RESOURCE]["Properties"].clone())?;
    let name = format!("bench-{}", ulid::Ulid::new());
    declaration.create(&client, &name).await?;
    let store = Arc::new(DynamoDbStore::new(client.clone(), name.clone()));
    let now: Timestamp = "2027-01-01T00:00:00Z".parse()?;
    // The use cases on this store; messages, events and schedules go to the in-memory outbox,
    // which shows that a claim sends nothing.
    let (mut services, _, outbox) = in_memory_services();
    services.agents = store.clone();
    services.referrals = store.clone();
    services.lines = store.clone();
    services.due = store.clone();
    services.subscriptions = store.clone();
    services.once = store.clone();
    // One caller claims hundreds of referrals a minute here: the per-caller count (TX-5) is
    // still written on every request, as deployed, but never refuses one.
    let mut config = (*services.config).clone();
    config.rate_limit_per_minute = Some(u32::MAX);
    services.config = Arc::new(config);

    // The claim handler against raw conditional writes, interleaved so drift hits all alike.
    // Each claim event is prepared beforehand, as Lambda hands the handler a ready event.
    let mut claims_events = Vec::new();
    for i in 0..CLAIMS + 50 {
        let id = format!("bench-{i}");
        store
            .create_referral(&referral(&id, now)?, &[], &Default::default())
            .await?;
        store
            .create_referral(
                &referral(&format!("twin-{i}"), now)?,
                &[],
                &Default::default(),
            )
            .await?;
        store
            .create_referral(
                &referral(&format!("store-{i}"), now)?,
                &[],
                &Default::default(),
            )
            .await?;
        claims_events.push(claim_event(&id));
    }
    let assignment = serde_dynamo::to_attribute_value::<_, AttributeValue>(
        serde_json::json!({"agentId": "a1", "claimedAt": now.to_string(), "channel": "app"}),
    )?;
    let (mut claims, mut puts, mut updates, mut stock_puts, mut store_claims) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let a1 = shared::domain::values::AgentId::from_str("a1")?;
    let webhooks = shared::twilio::Webhooks::development();
    for (i, claim_event) in claims_events.iter().enumerate() {
        let started = Instant::now();
        let request = lambda_http::request::from_str(claim_event)?;
        let answer = claim::handle(&services, &webhooks, request).await?;
        let claim = started.elapsed();
        if answer.status() != 200 {
            return Err(format!("claim {i} did not win: {:?}", answer.body()).into());
        }
        let put = raw_put(&client, &name, format!("RAW#{i}")).await?;
        let started = Instant::now();
        client
            .update_item()
            .table_name(&name)
            .key("PK", AttributeValue::S(format!("REF#twin-{i}")))
            .key("SK", AttributeValue::S("REFERRAL".into()))
            .update_expression("SET assignment = :assignment")
            .condition_expression(
                "attribute_exists(PK) AND (attribute_not_exists(assignment) \
                 OR attribute_type(assignment, :null))",
            )
            .expression_attribute_values(":assignment", assignment.clone())
            .expression_attribute_values(":null", AttributeValue::S("NULL".into()))
            .send()
            .await?;
        let update = started.elapsed();
        let stock_put = raw_put(&stock, &name, format!("STOCK#{i}")).await?;
        // The store's claim alone: what of the handler's time is the write itself.
        let id = shared::domain::values::ReferralId::from_str(&format!("store-{i}"))?;
        let started = Instant::now();
        let outcome = store.claim(&id, &a1, ClaimChannel::App, now).await?;
        let store_claim = started.elapsed();
        if !matches!(outcome, ClaimOutcome::Won(_)) {
            return Err(format!("store claim {i}: {outcome:?}").into());
        }
        // The first 50 of each warm up connections and DynamoDB Local's JIT.
        if i >= 50 {
            claims.push(claim);
            puts.push(put);
            updates.push(update);
            stock_puts.push(stock_put);
            store_claims.push(store_claim);
        }
    }
    let spreads = (spread(&claims), spread(&puts), spread(&updates));
    let (claim, put, update) = (median(claims), median(puts), median(updates));
    let stock_put = median(stock_puts);
    let store_claim = median(store_claims);
    println!(
        "raw conditional put through the shared HTTPS client {put:?} vs the SDK's default \
         client {stock_put:?}: ratio {:.2}",
        put.as_secs_f64() / stock_put.as_secs_f64()
    );
    println!(
        "claim handler, warm: median {claim:?} ({}) vs raw conditional put {put:?} ({}): ratio \
         {:.2} (target <= 1.3); vs raw conditional update assigning an identical referral \
         {update:?} ({}): ratio {:.2}; messages, events or schedules on the claim's path: {}",
        spreads.0,
        spreads.1,
        claim.as_secs_f64() / put.as_secs_f64(),
        spreads.2,
        claim.as_secs_f64() / update.as_secs_f64(),
        outbox.sent().len()
    );
    println!(
        "  of which the store's conditional claim write {store_claim:?}: ratio {:.2} vs the raw put",
        store_claim.as_secs_f64() / put.as_secs_f64()
    );

    // A pay-per-lead claim (PPL-10): the uncounted claim's refused write, the subscription read,
    // and the claim in one transaction with the cycle's count; against the same raw put.
    let sub = shared::domain::billing::Subscription {
        id: "bench-sub".parse()?,
        agent_id: a1.clone(),
        zips: ["94110".parse()?].into(),
        client_types: [ClientType::Buyer].into(),
        // Room for every claim of the run: the quota is never what refuses one here.
        referrals_per_cycle: u32::try_from(PPL_CLAIMS + 50)?,
        started_at: now,
        next_quota: None,
        status: Default::default(),
        cancelled_at: None,
    };
    shared::ports::SubscriptionStore::create_subscription(&*store, &sub, now).await?;
    let mut ppl_events = Vec::new();
    for i in 0..PPL_CLAIMS + 50 {
        let id = format!("ppl-{i}");
        let ppl = Referral {
            program: Program::Ppl,
            ppl: Some(shared::domain::referral::PplTerms {
                price: "60".parse()?,
                subscriptions: [(a1.clone(), sub.id.clone())].into(),
                returned: None,
            }),
            ..referral(&id, now)?
        };
        store
            .create_referral(&ppl, &[], &Default::default())
            .await?;
        ppl_events.push(claim_event(&id));
    }
    let (mut ppl_claims, mut ppl_puts) = (Vec::new(), Vec::new());
    for (i, claim_event) in ppl_events.iter().enumerate() {
        let started = Instant::now();
        let request = lambda_http::request::from_str(claim_event)?;
        let answer = claim::handle(&services, &webhooks, request).await?;
        let claim = started.elapsed();
        if answer.status() != 200 {
            return Err(format!("PPL claim {i} did not win: {:?}", answer.body()).into());
        }
        let put = raw_put(&client, &name, format!("PPLRAW#{i}")).await?;
        if i >= 50 {
            ppl_claims.push(claim);
            ppl_puts.push(put);
        }
    }
    let (ppl_claim, ppl_put) = (median(ppl_claims), median(ppl_puts));
    println!(
        "PPL claim handler, warm: median {ppl_claim:?} vs raw conditional put {ppl_put:?}: ratio \
         {:.2} (the uncounted claim refused, the subscription read, the claim and the cycle's \
         count in one transaction)",
        ppl_claim.as_secs_f64() / ppl_put.as_secs_f64()
    );
    // What counting the referral in its cycle costs a claim (PPL-10): the routing claim stays one
    // conditional write.
    println!(
        "PPL claim vs routing claim, warm medians: {ppl_claim:?} vs {claim:?}: ratio {:.2}",
        ppl_claim.as_secs_f64() / claim.as_secs_f64()
    );

    // A warm transfer's start: eight agents serve the zip; five are alerted.
    for n in 0..8 {
        store.put_agent(&bench_agent(n)?).await?;
    }
    let queue = Arc::new(CountingQueue {
        calls: AtomicUsize::new(0),
        messages: AtomicUsize::new(0),
    });
    let relay = shared::app::outbox::Relay {
        queue: queue.clone(),
        ..shared::memory::relay_of(&outbox)
    };
    let request: NewReferral = serde_json::from_value(serde_json::json!({
        "program": "warm_transfer",
        "client": {"name": "Bench Client", "phone": "+14155550000", "email": "bench@example.com"},
        "clientType": "seller", "zip": "94110",
        "priceRange": {"min": "1", "max": "2"}, "timeline": "now",
    }))?;
    let advisor = Actor {
        user: "advisor".parse()?,
        role: Role::Advisor,
    };
    let (before, mark) = (requests.0.load(Ordering::SeqCst), requests.mark());
    let started = create_referral(&services, &advisor, request, None, now).await?;
    let storage = requests.0.load(Ordering::SeqCst) - before;
    let storage_trips = requests.round_trips(mark);
    // The alerts leave from the committed outbox item, which the stream hands the outbox
    // function whole: its queue calls are the rest of the start.
    let effects = store
        .effects(&shared::effects::key::created(&started.id))
        .await?
        .ok_or("the warm transfer committed no alerts")?;
    shared::app::outbox::relay(&relay, &effects, now).await?;
    let queued = queue.calls.load(Ordering::SeqCst);
    // SQS's queue sends its batches of ten messages ten at a time, together.
    let queue_trips = queued.div_ceil(10);
    println!(
        "warm transfer start: {} alerted, {storage} DynamoDB request(s) in {storage_trips} round \
         trip(s) on the request + {queued} queue call(s) in {queue_trips} from its outbox item \
         for {} messages = {} round trips (target <= 3)",
        started.offered_to.len(),
        queue.messages.load(Ordering::SeqCst),
        storage_trips + queue_trips
    );

    // Each sweep at 100 000 records of its kind (subscriptions' next charges, agents' next
    // reminders), 1% of them due; both kinds share the index, so each reads among 200 000.
    let due_every = 100 / DUE_PERCENT;
    for (kind, prefix) in [(DueKind::Billing, "sub"), (DueKind::Reminder, "agent")] {
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = RECORDS / 16;
        for t in 0..16 {
            let store = store.clone();
            tasks.spawn(async move {
                for i in t * per_task..(t + 1) * per_task {
                    let at = if i % due_every == 0 {
                        now - SignedDuration::from_hours(1)
                    } else {
                        now + SignedDuration::from_hours(24 + (i % 30) as i64)
                    };
                    store
                        .set_due(kind, &format!("{prefix}-{i}"), Some(at))
                        .await?;
                }
                Ok::<(), shared::ports::StoreError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
    }
    for kind in [DueKind::Billing, DueKind::Reminder] {
        let scan = store.due_with_capacity(kind, now).await?;
        println!(
            "sweep ({kind:?}): {} records, {} due, {} items read, {:.1} capacity units in {} page(s): ratio {:.3} (target <= 1.1)",
            RECORDS,
            scan.due.len(),
            scan.items_read,
            scan.capacity_units,
            scan.pages,
            scan.items_read as f64 / scan.due.len().max(1) as f64
        );
    }
    cold_starts(&store, &name, &endpoint, now).await?;
    client.delete_table().table_name(&name).send().await?;
    Ok(())
}

/// Every function's cold start against hello-lambda's, interleaved over `COLD_ROUNDS` rounds.
/// The claim function is also handed one real claim, so its peak memory covers an invocation
/// on the store; the others are measured at their first poll.
async fn cold_starts(
    store: &DynamoDbStore,
    table: &str,
    endpoint: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut names: Vec<String> = std::fs::read_dir(workspace.join("functions"))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, std::io::Error>>()?;
    names.sort();
    // Every setting any function reads (each reads its own and stops at start without it), with
    // the local endpoints; nothing else leaks in.
    let env: HashMap<String, String> = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("TABLE_NAME", table),
        ("BROADCAST_QUEUE_URL", "http://127.0.0.1:1/queue/broadcast"),
        ("TIMER_QUEUE_URL", "http://127.0.0.1:1/queue/timers"),
        (
            "PUSH_PLATFORM_APPLICATION_ARN",
            "arn:aws:sns:us-east-1:123456789012:app/GCM/referrals",
        ),
        ("EVENT_BUS_NAME", "referrals"),
        ("SCHEDULE_GROUP", "referrals"),
        (
            "TIMERS_FUNCTION_ARN",
            "arn:aws:lambda:us-east-1:123456789012:function:timers",
        ),
        (
            "SCHEDULER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/scheduler",
        ),
        ("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000"),
        ("TWILIO_AUTH_TOKEN", shared::app::DEVELOPMENT_TWILIO_TOKEN),
        ("TWILIO_FROM_NUMBER", "+15005550006"),
        ("SMS_ORIGINATION_NUMBER", "+15005550009"),
        ("SENDER_EMAIL", "no-reply@referrals.example.com"),
        ("CLOSINGS_EMAIL", "closings@referrals.example.com"),
        ("ADVISOR_EMAIL", "advisors@referrals.example.com"),
        ("APP_BASE_URL", "https://app.referrals.example.com"),
        ("CONTACT_KEY_SECRET", "bench-contact-key-secret-of-32-chars"),
        ("PUBLIC_BASE_URL", "https://api.referrals.example.com"),
        ("PIN_LINE_NUMBER", "+15005550007"),
        ("WARM_TRANSFER_LINE_NUMBER", "+15005550008"),
        ("WARM_TRANSFER_TIMEOUT_SECONDS", "90"),
        ("RATE_LIMIT_PER_MINUTE", "300"),
        (
            "PPL_PRICES",
            r#"{"default": {"buyer": "45.00", "seller": "65.00"}}"#,
        ),
        ("METRICS_NAMESPACE", "ReferralRouting/bench"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let hello = cold::release_binary(&workspace, "hello-lambda")?;
    // The claim function built without its metrics (`make bench` builds it first, with
    // `--no-default-features`): what the metrics add to a function's start and binary.
    let bare = cold::release_binary(&workspace, BARE_CLAIM)?;
    let binaries = names
        .iter()
        .map(|n| Ok((n.clone(), cold::release_binary(&workspace, n)?)))
        .collect::<Result<Vec<_>, Error>>()?;

    let mut starts: HashMap<String, Vec<cold::Start>> = HashMap::new();
    for round in 0..COLD_ROUNDS {
        starts
            .entry("hello-lambda".into())
            .or_default()
            .push(cold::start(&hello, &env, None).await?);
        for (name, binary) in &binaries {
            starts
                .entry(name.clone())
                .or_default()
                .push(cold::start(binary, &env, None).await?);
        }
        starts
            .entry(BARE_CLAIM.into())
            .or_default()
            .push(cold::start(&bare, &env, None).await?);
        let id = format!("cold-{round}");
        store
            .create_referral(&referral(&id, now)?, &[], &Default::default())
            .await?;
        let claim = cold::release_binary(&workspace, "claim")?;
        let invoked = cold::start(&claim, &env, Some(claim_event(&id))).await?;
        starts
            .entry("claim, one claim".into())
            .or_default()
            .push(invoked);
    }

    let inits = |name: &str| starts[name].iter().map(|s| s.init).collect::<Vec<_>>();
    let median_init = |name: &str| median(inits(name));
    let peak_mb = |name: &str| {
        starts[name].iter().map(|s| s.peak_kib).max().unwrap_or(0) as f64 * 1024.0 / 1e6
    };
    let baseline = median_init("hello-lambda");
    println!(
        "cold start, median of {COLD_ROUNDS} spawns to the first poll of the Runtime API: \
         hello-lambda {baseline:?} ({}), peak {:.1} MB, binary {:.1} MB",
        spread(&inits("hello-lambda")),
        peak_mb("hello-lambda"),
        std::fs::metadata(&hello)?.len() as f64 / 1e6
    );
    for (name, binary) in &binaries {
        let init = median_init(name);
        println!(
            "  {name:<18} init {init:>10.2?} ({}): ratio {:.2} (target <= 2); peak {:.1} MB \
             (target < 40); binary {:.1} MB (target < 10)",
            spread(&inits(name)),
            init.as_secs_f64() / baseline.as_secs_f64(),
            peak_mb(name),
            std::fs::metadata(binary)?.len() as f64 / 1e6
        );
    }
    println!(
        "  claim, after one claim on the store: peak {:.1} MB (target < 40)",
        peak_mb("claim, one claim")
    );
    let claim = cold::release_binary(&workspace, "claim")?;
    let (with, without) = (median_init("claim"), median_init(BARE_CLAIM));
    let (with_size, without_size) = (
        std::fs::metadata(&claim)?.len() as f64,
        std::fs::metadata(&bare)?.len() as f64,
    );
    println!(
        "metrics (EMF) in the claim function: init {with:.2?} ({}) with, {without:.2?} ({}) \
         without: ratio {:.2}; binary {:.2} MB with, {:.2} MB without: ratio {:.3} (+{:.0} KB)",
        spread(&inits("claim")),
        spread(&inits(BARE_CLAIM)),
        with.as_secs_f64() / without.as_secs_f64(),
        with_size / 1e6,
        without_size / 1e6,
        with_size / without_size,
        (with_size - without_size) / 1e3
    );
    peer::compare(store, &workspace, &env, now).await
}

/// The claim function's release binary built without the `metrics` feature.
const BARE_CLAIM: &str = "claim-without-metrics";
