//! Pay per lead: sign-up, changes, cancelling, returns, and the daily billing sweep (PPL-1,
//! PPL-2, PPL-10 to PPL-13, GEN-2).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Actor, AppError, Services, idempotent_id, limits};
use crate::domain::billing::{
    ChangeError, ChargedReferral, DUPLICATE_WINDOW, ReturnReason, ReturnRefusal, SignUp,
    Subscription, SubscriptionChange, cycle_amount,
};
use crate::domain::referral::{HistoryEntry, HistoryEvent, Referral};
use crate::domain::values::{AgentId, Money, ReferralId, SubscriptionId};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, key};
use crate::ports::{Charge, DueKind, QuotaPlace, Saved};

/// A subscription as its agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// The current 30-day cycle, from 0, its quota, and the referrals received in it so far,
    /// returned ones left out (PPL-9, PPL-10).
    pub cycle: u32,
    pub quota_this_cycle: u32,
    pub delivered_this_cycle: u32,
    pub received_this_cycle: Vec<ChargedReferral>,
    /// What the cycle's charge comes to so far: the sum of those referrals' prices (PPL-11).
    pub cycle_amount: Money,
    /// None once a cancelled subscription's last charge is made (PPL-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_charge_at: Option<Timestamp>,
    pub charges: Vec<Charge>,
}

/// An agent signs up (PPL-1); the first charge falls due 30 days later (PPL-2), its due record
/// stored with the subscription. With an `Idempotency-Key`, a retried sign-up answers with the
/// first one's subscription and creates nothing (EF-3); `created` says which it was.
pub async fn sign_up(
    s: &Services,
    actor: &Actor,
    request: SignUp,
    idempotency_key: Option<&str>,
    now: Timestamp,
) -> Result<(SubscriptionView, bool), AppError> {
    let agent_id = actor
        .agent()
        .ok_or_else(|| AppError::Forbidden("only agents subscribe to pay per lead".into()))?;
    limits::list("zips", request.zips.len(), limits::ZIPS)?;
    let id: SubscriptionId = match idempotency_key {
        Some(key) => idempotent_id(actor, key, "s")?.parse()?,
        None => SubscriptionId::generate(),
    };
    if idempotency_key.is_some() && s.subscriptions.get_subscription(&id).await?.is_some() {
        return Ok((view_subscription(s, actor, &id, now).await?, false));
    }
    if s.agents.get_agent(&agent_id).await?.is_none() {
        return Err(AppError::unprocessable(
            "no_profile",
            "save your agent profile before subscribing",
        ));
    }
    let sub = Subscription::sign_up(id, agent_id, request, now)?;
    let first_charge = sub.charge_due_at(1);
    let created = s
        .subscriptions
        .create_subscription(&sub, first_charge)
        .await?;
    // Not created: made a moment ago by the same request, retried.
    Ok((view_subscription(s, actor, &sub.id, now).await?, created))
}

pub async fn view_subscription(
    s: &Services,
    actor: &Actor,
    id: &SubscriptionId,
    now: Timestamp,
) -> Result<SubscriptionView, AppError> {
    let sub = own_subscription(s, actor, id).await?;
    view(s, sub, now).await
}

async fn view(
    s: &Services,
    sub: Subscription,
    now: Timestamp,
) -> Result<SubscriptionView, AppError> {
    let charges = s.subscriptions.charges(&sub.id).await?;
    let charged: BTreeSet<u32> = charges.iter().map(|c| c.cycle).collect();
    let cycle = sub.current_cycle(now);
    let received = received_referrals(s, &sub.id, cycle).await?;
    Ok(SubscriptionView {
        cycle,
        quota_this_cycle: sub.quota(cycle),
        delivered_this_cycle: u32::try_from(received.len()).unwrap_or(u32::MAX),
        cycle_amount: cycle_amount(&received),
        received_this_cycle: received,
        next_charge_at: sub.next_charge_at(&charged),
        subscription: sub,
        charges,
    })
}

/// The subscription `id`, if it is the actor's.
async fn own_subscription(
    s: &Services,
    actor: &Actor,
    id: &SubscriptionId,
) -> Result<Subscription, AppError> {
    let sub = s
        .subscriptions
        .get_subscription(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no subscription {id}")))?;
    actor.require_agent(&sub.agent_id)?;
    Ok(sub)
}

/// The referrals received in a delivery cycle and not returned, each at the price it was
/// delivered at, in the order they were received (PPL-10, PPL-11).
async fn received_referrals(
    s: &Services,
    sub: &SubscriptionId,
    cycle: u32,
) -> Result<Vec<ChargedReferral>, AppError> {
    let mut received = Vec::new();
    for id in s.subscriptions.received(sub, cycle).await? {
        let Some(stored) = s.referrals.get_referral(&id).await? else {
            tracing::warn!(subscription = %sub, referral = %id, "received referral not found");
            continue;
        };
        let r = stored.value;
        if let Some(terms) = r.ppl.as_ref().filter(|t| t.returned.is_none()) {
            let claimed_at = r.assignment().map(|a| a.claimed_at);
            received.push((
                claimed_at,
                ChargedReferral {
                    referral_id: r.id.clone(),
                    client_type: r.lead.client_type,
                    zip: r.lead.zip.clone(),
                    price: terms.price,
                },
            ));
        }
    }
    // In the order they were received, as the receipt lists them.
    received.sort_by(|(a, x), (b, y)| (a, &x.referral_id).cmp(&(b, &y.referral_id)));
    Ok(received.into_iter().map(|(_, r)| r).collect())
}

/// Changes zips and client types at once, the quota at the next cycle (PPL-12).
pub async fn change_subscription(
    s: &Services,
    actor: &Actor,
    id: &SubscriptionId,
    change: SubscriptionChange,
    now: Timestamp,
) -> Result<SubscriptionView, AppError> {
    if let Some(zips) = &change.zips {
        limits::list("zips", zips.len(), limits::ZIPS)?;
    }
    let sub = own_subscription(s, actor, id).await?;
    let changed = sub.change(change, now).map_err(|e| match e {
        ChangeError::Invalid(e) => AppError::Invalid(e),
        ChangeError::Cancelled => AppError::conflict("cancelled", e.to_string()),
    })?;
    s.subscriptions.save_subscription(&changed).await?;
    view(s, changed, now).await
}

/// Cancels: no delivery from now on; the cycle under way is charged at its end for what it
/// received, then nothing (PPL-12). A repeated cancel changes nothing.
pub async fn cancel_subscription(
    s: &Services,
    actor: &Actor,
    id: &SubscriptionId,
    now: Timestamp,
) -> Result<SubscriptionView, AppError> {
    let sub = own_subscription(s, actor, id).await?;
    let cancelled = sub.cancel(now);
    if cancelled != sub {
        s.subscriptions.save_subscription(&cancelled).await?;
    }
    view(s, cancelled, now).await
}

/// What an agent sends to return a PPL referral (PPL-13).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReturnRequest {
    pub referral_id: ReferralId,
    pub reason: ReturnReason,
}

/// What a return answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Returned {
    pub referral_id: ReferralId,
    pub reason: ReturnReason,
    pub returned: bool,
}

/// An agent returns a referral received under subscription `id` within 7 days of its claim
/// (PPL-13): it is not charged and its place in the cycle's quota is freed; the return and its
/// reason go into its history. `duplicate` and `outside_area` are checked here; a repeated
/// return changes nothing. Once its cycle is charged it is refused (`already_charged`) and
/// nothing is written: the charge stands as its receipt says.
pub async fn return_referral(
    s: &Services,
    actor: &Actor,
    id: &SubscriptionId,
    request: ReturnRequest,
    now: Timestamp,
) -> Result<Returned, AppError> {
    let sub = own_subscription(s, actor, id).await?;
    let not_yours = || {
        AppError::NotFound(format!(
            "no referral {} received under this subscription",
            request.referral_id
        ))
    };
    let stored = s
        .referrals
        .get_referral(&request.referral_id)
        .await?
        .ok_or_else(not_yours)?;
    let referral = stored.value;
    let terms = referral.ppl.as_ref().ok_or_else(not_yours)?;
    let claimed_at = match referral.assignment() {
        Some(a)
            if a.agent_id == sub.agent_id && terms.subscriptions.get(&a.agent_id) == Some(id) =>
        {
            a.claimed_at
        }
        _ => return Err(not_yours()),
    };
    let answer = Returned {
        referral_id: referral.id.clone(),
        reason: request.reason,
        returned: true,
    };
    if terms.returned.is_some() {
        return Ok(answer);
    }
    let charged: BTreeSet<u32> = s
        .subscriptions
        .charges(id)
        .await?
        .iter()
        .map(|c| c.cycle)
        .collect();
    let cycle = sub
        .check_return(claimed_at, now, &charged)
        .map_err(refused_return)?;
    match request.reason {
        ReturnReason::WrongContact => {}
        ReturnReason::OutsideArea => {
            if sub.zips.contains(&referral.lead.zip) {
                return Err(AppError::unprocessable(
                    "not_outside_area",
                    format!(
                        "zip {} is one of this subscription's zips",
                        referral.lead.zip
                    ),
                ));
            }
        }
        ReturnReason::Duplicate => {
            if !is_duplicate(s, &sub.agent_id, &referral, claimed_at).await? {
                return Err(AppError::unprocessable(
                    "not_a_duplicate",
                    "you received no referral of this client in the 60 days before",
                ));
            }
        }
    }
    let mut returned = referral.clone();
    if let Some(t) = returned.ppl.as_mut() {
        t.returned = Some(request.reason);
    }
    let entry = HistoryEntry::new(
        now,
        Some(actor.user.clone()),
        HistoryEvent::Returned {
            reason: request.reason,
        },
    );
    let place = QuotaPlace {
        subscription: id.clone(),
        cycle,
        quota: sub.quota(cycle),
    };
    match s
        .referrals
        .return_referral(&returned, stored.version, &[entry], &place)
        .await?
    {
        Saved::Ok => Ok(answer),
        // The cycle was charged meanwhile (the write checks that it was not), or the referral
        // was returned or changed by a concurrent request: refused, or the caller retries.
        Saved::Stale => {
            let charged = s.subscriptions.charges(id).await?;
            if charged.iter().any(|c| c.cycle == cycle + 1) {
                return Err(refused_return(ReturnRefusal::AlreadyCharged));
            }
            Err(AppError::Busy(
                "the referral changed meanwhile; try again".into(),
            ))
        }
    }
}

fn refused_return(refusal: ReturnRefusal) -> AppError {
    let code = match refusal {
        ReturnRefusal::TooLate => "too_late",
        ReturnRefusal::AlreadyCharged => "already_charged",
    };
    AppError::conflict(code, refusal.to_string())
}

/// Whether the agent received a referral of the same client (phone or email) in the 60 days
/// before this one (PPL-13).
async fn is_duplicate(
    s: &Services,
    agent: &AgentId,
    referral: &Referral,
    claimed_at: Timestamp,
) -> Result<bool, AppError> {
    let since = claimed_at - DUPLICATE_WINDOW;
    Ok(s.referrals
        .agent_referrals(agent, None)
        .await?
        .iter()
        .any(|other| {
            other.id != referral.id
                && other
                    .assignment()
                    .is_some_and(|a| a.claimed_at >= since && a.claimed_at <= claimed_at)
                && (other.client.phone == referral.client.phone
                    || other.client.email == referral.client.email)
        }))
}

/// What one billing run did.
#[derive(Debug, Default)]
pub struct BillingRun {
    pub charged: Vec<(SubscriptionId, u32, Money)>,
    /// Subscriptions that could not be billed this run, with why; the others were (EF-2).
    pub failed: Vec<(String, AppError)>,
}

/// Charges every subscription whose next charge is due at `now` (taken from the schedule's event,
/// so a replay is deterministic), each cycle once, with its receipt committed in the same write
/// (EF-1). Only due subscriptions are read (a sparse index by due time). One subscription that
/// fails is reported and does not stop the others.
pub async fn run_billing(s: &Services, now: Timestamp) -> Result<BillingRun, AppError> {
    let mut run = BillingRun::default();
    for (key, due_at) in s.due.due(DueKind::Billing, now).await? {
        match bill(s, &key, due_at, now).await {
            Ok(charged) => run.charged.extend(charged),
            Err(e) => {
                tracing::error!(subscription = %key, error = %e, "billing failed");
                run.failed.push((key, e));
            }
        }
    }
    let total = Money::sum(run.charged.iter().map(|(_, _, amount)| *amount));
    crate::telemetry::billing_run(
        run.charged.len(),
        rust_decimal::prelude::ToPrimitive::to_f64(&total.amount()).unwrap_or_default(),
    );
    Ok(run)
}

/// Charges one due subscription for every cycle it owes: the sum of the prices of the referrals
/// received in it (PPL-11), writes each charge into those referrals' histories (GEN-2), then
/// moves its due time on. The due time moves last, so a run that dies on the way is finished by
/// the next one: a charge made already is not made again (PPL-2), and its history entries are
/// written once each.
async fn bill(
    s: &Services,
    key: &str,
    due_at: Timestamp,
    now: Timestamp,
) -> Result<Vec<(SubscriptionId, u32, Money)>, AppError> {
    let id: SubscriptionId = key.parse()?;
    let none = Effects::default();
    let Some(sub) = s.subscriptions.get_subscription(&id).await? else {
        s.due
            .advance_due(DueKind::Billing, key, due_at, None, &none)
            .await?;
        return Ok(Vec::new());
    };
    let mut charges: BTreeMap<u32, Charge> = s
        .subscriptions
        .charges(&id)
        .await?
        .into_iter()
        .map(|c| (c.cycle, c))
        .collect();
    let mut done = Vec::new();
    // The cycles from the one this due record is for: charged now, or charged by a run that
    // died before writing its history.
    let owed = (1..=sub.cycles_due(now)).filter(|c| sub.charge_due_at(*c) >= due_at);
    for cycle in owed {
        let charge = match charges.get(&cycle) {
            Some(made) => Some(made.clone()),
            None => {
                let referrals = received_referrals(s, &id, cycle - 1).await?;
                let charge = Charge {
                    cycle,
                    amount: cycle_amount(&referrals),
                    at: now,
                    referrals,
                };
                let receipt = Effects::new(key::receipt(&id, cycle))
                    .with(Effect::Deliver(receipt(&sub, &charge)));
                if s.subscriptions
                    .record_charge(&id, &charge, &receipt)
                    .await?
                {
                    done.push((id.clone(), cycle, charge.amount));
                    Some(charge)
                } else {
                    // Charged a moment ago by a concurrent run: finish with its charge.
                    s.subscriptions
                        .charges(&id)
                        .await?
                        .into_iter()
                        .find(|c| c.cycle == cycle)
                }
            }
        };
        if let Some(charge) = charge {
            record_charge_history(s, &id, &charge).await?;
            charges.insert(cycle, charge);
        }
    }
    let charged: BTreeSet<u32> = charges.keys().copied().collect();
    s.due
        .advance_due(
            DueKind::Billing,
            key,
            due_at,
            sub.next_charge_at(&charged),
            &none,
        )
        .await?;
    Ok(done)
}

/// Each referral a charge paid for gets the charge in its history, once (GEN-2).
async fn record_charge_history(
    s: &Services,
    sub: &SubscriptionId,
    charge: &Charge,
) -> Result<(), AppError> {
    for r in &charge.referrals {
        let entry = HistoryEntry::new(
            charge.at,
            None,
            HistoryEvent::Charged {
                cycle: charge.cycle,
                amount: r.price,
            },
        );
        let once = format!("charged#{sub}#{}#{}", charge.cycle, r.referral_id);
        s.referrals
            .append_history_once(&r.referral_id, &[entry], &once)
            .await?;
    }
    Ok(())
}

/// The receipt of one charge, to the subscriber's email: each referral it paid for with its
/// price, or that nothing was received and nothing charged (PPL-11).
fn receipt(sub: &Subscription, charge: &Charge) -> Delivery {
    let from = sub.charge_due_at(charge.cycle - 1).strftime("%Y-%m-%d");
    let to = sub.charge_due_at(charge.cycle).strftime("%Y-%m-%d");
    let body = if charge.referrals.is_empty() {
        format!(
            "Subscription {}, cycle {} ({from} to {to}): no referrals received, nothing charged.",
            sub.id, charge.cycle
        )
    } else {
        let lines: Vec<String> = charge
            .referrals
            .iter()
            .map(|r| {
                format!(
                    "- {} {} in {}: {}",
                    r.referral_id,
                    r.client_type.as_str(),
                    r.zip,
                    r.price.readable()
                )
            })
            .collect();
        let count = match charge.referrals.len() {
            1 => "1 referral".to_owned(),
            n => format!("{n} referrals"),
        };
        format!(
            "Subscription {}, cycle {} ({from} to {to}): {count} received.\n{}\nTotal charged on {}: {}.",
            sub.id,
            charge.cycle,
            lines.join("\n"),
            charge.at.strftime("%Y-%m-%d"),
            charge.amount.readable()
        )
    };
    Delivery {
        key: key::receipt(&sub.id, charge.cycle),
        referral_id: None,
        to: Recipient::Agent {
            agent_id: sub.agent_id.clone(),
        },
        message: Message::email(
            format!("Pay per lead receipt: cycle {}", charge.cycle),
            body,
        ),
    }
}

/// Whether `agent` owns subscription `id`.
pub async fn owns(s: &Services, agent: &AgentId, id: &SubscriptionId) -> Result<bool, AppError> {
    Ok(s.subscriptions
        .get_subscription(id)
        .await?
        .is_some_and(|x| &x.agent_id == agent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Role;
    use crate::app::testing::services;
    use crate::domain::agent::fixtures::agent;
    use crate::domain::values::ClientType;
    use crate::memory::Sent;
    use crate::ports::AgentDirectory;
    use jiff::SignedDuration;
    use std::sync::Arc;

    fn day(n: i64) -> Timestamp {
        "2026-01-01T09:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(24 * n)
    }

    #[tokio::test]
    async fn ppl_2_charged_at_day_30_and_60_never_at_29_and_once_when_run_twice() {
        let (s, store, outbox) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let actor = Actor {
            user: "a1".parse().unwrap(),
            role: Role::Agent,
        };
        let view = sign_up(
            &s,
            &actor,
            SignUp {
                zips: ["94110".parse().unwrap()].into(),
                client_types: [ClientType::Seller].into(),
                referrals_per_cycle: 2,
            },
            None,
            day(0),
        )
        .await
        .unwrap()
        .0;
        assert_eq!(view.next_charge_at, Some(day(30)));
        assert_eq!(view.cycle_amount, Money::ZERO);
        assert!(run_billing(&s, day(29)).await.unwrap().charged.is_empty());
        assert_eq!(run_billing(&s, day(30)).await.unwrap().charged.len(), 1);
        assert!(
            run_billing(&s, day(30)).await.unwrap().charged.is_empty(),
            "same run fired twice"
        );
        assert!(run_billing(&s, day(45)).await.unwrap().charged.is_empty());
        assert_eq!(run_billing(&s, day(60)).await.unwrap().charged[0].1, 2);
        let v = view_subscription(&s, &actor, &view.subscription.id, day(61))
            .await
            .unwrap();
        assert_eq!((v.cycle, v.delivered_this_cycle), (2, 0));
        assert_eq!(
            v.charges.iter().map(|c| c.cycle).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(v.next_charge_at, Some(day(90)));
        crate::memory::deliver(&s, &outbox, day(61)).await.unwrap();
        let receipts = outbox
            .sent()
            .into_iter()
            .filter(|x| matches!(x, Sent::Email(_)))
            .count();
        assert_eq!(receipts, 2);
        // Someone else's subscription is not theirs to read.
        let other = Actor {
            user: "a2".parse().unwrap(),
            role: Role::Agent,
        };
        assert_eq!(
            view_subscription(&s, &other, &view.subscription.id, day(61))
                .await
                .unwrap_err()
                .status(),
            403
        );
    }

    #[tokio::test]
    async fn ppl_1_sign_up_refuses_bad_input_and_writes_nothing() {
        let (s, store, _) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let actor = Actor {
            user: "a1".parse().unwrap(),
            role: Role::Agent,
        };
        let e = sign_up(
            &s,
            &actor,
            SignUp {
                zips: Default::default(),
                client_types: [ClientType::Seller].into(),
                referrals_per_cycle: 2,
            },
            None,
            day(0),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(run_billing(&s, day(400)).await.unwrap().charged.is_empty());
    }

    #[tokio::test]
    async fn ef_3_a_sign_up_retried_with_its_key_creates_one_subscription() {
        let (s, store, _) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let actor = Actor {
            user: "a1".parse().unwrap(),
            role: Role::Agent,
        };
        let request = || SignUp {
            zips: ["94110".parse().unwrap()].into(),
            client_types: [ClientType::Seller].into(),
            referrals_per_cycle: 2,
        };
        let (first, created) = sign_up(&s, &actor, request(), Some("k1"), day(0))
            .await
            .unwrap();
        assert!(created);
        let (again, created) = sign_up(&s, &actor, request(), Some("k1"), day(0))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.subscription.id, first.subscription.id);
        let (other, _) = sign_up(&s, &actor, request(), Some("k2"), day(0))
            .await
            .unwrap();
        assert_ne!(other.subscription.id, first.subscription.id);
        let agent_id: AgentId = "a1".parse().unwrap();
        let subs = crate::ports::SubscriptionStore::subscriptions_of(&*store, &agent_id).await;
        assert_eq!(subs.unwrap().len(), 2);
        // Each is billed: the due record came with the subscription.
        assert_eq!(run_billing(&s, day(30)).await.unwrap().charged.len(), 2);
    }

    #[tokio::test]
    async fn ef_4_a_subscription_of_more_than_200_zips_is_refused() {
        let (s, store, _) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let actor = Actor {
            user: "a1".parse().unwrap(),
            role: Role::Agent,
        };
        let zips = (0..201)
            .map(|i| format!("{:05}", 10_000 + i).parse().unwrap())
            .collect();
        let e = sign_up(
            &s,
            &actor,
            SignUp {
                zips,
                client_types: [ClientType::Seller].into(),
                referrals_per_cycle: 2,
            },
            None,
            day(0),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().starts_with("zips"), "{e}");
    }

    // ---- PPL-10 to PPL-13: through intake and claims, as a subscriber lives them.

    use crate::app::claim::claim_referral;
    use crate::app::intake::create_referral;
    use crate::app::intake::tests::{advisor, put_agents, request};
    use crate::domain::referral::{ClaimChannel, Program};
    use crate::memory::MemoryStore;
    use crate::ports::{ReferralStore, SubscriptionStore};

    fn agent_actor(id: &str) -> Actor {
        Actor {
            user: id.parse().unwrap(),
            role: Role::Agent,
        }
    }

    async fn subscribe_to(
        s: &Services,
        agent: &str,
        zips: &[&str],
        per_cycle: u32,
    ) -> SubscriptionId {
        sign_up(
            s,
            &agent_actor(agent),
            SignUp {
                zips: zips.iter().map(|z| z.parse().unwrap()).collect(),
                client_types: [ClientType::Buyer, ClientType::Seller].into(),
                referrals_per_cycle: per_cycle,
            },
            None,
            day(0),
        )
        .await
        .unwrap()
        .0
        .subscription
        .id
    }

    /// A PPL lead of `client_type` in `zip`, claimed by `agent` at `at`.
    async fn received(
        s: &Services,
        agent: &str,
        client_type: &str,
        zip: &str,
        at: Timestamp,
    ) -> ReferralId {
        let mut req = request(Program::Ppl, client_type);
        req.zip = zip.parse().unwrap();
        let lead = create_referral(s, &advisor(), req, None, at).await.unwrap();
        claim_referral(s, &agent.parse().unwrap(), &lead.id, ClaimChannel::App, at)
            .await
            .unwrap();
        lead.id
    }

    fn receipts(s: &Services, outbox: &crate::memory::Outbox) -> Vec<String> {
        let _ = s;
        outbox
            .sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Email(e) if e.subject.starts_with("Pay per lead receipt") => Some(e.body),
                _ => None,
            })
            .collect()
    }

    async fn setup() -> (Services, Arc<MemoryStore>, Arc<crate::memory::Outbox>) {
        let (s, store, outbox) = services();
        put_agents(&store, &["p1", "p2"]).await;
        (s, store, outbox)
    }

    #[tokio::test]
    async fn ppl_11_a_cycle_is_charged_the_sum_of_its_referrals_own_prices_and_the_receipt_lists_them()
     {
        let (s, store, outbox) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110", "10001"], 5).await;
        // A seller in 94110 (90.00), a buyer in 10001 (45.00).
        let r1 = received(&s, "p1", "seller", "94110", day(2)).await;
        let r2 = received(&s, "p1", "buyer", "10001", day(3)).await;
        let run = run_billing(&s, day(30)).await.unwrap();
        assert_eq!(run.charged, vec![(sub.clone(), 1, "135".parse().unwrap())]);
        let v = view_subscription(&s, &agent_actor("p1"), &sub, day(31))
            .await
            .unwrap();
        let paid: Vec<(ReferralId, String)> = v.charges[0]
            .referrals
            .iter()
            .map(|r| (r.referral_id.clone(), r.price.to_string()))
            .collect();
        assert_eq!(
            paid,
            vec![(r1.clone(), "90.00".into()), (r2.clone(), "45.00".into())]
        );
        crate::memory::deliver(&s, &outbox, day(31)).await.unwrap();
        let receipt = receipts(&s, &outbox).pop().unwrap();
        assert!(
            receipt.contains(&format!("{r1} seller in 94110: $90")),
            "{receipt}"
        );
        assert!(
            receipt.contains(&format!("{r2} buyer in 10001: $45")),
            "{receipt}"
        );
        assert!(
            receipt.contains("Total charged on 2026-01-31: $135"),
            "{receipt}"
        );
        // GEN-2: the charge is in each paid referral's history, once however often billing runs.
        run_billing(&s, day(30)).await.unwrap();
        for (r, amount) in [(&r1, "90.00"), (&r2, "45.00")] {
            let charged: Vec<_> = store
                .history(r)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| matches!(e.event, HistoryEvent::Charged { .. }))
                .collect();
            assert_eq!(charged.len(), 1);
            assert_eq!(
                charged[0].event,
                HistoryEvent::Charged {
                    cycle: 1,
                    amount: amount.parse().unwrap()
                }
            );
        }
    }

    #[tokio::test]
    async fn ppl_11_a_cycle_with_nothing_received_charges_nothing_and_says_so() {
        let (s, _, outbox) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 5).await;
        let run = run_billing(&s, day(30)).await.unwrap();
        assert_eq!(run.charged, vec![(sub, 1, Money::ZERO)]);
        crate::memory::deliver(&s, &outbox, day(31)).await.unwrap();
        let receipt = receipts(&s, &outbox).pop().unwrap();
        assert!(
            receipt.contains("no referrals received, nothing charged"),
            "{receipt}"
        );
    }

    #[tokio::test]
    async fn ppl_2_gen_2_a_run_that_died_after_charging_is_finished_without_charging_again() {
        let (s, store, _) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 5).await;
        let r1 = received(&s, "p1", "seller", "94110", day(2)).await;
        // The first run stored the charge and died before the history and the due record.
        let charge = Charge {
            cycle: 1,
            amount: "90".parse().unwrap(),
            at: day(30),
            referrals: received_referrals(&s, &sub, 0).await.unwrap(),
        };
        assert!(
            store
                .record_charge(&sub, &charge, &Effects::new("died"))
                .await
                .unwrap()
        );
        assert!(run_billing(&s, day(30)).await.unwrap().charged.is_empty());
        let charged = store
            .history(&r1)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e.event, HistoryEvent::Charged { .. }))
            .count();
        assert_eq!(charged, 1);
        let v = view_subscription(&s, &agent_actor("p1"), &sub, day(31))
            .await
            .unwrap();
        assert_eq!((v.charges.len(), v.next_charge_at), (1, Some(day(60))));
    }

    #[tokio::test]
    async fn ppl_12_a_change_reaches_the_next_delivery_and_the_quota_the_next_cycle() {
        let (s, _, _) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 1).await;
        let p1 = agent_actor("p1");
        let change = SubscriptionChange {
            zips: Some(["10001".parse().unwrap()].into()),
            referrals_per_cycle: Some(2),
            ..Default::default()
        };
        let v = change_subscription(&s, &p1, &sub, change, day(1))
            .await
            .unwrap();
        assert_eq!(v.quota_this_cycle, 1);
        let r = create_referral(
            &s,
            &advisor(),
            request(Program::Ppl, "seller"),
            None,
            day(1),
        )
        .await
        .unwrap();
        assert!(r.offered_to.is_empty(), "94110 is no longer covered");
        assert!(
            r.unassigned_since.is_some(),
            "it waits for the advisors (RC-2)"
        );
        received(&s, "p1", "seller", "10001", day(2)).await;
        let mut req = request(Program::Ppl, "seller");
        req.zip = "10001".parse().unwrap();
        let used_up = create_referral(&s, &advisor(), req.clone(), None, day(3))
            .await
            .unwrap();
        assert!(used_up.offered_to.is_empty(), "the quota of 1 is used up");
        // The next cycle has the new quota of 2.
        received(&s, "p1", "seller", "10001", day(31)).await;
        received(&s, "p1", "seller", "10001", day(32)).await;
        let used_up = create_referral(&s, &advisor(), req, None, day(33))
            .await
            .unwrap();
        assert!(used_up.offered_to.is_empty(), "the quota of 2 is used up");
        let v = view_subscription(&s, &p1, &sub, day(33)).await.unwrap();
        assert_eq!((v.quota_this_cycle, v.delivered_this_cycle), (2, 2));
        // Someone else may not change it; nonsense is refused and writes nothing.
        let e = change_subscription(
            &s,
            &agent_actor("p2"),
            &sub,
            SubscriptionChange::default(),
            day(33),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 403);
        let bad = SubscriptionChange {
            referrals_per_cycle: Some(0),
            ..Default::default()
        };
        assert_eq!(
            change_subscription(&s, &p1, &sub, bad, day(33))
                .await
                .unwrap_err()
                .status(),
            400
        );
    }

    #[tokio::test]
    async fn ppl_12_a_cancelled_subscription_gets_nothing_and_its_last_cycle_is_charged_once() {
        let (s, _, _) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 3).await;
        let p1 = agent_actor("p1");
        received(&s, "p1", "seller", "94110", day(31)).await;
        let v = cancel_subscription(&s, &p1, &sub, day(40)).await.unwrap();
        assert_eq!(
            v.subscription.status,
            crate::domain::billing::SubscriptionStatus::Cancelled
        );
        let r = create_referral(
            &s,
            &advisor(),
            request(Program::Ppl, "seller"),
            None,
            day(41),
        )
        .await
        .unwrap();
        assert!(r.offered_to.is_empty() && r.unassigned_since.is_some());
        assert_eq!(
            run_billing(&s, day(30)).await.unwrap().charged[0].2,
            Money::ZERO
        );
        assert_eq!(
            run_billing(&s, day(60)).await.unwrap().charged,
            vec![(sub.clone(), 2, "90".parse().unwrap())]
        );
        assert!(run_billing(&s, day(90)).await.unwrap().charged.is_empty());
        let v = view_subscription(&s, &p1, &sub, day(91)).await.unwrap();
        assert_eq!((v.charges.len(), v.next_charge_at), (2, None));
    }

    fn returning(referral_id: &ReferralId, reason: ReturnReason) -> ReturnRequest {
        ReturnRequest {
            referral_id: referral_id.clone(),
            reason,
        }
    }

    #[tokio::test]
    async fn ppl_13_a_return_within_7_days_is_not_charged_and_frees_its_place() {
        let (s, store, _) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 1).await;
        let p1 = agent_actor("p1");
        let r1 = received(&s, "p1", "seller", "94110", day(2)).await;
        let back = return_referral(
            &s,
            &p1,
            &sub,
            returning(&r1, ReturnReason::WrongContact),
            day(9),
        )
        .await
        .unwrap();
        assert!(back.returned);
        // Returned again: nothing changes.
        return_referral(
            &s,
            &p1,
            &sub,
            returning(&r1, ReturnReason::WrongContact),
            day(9),
        )
        .await
        .unwrap();
        let history = store.history(&r1).await.unwrap();
        let returns = history
            .iter()
            .filter(|e| {
                e.event
                    == HistoryEvent::Returned {
                        reason: ReturnReason::WrongContact,
                    }
            })
            .count();
        assert_eq!(returns, 1);
        // The place is free again: p1 is offered and receives another.
        let r2 = received(&s, "p1", "seller", "94110", day(10)).await;
        let run = run_billing(&s, day(30)).await.unwrap();
        assert_eq!(run.charged[0].2.to_string(), "90.00");
        let v = view_subscription(&s, &p1, &sub, day(31)).await.unwrap();
        let paid: Vec<_> = v.charges[0]
            .referrals
            .iter()
            .map(|r| r.referral_id.clone())
            .collect();
        assert_eq!(paid, vec![r2]);
    }

    #[tokio::test]
    async fn ppl_13_after_7_days_a_return_is_too_late() {
        let (s, _, _) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 2).await;
        let r1 = received(&s, "p1", "seller", "94110", day(2)).await;
        let e = return_referral(
            &s,
            &agent_actor("p1"),
            &sub,
            returning(&r1, ReturnReason::WrongContact),
            day(9) + jiff::SignedDuration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "too_late"));
    }

    #[tokio::test]
    async fn ppl_13_a_return_once_its_cycle_is_charged_is_refused_and_writes_nothing() {
        let (s, store, _) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 1).await;
        let p1 = agent_actor("p1");
        // Received on day 28; its cycle is charged on day 30, within its 7 days.
        let r1 = received(&s, "p1", "seller", "94110", day(28)).await;
        run_billing(&s, day(30)).await.unwrap();
        let before = store.get_referral(&r1).await.unwrap().unwrap();
        let e = return_referral(
            &s,
            &p1,
            &sub,
            returning(&r1, ReturnReason::WrongContact),
            day(31),
        )
        .await
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "already_charged"));
        let after = store.get_referral(&r1).await.unwrap().unwrap();
        assert_eq!((after.value, after.version), (before.value, before.version));
        assert!(
            !store
                .history(&r1)
                .await
                .unwrap()
                .iter()
                .any(|e| matches!(e.event, HistoryEvent::Returned { .. }))
        );
        assert_eq!(store.received(&sub, 0).await.unwrap(), vec![r1.clone()]);
        let v = view_subscription(&s, &p1, &sub, day(31)).await.unwrap();
        assert_eq!(v.charges[0].amount.to_string(), "90.00");
    }

    #[tokio::test]
    async fn ppl_13_a_return_racing_the_charge_of_its_cycle_writes_nothing() {
        let (s, store, _) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 1).await;
        let r1 = received(&s, "p1", "seller", "94110", day(28)).await;
        let stored = store.get_referral(&r1).await.unwrap().unwrap();
        // The charge is made between the return's read and its write.
        run_billing(&s, day(30)).await.unwrap();
        let place = QuotaPlace {
            subscription: sub.clone(),
            cycle: 0,
            quota: 1,
        };
        let saved = store
            .return_referral(&stored.value, stored.version, &[], &place)
            .await
            .unwrap();
        assert_eq!(saved, Saved::Stale);
        assert_eq!(store.received(&sub, 0).await.unwrap(), vec![r1]);
    }

    #[tokio::test]
    async fn ppl_11_the_receipt_counts_one_referral_and_several_referrals() {
        let (s, _, outbox) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 5).await;
        received(&s, "p1", "seller", "94110", day(2)).await;
        received(&s, "p1", "seller", "94110", day(32)).await;
        received(&s, "p1", "seller", "94110", day(33)).await;
        run_billing(&s, day(60)).await.unwrap();
        crate::memory::deliver(&s, &outbox, day(61)).await.unwrap();
        let mut receipts = receipts(&s, &outbox);
        receipts.sort();
        assert_eq!(receipts.len(), 2, "{receipts:?}");
        let (one, two) = (&receipts[0], &receipts[1]);
        assert!(one.contains(&format!("{sub}, cycle 1")), "{one}");
        assert!(one.contains("): 1 referral received."), "{one}");
        assert!(two.contains("): 2 referrals received."), "{two}");
    }

    #[tokio::test]
    async fn ppl_13_duplicate_and_outside_area_are_checked_by_the_system() {
        let (s, _, _) = setup().await;
        let sub = subscribe_to(&s, "p1", &["94110"], 5).await;
        let p1 = agent_actor("p1");
        let first = received(&s, "p1", "seller", "94110", day(2)).await;
        // The first of a client is no duplicate, and 94110 is inside the area.
        let e = return_referral(
            &s,
            &p1,
            &sub,
            returning(&first, ReturnReason::Duplicate),
            day(3),
        )
        .await
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (422, "not_a_duplicate"));
        let e = return_referral(
            &s,
            &p1,
            &sub,
            returning(&first, ReturnReason::OutsideArea),
            day(3),
        )
        .await
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (422, "not_outside_area"));
        // The same client again (same phone and email in the fixture) is a duplicate.
        let again = received(&s, "p1", "seller", "94110", day(4)).await;
        return_referral(
            &s,
            &p1,
            &sub,
            returning(&again, ReturnReason::Duplicate),
            day(5),
        )
        .await
        .unwrap();
        // After the zip was dropped, an earlier referral there is outside the area.
        change_subscription(
            &s,
            &p1,
            &sub,
            SubscriptionChange {
                zips: Some(["10001".parse().unwrap()].into()),
                ..Default::default()
            },
            day(5),
        )
        .await
        .unwrap();
        return_referral(
            &s,
            &p1,
            &sub,
            returning(&first, ReturnReason::OutsideArea),
            day(6),
        )
        .await
        .unwrap();
        // Someone else's referral is not theirs to return.
        let e = return_referral(
            &s,
            &agent_actor("p2"),
            &sub,
            returning(&first, ReturnReason::WrongContact),
            day(6),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 403);
    }
}
