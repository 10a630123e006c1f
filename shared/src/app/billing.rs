//! Pay-per-lead sign-up and the daily billing sweep (PPL-1, PPL-2).

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;

use super::{Actor, AppError, Services, idempotent_id, limits};
use crate::domain::billing::{SignUp, Subscription};
use crate::domain::values::{AgentId, Money, SubscriptionId};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, key};
use crate::ports::{Charge, DueKind};

/// A subscription as its agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// The current 30-day cycle, from 0, and the referrals delivered in it (PPL-9).
    pub cycle: u32,
    pub delivered_this_cycle: u32,
    pub cycle_amount: Money,
    pub next_charge_at: Timestamp,
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
    let sub = Subscription::sign_up(id, agent_id, request, &s.config.prices, now)?;
    let none = BTreeSet::new();
    let first_charge = sub.next_charge_at(&none);
    if !s
        .subscriptions
        .create_subscription(&sub, first_charge)
        .await?
    {
        // Created a moment ago by the same request, retried.
        return Ok((view_subscription(s, actor, &sub.id, now).await?, false));
    }
    let view = SubscriptionView {
        cycle: 0,
        delivered_this_cycle: 0,
        cycle_amount: sub.cycle_amount(),
        next_charge_at: first_charge,
        subscription: sub,
        charges: Vec::new(),
    };
    Ok((view, true))
}

pub async fn view_subscription(
    s: &Services,
    actor: &Actor,
    id: &SubscriptionId,
    now: Timestamp,
) -> Result<SubscriptionView, AppError> {
    let sub = s
        .subscriptions
        .get_subscription(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no subscription {id}")))?;
    actor.require_agent(&sub.agent_id)?;
    let charges = s.subscriptions.charges(id).await?;
    let charged: BTreeSet<u32> = charges.iter().map(|c| c.cycle).collect();
    let cycle = sub.current_cycle(now);
    Ok(SubscriptionView {
        cycle,
        delivered_this_cycle: s.subscriptions.deliveries(id, cycle).await?,
        cycle_amount: sub.cycle_amount(),
        next_charge_at: sub.next_charge_at(&charged),
        subscription: sub,
        charges,
    })
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
    Ok(run)
}

/// Charges one due subscription for every cycle it owes, then moves its due time on.
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
    let mut charged: BTreeSet<u32> = s
        .subscriptions
        .charges(&id)
        .await?
        .iter()
        .map(|c| c.cycle)
        .collect();
    let mut done = Vec::new();
    for cycle in sub.charges_due(&charged, now) {
        let charge = Charge {
            cycle,
            amount: sub.cycle_amount(),
            at: now,
        };
        let receipt =
            Effects::new(key::receipt(&id, cycle)).with(Effect::Deliver(receipt(&sub, &charge)));
        if s.subscriptions
            .record_charge(&id, &charge, &receipt)
            .await?
        {
            done.push((id.clone(), cycle, charge.amount));
        }
        charged.insert(cycle);
    }
    s.due
        .advance_due(
            DueKind::Billing,
            key,
            due_at,
            Some(sub.next_charge_at(&charged)),
            &none,
        )
        .await?;
    Ok(done)
}

/// The receipt of one charge, to the subscriber's email.
fn receipt(sub: &Subscription, charge: &Charge) -> Delivery {
    Delivery {
        key: key::receipt(&sub.id, charge.cycle),
        referral_id: None,
        to: Recipient::Agent {
            agent_id: sub.agent_id.clone(),
        },
        message: Message::email(
            format!("Pay per lead receipt: cycle {}", charge.cycle),
            format!(
                "Subscription {}: cycle {} of {} referrals at ${} each, ${} charged on {}.",
                sub.id,
                charge.cycle,
                sub.referrals_per_cycle,
                sub.unit_price,
                charge.amount,
                charge.at.strftime("%Y-%m-%d")
            ),
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
        assert_eq!(view.next_charge_at, day(30));
        assert_eq!(view.cycle_amount.to_string(), "180.00");
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
        assert_eq!(v.next_charge_at, day(90));
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
}
