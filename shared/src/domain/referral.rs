//! A referral: one client's request, offered to agents, claimed by one (GEN-2), and its history.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::billing::ReturnReason;
use super::stage::{Pipeline, Stage};
use super::team::CappedOffer;
pub use super::values::Program;
use super::values::{
    AgentId, ClientType, Email, InvalidValue, Money, Percent, Phone, ReferralId, SubscriptionId,
    TeamId, UserId, Zip,
};
use super::warm_transfer::WarmTransfer;

/// The client's contact details: shown to the assigned agent only (GEN-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Client {
    pub name: String,
    pub phone: Phone,
    pub email: Email,
}

/// A client's price range: `min` never above `max`, whether built in code or parsed from JSON or
/// a stored item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PriceRangeFields")]
pub struct PriceRange {
    min: Money,
    max: Money,
}

/// A price range as written, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceRangeFields {
    min: Money,
    max: Money,
}

impl TryFrom<PriceRangeFields> for PriceRange {
    type Error = InvalidValue;

    fn try_from(f: PriceRangeFields) -> Result<Self, InvalidValue> {
        PriceRange::new(f.min, f.max)
    }
}

impl PriceRange {
    pub fn new(min: Money, max: Money) -> Result<Self, InvalidValue> {
        if max < min {
            Err(InvalidValue::new("priceRange", "max must not be below min"))
        } else {
            Ok(Self { min, max })
        }
    }

    pub fn min(&self) -> Money {
        self.min
    }

    pub fn max(&self) -> Money {
        self.max
    }
}

/// What a client asked for: everything an offered agent may see (WT-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadDetails {
    pub client_type: ClientType,
    pub zip: Zip,
    pub price_range: PriceRange,
    pub timeline: String,
}

impl LeadDetails {
    /// One line for an SMS or push: type, area, price range, timeline; never contact details.
    pub fn summary(&self) -> String {
        format!(
            "{} in {}, {}-{}, {}",
            match self.client_type {
                ClientType::Buyer => "Buyer",
                ClientType::Seller => "Seller",
            },
            self.zip,
            self.price_range.min().readable(),
            self.price_range.max().readable(),
            self.timeline
        )
    }
}

/// Why nobody may claim a referral any more, though nobody did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closure {
    /// The team lead declined it for the whole team (LR-8).
    DeclinedByTeam,
    /// A warm transfer nobody answered in time (WT-6); it went to ordinary routing.
    TimedOut,
    /// An advisor re-offered it from their queue as another referral (RC-2).
    Reoffered,
    /// A warm transfer whose winner's phone could not be reached: the advisor gave up on them
    /// and the client went to ordinary routing (WT-10). The winner no longer holds it.
    WinnerNotReached,
}

/// How an agent claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimChannel {
    App,
    Sms,
    Call,
    Pin,
    WarmTransferLine,
    Introduction,
}

impl ClaimChannel {
    /// A claim made on a phone call: pressing 1 on the claim call, or the PIN line.
    pub fn is_phone(self) -> bool {
        matches!(self, ClaimChannel::Call | ClaimChannel::Pin)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub agent_id: AgentId,
    pub claimed_at: Timestamp,
    pub channel: ClaimChannel,
}

/// One referral. Before a claim it is an open offer; after, it belongs to its assigned agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referral {
    pub id: ReferralId,
    pub program: Program,
    pub client: Client,
    pub lead: LeadDetails,
    /// The advisor's briefing: the client's needs, what was discussed, notes (WT-5).
    pub briefing: String,
    pub team_id: Option<TeamId>,
    /// For an agent introduced after a warm transfer: the winner's referral (WT-7).
    pub parent_id: Option<ReferralId>,
    pub created_at: Timestamp,
    pub created_by: UserId,
    /// Who was offered it, and when they were told (GEN-1).
    pub offers: BTreeMap<AgentId, Timestamp>,
    /// Each offered agent's claim code (`#4821`): a text from the agent's phone that starts with
    /// it claims the referral (LR-9, API.md).
    #[serde(default)]
    pub codes: BTreeMap<AgentId, String>,
    /// Claimed only by phone: the agent asks for a call and presses 1, or uses the PIN line
    /// (PPL-4). A claim from the app or by text is refused.
    #[serde(default)]
    pub call_first: bool,
    /// No claim counts at or after this time: a warm transfer's response window (WT-6).
    #[serde(default)]
    pub respond_by: Option<Timestamp>,
    /// A warm transfer's alerts, line and outcome (WT-1 to WT-7).
    #[serde(default)]
    pub warm_transfer: Option<WarmTransfer>,
    pub declined: BTreeSet<AgentId>,
    pub closure: Option<Closure>,
    /// A pay-per-lead referral's price and subscriptions (PPL-10, PPL-11, PPL-13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppl: Option<PplTerms>,
    /// The creating advisor's address (the token's `email`) and phone: where they are told that
    /// nobody took it (RC-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisor_email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisor_phone: Option<Phone>,
    /// In the advisors' queue since then: nobody was eligible, everyone declined, or nobody
    /// claimed it in time (RC-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unassigned_since: Option<Timestamp>,
    /// The referral an advisor re-offered it as, from their queue (RC-2); the one it re-offers
    /// is `reoffer_of`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reoffered_as: Option<ReferralId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reoffer_of: Option<ReferralId>,
    /// An active referral of the same client, of the past 60 days, when it was created (RC-4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<ReferralId>,
    /// Agents with claim codes not offered it yet: a duplicate goes to the agent who has the
    /// client first, and to these when the first look is over (RC-4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<AgentId>,
    /// The client's contact keys (`domain::contact`), indexed when it is stored; never kept on
    /// the referral itself.
    #[serde(skip)]
    pub contact_keys: Vec<String>,
    /// The offers that count against members' daily caps, counted when it is stored (RC-3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped_offers: Vec<CappedOffer>,
    /// The agents it was taken back from for recording no contact in time (RC-1): never offered
    /// it again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub taken_back: BTreeSet<AgentId>,
    /// Who holds it and where it stands, once claimed. Stored as the `assignment` and `pipeline`
    /// attributes, both null while it is open.
    #[serde(flatten, with = "assigned_fields")]
    pub assigned: Option<Assigned>,
}

/// What a pay-per-lead referral costs its winner, priced once when it is delivered by the price
/// table's most specific entry for its client type and zip (PPL-11), and under which
/// subscription each offered agent receives it (PPL-10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PplTerms {
    pub price: Money,
    pub subscriptions: BTreeMap<AgentId, SubscriptionId>,
    /// Returned by its agent: not charged, its place in the quota freed (PPL-13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned: Option<ReturnReason>,
}

/// A claimed referral's owner and stage: a claim sets both at once, and neither exists without
/// the other.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub assignment: Assignment,
    pub pipeline: Pipeline,
}

impl Assigned {
    /// What a claim (or an introduction) makes: the agent's, at the first stage.
    pub fn claimed(agent_id: AgentId, claimed_at: Timestamp, channel: ClaimChannel) -> Self {
        Assigned {
            assignment: Assignment {
                agent_id,
                claimed_at,
                channel,
            },
            pipeline: Pipeline::claimed(claimed_at),
        }
    }
}

/// `Option<Assigned>` as two attributes, `assignment` and `pipeline`: both set or both null.
mod assigned_fields {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Assigned, Assignment, Pipeline};

    #[derive(Serialize)]
    struct Fields<'a> {
        assignment: Option<&'a Assignment>,
        pipeline: Option<&'a Pipeline>,
    }

    #[derive(Deserialize)]
    struct Owned {
        #[serde(default)]
        assignment: Option<Assignment>,
        #[serde(default)]
        pipeline: Option<Pipeline>,
    }

    pub fn serialize<S: Serializer>(value: &Option<Assigned>, s: S) -> Result<S::Ok, S::Error> {
        Fields {
            assignment: value.as_ref().map(|a| &a.assignment),
            pipeline: value.as_ref().map(|a| &a.pipeline),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Assigned>, D::Error> {
        match Owned::deserialize(d)? {
            Owned {
                assignment: Some(assignment),
                pipeline: Some(pipeline),
            } => Ok(Some(Assigned {
                assignment,
                pipeline,
            })),
            Owned {
                assignment: None,
                pipeline: None,
            } => Ok(None),
            _ => Err(serde::de::Error::custom(
                "a referral's assignment and pipeline are set together",
            )),
        }
    }
}

impl Referral {
    /// A new open offer, told to `offered` at `created_at`, with nothing else decided: no team,
    /// briefing, claim codes, deadline, decline, claim or stage. What else applies is set with
    /// struct update syntax (`Referral { briefing, ..Referral::offered(..) }`).
    pub fn offered(
        id: ReferralId,
        program: Program,
        client: Client,
        lead: LeadDetails,
        created_by: UserId,
        created_at: Timestamp,
        offered: impl IntoIterator<Item = AgentId>,
    ) -> Self {
        Referral {
            id,
            program,
            client,
            lead,
            briefing: String::new(),
            team_id: None,
            parent_id: None,
            created_at,
            created_by,
            offers: offered.into_iter().map(|a| (a, created_at)).collect(),
            codes: BTreeMap::new(),
            call_first: false,
            respond_by: None,
            warm_transfer: None,
            declined: BTreeSet::new(),
            closure: None,
            ppl: None,
            advisor_email: None,
            advisor_phone: None,
            unassigned_since: None,
            reoffered_as: None,
            reoffer_of: None,
            duplicate_of: None,
            held_back: Vec::new(),
            contact_keys: Vec::new(),
            capped_offers: Vec::new(),
            taken_back: BTreeSet::new(),
            assigned: None,
        }
    }

    /// Nobody can take it any more: the team lead declined it for the team, or every agent it
    /// was offered to declined (none offered counts too) and nobody is held back for later.
    /// Claimed ones are never left over.
    pub fn nobody_left(&self) -> bool {
        self.assigned.is_none()
            && (self.closure == Some(Closure::DeclinedByTeam)
                || (self.held_back.is_empty()
                    && self.offers.keys().all(|a| self.declined.contains(a))))
    }

    /// Into the advisors' queue, once (RC-2): false when it is there already, or taken.
    pub fn to_advisors(&mut self, now: Timestamp) -> bool {
        if self.unassigned_since.is_some() || self.assigned.is_some() || self.reoffered_as.is_some()
        {
            return false;
        }
        self.unassigned_since = Some(now);
        true
    }

    /// Whether it waits in the advisors' queue (RC-2).
    pub fn in_advisors_queue(&self) -> bool {
        self.unassigned_since.is_some() && self.assigned.is_none() && self.reoffered_as.is_none()
    }

    /// Out of the advisors' queue as the referral `new` (RC-2): closed, so nobody claims it
    /// any more, and never queued again. False, changing nothing, when it is not in the queue.
    pub fn reoffer_as(&mut self, new: &ReferralId) -> bool {
        if !self.in_advisors_queue() {
            return false;
        }
        self.unassigned_since = None;
        self.closure = Some(Closure::Reoffered);
        self.reoffered_as = Some(new.clone());
        true
    }

    pub fn assignment(&self) -> Option<&Assignment> {
        self.assigned.as_ref().map(|a| &a.assignment)
    }

    pub fn pipeline(&self) -> Option<&Pipeline> {
        self.assigned.as_ref().map(|a| &a.pipeline)
    }

    pub fn assigned_agent(&self) -> Option<&AgentId> {
        self.assignment().map(|a| &a.agent_id)
    }

    pub fn stage(&self) -> Option<Stage> {
        self.pipeline().map(|p| p.stage)
    }

    pub fn is_offered_to(&self, agent: &AgentId) -> bool {
        self.offers.contains_key(agent)
    }

    /// The referral fee its closing owes under the agent's `agreement`, computed here alone for
    /// the closings desk, the referral view and the closing documents (RC-5, ES-1): the
    /// agreement's percent of the sale price, none for pay per lead (PPL-6), whatever the
    /// referral went through before, a Failed included (ST-9). None while no sale price is known.
    pub fn fee_owed(&self, agreement: Option<Percent>) -> Option<Money> {
        let price = self.pipeline()?.sale_price?;
        Some(super::stage::referral_fee(self.program, price, agreement))
    }
}

/// What happened to a referral, kept in order (GEN-2, ST-10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub at: Timestamp,
    /// Who did it; `None` for the system.
    pub by: Option<UserId>,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum HistoryEvent {
    Created {
        program: Program,
        /// An active referral of the same client, shown to the advisor (RC-4).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duplicate_of: Option<ReferralId>,
        /// The queued referral this one re-offers (RC-2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reoffer_of: Option<ReferralId>,
    },
    Notified {
        agent_id: AgentId,
        channel: String,
    },
    Declined {
        agent_id: AgentId,
        for_team: bool,
    },
    ClaimAttempt {
        agent_id: AgentId,
        channel: ClaimChannel,
        won: bool,
    },
    PinIssued {
        agent_id: AgentId,
    },
    StageChanged {
        from: Option<Stage>,
        to: Stage,
    },
    Note {
        text: String,
    },
    DocumentsSent {
        escrow_entry: u32,
        fee: Money,
    },
    Introduced {
        agent_id: AgentId,
        referral_id: ReferralId,
    },
    WarmTransferTimedOut,
    /// The advisor gave up on the winner, whose phone could not be reached, and sent the client
    /// to ordinary routing (WT-10).
    WarmTransferRouted {
        agent_id: AgentId,
    },
    Charged {
        cycle: u32,
        amount: Money,
    },
    Returned {
        reason: ReturnReason,
    },
    /// A text owed to the agent was not sent, and why (TX-2): their other channels still went.
    TextNotSent {
        agent_id: AgentId,
        reason: NotSentReason,
    },
    /// Offered to more agents: a duplicate's first look is over (RC-4).
    Offered {
        agent_ids: Vec<AgentId>,
    },
    /// Into the advisors' queue (RC-2).
    Unassigned {
        reason: UnassignedReason,
    },
    /// The assigned agent texted the client through the service (a contact, RC-1); the text
    /// itself is the client's and the agent's, so it is not kept here.
    TextRelayed {
        agent_id: AgentId,
    },
    /// Taken back from its agent and offered again to the others (RC-1).
    TakenBack {
        agent_id: AgentId,
        reason: TakeBackReason,
    },
    /// Out of the advisors' queue: re-offered as another referral (RC-2).
    Reoffered {
        referral_id: ReferralId,
    },
}

/// Why a referral was taken back from its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TakeBackReason {
    /// No stage move, note or relayed text by the team's contact deadline (RC-1).
    NoContact,
}

/// Why a text was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotSentReason {
    /// The number texted STOP (TX-2).
    OptedOut,
}

/// Why a referral went to the advisors' queue (RC-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnassignedReason {
    /// Nobody could be offered it when it was created.
    NoEligibleAgent,
    /// Every agent offered declined, or the team lead declined for the team.
    Declined,
    /// Nobody claimed it within 24 hours.
    Unclaimed,
}

impl HistoryEntry {
    pub fn new(at: Timestamp, by: Option<UserId>, event: HistoryEvent) -> Self {
        Self { at, by, event }
    }
}

/// A referral's history with the won claim's entry, which the claim records as the assignment on
/// the referral itself (one write), placed in time order; entries at the same time keep their
/// order after the win.
pub fn with_won_claim(referral: &Referral, mut entries: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    if let Some(a) = referral.assignment() {
        let won = HistoryEntry::new(
            a.claimed_at,
            Some(a.agent_id.clone().into()),
            HistoryEvent::ClaimAttempt {
                agent_id: a.agent_id.clone(),
                channel: a.channel,
                won: true,
            },
        );
        // Stored entries are in time order; the win goes before those of its own instant.
        let at = entries.partition_point(|e| e.at < a.claimed_at);
        entries.insert(at, won);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wt_2_lead_summary_carries_details_not_contacts() {
        let lead = LeadDetails {
            client_type: ClientType::Seller,
            zip: "94110".parse().unwrap(),
            price_range: PriceRange::new("800000".parse().unwrap(), "950000".parse().unwrap())
                .unwrap(),
            timeline: "within 3 months".into(),
        };
        assert_eq!(
            lead.summary(),
            "Seller in 94110, $800,000-$950,000, within 3 months"
        );
    }

    #[test]
    fn gen_2_history_entries_serialize_with_their_type() {
        let e = HistoryEntry::new(
            "2026-01-01T00:00:00Z".parse().unwrap(),
            Some("a1".parse().unwrap()),
            HistoryEvent::ClaimAttempt {
                agent_id: "a1".parse().unwrap(),
                channel: ClaimChannel::Sms,
                won: false,
            },
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "claim_attempt");
        assert_eq!(v["agentId"], "a1");
        assert_eq!(v["won"], false);
        let back: HistoryEntry = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn gen_2_a_claimed_referral_keeps_its_owner_and_stage_together() {
        let lead = LeadDetails {
            client_type: ClientType::Buyer,
            zip: "94110".parse().unwrap(),
            price_range: PriceRange::new("1".parse().unwrap(), "2".parse().unwrap()).unwrap(),
            timeline: "soon".into(),
        };
        let client = Client {
            name: "C".into(),
            phone: "+14155559876".parse().unwrap(),
            email: "c@example.com".parse().unwrap(),
        };
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let open = Referral::offered(
            "r1".parse().unwrap(),
            Program::Routing,
            client,
            lead,
            "adv".parse().unwrap(),
            at,
            ["a1".parse().unwrap()],
        );
        // Open: both attributes stored as null, and read back as open.
        let stored = serde_json::to_value(&open).unwrap();
        assert!(stored["assignment"].is_null() && stored["pipeline"].is_null());
        assert_eq!(serde_json::from_value::<Referral>(stored).unwrap(), open);
        let claimed = Referral {
            assigned: Some(Assigned::claimed(
                "a1".parse().unwrap(),
                at,
                ClaimChannel::App,
            )),
            ..open
        };
        let stored = serde_json::to_value(&claimed).unwrap();
        assert_eq!(stored["assignment"]["agentId"], "a1");
        assert_eq!(
            serde_json::from_value::<Referral>(stored.clone()).unwrap(),
            claimed
        );
        // One without the other does not read as a referral.
        let mut half = stored;
        half["pipeline"] = serde_json::Value::Null;
        assert!(serde_json::from_value::<Referral>(half).is_err());
    }

    #[test]
    fn gen_4_price_range_max_not_below_min_however_it_is_built() {
        assert!(PriceRange::new("2".parse().unwrap(), "1".parse().unwrap()).is_err());
        let parsed: Result<PriceRange, _> = serde_json::from_str(r#"{"min": "2", "max": "1"}"#);
        assert!(parsed.is_err(), "JSON cannot bypass the check");
        let ok: PriceRange = serde_json::from_str(r#"{"min": "1", "max": "2"}"#).unwrap();
        assert_eq!(serde_json::to_value(&ok).unwrap()["max"], "2.00");
    }

    #[test]
    fn st_9_ppl_6_the_fee_owed_is_the_agreement_of_the_sale_price_after_a_failed_too() {
        use crate::domain::stage::{FailReason, StageChange, StageContext, change_stage};
        use crate::domain::values::Percent;
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut r = crate::domain::claim::fixtures::referral(Program::Routing, &["a1"]);
        r.assigned = Some(Assigned::claimed(
            "a1".parse().unwrap(),
            at,
            ClaimChannel::App,
        ));
        let ctx = StageContext {
            program: r.program,
            client_type: r.lead.client_type,
            claimed_at: at,
            now: at,
        };
        let agreement = Some(Percent::new(rust_decimal::Decimal::new(25, 0)).unwrap());
        assert_eq!(r.fee_owed(agreement), None, "no sale price yet");
        let mut pipeline = r.pipeline().unwrap().clone();
        for change in [
            StageChange {
                sale_price: Some("400000".parse().unwrap()),
                close_date: Some("2026-03-01".parse().unwrap()),
                ..StageChange::to(Stage::InEscrow)
            },
            StageChange {
                fail_reason: Some(FailReason::Other),
                ..StageChange::to(Stage::Failed)
            },
            StageChange::to(Stage::Closed),
        ] {
            pipeline = change_stage(&pipeline, &change, ctx).unwrap();
        }
        r.assigned.as_mut().unwrap().pipeline = pipeline;
        assert_eq!(r.fee_owed(agreement).unwrap().to_string(), "100000.00");
        r.program = Program::Ppl;
        assert_eq!(r.fee_owed(agreement), Some(Money::ZERO));
    }
}
