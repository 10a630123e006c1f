//! Pay-per-lead subscriptions (PPL-1, PPL-2, PPL-7, PPL-9 to PPL-13): prices, the 30-day cycle,
//! who may receive a PPL referral, what a cycle costs and what may be returned.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::agent::Agent;
use super::values::{AgentId, ClientType, InvalidValue, Money, ReferralId, SubscriptionId, Zip};

/// A billing cycle: 30 days from sign-up (PPL-2).
pub const CYCLE: SignedDuration = SignedDuration::from_hours(30 * 24);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: SubscriptionId,
    pub agent_id: AgentId,
    pub zips: BTreeSet<Zip>,
    pub client_types: BTreeSet<ClientType>,
    /// The quota of the cycles before `next_quota` starts (PPL-9).
    pub referrals_per_cycle: u32,
    pub started_at: Timestamp,
    /// A changed quota waits for the next cycle, so a cycle's quota never moves under it (PPL-12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_quota: Option<QuotaChange>,
    #[serde(default)]
    pub status: SubscriptionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaChange {
    pub from_cycle: u32,
    pub referrals_per_cycle: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    #[default]
    Active,
    Cancelled,
}

/// What an agent sends to sign up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignUp {
    #[serde(
        deserialize_with = "crate::app::limits::set_of_at_most::<_, _, { crate::app::limits::ZIPS }>"
    )]
    pub zips: BTreeSet<Zip>,
    pub client_types: BTreeSet<ClientType>,
    pub referrals_per_cycle: u32,
}

/// What an agent sends to change a subscription (PPL-12): any of the sign-up's fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionChange {
    pub zips: Option<BTreeSet<Zip>>,
    pub client_types: Option<BTreeSet<ClientType>>,
    pub referrals_per_cycle: Option<u32>,
}

/// At most this many referrals per cycle, a guard against a typo billing thousands.
pub const MAX_REFERRALS_PER_CYCLE: u32 = 100;

fn check_terms(
    zips: &BTreeSet<Zip>,
    client_types: &BTreeSet<ClientType>,
    referrals_per_cycle: u32,
) -> Result<(), InvalidValue> {
    if zips.is_empty() {
        return Err(InvalidValue::new("zips", "must name at least one zip code"));
    }
    if client_types.is_empty() {
        return Err(InvalidValue::new(
            "clientTypes",
            "must name buyer, seller or both",
        ));
    }
    if !(1..=MAX_REFERRALS_PER_CYCLE).contains(&referrals_per_cycle) {
        return Err(InvalidValue::new(
            "referralsPerCycle",
            format!("must be from 1 to {MAX_REFERRALS_PER_CYCLE}"),
        ));
    }
    Ok(())
}

/// Why a subscription cannot be changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("this subscription is cancelled")]
    Cancelled,
}

impl Subscription {
    pub fn sign_up(
        id: SubscriptionId,
        agent_id: AgentId,
        request: SignUp,
        now: Timestamp,
    ) -> Result<Self, InvalidValue> {
        check_terms(
            &request.zips,
            &request.client_types,
            request.referrals_per_cycle,
        )?;
        Ok(Subscription {
            id,
            agent_id,
            zips: request.zips,
            client_types: request.client_types,
            referrals_per_cycle: request.referrals_per_cycle,
            started_at: now,
            next_quota: None,
            status: SubscriptionStatus::Active,
            cancelled_at: None,
        })
    }

    /// The quota of delivery cycle `cycle` (from 0).
    pub fn quota(&self, cycle: u32) -> u32 {
        match self.next_quota {
            Some(next) if cycle >= next.from_cycle => next.referrals_per_cycle,
            _ => self.referrals_per_cycle,
        }
    }

    /// Zips and client types change for the next delivery; the quota at the next cycle, so the
    /// current cycle keeps the quota it started with (PPL-12).
    pub fn change(
        &self,
        change: SubscriptionChange,
        now: Timestamp,
    ) -> Result<Subscription, ChangeError> {
        if self.status == SubscriptionStatus::Cancelled {
            return Err(ChangeError::Cancelled);
        }
        let cycle = self.current_cycle(now);
        let mut next = self.clone();
        // A change that took effect already becomes the quota itself.
        next.referrals_per_cycle = self.quota(cycle);
        next.next_quota = None;
        if let Some(zips) = change.zips {
            next.zips = zips;
        }
        if let Some(types) = change.client_types {
            next.client_types = types;
        }
        let wanted = change
            .referrals_per_cycle
            .unwrap_or(self.quota(cycle.saturating_add(1)));
        check_terms(&next.zips, &next.client_types, wanted)?;
        if wanted != next.referrals_per_cycle {
            next.next_quota = Some(QuotaChange {
                from_cycle: cycle.saturating_add(1),
                referrals_per_cycle: wanted,
            });
        }
        Ok(next)
    }

    /// Cancelled at `now`: no delivery from now on, the cycle under way charged at its end for
    /// what it received, and nothing after (PPL-12). Cancelling twice changes nothing.
    pub fn cancel(&self, now: Timestamp) -> Subscription {
        let mut next = self.clone();
        if next.status == SubscriptionStatus::Active {
            next.status = SubscriptionStatus::Cancelled;
            next.cancelled_at = Some(now);
        }
        next
    }

    /// When charge number `cycle` (1, 2, ...) falls due: 30 days per cycle after sign-up (PPL-2).
    pub fn charge_due_at(&self, cycle: u32) -> Timestamp {
        self.started_at + CYCLE * i32::try_from(cycle).unwrap_or(i32::MAX)
    }

    /// The last charge there will be: the one ending the cycle the subscription was cancelled in.
    fn last_charge(&self) -> Option<u32> {
        self.cancelled_at
            .map(|at| self.current_cycle(at).saturating_add(1))
    }

    /// How many charges have fallen due by `now`.
    pub fn cycles_due(&self, now: Timestamp) -> u32 {
        let due = self.current_cycle(now);
        self.last_charge().map_or(due, |last| due.min(last))
    }

    /// The delivery cycle `now` falls in, from 0: its quota is the per-cycle count (PPL-9).
    /// Charge number `c` is for delivery cycle `c - 1`.
    pub fn current_cycle(&self, now: Timestamp) -> u32 {
        if now < self.started_at {
            return 0;
        }
        let elapsed = now.duration_since(self.started_at).as_secs();
        u32::try_from(elapsed / CYCLE.as_secs()).unwrap_or(u32::MAX)
    }

    /// The charges a billing run at `now` must make: every due cycle not yet charged, each once
    /// (PPL-2). A second run at the same `now` finds nothing left.
    pub fn charges_due(&self, charged: &BTreeSet<u32>, now: Timestamp) -> Vec<u32> {
        (1..=self.cycles_due(now))
            .filter(|c| !charged.contains(c))
            .collect()
    }

    /// The next charge after those already made; none once a cancelled subscription's last
    /// charge is made.
    pub fn next_charge_at(&self, charged: &BTreeSet<u32>) -> Option<Timestamp> {
        let next = (1..).find(|c| !charged.contains(c)).unwrap_or(1);
        if self.last_charge().is_some_and(|last| next > last) {
            return None;
        }
        Some(self.charge_due_at(next))
    }

    /// Whether this subscription covers the client (PPL-1).
    pub fn covers(&self, zip: &Zip, client_type: ClientType) -> bool {
        self.zips.contains(zip) && self.client_types.contains(&client_type)
    }
}

/// Whether a PPL referral may go to this subscriber now: active, covered, not on vacation
/// (PPL-7, PPL-12), with room left in the cycle: `received` referrals so far (PPL-9, PPL-10).
/// The room is checked again, atomically, by the claim that counts the referral.
pub fn ppl_eligible(
    sub: &Subscription,
    agent: &Agent,
    zip: &Zip,
    client_type: ClientType,
    received: u32,
    now: Timestamp,
) -> bool {
    sub.status == SubscriptionStatus::Active
        && sub.covers(zip, client_type)
        && !agent.on_vacation(now)
        && received < sub.quota(sub.current_cycle(now))
}

/// One referral a charge paid for, priced when it was delivered (PPL-11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargedReferral {
    pub referral_id: ReferralId,
    pub client_type: ClientType,
    pub zip: Zip,
    pub price: Money,
}

/// A cycle's charge: the sum of its referrals' own prices; nothing for none (PPL-11).
pub fn cycle_amount(referrals: &[ChargedReferral]) -> Money {
    Money::sum(referrals.iter().map(|r| r.price))
}

/// A PPL return's reason (PPL-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnReason {
    WrongContact,
    Duplicate,
    OutsideArea,
}

/// A PPL referral may be returned this long after its claim (PPL-13).
pub const RETURN_WINDOW: SignedDuration = SignedDuration::from_hours(7 * 24);

/// Why a received referral can no longer be returned (PPL-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReturnRefusal {
    #[error("a referral can be returned within 7 days of its claim")]
    TooLate,
    /// The charge of its cycle is made: a return now would credit what was paid for.
    #[error("the cycle this referral was received in has been charged")]
    AlreadyCharged,
}

impl Subscription {
    /// Whether a referral claimed at `claimed_at` may be returned at `now`, given the charges
    /// made (`charged`, by number): within 7 days of the claim and before its cycle is charged
    /// (PPL-13). Answers the delivery cycle it counted in.
    pub fn check_return(
        &self,
        claimed_at: Timestamp,
        now: Timestamp,
        charged: &BTreeSet<u32>,
    ) -> Result<u32, ReturnRefusal> {
        if now > claimed_at + RETURN_WINDOW {
            return Err(ReturnRefusal::TooLate);
        }
        let cycle = self.current_cycle(claimed_at);
        // Charge number `c` is for delivery cycle `c - 1`.
        if charged.contains(&cycle.saturating_add(1)) {
            return Err(ReturnRefusal::AlreadyCharged);
        }
        Ok(cycle)
    }
}
/// A duplicate is a client the agent received this long before (PPL-13).
pub const DUPLICATE_WINDOW: SignedDuration = SignedDuration::from_hours(60 * 24);

/// Prices per referral by client type, with overrides by zip prefix for dearer areas (PPL-1).
/// Loaded from configuration, so pricing changes without a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceTable {
    pub default: BTreeMap<ClientType, Money>,
    /// Zip prefix → client type → price; the longest matching prefix wins.
    #[serde(default)]
    pub by_zip_prefix: BTreeMap<String, BTreeMap<ClientType, Money>>,
}

impl PriceTable {
    pub fn from_json(text: &str) -> Result<Self, InvalidValue> {
        let table: PriceTable = serde_json::from_str(text)
            .map_err(|e| InvalidValue::new("PPL_PRICES", e.to_string()))?;
        for ct in [ClientType::Buyer, ClientType::Seller] {
            if !table.default.contains_key(&ct) {
                return Err(InvalidValue::new(
                    "PPL_PRICES",
                    format!("no default price for {}", ct.as_str()),
                ));
            }
        }
        Ok(table)
    }

    pub fn price(&self, zip: &Zip, client_type: ClientType) -> Money {
        let mut best: Option<(usize, Money)> = None;
        for (prefix, prices) in &self.by_zip_prefix {
            if zip.as_str().starts_with(prefix.as_str())
                && let Some(p) = prices.get(&client_type)
                && best.is_none_or(|(len, _)| prefix.len() > len)
            {
                best = Some((prefix.len(), *p));
            }
        }
        best.map(|(_, p)| p)
            .or_else(|| self.default.get(&client_type).copied())
            .unwrap_or(Money::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::{Vacation, fixtures::agent};
    use proptest::prelude::*;

    fn prices() -> PriceTable {
        PriceTable::from_json(
            r#"{"default": {"buyer": "40", "seller": "60"},
                "byZipPrefix": {"941": {"seller": "90"}, "9411": {"seller": "120"}}}"#,
        )
        .unwrap()
    }

    fn sub(started: &str) -> Subscription {
        Subscription::sign_up(
            "s1".parse().unwrap(),
            "a1".parse().unwrap(),
            SignUp {
                zips: ["94110".parse().unwrap()].into(),
                client_types: [ClientType::Buyer, ClientType::Seller].into(),
                referrals_per_cycle: 3,
            },
            started.parse().unwrap(),
        )
        .unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn ppl_1_price_depends_on_client_type_and_location() {
        let p = prices();
        let z = |s: &str| s.parse::<Zip>().unwrap();
        assert_eq!(p.price(&z("10001"), ClientType::Buyer).to_string(), "40.00");
        assert_eq!(
            p.price(&z("94199"), ClientType::Seller).to_string(),
            "90.00"
        );
        assert_eq!(
            p.price(&z("94110"), ClientType::Seller).to_string(),
            "120.00"
        );
        assert_eq!(p.price(&z("94110"), ClientType::Buyer).to_string(), "40.00");
        assert!(PriceTable::from_json(r#"{"default": {"buyer": "40"}}"#).is_err());
    }

    #[test]
    fn ppl_1_sign_up_needs_zips_types_and_a_sane_count() {
        let bad = |zips: &[&str], types: &[ClientType], n| {
            Subscription::sign_up(
                "s1".parse().unwrap(),
                "a1".parse().unwrap(),
                SignUp {
                    zips: zips.iter().map(|z| z.parse().unwrap()).collect(),
                    client_types: types.iter().copied().collect(),
                    referrals_per_cycle: n,
                },
                Timestamp::UNIX_EPOCH,
            )
            .is_err()
        };
        assert!(bad(&[], &[ClientType::Buyer], 1));
        assert!(bad(&["94110"], &[], 1));
        assert!(bad(&["94110"], &[ClientType::Buyer], 0));
        assert!(bad(&["94110"], &[ClientType::Buyer], 101));
        assert!(!bad(&["94110"], &[ClientType::Buyer], 1));
    }

    #[test]
    fn ppl_2_first_charge_thirty_days_after_sign_up_then_every_thirty() {
        let s = sub("2026-01-01T10:00:00Z");
        let none = BTreeSet::new();
        assert!(s.charges_due(&none, t("2026-01-31T09:59:59Z")).is_empty());
        assert_eq!(s.charges_due(&none, t("2026-01-31T10:00:00Z")), vec![1]);
        assert_eq!(s.next_charge_at(&none), Some(t("2026-01-31T10:00:00Z")));
        let one: BTreeSet<u32> = [1].into();
        assert!(s.charges_due(&one, t("2026-02-15T00:00:00Z")).is_empty());
        assert_eq!(s.next_charge_at(&one), Some(t("2026-03-02T10:00:00Z")));
        assert_eq!(s.charges_due(&one, t("2026-03-02T10:00:00Z")), vec![2]);
    }

    #[test]
    fn ppl_1_coverage_and_ppl_7_vacation_pauses_delivery() {
        let s = sub("2026-01-01T00:00:00Z");
        let mut a = agent("a1");
        let zip: Zip = "94110".parse().unwrap();
        let now = t("2026-01-10T20:00:00Z");
        assert!(ppl_eligible(&s, &a, &zip, ClientType::Buyer, 0, now));
        assert!(!ppl_eligible(
            &s,
            &a,
            &"10001".parse().unwrap(),
            ClientType::Buyer,
            0,
            now
        ));
        a.vacation = Some(
            Vacation::new(
                jiff::civil::date(2026, 1, 9),
                jiff::civil::date(2026, 1, 11),
            )
            .unwrap(),
        );
        assert!(!ppl_eligible(&s, &a, &zip, ClientType::Buyer, 0, now));
        assert!(ppl_eligible(
            &s,
            &a,
            &zip,
            ClientType::Buyer,
            0,
            t("2026-01-12T20:00:00Z")
        ));
        // Vacation pauses deliveries, not the cycle: the charge still falls due on day 30.
        assert_eq!(s.cycles_due(t("2026-01-31T00:00:00Z")), 1);
        assert_eq!(s.current_cycle(t("2026-01-30T23:59:59Z")), 0);
        assert_eq!(s.current_cycle(t("2026-01-31T00:00:00Z")), 1);
    }

    #[test]
    fn ppl_10_offers_only_to_subscribers_with_room() {
        let s = sub("2026-01-01T00:00:00Z");
        let a = agent("a1");
        let zip: Zip = "94110".parse().unwrap();
        let now = t("2026-01-10T20:00:00Z");
        assert!(ppl_eligible(&s, &a, &zip, ClientType::Buyer, 2, now));
        assert!(!ppl_eligible(&s, &a, &zip, ClientType::Buyer, 3, now));
    }

    #[test]
    fn ppl_11_a_cycle_costs_the_sum_of_its_referrals_prices_and_nothing_when_empty() {
        let p = prices();
        let z = |s: &str| s.parse::<Zip>().unwrap();
        let r = |id: &str, zip: &str, ct| ChargedReferral {
            referral_id: id.parse().unwrap(),
            client_type: ct,
            zip: z(zip),
            price: p.price(&z(zip), ct),
        };
        let got = [
            r("r1", "94110", ClientType::Seller),
            r("r2", "94110", ClientType::Buyer),
            r("r3", "94199", ClientType::Seller),
        ];
        assert_eq!(cycle_amount(&got).to_string(), "250.00");
        assert_eq!(cycle_amount(&[]), Money::ZERO);
    }

    #[test]
    fn ppl_12_zips_change_at_once_the_quota_at_the_next_cycle() {
        let s = sub("2026-01-01T00:00:00Z");
        let changed = s
            .change(
                SubscriptionChange {
                    zips: Some(["10001".parse().unwrap()].into()),
                    referrals_per_cycle: Some(1),
                    ..Default::default()
                },
                t("2026-01-10T00:00:00Z"),
            )
            .unwrap();
        assert!(changed.covers(&"10001".parse().unwrap(), ClientType::Buyer));
        assert!(!changed.covers(&"94110".parse().unwrap(), ClientType::Buyer));
        assert_eq!(
            (changed.quota(0), changed.quota(1), changed.quota(7)),
            (3, 1, 1)
        );
        // A later change folds the one in force into the quota.
        let again = changed
            .change(SubscriptionChange::default(), t("2026-02-10T00:00:00Z"))
            .unwrap();
        assert_eq!((again.referrals_per_cycle, again.next_quota), (1, None));
        let bad = s.change(
            SubscriptionChange {
                zips: Some(BTreeSet::new()),
                ..Default::default()
            },
            t("2026-01-10T00:00:00Z"),
        );
        assert!(matches!(bad, Err(ChangeError::Invalid(_))));
    }

    #[test]
    fn ppl_12_a_cancelled_subscription_is_charged_for_its_last_cycle_then_never() {
        let s = sub("2026-01-01T00:00:00Z").cancel(t("2026-02-10T00:00:00Z"));
        let a = agent("a1");
        let zip: Zip = "94110".parse().unwrap();
        assert!(!ppl_eligible(
            &s,
            &a,
            &zip,
            ClientType::Buyer,
            0,
            t("2026-02-11T00:00:00Z")
        ));
        let none = BTreeSet::new();
        assert_eq!(s.charges_due(&none, t("2026-03-02T23:59:00Z")), vec![1, 2]);
        assert_eq!(s.charges_due(&none, t("2027-01-01T00:00:00Z")), vec![1, 2]);
        assert_eq!(s.next_charge_at(&[1, 2].into()), None);
        assert!(matches!(
            s.change(SubscriptionChange::default(), t("2026-02-11T00:00:00Z")),
            Err(ChangeError::Cancelled)
        ));
    }

    #[test]
    fn ppl_13_a_return_is_refused_after_7_days_or_once_its_cycle_is_charged() {
        let s = sub("2026-01-01T00:00:00Z");
        // Claimed on day 28 of cycle 0; charge 1 (for cycle 0) falls due on day 30.
        let claimed = t("2026-01-29T00:00:00Z");
        let none = BTreeSet::new();
        let charged: BTreeSet<u32> = [1].into();
        assert_eq!(
            s.check_return(claimed, t("2026-01-30T00:00:00Z"), &none),
            Ok(0)
        );
        assert_eq!(
            s.check_return(claimed, t("2026-02-01T00:00:00Z"), &charged),
            Err(ReturnRefusal::AlreadyCharged)
        );
        assert_eq!(
            s.check_return(claimed, t("2026-02-05T00:00:01Z"), &none),
            Err(ReturnRefusal::TooLate)
        );
        // A referral of the next cycle is not paid for by charge 1.
        let later = t("2026-02-01T00:00:00Z");
        assert_eq!(
            s.check_return(later, t("2026-02-02T00:00:00Z"), &charged),
            Ok(1)
        );
    }

    proptest! {
        /// PPL-2: whatever the sign-up time and however often or rarely the job runs, each cycle
        /// is charged exactly once, and never before its due time.
        #[test]
        fn ppl_2_one_charge_per_cycle_whatever_the_runs(
            start in 0i64..2_000_000_000,
            gaps in proptest::collection::vec(0i64..(45 * 86_400), 1..60),
        ) {
            let started_at = Timestamp::from_second(start).unwrap();
            let mut s = sub("2026-01-01T00:00:00Z");
            s.started_at = started_at;
            let mut charged: BTreeSet<u32> = BTreeSet::new();
            let mut log: Vec<(u32, Timestamp)> = Vec::new();
            let mut now = started_at;
            for gap in gaps {
                now += SignedDuration::from_secs(gap);
                // Each run may fire twice at the same instant.
                for _ in 0..2 {
                    for c in s.charges_due(&charged, now) {
                        prop_assert!(charged.insert(c), "cycle {} charged twice", c);
                        prop_assert!(s.charge_due_at(c) <= now);
                        log.push((c, now));
                    }
                }
            }
            let due = s.cycles_due(now);
            prop_assert_eq!(charged.len() as u32, due);
            prop_assert_eq!(charged, (1..=due).collect::<BTreeSet<u32>>());
        }
    }
}
