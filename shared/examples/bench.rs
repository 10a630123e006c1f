//! `make bench`: the storage targets of DESIGN.md, measured as ratios within one run against
//! the same DynamoDB Local, so the machine's speed cancels out.
//!
//! - claim: the claim use case every claim handler calls (`app::claim::claim_referral`, on the
//!   DynamoDB store: one conditional write, nothing else on its path) against one raw
//!   conditional PutItem; target at most 1.3.
//! - warm transfer start: the storage and queue round trips of `POST /referrals` for a warm
//!   transfer, counted on the wire; target at most 3.
//! - sweeps: items read by the billing and the reminders due-work queries against items due, at
//!   100 000 records of each kind with 1% due; target at most 1.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use shared::app::claim::{Claimed, claim_referral};
use shared::app::intake::{NewReferral, create_referral};
use shared::app::{Actor, Role};
use shared::domain::agent::Agent;
use shared::memory::in_memory_services;
use shared::ports::{AgentDirectory, BroadcastMessage, BroadcastQueue, SendError};

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
use shared::ports::{DueKind, DueWork, ReferralStore};

const CLAIMS: usize = 400;
const RECORDS: usize = 100_000;
const DUE_PERCENT: usize = 1;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Counts the requests a DynamoDB client sends.
#[derive(Debug, Clone, Default)]
struct Requests(Arc<AtomicUsize>);

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
    async fn enqueue(&self, messages: &[BroadcastMessage]) -> Result<(), SendError> {
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

fn referral(i: usize, now: Timestamp) -> Result<Referral, Error> {
    Ok(Referral {
        id: format!("bench-{i}").parse()?,
        program: Program::Routing,
        client: ReferralClient {
            name: "Bench Client".into(),
            phone: "+14155550000".parse()?,
            email: "bench@example.com".parse()?,
        },
        lead: LeadDetails {
            client_type: ClientType::Buyer,
            zip: "94110".parse()?,
            price_range: PriceRange::new("1".parse()?, "2".parse()?)?,
            timeline: "now".into(),
        },
        briefing: String::new(),
        team_id: None,
        parent_id: None,
        created_at: now,
        created_by: "advisor".parse()?,
        offers: [("a1".parse()?, now), ("a2".parse()?, now)].into(),
        declined: Default::default(),
        codes: Default::default(),
        call_first: false,
        respond_by: None,
        warm_transfer: None,
        closure: None,
        assignment: None,
        pipeline: None,
    })
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
        .load()
        .await;
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

    // Claim against a raw conditional write, interleaved so drift hits both alike.
    for i in 0..CLAIMS + 50 {
        store.create_referral(&referral(i, now)?, &[]).await?;
    }
    let (mut claims, mut puts) = (Vec::new(), Vec::new());
    for i in 0..CLAIMS + 50 {
        let started = Instant::now();
        let outcome = claim_referral(
            &services,
            &"a1".parse()?,
            &format!("bench-{i}").parse()?,
            ClaimChannel::App,
            now,
        )
        .await?;
        let claim = started.elapsed();
        if outcome != Claimed::Now {
            return Err(format!("claim {i} did not win: {outcome:?}").into());
        }
        let started = Instant::now();
        client
            .put_item()
            .table_name(&name)
            .item("PK", AttributeValue::S(format!("RAW#{i}")))
            .item("SK", AttributeValue::S("RAW".into()))
            .item("agentId", AttributeValue::S("a1".into()))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await?;
        let put = started.elapsed();
        // The first 50 of each warm up connections and DynamoDB Local's JIT.
        if i >= 50 {
            claims.push(claim);
            puts.push(put);
        }
    }
    let (claim, put) = (median(claims), median(puts));
    println!(
        "claim: median {claim:?} vs raw conditional put {put:?}: ratio {:.2} (target <= 1.3); \
         messages, events or schedules on the claim's path: {}",
        claim.as_secs_f64() / put.as_secs_f64(),
        outbox.sent().len()
    );

    // A warm transfer's start: eight agents serve the zip; five are alerted.
    for n in 0..8 {
        store.put_agent(&bench_agent(n)?).await?;
    }
    let queue = Arc::new(CountingQueue {
        calls: AtomicUsize::new(0),
        messages: AtomicUsize::new(0),
    });
    services.queue = queue.clone();
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
    let before = requests.0.load(Ordering::SeqCst);
    let started = create_referral(&services, &advisor, request, None, now).await?;
    let storage = requests.0.load(Ordering::SeqCst) - before;
    let queued = queue.calls.load(Ordering::SeqCst);
    println!(
        "warm transfer start: {} alerted, {storage} DynamoDB request(s) + {queued} queue call(s) \
         for {} messages = {} round trips (target <= 3)",
        started.offered_to.len(),
        queue.messages.load(Ordering::SeqCst),
        storage + queued
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
    client.delete_table().table_name(&name).send().await?;
    Ok(())
}
