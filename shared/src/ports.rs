//! The ports: what the use cases need from the outside world, named by role. Adapters live in
//! `memory` (for fast tests) and `dynamodb` (for production and DynamoDB Local).

use async_trait::async_trait;
use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::domain::agent::Agent;
use crate::domain::billing::{ChargedReferral, Subscription};
use crate::domain::claim::{ClaimCalls, ClaimRefusal};
use crate::domain::referral::{Assignment, ClaimChannel, HistoryEntry, Referral};
use crate::domain::stage::Stage;
use crate::domain::team::{RoutingSettings, Team};
use crate::domain::texts::WrongGuesses;
use crate::domain::values::{
    AgentId, ClientType, Email, Money, Phone, ReferralId, SubscriptionId, TeamId, Zip,
};
use crate::effects::{Delivery, Effects, Timer};

/// A storage failure. Conditions that fail for business reasons are not errors here: they come
/// back as domain outcomes (`ClaimOutcome::Refused`, `Saved::Stale`, `false` from a once-only put).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled or conflicting with a concurrent transaction: safe to retry.
    #[error("storage is busy, retry: {0}")]
    Retryable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored item that no longer reads as the domain expects.
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
    #[error("storage failed: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable(_))
    }
}

/// What a claim came to.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// This claim won, with the assignment it wrote. The winner's path is the one write; whoever
    /// needs the whole referral reads it later, off the claim's path.
    Won(Assignment),
    /// It lost, or was never allowed; the reason names the winner when there is one.
    Refused(ClaimRefusal),
    NotFound,
    /// Nothing written: the referral is open to this agent but pay-per-lead, so its claim must
    /// also count it in the agent's cycle (PPL-10): claim it with `claim_counted`. Routing and
    /// warm-transfer claims never see this and stay one write.
    PayPerLead(Box<Referral>),
}

/// Where a pay-per-lead claim counts: the winner's subscription, the delivery cycle and that
/// cycle's quota (PPL-10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPlace {
    pub subscription: SubscriptionId,
    pub cycle: u32,
    pub quota: u32,
}

/// The result of a versioned write.
#[derive(Debug, Clone, PartialEq)]
pub enum Saved {
    Ok,
    /// Someone else changed the item since it was read: read again and retry.
    Stale,
}

/// A referral as read, with the version a conditional update must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// A code texted to a number an agent says is theirs, until they type it back (TX-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneVerification {
    pub code: String,
    pub sent_at: Timestamp,
    pub valid_until: Timestamp,
    /// Wrong codes typed so far: the code stops working after a few (TX-5).
    pub wrong_tries: u8,
}

/// An edit of an agent's profile: given the profile as stored (None for a new agent), the profile
/// to save, or None to save nothing.
pub type AgentEdit<'a> = &'a (dyn Fn(Option<&Agent>) -> Option<Agent> + Send + Sync);

/// Agents, teams and routing settings.
#[async_trait]
pub trait AgentDirectory: Send + Sync {
    /// Applies `edit` to the stored profile of agent `id` and saves the result with the index
    /// entries that find the agent by zip, client type and phone. The save is conditional on the
    /// profile being unchanged since it was read, and the edit is applied again to a fresh read
    /// when it was not, so concurrent edits and recorded response times are never lost. The
    /// saved profile, or None when the edit saved nothing.
    async fn edit_agent(
        &self,
        id: &AgentId,
        edit: AgentEdit<'_>,
    ) -> Result<Option<Agent>, StoreError>;
    /// Saves an agent's profile whole, whatever was stored.
    async fn put_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        self.edit_agent(&agent.id, &|_| Some(agent.clone()))
            .await
            .map(drop)
    }
    async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError>;
    /// The agents among `ids` that exist, in no particular order.
    async fn get_agents(&self, ids: &[AgentId]) -> Result<Vec<Agent>, StoreError>;
    /// Agents who serve this zip and client type (the eligibility index, never a scan).
    async fn agents_serving(
        &self,
        zip: &Zip,
        client_type: ClientType,
    ) -> Result<Vec<Agent>, StoreError>;
    /// The agent who proved they hold this number (TX-3): an unverified number is nobody's.
    async fn agent_by_phone(&self, phone: &Phone) -> Result<Option<AgentId>, StoreError>;
    /// The code texted to `phone` for `agent`, waiting to be typed back (TX-3).
    async fn phone_verification(
        &self,
        agent: &AgentId,
        phone: &Phone,
    ) -> Result<Option<PhoneVerification>, StoreError>;
    /// Saves (replaces) a pending verification with the `effects` it owes, in one write; with
    /// `None`, ends it.
    async fn save_phone_verification(
        &self,
        agent: &AgentId,
        phone: &Phone,
        verification: Option<&PhoneVerification>,
        effects: &Effects,
    ) -> Result<(), StoreError>;
    /// Makes `phone` the agent's, unless another agent holds it, and ends its verification, in
    /// one conditional write: the number's one owner (TX-3). False when another agent holds it.
    async fn take_phone(&self, agent: &AgentId, phone: &Phone) -> Result<bool, StoreError>;
    /// Adds one response time to the agent's speed-to-lead record (GEN-1).
    async fn record_response_time(&self, id: &AgentId, millis: u64) -> Result<(), StoreError> {
        let recorded = self
            .edit_agent(id, &|stored| {
                stored.map(|a| {
                    let mut a = a.clone();
                    a.response_times.record(millis);
                    a
                })
            })
            .await?;
        if recorded.is_none() {
            tracing::warn!(agent_id = %id, "response time for an unknown agent dropped");
        }
        Ok(())
    }
    async fn put_team(&self, team: &Team) -> Result<(), StoreError>;
    async fn get_team(&self, id: &TeamId) -> Result<Option<Team>, StoreError>;
    /// Teams this agent leads.
    async fn teams_led_by(&self, agent: &AgentId) -> Result<Vec<Team>, StoreError>;
    async fn put_routing(
        &self,
        team: &TeamId,
        settings: &RoutingSettings,
    ) -> Result<(), StoreError>;
    async fn get_routing(&self, team: &TeamId) -> Result<Option<RoutingSettings>, StoreError>;
}

/// Referrals, their history, and the claim race.
#[async_trait]
pub trait ReferralStore: Send + Sync {
    /// Stores a new referral with its first history entries, its agents' claim codes and, for a
    /// warm transfer, each alerted agent's pointer to it for the line, all or nothing. Refuses an id that exists, so a retried intake creates nothing twice, and a claim
    /// code an agent already holds for another open referral.
    async fn create_referral(
        &self,
        referral: &Referral,
        history: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<Created, StoreError>;
    async fn get_referral(
        &self,
        id: &ReferralId,
    ) -> Result<Option<Versioned<Referral>>, StoreError>;
    /// How many referrals each agent was offered on the given day of theirs, counted by the
    /// referrals' `capped_offers` (RC-3); agents offered none are left out.
    async fn offers_on(
        &self,
        days: &[(AgentId, Date)],
    ) -> Result<BTreeMap<AgentId, u32>, StoreError>;
    /// The referrals created since `since` indexed under any of these contact keys (RC-4),
    /// newest first.
    async fn referrals_by_contact(
        &self,
        keys: &[String],
        since: Timestamp,
    ) -> Result<Vec<ReferralId>, StoreError>;
    /// The history, oldest first.
    async fn history(&self, id: &ReferralId) -> Result<Vec<HistoryEntry>, StoreError>;
    /// The history entries at or after `since`, oldest first, read without the older ones: what
    /// followed a claim (RC-1).
    async fn history_since(
        &self,
        id: &ReferralId,
        since: Timestamp,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(self
            .history(id)
            .await?
            .into_iter()
            .filter(|h| h.at >= since)
            .collect())
    }
    /// The claim: one conditional write that only the first eligible claimant wins, together with
    /// its history entry. A loser learns the winner from the same write, without a second read.
    async fn claim(
        &self,
        id: &ReferralId,
        agent: &AgentId,
        channel: ClaimChannel,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError>;
    /// A pay-per-lead claim: the claim's write and the referral counted in `place` in one
    /// transaction, only while the cycle has room, so concurrent claims never pass the quota
    /// (PPL-10); `Refused(QuotaReached)` when it has none.
    async fn claim_counted(
        &self,
        id: &ReferralId,
        agent: &AgentId,
        channel: ClaimChannel,
        now: Timestamp,
        place: &QuotaPlace,
    ) -> Result<ClaimOutcome, StoreError>;
    /// A returned pay-per-lead referral (PPL-13): saved at `expected_version` with its history
    /// `entries`, and taken out of the cycle it counted in, freeing its place; together, and
    /// only while that cycle's charge is not made (`Stale` otherwise).
    async fn return_referral(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        place: &QuotaPlace,
    ) -> Result<Saved, StoreError>;
    /// Replaces the referral if it is still at `expected_version`, writing `entries` and the
    /// `effects` the change owes in the same transaction (a state change, its history entry and
    /// its effects land together or not at all, EF-1).
    async fn update_referral(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<Saved, StoreError>;
    /// Saves the referral at `expected_version` with its `entries` and `effects`, and creates
    /// `children` (each with its history, claim codes and effects), all in one transaction: a
    /// warm transfer that ends and the referral its client goes to, a completed transfer and the
    /// agents it introduces. Nothing is written unless all of it is.
    async fn update_with_children(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
        children: &[Creation],
    ) -> Result<Spawned, StoreError>;
    /// Appends history without changing the referral (a lost claim attempt, a notification).
    async fn append_history(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError>;
    /// Appends history once per `once` key (a request's idempotency key): false, and nothing
    /// written, when the key was used before.
    async fn append_history_once(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
        once: &str,
    ) -> Result<bool, StoreError>;
    /// Appends history and commits the `effects` it goes with, together and once: false, and
    /// nothing written, when effects under the same key were committed before (a redelivered
    /// event, a repeated webhook).
    async fn record(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<bool, StoreError>;
    /// The closings desk's referrals at `stage` (In Escrow, Closed or Closed-Paid; RC-5), in id
    /// order, after `after`, at most `limit`.
    async fn desk_referrals(
        &self,
        stage: Stage,
        after: Option<&ReferralId>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError>;
    /// The advisors' queue (RC-2): unclaimed referrals in it, oldest first (by the time they went
    /// there, then id), after `after`, at most `limit`.
    async fn unassigned_referrals(
        &self,
        after: Option<(Timestamp, &ReferralId)>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError>;
    /// An agent's assigned referrals, optionally at one stage (the agent's list index).
    async fn agent_referrals(
        &self,
        agent: &AgentId,
        stage: Option<Stage>,
    ) -> Result<Vec<Referral>, StoreError>;
}

/// A new referral with everything its creation writes: its first history entries and what it
/// owes (the offers or alerts, a warm transfer's window).
#[derive(Debug, Clone, PartialEq)]
pub struct Creation {
    pub referral: Referral,
    pub history: Vec<HistoryEntry>,
    pub effects: Effects,
}

/// What saving a referral with the referrals it spawns came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawned {
    Ok,
    /// The referral changed since it was read, or a child exists already: read again.
    Stale,
    /// One of the children's claim codes is held by the same agent: draw others.
    CodeInUse,
}

/// What creating a referral came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Yes,
    /// A referral with this id exists already; nothing was written.
    Exists,
    /// One of the claim codes is held by the same agent for another referral; nothing was
    /// written. Draw other codes and try again.
    CodeInUse,
    /// One of its capped offers would pass the agent's daily cap (RC-3), counted by a referral
    /// stored meanwhile; nothing was written.
    AtCap,
}

impl Created {
    pub fn is_new(self) -> bool {
        self == Created::Yes
    }
}

/// How agents claim without the app: claim codes in texts, claim calls and the PIN line
/// (LR-9, LR-10).
#[async_trait]
pub trait ClaimLines: Send + Sync {
    /// The referral `agent` holds `code` for, while it is live.
    async fn code_referral(
        &self,
        agent: &AgentId,
        code: &str,
        now: Timestamp,
    ) -> Result<Option<ReferralId>, StoreError>;
    /// One agent's claim calls and PIN for one referral, with its version (0: none yet).
    async fn claim_calls(
        &self,
        referral: &ReferralId,
        agent: &AgentId,
    ) -> Result<Versioned<ClaimCalls>, StoreError>;
    /// Saves them if still at `expected_version`, with the referral's history `entries` and the
    /// `effects` the change owes. A PIN among them becomes the agent's PIN-line PIN, replacing any
    /// earlier one, in the same write.
    async fn save_claim_calls(
        &self,
        referral: &ReferralId,
        agent: &AgentId,
        calls: &ClaimCalls,
        expected_version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<Saved, StoreError>;
    /// The referral of the agent's latest PIN, if one was issued.
    async fn pin_referral(&self, agent: &AgentId) -> Result<Option<ReferralId>, StoreError>;
    /// The latest warm transfer the agent was alerted to: who dials the line is known by their
    /// number only (written with the referral by `create_referral`).
    async fn warm_transfer_of(&self, agent: &AgentId) -> Result<Option<ReferralId>, StoreError>;
    /// Remembers that the service texted `client` about `referral` on its agent's behalf, so the
    /// client's reply reaches that agent (TX-1); the latest relayed referral wins.
    async fn set_client_thread(
        &self,
        client: &Phone,
        referral: &ReferralId,
    ) -> Result<(), StoreError>;
    /// The referral the service last texted `client` about.
    async fn client_thread(&self, client: &Phone) -> Result<Option<ReferralId>, StoreError>;
    /// The wrong claim codes and PINs entered from `phone` (TX-5), if any were counted.
    async fn wrong_guesses(&self, phone: &Phone) -> Result<Option<WrongGuesses>, StoreError>;
    /// Counts one more wrong code or PIN from `phone`, in one atomic update (a new count starts
    /// once the last one's window is over), and answers the count.
    async fn count_wrong_guess(
        &self,
        phone: &Phone,
        now: Timestamp,
    ) -> Result<WrongGuesses, StoreError>;
    /// Records that `phone` texted STOP (`true`) or START (`false`) (TX-2).
    async fn set_opted_out(&self, phone: &Phone, opted_out: bool) -> Result<(), StoreError>;
    /// Whether `phone` texted STOP and not START since.
    async fn opted_out(&self, phone: &Phone) -> Result<bool, StoreError>;
}

/// Each caller's requests, counted per minute (TX-5): one atomic counter per caller and minute,
/// forgotten soon after the minute ends.
#[async_trait]
pub trait RequestCounter: Send + Sync {
    /// Counts one request of `caller` in the minute that starts at `minute`, and answers how
    /// many that minute has had, this one included.
    async fn count_request(&self, caller: &str, minute: Timestamp) -> Result<u64, StoreError>;
}

/// Work that falls due at a time: found through a sparse index keyed by due time, never a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueKind {
    /// An agent's biweekly update reminder (RM-1).
    Reminder,
    /// A PPL subscription's next charge (PPL-2).
    Billing,
}

/// Scheduled sweeps: what is due, and how much reading finding it cost.
#[async_trait]
pub trait DueWork: Send + Sync {
    /// Sets (or with `None` clears) when `key`'s work of `kind` next falls due.
    async fn set_due(
        &self,
        kind: DueKind,
        key: &str,
        due: Option<Timestamp>,
    ) -> Result<(), StoreError>;
    /// Sets when `key`'s work of `kind` falls due unless it already has a due time; true if set.
    async fn set_due_if_absent(
        &self,
        kind: DueKind,
        key: &str,
        due: Timestamp,
    ) -> Result<bool, StoreError>;
    /// The keys due at or before `now`, earliest first, with their due times.
    async fn due(
        &self,
        kind: DueKind,
        now: Timestamp,
    ) -> Result<Vec<(String, Timestamp)>, StoreError>;
    /// Moves a due time from `from` to `to` only if it still is `from`, committing the `effects`
    /// the due work owes in the same write: two overlapping runs cannot both take the same item,
    /// and the work is never moved on without its effects.
    async fn advance_due(
        &self,
        kind: DueKind,
        key: &str,
        from: Timestamp,
        to: Option<Timestamp>,
        effects: &Effects,
    ) -> Result<bool, StoreError>;
}

/// A charge made for one subscription cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    pub cycle: u32,
    pub amount: Money,
    pub at: Timestamp,
    /// The referrals it paid for, each at its own price (PPL-11).
    #[serde(default)]
    pub referrals: Vec<ChargedReferral>,
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription with its first charge's due record, in one write; false, and
    /// nothing new, when one with its id exists (a retried sign-up, EF-3).
    async fn create_subscription(
        &self,
        sub: &Subscription,
        first_charge: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn get_subscription(
        &self,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError>;
    async fn subscriptions_of(&self, agent: &AgentId) -> Result<Vec<Subscription>, StoreError>;
    /// PPL subscriptions covering this zip and client type.
    async fn subscriptions_covering(
        &self,
        zip: &Zip,
        client_type: ClientType,
    ) -> Result<Vec<Subscription>, StoreError>;
    /// Records the charge for one cycle with the `effects` it owes (the receipt); false, and
    /// nothing written, if that cycle was already charged (PPL-2).
    async fn record_charge(
        &self,
        sub: &SubscriptionId,
        charge: &Charge,
        effects: &Effects,
    ) -> Result<bool, StoreError>;
    async fn charges(&self, sub: &SubscriptionId) -> Result<Vec<Charge>, StoreError>;
    /// Saves a changed or cancelled subscription (PPL-12), with the index items of its zips.
    async fn save_subscription(&self, sub: &Subscription) -> Result<(), StoreError>;
    /// The referrals received in a delivery cycle and not returned (PPL-10), oldest first.
    async fn received(
        &self,
        sub: &SubscriptionId,
        cycle: u32,
    ) -> Result<Vec<ReferralId>, StoreError>;
}

/// Where a once-only effect stands (GEN-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// Nobody performed it, or an earlier attempt died holding it and its lease ran out: go on.
    First,
    /// It was performed.
    Done,
    /// Another attempt holds it now: try again later.
    InProgress,
}

/// Once-only effects with leases, so that an attempt that dies between taking an effect and
/// finishing it loses nothing: when its lease runs out the effect is taken again. Leases run on
/// the wall clock, as the retries that recover them do.
#[async_trait]
pub trait Idempotency: Send + Sync {
    /// Takes `key` for `lease`, unless it is done or another attempt's lease still holds.
    async fn begin(&self, key: &str, lease: SignedDuration) -> Result<Begun, StoreError>;
    /// Marks `key` done and remembers it for `keep`, with the history `entries` of `referral`
    /// the effect leaves, in one write.
    async fn finish(
        &self,
        key: &str,
        keep: SignedDuration,
        referral: Option<&ReferralId>,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError>;
    /// Lets `key` go after a failed attempt, so the next may begin at once.
    async fn abandon(&self, key: &str) -> Result<(), StoreError>;
}

/// The outbox: effects committed on their own, when no other change carries them (what a claim
/// owes, found from the stream).
#[async_trait]
pub trait EffectStore: Send + Sync {
    /// Commits `effects` once per key; false, and nothing written, if they were committed before.
    async fn commit_effects(&self, effects: &Effects) -> Result<bool, StoreError>;
}

/// An email to send, attachments included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailMessage {
    pub to: Email,
    pub cc: Vec<Email>,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    #[serde(with = "bytes_base64")]
    pub bytes: Vec<u8>,
}

mod bytes_base64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::encoding::base64_encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        crate::encoding::base64_decode(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the provider is busy, retry: {0}")]
    Retryable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the provider refused the message: {0}")]
    Rejected(String),
}

/// SMS, app push and email.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn sms(&self, to: &Phone, body: &str) -> Result<(), SendError>;
    async fn push(&self, device_token: &str, title: &str, body: &str) -> Result<(), SendError>;
    async fn email(&self, message: &EmailMessage) -> Result<(), SendError>;
    /// Takes `to` off the provider's opt-out list: it texted START (TX-2).
    async fn opt_in(&self, to: &Phone) -> Result<(), SendError>;
}

#[async_trait]
pub trait BroadcastQueue: Send + Sync {
    /// Enqueues the deliveries in as few calls as the queue's batch limit allows.
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), SendError>;
}

/// A domain event on the bus (API.md: Events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "detailType", content = "detail")]
pub enum DomainEvent {
    ReferralClaimed {
        #[serde(rename = "referralId")]
        referral_id: ReferralId,
        #[serde(rename = "agentId")]
        agent_id: AgentId,
    },
    StageChanged {
        #[serde(rename = "referralId")]
        referral_id: ReferralId,
        from: Option<Stage>,
        to: Stage,
        #[serde(rename = "escrowEntry")]
        escrow_entry: u32,
    },
    WarmTransferCompleted {
        #[serde(rename = "referralId")]
        referral_id: ReferralId,
    },
}

impl DomainEvent {
    pub fn detail_type(&self) -> &'static str {
        match self {
            DomainEvent::ReferralClaimed { .. } => "ReferralClaimed",
            DomainEvent::StageChanged { .. } => "StageChanged",
            DomainEvent::WarmTransferCompleted { .. } => "WarmTransferCompleted",
        }
    }
}

#[async_trait]
pub trait EventBus: Send + Sync {
    async fn publish(&self, event: &DomainEvent) -> Result<(), SendError>;
}

/// Named timers that invoke the timers function (Coming Soon to Listing, the warm-transfer
/// timeout).
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Creates or replaces the timer `timer.name`, firing once at its time with its payload.
    async fn start(&self, timer: &Timer) -> Result<(), SendError>;
    /// Deletes it; deleting a timer that is gone is fine.
    async fn stop(&self, name: &str) -> Result<(), SendError>;
}

/// Short timers (the warm-transfer window, claim-call retries) as delayed messages the timers
/// function consumes: precise to the second, at most `effects::MAX_TIMER_DELAY` ahead.
#[async_trait]
pub trait TimerQueue: Send + Sync {
    /// Sends `timer` to fire after `delay`. A message cannot be taken back: what a timer acts on
    /// is checked when it fires.
    async fn delay(&self, timer: &Timer, delay: SignedDuration) -> Result<(), SendError>;
}

/// Outbound calls through the telephony provider.
#[async_trait]
pub trait Telephony: Send + Sync {
    /// Calls `to`; the provider then requests `url` for instructions and reports to
    /// `status_callback`. Returns the call's id.
    async fn call(&self, to: &Phone, url: &str, status_callback: &str)
    -> Result<String, SendError>;
    /// Gives the live call `call_sid` new instructions, `twiml`, at once.
    async fn update(&self, call_sid: &str, twiml: &str) -> Result<(), SendError>;
}
