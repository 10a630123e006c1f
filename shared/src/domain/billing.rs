//! Pay-per-lead subscriptions (PPL-1, PPL-2, PPL-7, PPL-9): prices, the 30-day cycle, and who may
//! receive a PPL referral.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::agent::Agent;
use super::values::{AgentId, ClientType, InvalidValue, Money, SubscriptionId, Zip};

/// A billing cycle: 30 days from sign-up (PPL-2).
pub const CYCLE: SignedDuration = SignedDuration::from_hours(30 * 24);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: SubscriptionId,
    pub agent_id: AgentId,
    pub zips: BTreeSet<Zip>,
    pub client_types: BTreeSet<ClientType>,
    pub referrals_per_cycle: u32,
    pub started_at: Timestamp,
    /// The price of one referral at sign-up, from the price table (PPL-1).
    pub unit_price: Money,
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

/// At most this many referrals per cycle, a guard against a typo billing thousands.
pub const MAX_REFERRALS_PER_CYCLE: u32 = 100;

impl Subscription {
    pub fn sign_up(
        id: SubscriptionId,
        agent_id: AgentId,
        request: SignUp,
        prices: &PriceTable,
        now: Timestamp,
    ) -> Result<Self, InvalidValue> {
        if request.zips.is_empty() {
            return Err(InvalidValue::new("zips", "must name at least one zip code"));
        }
        if request.client_types.is_empty() {
            return Err(InvalidValue::new(
                "clientTypes",
                "must name buyer, seller or both",
            ));
        }
        if !(1..=MAX_REFERRALS_PER_CYCLE).contains(&request.referrals_per_cycle) {
            return Err(InvalidValue::new(
                "referralsPerCycle",
                format!("must be from 1 to {MAX_REFERRALS_PER_CYCLE}"),
            ));
        }
        let unit_price = prices.unit_price(&request.zips, &request.client_types);
        Ok(Subscription {
            id,
            agent_id,
            zips: request.zips,
            client_types: request.client_types,
            referrals_per_cycle: request.referrals_per_cycle,
            started_at: now,
            unit_price,
        })
    }

    /// What one cycle costs.
    pub fn cycle_amount(&self) -> Money {
        self.unit_price.times(self.referrals_per_cycle)
    }

    /// When charge number `cycle` (1, 2, ...) falls due: 30 days per cycle after sign-up (PPL-2).
    pub fn charge_due_at(&self, cycle: u32) -> Timestamp {
        self.started_at + CYCLE * i32::try_from(cycle).unwrap_or(i32::MAX)
    }

    /// How many charges have fallen due by `now`.
    pub fn cycles_due(&self, now: Timestamp) -> u32 {
        if now < self.started_at {
            return 0;
        }
        let elapsed = now.duration_since(self.started_at).as_secs();
        u32::try_from(elapsed / CYCLE.as_secs()).unwrap_or(u32::MAX)
    }

    /// The delivery cycle `now` falls in, from 0: its quota is the per-cycle count (PPL-9).
    pub fn current_cycle(&self, now: Timestamp) -> u32 {
        self.cycles_due(now)
    }

    /// The charges a billing run at `now` must make: every due cycle not yet charged, each once
    /// (PPL-2). A second run at the same `now` finds nothing left.
    pub fn charges_due(&self, charged: &BTreeSet<u32>, now: Timestamp) -> Vec<u32> {
        (1..=self.cycles_due(now))
            .filter(|c| !charged.contains(c))
            .collect()
    }

    /// The next charge after those already made.
    pub fn next_charge_at(&self, charged: &BTreeSet<u32>) -> Timestamp {
        let next = (1..).find(|c| !charged.contains(c)).unwrap_or(1);
        self.charge_due_at(next)
    }

    /// Whether this subscription covers the client (PPL-1).
    pub fn covers(&self, zip: &Zip, client_type: ClientType) -> bool {
        self.zips.contains(zip) && self.client_types.contains(&client_type)
    }
}

/// Whether a PPL referral may go to this subscriber now: covered and not on vacation (PPL-7).
/// The quota (PPL-9) is settled by the store's conditional count of the delivery itself, which
/// two referrals racing for the last one of a cycle cannot both pass.
pub fn ppl_eligible(
    sub: &Subscription,
    agent: &Agent,
    zip: &Zip,
    client_type: ClientType,
    now: Timestamp,
) -> bool {
    sub.covers(zip, client_type) && !agent.on_vacation(now)
}

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

    /// A subscription's price per referral: its dearest (zip, type), since any referral it
    /// receives may be of that kind.
    pub fn unit_price(&self, zips: &BTreeSet<Zip>, client_types: &BTreeSet<ClientType>) -> Money {
        zips.iter()
            .flat_map(|z| client_types.iter().map(move |ct| self.price(z, *ct)))
            .max()
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
            &prices(),
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
        let s = sub("2026-01-01T00:00:00Z");
        assert_eq!(s.unit_price.to_string(), "120.00");
        assert_eq!(s.cycle_amount().to_string(), "360.00");
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
                &prices(),
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
        assert_eq!(s.next_charge_at(&none), t("2026-01-31T10:00:00Z"));
        let one: BTreeSet<u32> = [1].into();
        assert!(s.charges_due(&one, t("2026-02-15T00:00:00Z")).is_empty());
        assert_eq!(s.next_charge_at(&one), t("2026-03-02T10:00:00Z"));
        assert_eq!(s.charges_due(&one, t("2026-03-02T10:00:00Z")), vec![2]);
    }

    #[test]
    fn ppl_1_coverage_and_ppl_7_vacation_pauses_delivery() {
        let s = sub("2026-01-01T00:00:00Z");
        let mut a = agent("a1");
        let zip: Zip = "94110".parse().unwrap();
        let now = t("2026-01-10T20:00:00Z");
        assert!(ppl_eligible(&s, &a, &zip, ClientType::Buyer, now));
        assert!(!ppl_eligible(
            &s,
            &a,
            &"10001".parse().unwrap(),
            ClientType::Buyer,
            now
        ));
        a.vacation = Some(
            Vacation::new(
                jiff::civil::date(2026, 1, 9),
                jiff::civil::date(2026, 1, 11),
            )
            .unwrap(),
        );
        assert!(!ppl_eligible(&s, &a, &zip, ClientType::Buyer, now));
        assert!(ppl_eligible(
            &s,
            &a,
            &zip,
            ClientType::Buyer,
            t("2026-01-12T20:00:00Z")
        ));
        // Vacation pauses deliveries, not the cycle: the charge still falls due on day 30.
        assert_eq!(s.cycles_due(t("2026-01-31T00:00:00Z")), 1);
        assert_eq!(s.current_cycle(t("2026-01-30T23:59:59Z")), 0);
        assert_eq!(s.current_cycle(t("2026-01-31T00:00:00Z")), 1);
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
