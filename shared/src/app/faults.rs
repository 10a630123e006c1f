//! EF-1 under fire. Every use case with effects runs once as it should (the baseline), then once
//! for each call it makes to each outside service or to the store, with that call failing, and
//! once with the function dying right after that call took effect. Each step is retried as its
//! caller retries it on AWS: an app or the telephony provider calls again (with its idempotency
//! key, its message id), the stream delivers an outbox item again, the queue a message, the
//! scheduler a timer; an attempt that died is taken over when its lease runs out.
//!
//! What a user would notice must come out the same: every text, push, email and call, the timers
//! in place, the events on the bus, and the referrals with their history. The one difference
//! the design admits is a message the provider accepted just before the function died, before
//! it could record the send: that one goes out twice (no provider here takes an idempotency key),
//! and only that one. The matrix of outcomes is printed with `--nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::intake::tests::{advisor, at, everyone_takes_all, put_agents, request, routed_team};
use super::intake::{NewReferral, create_referral};
use super::{Actor, AppError, Role, Services};
use crate::app::billing::{ReturnRequest, return_referral, run_billing, sign_up};
use crate::app::claim::{after_claim, claim_referral};
use crate::app::contact::contact_deadline_passed;
use crate::app::escrow::send_escrow_documents;
use crate::app::offer::offer_to_rest;
use crate::app::phone::{
    InboundText, receive_text, request_claim_call, retry_claim_call, voice_claim, voice_pin,
    voice_status,
};
use crate::app::pipeline::{change_stage, list_on_date};
use crate::app::reminders::run_reminders;
use crate::app::warm_transfer::{
    complete, conference_event, connect_client, leg_choice, leg_status, line_call, time_out,
};
use crate::domain::billing::{ReturnReason, SignUp};
use crate::domain::referral::{ClaimChannel, Program};
use crate::domain::stage::{Stage, StageChange};
use crate::domain::values::{AgentId, ClientType, ReferralId};
use crate::domain::warm_transfer::Leg;
use crate::effects::TimerPayload;
use crate::memory::{Fault, MemoryStore, Outbox, Sent, Service, in_memory_services_unrelayed};
use crate::ports::{AgentDirectory, ClaimLines, ReferralStore};

/// One world of in-memory adapters, its effects relayed step by step.
#[derive(Clone)]
struct World {
    s: Services,
    store: Arc<MemoryStore>,
    outbox: Arc<Outbox>,
    /// Claims already followed up (the stream delivers each assigned referral once).
    followed: Arc<std::sync::Mutex<BTreeSet<ReferralId>>>,
}

impl World {
    fn new() -> Self {
        let (s, store, outbox) = in_memory_services_unrelayed();
        World {
            s,
            store,
            outbox,
            followed: Default::default(),
        }
    }

    /// Runs `call` as its caller would: again after a transient failure or a death (a dead
    /// attempt's leases run out first), never after a refusal. Answers the last outcome.
    async fn retried<T, F, Fut>(&self, call: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, AppError>> + Send + 'static,
    {
        let mut last = Err(AppError::Busy("never tried".into()));
        for attempt in 1..=20 {
            match tokio::spawn(call()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if !e.is_retryable() => return Err(e),
                Ok(Err(e)) => last = Err(e),
                Err(died) if died.is_panic() => self.store.expire_leases(),
                Err(cancelled) => panic!("a step was cancelled: {cancelled}"),
            }
            // Redeliveries keep coming; after a few, the time a lease holds has passed.
            if attempt % 3 == 0 {
                self.store.expire_leases();
            }
        }
        last
    }

    /// Everything the changes so far caused, as AWS carries it out: committed outbox items
    /// relayed (the stream), claims followed up (the stream), deliveries sent (the queue), each
    /// retried while it fails.
    async fn settle(&self, now: Timestamp) {
        loop {
            let mut busy = false;
            for effects in self.store.take_committed_effects() {
                busy = true;
                let relay = crate::memory::relay_of(&self.outbox);
                self.retried(move || {
                    let (relay, effects) = (relay.clone(), effects.clone());
                    async move { super::outbox::relay(&relay, &effects, now).await }
                })
                .await
                .unwrap_or_else(|e| panic!("relaying kept failing: {e}"));
            }
            for (referral, _) in self.store.referrals() {
                let Some(agent) = referral.assigned_agent().cloned() else {
                    continue;
                };
                if !self
                    .followed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(referral.id.clone())
                {
                    continue;
                }
                busy = true;
                let claimed_at = referral.assignment().map_or(now, |a| a.claimed_at);
                let s = self.s.clone();
                self.retried(move || {
                    let (s, id, agent) = (s.clone(), referral.id.clone(), agent.clone());
                    async move { after_claim(&s, &id, &agent, claimed_at).await }
                })
                .await
                .unwrap_or_else(|e| panic!("the claim follow-up kept failing: {e}"));
            }
            for delivery in self.outbox.take_queued() {
                busy = true;
                let (s, senders) = (self.s.clone(), crate::memory::senders_of(&self.outbox));
                self.retried(move || {
                    let (s, senders, delivery) = (s.clone(), senders.clone(), delivery.clone());
                    async move { super::broadcast::deliver(&s, &senders, &delivery, now).await }
                })
                .await
                .unwrap_or_else(|e| panic!("a delivery kept failing: {e}"));
            }
            if !busy {
                return;
            }
        }
    }

    /// What a user would notice, with the random parts (claim codes, PINs) masked.
    fn observed(&self) -> Observed {
        let mask = |text: &str| mask_codes(text);
        let mut messages = BTreeMap::new();
        let mut events = BTreeSet::new();
        let mut timers = BTreeMap::new();
        for sent in self.outbox.sent() {
            let message = match sent {
                Sent::Sms { to, body } => format!("sms {to}: {}", mask(&body)),
                Sent::Push { token, title, body } => {
                    format!("push {token}: {} / {}", mask(&title), mask(&body))
                }
                Sent::Email(m) => format!(
                    "email {}{}: {} ({} attachment(s))",
                    m.to,
                    m.cc.iter().map(|c| format!(" cc {c}")).collect::<String>(),
                    m.subject,
                    m.attachments.len()
                ),
                Sent::Call { to, url, .. } => format!("call {to}: {url}"),
                Sent::OptIn { to } => format!("opt in {to}"),
                Sent::CallUpdate { call_sid, twiml } => format!("call update {call_sid}: {twiml}"),
                Sent::Event(kind, detail) => {
                    events.insert(format!("{kind} {detail}"));
                    continue;
                }
                Sent::Scheduled(timer) | Sent::Delayed { timer, .. } => {
                    timers.insert(timer.name, Some(timer.at));
                    continue;
                }
                Sent::Cancelled { name } => {
                    timers.insert(name, None);
                    continue;
                }
                Sent::Queued(_) => continue,
            };
            *messages.entry(message).or_insert(0) += 1;
        }
        let referrals = self
            .store
            .referrals()
            .into_iter()
            .map(|(r, history)| {
                let mut kinds: Vec<String> = history
                    .iter()
                    .map(|h| {
                        let v = serde_json::to_value(&h.event).unwrap_or_default();
                        format!(
                            "{} {} {}",
                            v["type"].as_str().unwrap_or(""),
                            v["agentId"].as_str().unwrap_or(""),
                            v["channel"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                kinds.sort();
                (
                    r.id.to_string(),
                    format!(
                        "{:?} {:?} {:?} {kinds:?}",
                        r.stage(),
                        r.assigned_agent(),
                        r.closure
                    ),
                )
            })
            .collect();
        let subscriptions = self
            .store
            .subscriptions()
            .into_iter()
            .map(|(sub, charges, due)| {
                let charged: Vec<String> = charges
                    .iter()
                    .map(|c| format!("cycle {} {}", c.cycle, c.amount))
                    .collect();
                (sub.id.to_string(), format!("{charged:?} next {due:?}"))
            })
            .collect();
        Observed {
            messages,
            events,
            timers,
            referrals,
            subscriptions,
        }
    }
}

fn mask_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '#' || out.ends_with("PIN: ") || out.ends_with("Code: ") {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
                out.push('9');
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    /// Each text, push, email and call, with how many times it went out.
    messages: BTreeMap<String, usize>,
    /// The events on the bus (each at least once; their consumers are idempotent).
    events: BTreeSet<String>,
    /// The timers in place at the end (a stopped one as `None`).
    timers: BTreeMap<String, Option<Timestamp>>,
    /// Each referral's stage, owner, closure and history.
    referrals: BTreeMap<String, String>,
    /// Each subscription's charges and next due time.
    subscriptions: BTreeMap<String, String>,
}

/// A use case with effects: a world set up before it, and its flow as users and AWS run it.
struct Scenario {
    name: &'static str,
    setup: fn(World) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    flow: fn(World) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

macro_rules! scenario {
    ($name:literal, |$w1:ident| $setup:block, |$w2:ident| $flow:block) => {
        Scenario {
            name: $name,
            setup: |$w1| Box::pin(async move { $setup }),
            flow: |$w2| Box::pin(async move { $flow }),
        }
    };
}

const T0: &str = "2026-03-02T17:00:00Z";

fn t(offset_secs: i64) -> Timestamp {
    at(T0) + SignedDuration::from_secs(offset_secs)
}

fn agent_actor(id: &str) -> Actor {
    Actor {
        user: id.parse().unwrap(),
        role: Role::Agent,
    }
}

fn aid(id: &str) -> AgentId {
    id.parse().unwrap()
}

/// An intake with its idempotency key, as the advisors' app sends it.
async fn intake(w: &World, req: NewReferral, key: &'static str, now: Timestamp) -> ReferralId {
    let s = w.s.clone();
    w.retried(move || {
        let (s, req) = (s.clone(), req.clone());
        async move { create_referral(&s, &advisor(), req, Some(key), now).await }
    })
    .await
    .unwrap()
    .id
}

/// The routing referral of the routing team, offered and settled.
async fn offered(w: &World) -> ReferralId {
    routed_team(&w.store, true).await;
    let id = intake(w, request(Program::Routing, "seller"), "lead-1", t(0)).await;
    w.settle(t(0)).await;
    id
}

/// The routing referral, claimed by cy in the app and settled.
async fn claimed(w: &World) -> ReferralId {
    let id = offered(w).await;
    claim_referral(&w.s, &aid("cy"), &id, ClaimChannel::App, t(30))
        .await
        .unwrap();
    w.settle(t(30)).await;
    id
}

/// Every member of the routing team takes sellers and buyers; cy claimed a seller referral of
/// the world's client.
async fn claimed_by_cy_with_everyone_taking_all(w: &World) {
    routed_team(&w.store, true).await;
    everyone_takes_all(&w.store).await;
    let id = intake(w, request(Program::Routing, "seller"), "lead-1", t(0)).await;
    w.settle(t(0)).await;
    claim_referral(&w.s, &aid("cy"), &id, ClaimChannel::App, t(30))
        .await
        .unwrap();
    w.settle(t(30)).await;
}

/// p1, subscribed to sellers in 94110, three a cycle.
async fn ppl_subscriber(w: &World) {
    put_agents(&w.store, &["p1"]).await;
    let req = SignUp {
        zips: ["94110".parse().unwrap()].into(),
        client_types: [ClientType::Seller].into(),
        referrals_per_cycle: 3,
    };
    sign_up(&w.s, &agent_actor("p1"), req, Some("sub"), t(0))
        .await
        .unwrap();
}

/// A pay-per-lead referral received by p1 (offered, claimed and settled).
async fn ppl_claimed(w: &World) -> ReferralId {
    let id = intake(w, request(Program::Ppl, "seller"), "ppl-1", t(0)).await;
    w.settle(t(0)).await;
    claim_referral(&w.s, &aid("p1"), &id, ClaimChannel::App, t(30))
        .await
        .unwrap();
    w.settle(t(30)).await;
    id
}

/// Agents w1..w5 who take warm transfers in 94110.
async fn market(w: &World) {
    put_agents(&w.store, &["w1", "w2", "w3", "w4", "w5"]).await;
    for (i, a) in ["w1", "w2", "w3", "w4", "w5"].iter().enumerate() {
        let mut agent = w.store.get_agent(&aid(a)).await.unwrap().unwrap();
        agent.response_times.record(1_000 * (i as u64 + 1));
        w.store.put_agent(&agent).await.unwrap();
    }
}

async fn warm_transfer(w: &World) -> ReferralId {
    market(w).await;
    let id = intake(w, request(Program::WarmTransfer, "seller"), "wt-1", t(0)).await;
    w.settle(t(0)).await;
    id
}

fn stage(
    w: &World,
    id: ReferralId,
    change: StageChange,
    now: Timestamp,
) -> impl Future<Output = ()> {
    let w = w.clone();
    async move {
        let s = w.s.clone();
        // A change that landed before its function died is refused on the retry (it would move
        // backward): the state is what the user wanted either way.
        let _ = w
            .retried(move || {
                let (s, id, change) = (s.clone(), id.clone(), change.clone());
                async move { change_stage(&s, &agent_actor("cy"), &id, &change, now).await }
            })
            .await;
        w.settle(now).await;
    }
}

fn id_of(w: &World, suffix: &str) -> ReferralId {
    w.store
        .referrals()
        .into_iter()
        .map(|(r, _)| r.id)
        .find(|id| id.as_str().ends_with(suffix))
        .unwrap_or_else(|| panic!("no referral {suffix}"))
}

/// Fires every claim-call retry timer relayed so far, as the timer queue delivers it to the
/// timers function (LR-10, WT-12).
async fn fire_retries(w: &World) {
    for sent in w.outbox.sent() {
        let Sent::Delayed { timer, .. } = sent else {
            continue;
        };
        let TimerPayload::ClaimCallRetry {
            referral_id,
            agent_id,
            call,
        } = timer.payload
        else {
            continue;
        };
        let s = w.s.clone();
        w.retried(move || {
            let (s, id, agent) = (s.clone(), referral_id.clone(), agent_id.clone());
            async move { retry_claim_call(&s, &id, &agent, call, timer.at).await }
        })
        .await
        .unwrap();
    }
}

/// A warm transfer with the advisor's phone, won in the app by w2 and settled (the winner and
/// the advisor called, WT-10); the advisor is on their call in the conference.
async fn won_in_the_app(w: &World) -> ReferralId {
    market(w).await;
    let mut req = request(Program::WarmTransfer, "seller");
    req.advisor_phone = Some("+16505550123".parse().unwrap());
    let id = intake(w, req, "wt-1", t(0)).await;
    w.settle(t(0)).await;
    claim_referral(&w.s, &aid("w2"), &id, ClaimChannel::App, t(20))
        .await
        .unwrap();
    w.settle(t(20)).await;
    conference(
        w,
        &id,
        &[(1, "participant-join", Some(("CA-advisor", "advisor")))],
        t(40),
    )
    .await;
    id
}

/// One conference status callback: its sequence number, its event, and the call (SID, label)
/// it is about.
type Callback = (u32, &'static str, Option<(&'static str, &'static str)>);

/// The conference's status callbacks, each as the provider posts it (again after a failure).
async fn conference(w: &World, id: &ReferralId, events: &[Callback], now: Timestamp) {
    for (seq, event, call) in events.iter().copied() {
        let callback = super::warm_transfer::tests::callback(seq, event, call);
        let (s, id) = (w.s.clone(), id.clone());
        w.retried(move || {
            let (s, id, callback) = (s.clone(), id.clone(), callback.clone());
            async move { conference_event(&s, &id, &callback, now).await }
        })
        .await
        .unwrap();
        w.settle(now).await;
    }
}

/// The winner's leg reports `status` and the advisor presses `digits` on their call (WT-10).
async fn winner_leg_fails_and_the_advisor_chooses(w: &World, digits: &'static str) {
    let id = id_of(w, "");
    let s = w.s.clone();
    let rid = id.clone();
    w.retried(move || {
        let (s, id) = (s.clone(), rid.clone());
        async move { leg_status(&s, &id, Leg::Agent, "busy", "CA-w2").await }
    })
    .await
    .unwrap();
    w.settle(t(60)).await;
    let s = w.s.clone();
    w.retried(move || {
        let (s, id) = (s.clone(), id.clone());
        async move { leg_choice(&s, &id, Leg::Agent, "CA-w2", Some(digits), t(70)).await }
    })
    .await
    .unwrap();
    w.settle(t(70)).await;
}

fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!("phone verification", |_w| {}, |w| {
            use crate::app::settings::{
                PhoneConfirmation, PhoneVerificationRequest, confirm_phone_verification,
                request_phone_verification,
            };
            let phone: crate::domain::values::Phone = "+14155550101".parse().unwrap();
            let (s, p) = (w.s.clone(), phone.clone());
            w.retried(move || {
                let (s, phone) = (s.clone(), p.clone());
                async move {
                    let request = PhoneVerificationRequest { phone };
                    request_phone_verification(&s, &agent_actor("ana"), &aid("ana"), request, t(0))
                        .await
                }
            })
            .await
            .unwrap();
            w.settle(t(0)).await;
            let code = w
                .outbox
                .sent()
                .into_iter()
                .find_map(|x| match x {
                    Sent::Sms { body, .. } => Some(body.split("Code: ").nth(1)?[..6].to_owned()),
                    _ => None,
                })
                .expect("the code was texted");
            let s = w.s.clone();
            w.retried(move || {
                let (s, phone, code) = (s.clone(), phone.clone(), code.clone());
                async move {
                    let request = PhoneConfirmation { phone, code };
                    confirm_phone_verification(&s, &agent_actor("ana"), &aid("ana"), request, t(10))
                        .await
                }
            })
            .await
            .unwrap();
            let owner =
                w.s.agents
                    .agent_by_phone(&"+14155550101".parse().unwrap())
                    .await;
            assert_eq!(
                owner.unwrap(),
                Some(aid("ana")),
                "TX-3: the number is ana's"
            );
        }),
        scenario!(
            "intake, routing",
            |w| {
                routed_team(&w.store, true).await;
            },
            |w| {
                intake(&w, request(Program::Routing, "seller"), "lead-1", t(0)).await;
                w.settle(t(0)).await;
            }
        ),
        scenario!(
            "intake, pay per lead",
            |w| {
                put_agents(&w.store, &["p1", "p2"]).await;
                for a in ["p1", "p2"] {
                    let req = SignUp {
                        zips: ["94110".parse().unwrap()].into(),
                        client_types: [ClientType::Seller].into(),
                        referrals_per_cycle: 3,
                    };
                    sign_up(
                        &w.s,
                        &agent_actor(a),
                        req,
                        Some("sub"),
                        at("2026-03-01T00:00:00Z"),
                    )
                    .await
                    .unwrap();
                }
            },
            |w| {
                intake(&w, request(Program::Ppl, "seller"), "ppl-1", t(0)).await;
                w.settle(t(0)).await;
            }
        ),
        scenario!(
            "intake, warm transfer",
            |w| {
                market(&w).await;
            },
            |w| {
                intake(&w, request(Program::WarmTransfer, "seller"), "wt-1", t(0)).await;
                w.settle(t(0)).await;
            }
        ),
        scenario!(
            "claim in the app",
            |w| {
                offered(&w).await;
            },
            |w| {
                let id = id_of(&w, "");
                let s = w.s.clone();
                w.retried(move || {
                let (s, id) = (s.clone(), id.clone());
                async move { claim_referral(&s, &aid("cy"), &id, ClaimChannel::App, t(30)).await }
            })
            .await
            .unwrap();
                w.settle(t(30)).await;
            }
        ),
        scenario!(
            "claim by text, relayed to the client, and the client's answer",
            |w| {
                offered(&w).await;
            },
            |w| {
                let id = id_of(&w, "");
                let code = w
                    .store
                    .get_referral(&id)
                    .await
                    .unwrap()
                    .unwrap()
                    .value
                    .codes[&aid("cy")]
                    .clone();
                let phone = w
                    .store
                    .get_agent(&aid("cy"))
                    .await
                    .unwrap()
                    .unwrap()
                    .phone()
                    .unwrap()
                    .to_string();
                // Texted as AWS delivers it, then the client answers (TX-1).
                let texts = [
                    (phone, format!("{code} Hi Casey, Cy here."), "in-1"),
                    ("+14155559876".into(), "Tomorrow at 10?".into(), "in-2"),
                ];
                for (from, body, id) in texts {
                    let text = InboundText {
                        origination_number: from,
                        destination_number: "+15005550009".into(),
                        message_body: body,
                        inbound_message_id: id.into(),
                    };
                    let s = w.s.clone();
                    w.retried(move || {
                        let (s, text) = (s.clone(), text.clone());
                        async move { receive_text(&s, &text, t(30)).await }
                    })
                    .await
                    .unwrap();
                    w.settle(t(30)).await;
                }
            }
        ),
        scenario!(
            "claim by call, pressing 1",
            |w| {
                offered(&w).await;
            },
            |w| {
                let id = id_of(&w, "");
                let s = w.s.clone();
                let rid = id.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), rid.clone());
                    async move {
                        request_claim_call(&s, &agent_actor("cy"), &id, Some("tap-1"), t(30)).await
                    }
                })
                .await
                .unwrap();
                w.settle(t(30)).await;
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { voice_claim(&s, &id, &aid("cy"), Some("1"), t(40)).await }
                })
                .await
                .unwrap();
                w.settle(t(40)).await;
            }
        ),
        scenario!(
            "claim by PIN after two failed calls, the first retried on its timer",
            |w| {
                offered(&w).await;
            },
            |w| {
                let id = id_of(&w, "");
                for (sid, status) in [("CA1", "no-answer"), ("CA2", "busy")] {
                    let s = w.s.clone();
                    let rid = id.clone();
                    w.retried(move || {
                        let (s, id) = (s.clone(), rid.clone());
                        async move { voice_status(&s, &id, &aid("cy"), status, sid, t(30)).await }
                    })
                    .await
                    .unwrap();
                    w.settle(t(30)).await;
                    if sid == "CA1" {
                        // The retry's timer fires, twice as SQS may deliver it (WT-12).
                        fire_retries(&w).await;
                        fire_retries(&w).await;
                        w.settle(t(90)).await;
                    }
                }
                let pin = w
                    .store
                    .claim_calls(&id, &aid("cy"))
                    .await
                    .unwrap()
                    .value
                    .pin
                    .unwrap()
                    .code;
                let phone = w
                    .store
                    .get_agent(&aid("cy"))
                    .await
                    .unwrap()
                    .unwrap()
                    .phone()
                    .unwrap()
                    .to_string();
                let s = w.s.clone();
                w.retried(move || {
                    let (s, phone, pin) = (s.clone(), phone.clone(), pin.clone());
                    async move { voice_pin(&s, &phone, Some(&pin), t(60)).await }
                })
                .await
                .unwrap();
                w.settle(t(60)).await;
            }
        ),
        scenario!(
            "claim on the warm-transfer line",
            |w| {
                warm_transfer(&w).await;
            },
            |w| {
                let phone = w
                    .store
                    .get_agent(&aid("w2"))
                    .await
                    .unwrap()
                    .unwrap()
                    .phone()
                    .unwrap()
                    .to_string();
                let id = id_of(&w, "");
                let referral = w.store.get_referral(&id).await.unwrap().unwrap().value;
                let code = referral.codes[&aid("w2")]
                    .trim_start_matches('#')
                    .to_owned();
                let s = w.s.clone();
                w.retried(move || {
                    let (s, phone, code) = (s.clone(), phone.clone(), code.clone());
                    async move { line_call(&s, &phone, Some(&code), t(20)).await }
                })
                .await
                .unwrap();
                w.settle(t(20)).await;
            }
        ),
        scenario!(
            "warm transfer won in the app: the winner and the advisor called",
            |w| {
                market(&w).await;
                let mut req = request(Program::WarmTransfer, "seller");
                req.advisor_phone = Some("+16505550123".parse().unwrap());
                intake(&w, req, "wt-1", t(0)).await;
                w.settle(t(0)).await;
            },
            |w| {
                let id = id_of(&w, "");
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { claim_referral(&s, &aid("w2"), &id, ClaimChannel::App, t(20)).await }
                })
                .await
                .unwrap();
                w.settle(t(20)).await;
            }
        ),
        scenario!(
            "warm transfer: the client connected, the advisor taken out",
            |w| {
                let id = won_in_the_app(&w).await;
                conference(
                    &w,
                    &id,
                    &[(2, "participant-join", Some(("CA-w2", "agent")))],
                    t(50),
                )
                .await;
            },
            |w| {
                let id = id_of(&w, "");
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { connect_client(&s, &advisor(), &id, Some("connect-1")).await }
                })
                .await
                .unwrap();
                w.settle(t(60)).await;
            }
        ),
        scenario!(
            "warm transfer: the conference's end introduces two",
            |w| {
                let id = won_in_the_app(&w).await;
                for (a, after) in [("w1", 25), ("w3", 30)] {
                    let _ = claim_referral(&w.s, &aid(a), &id, ClaimChannel::App, t(after)).await;
                }
                w.settle(t(30)).await;
                conference(
                    &w,
                    &id,
                    &[
                        (2, "participant-join", Some(("CA-w2", "agent"))),
                        (3, "participant-join", Some(("CA-client", "client"))),
                        (4, "participant-leave", Some(("CA-advisor", "advisor"))),
                    ],
                    t(60),
                )
                .await;
            },
            |w| {
                let id = id_of(&w, "");
                let end = [
                    (5, "participant-leave", Some(("CA-w2", "agent"))),
                    (6, "conference-end", None),
                ];
                conference(&w, &id, &end, t(600)).await;
                // The provider sends them again.
                conference(&w, &id, &end, t(601)).await;
            }
        ),
        scenario!(
            "warm transfer: the winner's leg busy, the advisor calls them again",
            |w| {
                won_in_the_app(&w).await;
            },
            |w| {
                winner_leg_fails_and_the_advisor_chooses(&w, "1").await;
            }
        ),
        scenario!(
            "warm transfer: the winner's leg busy, the client sent to routing",
            |w| {
                won_in_the_app(&w).await;
            },
            |w| {
                winner_leg_fails_and_the_advisor_chooses(&w, "2").await;
            }
        ),
        scenario!(
            "stage into Coming Soon, listed on its date",
            |w| {
                claimed(&w).await;
            },
            |w| {
                let id = id_of(&w, "");
                let soon = StageChange {
                    list_date: Some(jiff::civil::date(2026, 3, 20)),
                    ..StageChange::to(Stage::ComingSoon)
                };
                stage(&w, id.clone(), soon, t(60)).await;
                let s = w.s.clone();
                let listed = at("2026-03-20T07:00:00Z");
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { list_on_date(&s, &id, listed).await }
                })
                .await
                .unwrap();
                w.settle(listed).await;
            }
        ),
        scenario!(
            "stage into In Escrow, documents sent",
            |w| {
                claimed(&w).await;
            },
            |w| {
                let id = id_of(&w, "");
                let escrow = StageChange {
                    sale_price: Some("750000".parse().unwrap()),
                    close_date: Some(jiff::civil::date(2026, 5, 1)),
                    ..StageChange::to(Stage::InEscrow)
                };
                stage(&w, id.clone(), escrow, t(60)).await;
                // The bus rule delivers StageChanged to the escrow function, again on failure.
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { send_escrow_documents(&s, &id, 1, t(61)).await }
                })
                .await
                .unwrap();
                w.settle(t(61)).await;
            }
        ),
        scenario!(
            "a duplicate client, first to their agent, then to the rest",
            |w| {
                claimed_by_cy_with_everyone_taking_all(&w).await;
            },
            |w| {
                // The same client, buying this time (so its messages read differently).
                let again = request(Program::Routing, "buyer");
                let dup = intake(&w, again, "dup-1", t(60)).await;
                w.settle(t(60)).await;
                let over = t(60) + crate::domain::contact::FIRST_LOOK;
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), dup.clone());
                    async move { offer_to_rest(&s, &id, over).await }
                })
                .await
                .unwrap();
                w.settle(over).await;
            }
        ),
        scenario!(
            "a queued referral re-offered to a team",
            |w| {
                routed_team(&w.store, true).await;
                // No subscriber: the pay-per-lead referral waits in the advisors' queue.
                intake(&w, request(Program::Ppl, "seller"), "ppl-q", t(0)).await;
                w.settle(t(0)).await;
            },
            |w| {
                let queued = id_of(&w, "");
                let mut again = request(Program::Routing, "seller");
                again.client = None;
                again.reoffer_of = Some(queued);
                intake(&w, again, "reoffer-1", t(60)).await;
                w.settle(t(60)).await;
            }
        ),
        scenario!(
            "warm transfer nobody takes",
            |w| {
                warm_transfer(&w).await;
            },
            |w| {
                let id = id_of(&w, "");
                let end = t(90);
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { time_out(&s, &id, end).await }
                })
                .await
                .unwrap();
                w.settle(end).await;
            }
        ),
        scenario!(
            "contact deadline passed, taken back and offered again",
            |w| {
                routed_team(&w.store, true).await;
                let team = "bay-team".parse().unwrap();
                let settings = w.store.get_routing(&team).await.unwrap().unwrap();
                let settings = settings.with_contact_deadline(Some(30)).unwrap();
                w.store.put_routing(&team, &settings).await.unwrap();
                let id = intake(&w, request(Program::Routing, "seller"), "lead-1", t(0)).await;
                w.settle(t(0)).await;
                claim_referral(&w.s, &aid("cy"), &id, ClaimChannel::App, t(30))
                    .await
                    .unwrap();
                w.settle(t(30)).await;
            },
            |w| {
                let id = id_of(&w, "");
                let s = w.s.clone();
                let due = t(30 + 30 * 60);
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { contact_deadline_passed(&s, &id, &aid("cy"), due).await }
                })
                .await
                .unwrap();
                w.settle(due).await;
            }
        ),
        scenario!(
            "warm transfer completed, two introduced",
            |w| {
                let id = warm_transfer(&w).await;
                for (a, after) in [("w2", 20), ("w1", 25), ("w3", 30)] {
                    let _ = claim_referral(&w.s, &aid(a), &id, ClaimChannel::App, t(after)).await;
                }
                w.settle(t(30)).await;
            },
            |w| {
                let id = id_of(&w, "");
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { complete(&s, &advisor(), &id, t(600)).await }
                })
                .await
                .unwrap();
                w.settle(t(600)).await;
            }
        ),
        scenario!(
            "billing a cycle",
            |w| {
                put_agents(&w.store, &["p1"]).await;
                let req = SignUp {
                    zips: ["94110".parse().unwrap()].into(),
                    client_types: [ClientType::Seller].into(),
                    referrals_per_cycle: 3,
                };
                sign_up(&w.s, &agent_actor("p1"), req, Some("sub"), t(0))
                    .await
                    .unwrap();
                // One referral received in the cycle: charged, and the charge in its history.
                ppl_claimed(&w).await;
            },
            |w| {
                let day30 = t(30 * 86_400);
                let s = w.s.clone();
                w.retried(move || {
                    let s = s.clone();
                    async move {
                        let run = run_billing(&s, day30).await?;
                        match run.failed.into_iter().next() {
                            Some((_, e)) => Err(e),
                            None => Ok(()),
                        }
                    }
                })
                .await
                .unwrap();
                w.settle(day30).await;
            }
        ),
        scenario!(
            "a pay-per-lead claim, counted in the cycle",
            |w| {
                ppl_subscriber(&w).await;
                intake(&w, request(Program::Ppl, "seller"), "ppl-1", t(0)).await;
                w.settle(t(0)).await;
            },
            |w| {
                let id = id_of(&w, "");
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id) = (s.clone(), id.clone());
                    async move { claim_referral(&s, &aid("p1"), &id, ClaimChannel::App, t(30)).await }
                })
                .await
                .unwrap();
                w.settle(t(30)).await;
            }
        ),
        scenario!(
            "returning a pay-per-lead referral",
            |w| {
                ppl_subscriber(&w).await;
                ppl_claimed(&w).await;
            },
            |w| {
                let id = id_of(&w, "");
                let sub = w.store.subscriptions()[0].0.id.clone();
                let s = w.s.clone();
                w.retried(move || {
                    let (s, id, sub) = (s.clone(), id.clone(), sub.clone());
                    async move {
                        let request = ReturnRequest {
                            referral_id: id,
                            reason: ReturnReason::WrongContact,
                        };
                        return_referral(&s, &agent_actor("p1"), &sub, request, t(3_600)).await
                    }
                })
                .await
                .unwrap();
                w.settle(t(3_600)).await;
            }
        ),
        scenario!(
            "reminders two weeks after a claim",
            |w| {
                claimed(&w).await;
            },
            |w| {
                let day14 = t(14 * 86_400 + 60);
                let s = w.s.clone();
                w.retried(move || {
                    let s = s.clone();
                    async move {
                        let run = run_reminders(&s, day14).await?;
                        match run.failed.into_iter().next() {
                            Some((_, e)) => Err(e),
                            None => Ok(()),
                        }
                    }
                })
                .await
                .unwrap();
                w.settle(day14).await;
            }
        ),
        scenario!(
            "pay-per-lead sign-up",
            |w| {
                put_agents(&w.store, &["p1"]).await;
            },
            |w| {
                let s = w.s.clone();
                w.retried(move || {
                    let s = s.clone();
                    async move {
                        let req = SignUp {
                            zips: ["94110".parse().unwrap()].into(),
                            client_types: [ClientType::Seller].into(),
                            referrals_per_cycle: 3,
                        };
                        sign_up(&s, &agent_actor("p1"), req, Some("sub-1"), t(0)).await
                    }
                })
                .await
                .unwrap();
                w.settle(t(0)).await;
            }
        ),
    ]
}

/// What a fault did to a flow, compared with the flow undisturbed.
fn outcome(baseline: &Observed, faulted: &Observed) -> Result<&'static str, String> {
    if faulted == baseline {
        return Ok("exactly once");
    }
    let mut extra = Vec::new();
    for (message, count) in &faulted.messages {
        let expected = baseline.messages.get(message).copied().unwrap_or(0);
        if *count != expected {
            extra.push((message.clone(), expected, *count));
        }
    }
    let missing = baseline
        .messages
        .keys()
        .any(|m| !faulted.messages.contains_key(m));
    let rest_same = faulted.events == baseline.events
        && faulted.timers == baseline.timers
        && faulted.referrals == baseline.referrals
        && faulted.subscriptions == baseline.subscriptions;
    match extra.as_slice() {
        // One send more than the flow makes of that message (a message the flow sends twice on
        // purpose, as two calls to the same webhook, counts from two).
        [(_, expected, got)] if *expected >= 1 && *got == expected + 1 && !missing && rest_same => {
            Ok("one message twice")
        }
        _ => Err(format!(
            "messages off by {extra:?} (missing any: {missing}); events same: {}; timers same: {}; referrals same: {}; subscriptions same: {}\nbaseline: {baseline:#?}\nfaulted: {faulted:#?}",
            faulted.events == baseline.events,
            faulted.timers == baseline.timers,
            faulted.referrals == baseline.referrals,
            faulted.subscriptions == baseline.subscriptions
        )),
    }
}

/// A message going out twice is admitted only when the function died right after the provider
/// took it; anything else must be exactly once.
fn admitted(service: Service, fault: Fault, outcome: &str) -> bool {
    let provider = matches!(
        service,
        Service::Sms | Service::Push | Service::Email | Service::Call
    );
    outcome == "exactly once"
        || (provider && fault == Fault::DiesAfter && outcome == "one message twice")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ef_1_ef_2_every_effect_once_whatever_fails_or_dies_in_between() {
    // The deaths are on purpose: they need no report.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("(injected)") {
            report(info);
        }
    }));
    let mut matrix = Vec::new();
    let mut failures = Vec::new();
    for scenario in scenarios() {
        let world = World::new();
        (scenario.setup)(world.clone()).await;
        let before: BTreeMap<Service, usize> = Service::ALL
            .iter()
            .map(|s| (*s, world.outbox.faults.calls(*s)))
            .collect();
        (scenario.flow)(world.clone()).await;
        let baseline = world.observed();
        assert!(
            !baseline.messages.is_empty()
                || !baseline.referrals.is_empty()
                || !baseline.subscriptions.is_empty(),
            "{}: the flow did something",
            scenario.name
        );
        for service in Service::ALL {
            let calls = world.outbox.faults.calls(service) - before[&service];
            for fault in [Fault::Fails, Fault::DiesAfter] {
                let mut outcomes = BTreeSet::new();
                for nth in 0..calls {
                    let faulted_world = World::new();
                    (scenario.setup)(faulted_world.clone()).await;
                    let start = faulted_world.outbox.faults.calls(service);
                    faulted_world
                        .outbox
                        .faults
                        .inject(service, start + nth, fault);
                    (scenario.flow)(faulted_world.clone()).await;
                    match outcome(&baseline, &faulted_world.observed()) {
                        Ok(o) if admitted(service, fault, o) => {
                            outcomes.insert(o);
                        }
                        Ok(o) => failures.push(format!(
                            "{} / {service:?} call {nth} {fault:?}: {o}",
                            scenario.name
                        )),
                        Err(diff) => failures.push(format!(
                            "{} / {service:?} call {nth} {fault:?}: {diff}",
                            scenario.name
                        )),
                    }
                }
                if calls > 0 {
                    matrix.push(format!(
                        "| {} | {service:?} ({calls} call(s)) | {fault:?} | {} |",
                        scenario.name,
                        outcomes.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    println!("| use case | failing step | fault | outcome |\n|---|---|---|---|");
    for row in &matrix {
        println!("{row}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
