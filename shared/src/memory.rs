//! In-memory adapters for every port: the same contracts as the DynamoDB and AWS adapters, for
//! fast tests of the use cases and for the in-process demo.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;

use crate::app::{Config, DEFAULT_PRICES, Lines, Services};
use crate::domain::agent::Agent;
use crate::domain::billing::PriceTable;
use crate::domain::billing::Subscription;
use crate::domain::claim::{self, ClaimCalls};
use crate::domain::referral::{Assignment, ClaimChannel, HistoryEntry, Referral, with_won_claim};
use crate::domain::stage::Stage;
use crate::domain::team::{RoutingSettings, Team};
use crate::domain::values::{AgentId, ClientType, Phone, ReferralId, SubscriptionId, TeamId, Zip};
use crate::ports::*;

#[derive(Default)]
struct State {
    agents: BTreeMap<AgentId, Agent>,
    teams: BTreeMap<TeamId, Team>,
    routing: BTreeMap<TeamId, RoutingSettings>,
    referrals: BTreeMap<ReferralId, (Referral, u64)>,
    history: BTreeMap<ReferralId, Vec<HistoryEntry>>,
    due: HashMap<(DueKind, String), Timestamp>,
    subscriptions: BTreeMap<SubscriptionId, Subscription>,
    charges: BTreeMap<SubscriptionId, BTreeMap<u32, Charge>>,
    deliveries: BTreeMap<(SubscriptionId, u32), BTreeSet<ReferralId>>,
    once: HashMap<String, Timestamp>,
    /// (agent, code) → the referral and when the code stops working.
    codes: HashMap<(AgentId, String), (ReferralId, Timestamp)>,
    claim_calls: HashMap<(ReferralId, AgentId), (ClaimCalls, u64)>,
    pins: HashMap<AgentId, ReferralId>,
    warm_transfers: HashMap<AgentId, ReferralId>,
}

/// Every storage port over one mutex-guarded state.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A referral as stored, without going through the async port.
    pub fn get_referral_sync(&self, id: &ReferralId) -> Option<Referral> {
        self.with(|s| s.referrals.get(id).map(|(r, _)| r.clone()))
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A poisoned lock means a test already panicked; carry on with its state.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

#[async_trait]
impl AgentDirectory for MemoryStore {
    async fn edit_agent(
        &self,
        id: &AgentId,
        edit: AgentEdit<'_>,
    ) -> Result<Option<Agent>, StoreError> {
        Ok(self.with(|s| {
            let saved = edit(s.agents.get(id))?;
            s.agents.insert(id.clone(), saved.clone());
            Some(saved)
        }))
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        Ok(self.with(|s| s.agents.get(id).cloned()))
    }

    async fn get_agents(&self, ids: &[AgentId]) -> Result<Vec<Agent>, StoreError> {
        Ok(self.with(|s| {
            ids.iter()
                .filter_map(|i| s.agents.get(i).cloned())
                .collect()
        }))
    }

    async fn agents_serving(
        &self,
        zip: &Zip,
        client_type: ClientType,
    ) -> Result<Vec<Agent>, StoreError> {
        Ok(self.with(|s| {
            s.agents
                .values()
                .filter(|a| a.serves(zip, client_type))
                .cloned()
                .collect()
        }))
    }

    async fn agent_by_phone(&self, phone: &Phone) -> Result<Option<AgentId>, StoreError> {
        Ok(self.with(|s| {
            s.agents
                .values()
                .find(|a| {
                    a.cell_phone.as_ref() == Some(phone) || a.office_phone.as_ref() == Some(phone)
                })
                .map(|a| a.id.clone())
        }))
    }

    async fn put_team(&self, team: &Team) -> Result<(), StoreError> {
        self.with(|s| s.teams.insert(team.id.clone(), team.clone()));
        Ok(())
    }

    async fn get_team(&self, id: &TeamId) -> Result<Option<Team>, StoreError> {
        Ok(self.with(|s| s.teams.get(id).cloned()))
    }

    async fn teams_led_by(&self, agent: &AgentId) -> Result<Vec<Team>, StoreError> {
        Ok(self.with(|s| {
            s.teams
                .values()
                .filter(|t| &t.lead_agent_id == agent)
                .cloned()
                .collect()
        }))
    }

    async fn put_routing(
        &self,
        team: &TeamId,
        settings: &RoutingSettings,
    ) -> Result<(), StoreError> {
        self.with(|s| s.routing.insert(team.clone(), settings.clone()));
        Ok(())
    }

    async fn get_routing(&self, team: &TeamId) -> Result<Option<RoutingSettings>, StoreError> {
        Ok(self.with(|s| s.routing.get(team).cloned()))
    }
}

#[async_trait]
impl ReferralStore for MemoryStore {
    async fn create_referral(
        &self,
        referral: &Referral,
        history: &[HistoryEntry],
    ) -> Result<Created, StoreError> {
        Ok(self.with(|s| {
            if s.referrals.contains_key(&referral.id) {
                return Created::Exists;
            }
            let now = referral.created_at;
            let in_use = referral.codes.iter().any(|(agent, code)| {
                s.codes
                    .get(&(agent.clone(), code.clone()))
                    .is_some_and(|(_, until)| *until > now)
            });
            if in_use {
                return Created::CodeInUse;
            }
            for (agent, code) in &referral.codes {
                s.codes.insert(
                    (agent.clone(), code.clone()),
                    (referral.id.clone(), now + claim::CODE_LIFETIME),
                );
            }
            if referral.warm_transfer.is_some() {
                for agent in referral.offers.keys() {
                    s.warm_transfers.insert(agent.clone(), referral.id.clone());
                }
            }
            s.referrals
                .insert(referral.id.clone(), (referral.clone(), 1));
            s.history
                .entry(referral.id.clone())
                .or_default()
                .extend_from_slice(history);
            Created::Yes
        }))
    }

    async fn get_referral(
        &self,
        id: &ReferralId,
    ) -> Result<Option<Versioned<Referral>>, StoreError> {
        Ok(self.with(|s| {
            s.referrals.get(id).map(|(r, v)| Versioned {
                value: r.clone(),
                version: *v,
            })
        }))
    }

    async fn history(&self, id: &ReferralId) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(self.with(|s| {
            let entries = s.history.get(id).cloned().unwrap_or_default();
            match s.referrals.get(id) {
                Some((r, _)) => with_won_claim(r, entries),
                None => entries,
            }
        }))
    }

    async fn claim(
        &self,
        id: &ReferralId,
        agent: &AgentId,
        channel: ClaimChannel,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        Ok(self.with(|s| {
            let Some((current, version)) = s.referrals.get_mut(id) else {
                return ClaimOutcome::NotFound;
            };
            match claim::claim(current, agent, channel, now) {
                Ok(won) => {
                    *current = won;
                    *version += 1;
                    ClaimOutcome::Won(Assignment {
                        agent_id: agent.clone(),
                        claimed_at: now,
                        channel,
                    })
                }
                Err(refusal) => ClaimOutcome::Refused(refusal),
            }
        }))
    }

    async fn update_referral(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
    ) -> Result<Saved, StoreError> {
        Ok(self.with(|s| match s.referrals.get_mut(&referral.id) {
            Some((current, version)) if *version == expected_version => {
                *current = referral.clone();
                *version += 1;
                s.history
                    .entry(referral.id.clone())
                    .or_default()
                    .extend_from_slice(entries);
                Saved::Ok
            }
            _ => Saved::Stale,
        }))
    }

    async fn append_history(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        self.with(|s| {
            s.history
                .entry(id.clone())
                .or_default()
                .extend_from_slice(entries)
        });
        Ok(())
    }

    async fn agent_referrals(
        &self,
        agent: &AgentId,
        stage: Option<Stage>,
    ) -> Result<Vec<Referral>, StoreError> {
        Ok(self.with(|s| {
            s.referrals
                .values()
                .map(|(r, _)| r)
                .filter(|r| r.assigned_agent() == Some(agent))
                .filter(|r| stage.is_none() || r.stage() == stage)
                .cloned()
                .collect()
        }))
    }
}

#[async_trait]
impl DueWork for MemoryStore {
    async fn set_due(
        &self,
        kind: DueKind,
        key: &str,
        due: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.with(|s| match due {
            Some(at) => s.due.insert((kind, key.to_owned()), at),
            None => s.due.remove(&(kind, key.to_owned())),
        });
        Ok(())
    }

    async fn set_due_if_absent(
        &self,
        kind: DueKind,
        key: &str,
        due: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let k = (kind, key.to_owned());
            if s.due.contains_key(&k) {
                return false;
            }
            s.due.insert(k, due);
            true
        }))
    }

    async fn due(
        &self,
        kind: DueKind,
        now: Timestamp,
    ) -> Result<Vec<(String, Timestamp)>, StoreError> {
        Ok(self.with(|s| {
            let mut out: Vec<(String, Timestamp)> = s
                .due
                .iter()
                .filter(|((k, _), at)| *k == kind && **at <= now)
                .map(|((_, key), at)| (key.clone(), *at))
                .collect();
            out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            out
        }))
    }

    async fn advance_due(
        &self,
        kind: DueKind,
        key: &str,
        from: Timestamp,
        to: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let k = (kind, key.to_owned());
            if s.due.get(&k) != Some(&from) {
                return false;
            }
            match to {
                Some(at) => s.due.insert(k, at),
                None => s.due.remove(&k),
            };
            true
        }))
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn create_subscription(&self, sub: &Subscription) -> Result<(), StoreError> {
        self.with(|s| s.subscriptions.insert(sub.id.clone(), sub.clone()));
        Ok(())
    }

    async fn get_subscription(
        &self,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        Ok(self.with(|s| s.subscriptions.get(id).cloned()))
    }

    async fn subscriptions_of(&self, agent: &AgentId) -> Result<Vec<Subscription>, StoreError> {
        Ok(self.with(|s| {
            s.subscriptions
                .values()
                .filter(|x| &x.agent_id == agent)
                .cloned()
                .collect()
        }))
    }

    async fn subscriptions_covering(
        &self,
        zip: &Zip,
        client_type: ClientType,
    ) -> Result<Vec<Subscription>, StoreError> {
        Ok(self.with(|s| {
            s.subscriptions
                .values()
                .filter(|x| x.covers(zip, client_type))
                .cloned()
                .collect()
        }))
    }

    async fn record_charge(
        &self,
        sub: &SubscriptionId,
        charge: &Charge,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let charges = s.charges.entry(sub.clone()).or_default();
            if charges.contains_key(&charge.cycle) {
                return false;
            }
            charges.insert(charge.cycle, charge.clone());
            true
        }))
    }

    async fn charges(&self, sub: &SubscriptionId) -> Result<Vec<Charge>, StoreError> {
        Ok(self.with(|s| {
            s.charges
                .get(sub)
                .map(|c| c.values().cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn take_delivery(
        &self,
        sub: &SubscriptionId,
        cycle: u32,
        quota: u32,
        referral: &ReferralId,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let taken = s.deliveries.entry((sub.clone(), cycle)).or_default();
            if taken.contains(referral) {
                return true;
            }
            if taken.len() >= quota as usize {
                return false;
            }
            taken.insert(referral.clone());
            true
        }))
    }

    async fn deliveries(&self, sub: &SubscriptionId, cycle: u32) -> Result<u32, StoreError> {
        Ok(self.with(|s| {
            s.deliveries
                .get(&(sub.clone(), cycle))
                .map_or(0, |taken| taken.len() as u32)
        }))
    }
}

#[async_trait]
impl Idempotency for MemoryStore {
    async fn first_time(&self, key: &str, expires_at: Timestamp) -> Result<bool, StoreError> {
        // Expiry is judged against the new record's own horizon, as the DynamoDB adapter does.
        Ok(self.with(|s| match s.once.get(key) {
            Some(_) => false,
            None => {
                s.once.insert(key.to_owned(), expires_at);
                true
            }
        }))
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.with(|s| s.once.remove(key));
        Ok(())
    }
}

#[async_trait]
impl ClaimLines for MemoryStore {
    async fn code_referral(
        &self,
        agent: &AgentId,
        code: &str,
        now: Timestamp,
    ) -> Result<Option<ReferralId>, StoreError> {
        Ok(self.with(|s| {
            s.codes
                .get(&(agent.clone(), code.to_owned()))
                .filter(|(_, until)| *until > now)
                .map(|(r, _)| r.clone())
        }))
    }

    async fn claim_calls(
        &self,
        referral: &ReferralId,
        agent: &AgentId,
    ) -> Result<Versioned<ClaimCalls>, StoreError> {
        Ok(self.with(|s| {
            let (value, version) = s
                .claim_calls
                .get(&(referral.clone(), agent.clone()))
                .cloned()
                .unwrap_or_default();
            Versioned { value, version }
        }))
    }

    async fn save_claim_calls(
        &self,
        referral: &ReferralId,
        agent: &AgentId,
        calls: &ClaimCalls,
        expected_version: u64,
    ) -> Result<Saved, StoreError> {
        Ok(self.with(|s| {
            let key = (referral.clone(), agent.clone());
            let current = s.claim_calls.get(&key).map_or(0, |(_, v)| *v);
            if current != expected_version {
                return Saved::Stale;
            }
            s.claim_calls
                .insert(key, (calls.clone(), expected_version + 1));
            if calls.pin.is_some() {
                s.pins.insert(agent.clone(), referral.clone());
            }
            Saved::Ok
        }))
    }

    async fn pin_referral(&self, agent: &AgentId) -> Result<Option<ReferralId>, StoreError> {
        Ok(self.with(|s| s.pins.get(agent).cloned()))
    }

    async fn warm_transfer_of(&self, agent: &AgentId) -> Result<Option<ReferralId>, StoreError> {
        Ok(self.with(|s| s.warm_transfers.get(agent).cloned()))
    }
}

/// Everything sent, in order: the in-memory notifier, queue, bus, scheduler and telephony all
/// write here, so a test reads one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Sms {
        to: Phone,
        body: String,
    },
    Push {
        token: String,
        title: String,
        body: String,
    },
    Email(EmailMessage),
    Queued(BroadcastMessage),
    Event(String, String),
    Scheduled {
        name: String,
        at: Timestamp,
        payload: String,
    },
    Cancelled {
        name: String,
    },
    Call {
        to: Phone,
        url: String,
        status_callback: String,
    },
}

/// The in-memory side-effect adapters.
#[derive(Default)]
pub struct Outbox {
    sent: Mutex<Vec<Sent>>,
    /// Phone numbers whose SMS the provider refuses, to test partial failures.
    pub refuse_sms_to: Mutex<BTreeSet<Phone>>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The emails sent so far, in order.
    pub fn emails(&self) -> Vec<EmailMessage> {
        self.sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Email(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn push_sent(&self, s: Sent) {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
}

#[async_trait]
impl Notifier for Outbox {
    async fn sms(&self, to: &Phone, body: &str) -> Result<(), SendError> {
        if self
            .refuse_sms_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(to)
        {
            return Err(SendError::Retryable(format!("carrier refused {to}").into()));
        }
        self.push_sent(Sent::Sms {
            to: to.clone(),
            body: body.to_owned(),
        });
        Ok(())
    }

    async fn push(&self, device_token: &str, title: &str, body: &str) -> Result<(), SendError> {
        self.push_sent(Sent::Push {
            token: device_token.to_owned(),
            title: title.to_owned(),
            body: body.to_owned(),
        });
        Ok(())
    }

    async fn email(&self, message: &EmailMessage) -> Result<(), SendError> {
        self.push_sent(Sent::Email(message.clone()));
        Ok(())
    }
}

#[async_trait]
impl BroadcastQueue for Outbox {
    async fn enqueue(&self, messages: &[BroadcastMessage]) -> Result<(), SendError> {
        for m in messages {
            self.push_sent(Sent::Queued(m.clone()));
        }
        Ok(())
    }
}

#[async_trait]
impl EventBus for Outbox {
    async fn publish(&self, event: &DomainEvent) -> Result<(), SendError> {
        let detail = serde_json::to_value(event)
            .map(|v| v["detail"].to_string())
            .map_err(|e| SendError::Rejected(e.to_string()))?;
        self.push_sent(Sent::Event(event.detail_type().to_owned(), detail));
        Ok(())
    }
}

#[async_trait]
impl Scheduler for Outbox {
    async fn schedule_once(
        &self,
        name: &str,
        at: Timestamp,
        payload: &serde_json::Value,
    ) -> Result<(), SendError> {
        self.push_sent(Sent::Scheduled {
            name: name.to_owned(),
            at,
            payload: payload.to_string(),
        });
        Ok(())
    }

    async fn cancel(&self, name: &str) -> Result<(), SendError> {
        self.push_sent(Sent::Cancelled {
            name: name.to_owned(),
        });
        Ok(())
    }
}

#[async_trait]
impl Telephony for Outbox {
    async fn call(
        &self,
        to: &Phone,
        url: &str,
        status_callback: &str,
    ) -> Result<String, SendError> {
        self.push_sent(Sent::Call {
            to: to.clone(),
            url: url.to_owned(),
            status_callback: status_callback.to_owned(),
        });
        Ok(format!("CA{}", ulid::Ulid::new()))
    }
}

/// Services over the in-memory adapters, with handles to the store and the outbox for assertions:
/// for tests of the use cases and handlers, and for the in-process demo.
pub fn in_memory_services() -> (Services, Arc<MemoryStore>, Arc<Outbox>) {
    let store = Arc::new(MemoryStore::new());
    let outbox = Arc::new(Outbox::new());
    let prices = match PriceTable::from_json(DEFAULT_PRICES) {
        Ok(p) => p,
        Err(e) => unreachable!("the default price table is valid: {e}"),
    };
    let email = |s: &str| match s.parse() {
        Ok(e) => e,
        Err(e) => unreachable!("the development addresses are valid: {e}"),
    };
    let s = Services {
        agents: store.clone(),
        referrals: store.clone(),
        lines: store.clone(),
        due: store.clone(),
        subscriptions: store.clone(),
        once: store.clone(),
        notifier: outbox.clone(),
        queue: outbox.clone(),
        bus: outbox.clone(),
        scheduler: outbox.clone(),
        telephony: outbox.clone(),
        config: Arc::new(Config {
            prices,
            closings_email: email("closings@referrals.example.com"),
            sender_email: email("no-reply@referrals.example.com"),
            advisor_email: email("advisors@referrals.example.com"),
            warm_transfer_timeout: crate::domain::warm_transfer::DEFAULT_TIMEOUT,
            lines: Lines::development(),
        }),
    };
    (s, store, outbox)
}

/// The example world the `events/` fixtures speak of: agents `ana` (lead of `bay-team`), `ben`
/// and `cy`, all in San Francisco's 94110, and referral `ref-1`, a seller offered to `ana` and
/// `ben` at `at`, with claim codes `#1111` (ana) and `#4821` (ben); and `wt-1`, the same client as
/// a warm transfer alerted to `ana` and `ben` at `at`, open for 90 seconds.
pub async fn seed_example(store: &MemoryStore, at: Timestamp) {
    use crate::domain::agent::Agent;
    use crate::domain::referral::{Client, LeadDetails, PriceRange, Program};
    let parse_err = |what: &str| -> ! { unreachable!("the example {what} is valid") };
    let agent = |id: &str, phone: &str| Agent {
        id: id.parse().unwrap_or_else(|_| parse_err("id")),
        name: format!("{}{} Agent", id[..1].to_uppercase(), &id[1..]),
        email: format!("{id}@agents.example.com").parse().ok(),
        cell_phone: phone.parse().ok(),
        office_phone: None,
        licensed: true,
        zips: ["94110".parse().unwrap_or_else(|_| parse_err("zip"))].into(),
        client_types: [ClientType::Buyer, ClientType::Seller].into(),
        warm_transfer: true,
        push_token: Some(format!("device-token-{id}")),
        time_zone: "America/Los_Angeles"
            .parse()
            .unwrap_or_else(|_| parse_err("zone")),
        vacation: None,
        fee_percent: None,
        response_times: Default::default(),
    };
    let ids = [
        ("ana", "+14155550101"),
        ("ben", "+14155550103"),
        ("cy", "+14155550104"),
    ];
    store.with(|s| {
        for (id, phone) in ids {
            let a = agent(id, phone);
            s.agents.insert(a.id.clone(), a);
        }
        let team = Team {
            id: "bay-team".parse().unwrap_or_else(|_| parse_err("team")),
            name: "Bay Team".into(),
            lead_agent_id: "ana".parse().unwrap_or_else(|_| parse_err("id")),
            agent_ids: ["ben", "cy"]
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
        };
        s.teams.insert(team.id.clone(), team);
        let money = |m: &str| m.parse().unwrap_or_else(|_| parse_err("amount"));
        let client = Client {
            name: "Casey Client".into(),
            phone: "+14155559876"
                .parse()
                .unwrap_or_else(|_| parse_err("phone")),
            email: "casey@example.com"
                .parse()
                .unwrap_or_else(|_| parse_err("email")),
        };
        let lead = LeadDetails {
            client_type: ClientType::Seller,
            zip: "94110".parse().unwrap_or_else(|_| parse_err("zip")),
            price_range: PriceRange::new(money("800000"), money("950000"))
                .unwrap_or_else(|_| parse_err("range")),
            timeline: "1-3 months".into(),
        };
        let referral = Referral {
            briefing: "Selling a 3-bed Victorian; wants to list before spring.".into(),
            team_id: "bay-team".parse().ok(),
            codes: [("ana", "#1111"), ("ben", "#4821")]
                .iter()
                .filter_map(|(a, c)| Some((a.parse().ok()?, (*c).to_owned())))
                .collect(),
            ..Referral::offered(
                "ref-1".parse().unwrap_or_else(|_| parse_err("id")),
                Program::Routing,
                client,
                lead,
                "advisor-1".parse().unwrap_or_else(|_| parse_err("id")),
                at,
                ["ana", "ben"].iter().filter_map(|a| a.parse().ok()),
            )
        };
        for (agent, code) in &referral.codes {
            s.codes.insert(
                (agent.clone(), code.clone()),
                (referral.id.clone(), at + claim::CODE_LIFETIME),
            );
        }
        // The same client as a live warm transfer, alerted to ana and ben at `at`.
        let alerted: Vec<AgentId> = ["ana", "ben"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let transfer = crate::domain::warm_transfer::WarmTransfer::start(
            alerted.clone(),
            at,
            crate::domain::warm_transfer::DEFAULT_TIMEOUT,
        );
        let warm = Referral {
            id: "wt-1".parse().unwrap_or_else(|_| parse_err("id")),
            program: Program::WarmTransfer,
            team_id: None,
            codes: [("ana", "#2222"), ("ben", "#3333")]
                .iter()
                .filter_map(|(a, c)| Some((a.parse().ok()?, (*c).to_owned())))
                .collect(),
            respond_by: Some(transfer.timeout_at),
            warm_transfer: Some(transfer),
            ..referral.clone()
        };
        for agent in &alerted {
            s.warm_transfers.insert(agent.clone(), warm.id.clone());
        }
        s.referrals.insert(warm.id.clone(), (warm, 1));
        s.referrals.insert(referral.id.clone(), (referral, 1));
    });
}

/// The example world with `ref-1` already claimed by `ana` at `at`: where the pipeline's
/// fixtures start.
pub async fn claimed_example(at: Timestamp) -> (Services, Arc<MemoryStore>, Arc<Outbox>) {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, at).await;
    let (Ok(referral), Ok(ana)) = ("ref-1".parse::<ReferralId>(), "ana".parse::<AgentId>()) else {
        unreachable!("the example ids are valid")
    };
    // The in-memory store cannot fail.
    let _ = ReferralStore::claim(&*store, &referral, &ana, ClaimChannel::App, at).await;
    (s, store, outbox)
}
