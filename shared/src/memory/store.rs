//! Every storage port over one mutex-guarded state: the same contracts as the DynamoDB adapter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use super::Outbox;
use super::faults::{Fault, Faults, Service, die};
use crate::domain::agent::Agent;
use crate::domain::billing::Subscription;
use crate::domain::claim::{self, ClaimCalls, ClaimRefusal};
use crate::domain::referral::{
    Assignment, ClaimChannel, HistoryEntry, Program, Referral, with_won_claim,
};
use crate::domain::stage::Stage;
use crate::domain::team::{RoutingSettings, Team};
use crate::domain::texts::WrongGuesses;
use crate::domain::values::{AgentId, ClientType, Phone, ReferralId, SubscriptionId, TeamId, Zip};
use crate::effects::Effects;
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
    received: BTreeMap<(SubscriptionId, u32), BTreeSet<ReferralId>>,
    /// Once-only records: done, or in progress until a lease runs out (wall clock).
    once: HashMap<String, Once>,
    /// Every outbox item committed, in order, and which have been relayed.
    effects: Vec<Effects>,
    effect_keys: BTreeSet<String>,
    relayed: usize,
    /// Where committed effects go at once, as the stream and the outbox function would send
    /// them; `None` leaves them for `take_committed_effects`.
    stream: Option<Arc<Outbox>>,
    /// (agent, code) → the referral and when the code stops working.
    codes: HashMap<(AgentId, String), (ReferralId, Timestamp)>,
    /// The referrals by contact key, with when each was created (RC-4).
    contacts: BTreeMap<String, Vec<(Timestamp, ReferralId)>>,
    /// Referrals offered per agent and day of theirs, for daily caps (RC-3).
    offered_on: BTreeMap<(AgentId, Date), u32>,
    claim_calls: HashMap<(ReferralId, AgentId), (ClaimCalls, u64)>,
    pins: HashMap<AgentId, ReferralId>,
    warm_transfers: HashMap<AgentId, ReferralId>,
    /// Verified numbers and their one owner each (TX-3).
    phones: HashMap<Phone, AgentId>,
    client_threads: HashMap<Phone, ReferralId>,
    wrong_guesses: HashMap<Phone, WrongGuesses>,
    opted_out: std::collections::HashSet<Phone>,
    /// (caller, minute) → requests counted (TX-5).
    requests: HashMap<(String, Timestamp), u64>,
    verifications: HashMap<(AgentId, Phone), PhoneVerification>,
}

#[derive(Debug, Clone, Copy)]
enum Once {
    InProgress { until: Timestamp },
    Done,
}

/// Every storage port over one mutex-guarded state.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Faults to inject into its writes.
    pub faults: Arc<Faults>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A referral as stored, without going through the async port.
    pub fn get_referral_sync(&self, id: &ReferralId) -> Option<Referral> {
        self.with(|s| s.referrals.get(id).map(|(r, _)| r.clone()))
    }

    /// A store whose committed effects are forwarded to `outbox` as they commit, as the table's
    /// stream and the outbox function forward them: deliveries queued, events published, timers
    /// started and stopped.
    pub fn streaming_to(outbox: Arc<Outbox>) -> Self {
        let store = MemoryStore {
            faults: outbox.faults.clone(),
            ..Self::default()
        };
        store.with(|s| s.stream = Some(outbox));
        store
    }

    /// A store whose writes follow the fault plan `faults` (shared with an outbox, so one plan
    /// covers a whole flow); its effects wait to be relayed.
    pub fn with_faults(faults: Arc<Faults>) -> Self {
        MemoryStore {
            faults,
            ..Self::default()
        }
    }

    /// Ends every lease held on a once-only effect, as time does for an attempt that died.
    pub fn expire_leases(&self) {
        self.with(|s| {
            s.once.retain(|_, o| matches!(o, Once::Done));
        });
    }

    /// The outbox items committed since the last call, in order: what the table's stream would
    /// deliver to the outbox function next (nothing when they are forwarded as they commit).
    pub fn take_committed_effects(&self) -> Vec<Effects> {
        self.with(|s| {
            let fresh = s.effects[s.relayed..].to_vec();
            s.relayed = s.effects.len();
            fresh
        })
    }

    /// Every referral with its history, by id: the state a user would see.
    pub fn referrals(&self) -> Vec<(Referral, Vec<HistoryEntry>)> {
        self.with(|s| {
            s.referrals
                .values()
                .map(|(r, _)| {
                    let history = s.history.get(&r.id).cloned().unwrap_or_default();
                    (r.clone(), with_won_claim(r, history))
                })
                .collect()
        })
    }

    /// Every subscription with its charges and when its billing next falls due.
    pub fn subscriptions(&self) -> Vec<(Subscription, Vec<Charge>, Option<Timestamp>)> {
        self.with(|s| {
            s.subscriptions
                .values()
                .map(|sub| {
                    let charges = s
                        .charges
                        .get(&sub.id)
                        .map(|c| c.values().cloned().collect())
                        .unwrap_or_default();
                    let due = s.due.get(&(DueKind::Billing, sub.id.to_string())).copied();
                    (sub.clone(), charges, due)
                })
                .collect()
        })
    }

    /// The agent's numbers, as proved by the codes texted to them (TX-3): what the examples and
    /// tests of other rules start from. The proof itself is `app::settings`' to test.
    pub async fn verify_phones(&self, agent: &Agent) {
        for phone in [&agent.cell_phone, &agent.office_phone]
            .into_iter()
            .flatten()
        {
            let taken = self.take_phone(&agent.id, phone).await;
            assert!(
                matches!(taken, Ok(true)),
                "{phone} is free for {}",
                agent.id
            );
        }
    }

    /// Every outbox item ever committed, relayed or not.
    pub fn committed_effects(&self) -> Vec<Effects> {
        self.with(|s| s.effects.clone())
    }

    /// A write, through the fault plan: it may fail before it lands, or land and then die.
    fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, StoreError> {
        match self.faults.check(Service::Store) {
            Some(Fault::Fails) => Err(StoreError::Retryable("the store is busy (injected)".into())),
            Some(Fault::DiesAfter) => {
                self.with(f);
                die(Service::Store)
            }
            None => Ok(self.with(f)),
        }
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
        self.write(|s| {
            let saved = edit(s.agents.get(id))?;
            if let Some(before) = s.agents.insert(id.clone(), saved.clone()) {
                // A number the profile dropped identifies the agent no more.
                let kept = [&saved.cell_phone, &saved.office_phone];
                for old in [before.cell_phone, before.office_phone]
                    .into_iter()
                    .flatten()
                {
                    if !kept.contains(&&Some(old.clone())) && s.phones.get(&old) == Some(id) {
                        s.phones.remove(&old);
                    }
                }
            }
            Some(saved)
        })
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
        Ok(self.with(|s| s.phones.get(phone).cloned()))
    }

    async fn phone_verification(
        &self,
        agent: &AgentId,
        phone: &Phone,
    ) -> Result<Option<PhoneVerification>, StoreError> {
        Ok(self.with(|s| {
            s.verifications
                .get(&(agent.clone(), phone.clone()))
                .cloned()
        }))
    }

    async fn save_phone_verification(
        &self,
        agent: &AgentId,
        phone: &Phone,
        verification: Option<&PhoneVerification>,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        self.write(|s| {
            let key = (agent.clone(), phone.clone());
            match verification {
                Some(v) => s.verifications.insert(key, v.clone()),
                None => s.verifications.remove(&key),
            };
            s.commit(effects);
        })
    }

    async fn take_phone(&self, agent: &AgentId, phone: &Phone) -> Result<bool, StoreError> {
        self.write(|s| {
            if s.phones.get(phone).is_some_and(|owner| owner != agent) {
                return false;
            }
            s.phones.insert(phone.clone(), agent.clone());
            s.verifications.remove(&(agent.clone(), phone.clone()));
            true
        })
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
        effects: &Effects,
    ) -> Result<Created, StoreError> {
        self.write(|s| {
            let created = s.can_create(referral, effects);
            if created == Created::Yes {
                s.create(referral, history, effects);
            }
            created
        })
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

    async fn referrals_by_contact(
        &self,
        keys: &[String],
        since: Timestamp,
    ) -> Result<Vec<ReferralId>, StoreError> {
        Ok(self.with(|s| {
            let mut found: Vec<(Timestamp, ReferralId)> = keys
                .iter()
                .filter_map(|k| s.contacts.get(k))
                .flatten()
                .filter(|(at, _)| *at >= since)
                .cloned()
                .collect();
            found.sort_by(|a, b| b.cmp(a));
            found.dedup_by(|a, b| a.1 == b.1);
            found.into_iter().map(|(_, id)| id).collect()
        }))
    }

    async fn offers_on(
        &self,
        days: &[(AgentId, Date)],
    ) -> Result<BTreeMap<AgentId, u32>, StoreError> {
        Ok(self.with(|s| {
            days.iter()
                .filter_map(|(a, d)| s.offered_on.get(&(a.clone(), *d)).map(|n| (a.clone(), *n)))
                .collect()
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
        self.write(|s| {
            let Some((current, version)) = s.referrals.get_mut(id) else {
                return ClaimOutcome::NotFound;
            };
            if current.program == Program::Ppl
                && current.ppl.is_some()
                && claim::check_claim(current, agent, channel, now).is_ok()
            {
                return ClaimOutcome::PayPerLead(Box::new(current.clone()));
            }
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
        })
    }

    async fn claim_counted(
        &self,
        id: &ReferralId,
        agent: &AgentId,
        channel: ClaimChannel,
        now: Timestamp,
        place: &QuotaPlace,
    ) -> Result<ClaimOutcome, StoreError> {
        self.write(|s| {
            let Some((current, version)) = s.referrals.get_mut(id) else {
                return ClaimOutcome::NotFound;
            };
            let won = match claim::claim(current, agent, channel, now) {
                Ok(won) => won,
                Err(refusal) => return ClaimOutcome::Refused(refusal),
            };
            let received = s
                .received
                .entry((place.subscription.clone(), place.cycle))
                .or_default();
            if received.contains(id) || received.len() >= place.quota as usize {
                return ClaimOutcome::Refused(ClaimRefusal::QuotaReached);
            }
            received.insert(id.clone());
            *current = won;
            *version += 1;
            ClaimOutcome::Won(Assignment {
                agent_id: agent.clone(),
                claimed_at: now,
                channel,
            })
        })
    }

    async fn return_referral(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        place: &QuotaPlace,
    ) -> Result<Saved, StoreError> {
        self.write(|s| {
            let current_version = s.referrals.get(&referral.id).map(|(_, v)| *v);
            let key = (place.subscription.clone(), place.cycle);
            let counted = s
                .received
                .get(&key)
                .is_some_and(|r| r.contains(&referral.id));
            let charged = s
                .charges
                .get(&place.subscription)
                .is_some_and(|c| c.contains_key(&(place.cycle + 1)));
            if current_version != Some(expected_version) || !counted || charged {
                return Saved::Stale;
            }
            if let Some(r) = s.received.get_mut(&key) {
                r.remove(&referral.id);
            }
            s.referrals.insert(
                referral.id.clone(),
                (referral.clone(), expected_version + 1),
            );
            s.history
                .entry(referral.id.clone())
                .or_default()
                .extend_from_slice(entries);
            Saved::Ok
        })
    }

    async fn update_referral(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<Saved, StoreError> {
        self.write(|s| {
            let current_version = s.referrals.get(&referral.id).map(|(_, v)| *v);
            if current_version != Some(expected_version) || s.has_effects(effects) {
                return Saved::Stale;
            }
            s.referrals.insert(
                referral.id.clone(),
                (referral.clone(), expected_version + 1),
            );
            s.history
                .entry(referral.id.clone())
                .or_default()
                .extend_from_slice(entries);
            s.commit(effects);
            Saved::Ok
        })
    }

    async fn update_with_children(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
        children: &[Creation],
    ) -> Result<Spawned, StoreError> {
        self.write(|s| {
            let current_version = s.referrals.get(&referral.id).map(|(_, v)| *v);
            if current_version != Some(expected_version) || s.has_effects(effects) {
                return Spawned::Stale;
            }
            for child in children {
                match s.can_create(&child.referral, &child.effects) {
                    Created::Yes => {}
                    Created::Exists => return Spawned::Stale,
                    Created::CodeInUse => return Spawned::CodeInUse,
                    // A cap filled meanwhile: the children are chosen again from a fresh read.
                    Created::AtCap => return Spawned::Stale,
                }
            }
            s.referrals.insert(
                referral.id.clone(),
                (referral.clone(), expected_version + 1),
            );
            s.history
                .entry(referral.id.clone())
                .or_default()
                .extend_from_slice(entries);
            s.commit(effects);
            for child in children {
                s.create(&child.referral, &child.history, &child.effects);
            }
            Spawned::Ok
        })
    }

    async fn append_history_once(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
        once: &str,
    ) -> Result<bool, StoreError> {
        self.write(|s| {
            if s.once.contains_key(once) {
                return false;
            }
            s.once.insert(once.to_owned(), Once::Done);
            s.history
                .entry(id.clone())
                .or_default()
                .extend_from_slice(entries);
            true
        })
    }

    async fn record(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<bool, StoreError> {
        self.write(|s| {
            if s.has_effects(effects) {
                return false;
            }
            s.history
                .entry(id.clone())
                .or_default()
                .extend_from_slice(entries);
            s.commit(effects);
            true
        })
    }

    async fn append_history(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        self.write(|s| {
            s.history
                .entry(id.clone())
                .or_default()
                .extend_from_slice(entries)
        })?;
        Ok(())
    }

    async fn desk_referrals(
        &self,
        stage: Stage,
        after: Option<&ReferralId>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError> {
        Ok(self.with(|s| {
            let mut on_desk: Vec<Referral> = s
                .referrals
                .values()
                .map(|(r, _)| r)
                .filter(|r| r.stage() == Some(stage) && after.is_none_or(|a| &r.id > a))
                .cloned()
                .collect();
            on_desk.sort_by(|a, b| a.id.cmp(&b.id));
            on_desk.truncate(limit);
            on_desk
        }))
    }

    async fn unassigned_referrals(
        &self,
        after: Option<(Timestamp, &ReferralId)>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError> {
        Ok(self.with(|s| {
            let mut queued: Vec<(Timestamp, Referral)> = s
                .referrals
                .values()
                .filter(|(r, _)| r.assigned.is_none())
                .filter_map(|(r, _)| r.unassigned_since.map(|at| (at, r.clone())))
                .filter(|(at, r)| after.is_none_or(|(a, id)| (*at, &r.id) > (a, id)))
                .collect();
            queued.sort_by(|(a, x), (b, y)| (a, &x.id).cmp(&(b, &y.id)));
            queued.truncate(limit);
            queued.into_iter().map(|(_, r)| r).collect()
        }))
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
        self.write(|s| {
            let k = (kind, key.to_owned());
            if s.due.contains_key(&k) {
                return false;
            }
            s.due.insert(k, due);
            true
        })
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
        effects: &Effects,
    ) -> Result<bool, StoreError> {
        self.write(|s| {
            let k = (kind, key.to_owned());
            if s.due.get(&k) != Some(&from) || s.has_effects(effects) {
                return false;
            }
            s.commit(effects);
            match to {
                Some(at) => s.due.insert(k, at),
                None => s.due.remove(&k),
            };
            true
        })
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn create_subscription(
        &self,
        sub: &Subscription,
        first_charge: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write(|s| {
            if s.subscriptions.contains_key(&sub.id) {
                return false;
            }
            s.subscriptions.insert(sub.id.clone(), sub.clone());
            s.due
                .insert((DueKind::Billing, sub.id.to_string()), first_charge);
            true
        })
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
        effects: &Effects,
    ) -> Result<bool, StoreError> {
        self.write(|s| {
            let charged = s
                .charges
                .get(sub)
                .is_some_and(|c| c.contains_key(&charge.cycle));
            if charged || s.has_effects(effects) {
                return false;
            }
            s.charges
                .entry(sub.clone())
                .or_default()
                .insert(charge.cycle, charge.clone());
            s.commit(effects);
            true
        })
    }

    async fn charges(&self, sub: &SubscriptionId) -> Result<Vec<Charge>, StoreError> {
        Ok(self.with(|s| {
            s.charges
                .get(sub)
                .map(|c| c.values().cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn save_subscription(&self, sub: &Subscription) -> Result<(), StoreError> {
        self.write(|s| {
            s.subscriptions.insert(sub.id.clone(), sub.clone());
        })
    }

    async fn received(
        &self,
        sub: &SubscriptionId,
        cycle: u32,
    ) -> Result<Vec<ReferralId>, StoreError> {
        Ok(self.with(|s| {
            s.received
                .get(&(sub.clone(), cycle))
                .map(|r| r.iter().cloned().collect())
                .unwrap_or_default()
        }))
    }
}

#[async_trait]
impl Idempotency for MemoryStore {
    async fn begin(&self, key: &str, lease: SignedDuration) -> Result<Begun, StoreError> {
        let now = Timestamp::now();
        self.write(|s| match s.once.get(key) {
            Some(Once::Done) => Begun::Done,
            Some(Once::InProgress { until }) if *until > now => Begun::InProgress,
            _ => {
                s.once
                    .insert(key.to_owned(), Once::InProgress { until: now + lease });
                Begun::First
            }
        })
    }

    async fn finish(
        &self,
        key: &str,
        _keep: SignedDuration,
        referral: Option<&ReferralId>,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        self.write(|s| {
            s.once.insert(key.to_owned(), Once::Done);
            if let Some(id) = referral {
                s.history
                    .entry(id.clone())
                    .or_default()
                    .extend_from_slice(entries);
            }
        })?;
        Ok(())
    }

    async fn abandon(&self, key: &str) -> Result<(), StoreError> {
        self.with(|s| s.once.remove(key));
        Ok(())
    }
}

#[async_trait]
impl EffectStore for MemoryStore {
    async fn commit_effects(&self, effects: &Effects) -> Result<bool, StoreError> {
        self.write(|s| {
            if s.has_effects(effects) {
                return false;
            }
            s.commit(effects);
            true
        })
    }
}

impl State {
    /// Whether `referral` can be created: not there yet, its effects not committed, and each of
    /// its claim codes free (not held for a live offer by the same agent).
    fn can_create(&self, referral: &Referral, effects: &Effects) -> Created {
        if self.referrals.contains_key(&referral.id) || self.has_effects(effects) {
            return Created::Exists;
        }
        let now = referral.created_at;
        let in_use = referral.codes.iter().any(|(agent, code)| {
            self.codes
                .get(&(agent.clone(), code.clone()))
                .is_some_and(|(_, until)| *until > now)
        });
        if in_use {
            Created::CodeInUse
        } else if referral.capped_offers.iter().any(|c| {
            self.offered_on
                .get(&(c.agent_id.clone(), c.day))
                .is_some_and(|n| *n >= c.cap)
        }) {
            Created::AtCap
        } else {
            Created::Yes
        }
    }

    fn create(&mut self, referral: &Referral, history: &[HistoryEntry], effects: &Effects) {
        let now = referral.created_at;
        for key in &referral.contact_keys {
            self.contacts
                .entry(key.clone())
                .or_default()
                .push((referral.created_at, referral.id.clone()));
        }
        for c in &referral.capped_offers {
            *self
                .offered_on
                .entry((c.agent_id.clone(), c.day))
                .or_default() += 1;
        }
        for (agent, code) in &referral.codes {
            self.codes.insert(
                (agent.clone(), code.clone()),
                (referral.id.clone(), now + claim::CODE_LIFETIME),
            );
        }
        if referral.warm_transfer.is_some() {
            for agent in referral.offers.keys() {
                self.warm_transfers
                    .insert(agent.clone(), referral.id.clone());
            }
        }
        self.referrals
            .insert(referral.id.clone(), (referral.clone(), 1));
        self.history
            .entry(referral.id.clone())
            .or_default()
            .extend_from_slice(history);
        self.commit(effects);
    }

    /// Whether effects under this key were committed before (the outbox item's condition).
    fn has_effects(&self, effects: &Effects) -> bool {
        !effects.is_empty() && self.effect_keys.contains(&effects.key)
    }

    fn commit(&mut self, effects: &Effects) {
        if effects.is_empty() {
            return;
        }
        self.effect_keys.insert(effects.key.clone());
        self.effects.push(effects.clone());
        if let Some(stream) = &self.stream {
            stream.forward(effects);
            self.relayed = self.effects.len();
        }
    }
}

#[async_trait]
impl RequestCounter for MemoryStore {
    async fn count_request(&self, caller: &str, minute: Timestamp) -> Result<u64, StoreError> {
        self.write(|s| {
            let count = s.requests.entry((caller.to_owned(), minute)).or_default();
            *count += 1;
            *count
        })
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
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<Saved, StoreError> {
        self.write(|s| {
            let key = (referral.clone(), agent.clone());
            let current = s.claim_calls.get(&key).map_or(0, |(_, v)| *v);
            if current != expected_version || s.has_effects(effects) {
                return Saved::Stale;
            }
            s.history
                .entry(referral.clone())
                .or_default()
                .extend_from_slice(entries);
            s.commit(effects);
            s.claim_calls
                .insert(key, (calls.clone(), expected_version + 1));
            if calls.pin.is_some() {
                s.pins.insert(agent.clone(), referral.clone());
            }
            Saved::Ok
        })
    }

    async fn pin_referral(&self, agent: &AgentId) -> Result<Option<ReferralId>, StoreError> {
        Ok(self.with(|s| s.pins.get(agent).cloned()))
    }

    async fn warm_transfer_of(&self, agent: &AgentId) -> Result<Option<ReferralId>, StoreError> {
        Ok(self.with(|s| s.warm_transfers.get(agent).cloned()))
    }

    async fn set_client_thread(
        &self,
        client: &Phone,
        referral: &ReferralId,
    ) -> Result<(), StoreError> {
        self.write(|s| {
            s.client_threads.insert(client.clone(), referral.clone());
        })
    }

    async fn client_thread(&self, client: &Phone) -> Result<Option<ReferralId>, StoreError> {
        Ok(self.with(|s| s.client_threads.get(client).cloned()))
    }

    async fn wrong_guesses(&self, phone: &Phone) -> Result<Option<WrongGuesses>, StoreError> {
        Ok(self.with(|s| s.wrong_guesses.get(phone).copied()))
    }

    async fn count_wrong_guess(
        &self,
        phone: &Phone,
        now: Timestamp,
    ) -> Result<WrongGuesses, StoreError> {
        self.write(|s| {
            let fresh = WrongGuesses {
                count: 0,
                since: now,
            };
            let g = s.wrong_guesses.entry(phone.clone()).or_insert(fresh);
            if now >= g.until() {
                *g = fresh;
            }
            g.count += 1;
            *g
        })
    }

    async fn set_opted_out(&self, phone: &Phone, opted_out: bool) -> Result<(), StoreError> {
        self.write(|s| {
            if opted_out {
                s.opted_out.insert(phone.clone());
            } else {
                s.opted_out.remove(phone);
            }
        })
    }

    async fn opted_out(&self, phone: &Phone) -> Result<bool, StoreError> {
        Ok(self.with(|s| s.opted_out.contains(phone)))
    }
}
