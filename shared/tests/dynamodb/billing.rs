//! PPL subscriptions, charges, the quota a claim counts in, returns, due work and once-only
//! effects on DynamoDB Local.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use shared::domain::billing::{ReturnReason, Subscription, SubscriptionStatus};
use shared::domain::claim::ClaimRefusal;
use shared::domain::referral::{
    ClaimChannel, HistoryEntry, HistoryEvent, PplTerms, Program, Referral,
};
use shared::domain::values::{AgentId, ClientType, ReferralId, SubscriptionId};
use shared::dynamodb::DynamoDbStore;
use shared::effects::Effects;
use shared::ports::{
    Begun, Charge, ClaimOutcome, DueKind, DueWork, Idempotency, QuotaPlace, ReferralStore, Saved,
    SubscriptionStore,
};

use crate::harness::{at, id, referral, table};

fn subscription(sub: &str, agent: &str, zips: &[&str], types: &[ClientType]) -> Subscription {
    Subscription {
        id: id(sub),
        agent_id: id(agent),
        zips: zips.iter().map(|z| id(z)).collect(),
        client_types: types.iter().copied().collect(),
        referrals_per_cycle: 5,
        started_at: at("2026-01-01T00:00:00Z"),
        next_quota: None,
        status: SubscriptionStatus::Active,
        cancelled_at: None,
    }
}

#[tokio::test]
async fn ppl_1_subscriptions_by_id_agent_and_covered_area() {
    let t = table("subscriptions").await;
    let s1 = subscription("s1", "a1", &["94110", "94117"], &[ClientType::Buyer]);
    let s2 = subscription(
        "s2",
        "a1",
        &["94110"],
        &[ClientType::Buyer, ClientType::Seller],
    );
    let s3 = subscription("s3", "a2", &["10001"], &[ClientType::Seller]);
    for s in [&s1, &s2, &s3] {
        t.store
            .create_subscription(s, s.started_at + jiff::SignedDuration::from_hours(24 * 30))
            .await
            .unwrap();
    }
    assert_eq!(
        t.store.get_subscription(&id("s1")).await.unwrap(),
        Some(s1.clone())
    );
    assert_eq!(t.store.get_subscription(&id("s9")).await.unwrap(), None);

    let mut of_a1 = t.store.subscriptions_of(&id("a1")).await.unwrap();
    of_a1.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(of_a1, vec![s1.clone(), s2.clone()]);

    let covering = |zip: &str, ct| {
        let (store, zip) = (t.store.clone(), id(zip));
        async move {
            let mut ids: Vec<SubscriptionId> = store
                .subscriptions_covering(&zip, ct)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        covering("94110", ClientType::Buyer).await,
        vec![id::<SubscriptionId>("s1"), id("s2")]
    );
    assert_eq!(
        covering("94110", ClientType::Seller).await,
        vec![id::<SubscriptionId>("s2")]
    );
    assert_eq!(
        covering("94117", ClientType::Buyer).await,
        vec![id::<SubscriptionId>("s1")]
    );
    assert!(covering("94117", ClientType::Seller).await.is_empty());
    assert_eq!(
        covering("10001", ClientType::Seller).await,
        vec![id::<SubscriptionId>("s3")]
    );
    // What the index returns is the whole subscription.
    let found = t
        .store
        .subscriptions_covering(&id("10001"), ClientType::Seller)
        .await
        .unwrap();
    assert_eq!(found, vec![s3]);
}

#[tokio::test]
async fn ppl_2_one_charge_per_cycle_whatever_the_retries() {
    let t = table("charges").await;
    let sub: SubscriptionId = id("s1");
    let charge = |cycle, when| Charge {
        cycle,
        amount: id("200.00"),
        at: at(when),
        referrals: Vec::new(),
    };
    assert!(
        t.store
            .record_charge(
                &sub,
                &charge(1, "2026-01-31T00:00:00Z"),
                &shared::effects::Effects::default()
            )
            .await
            .unwrap()
    );
    // The same cycle again (a second run, a retry, another amount): refused.
    assert!(
        !t.store
            .record_charge(
                &sub,
                &charge(1, "2026-01-31T00:05:00Z"),
                &shared::effects::Effects::default()
            )
            .await
            .unwrap()
    );
    assert!(
        t.store
            .record_charge(
                &sub,
                &charge(2, "2026-03-02T00:00:00Z"),
                &shared::effects::Effects::default()
            )
            .await
            .unwrap()
    );
    assert_eq!(
        t.store.charges(&sub).await.unwrap(),
        vec![
            charge(1, "2026-01-31T00:00:00Z"),
            charge(2, "2026-03-02T00:00:00Z")
        ]
    );
    assert!(t.store.charges(&id("s2")).await.unwrap().is_empty());
}

/// A pay-per-lead seller offered to `a1` under subscription `s1` at $90.
fn ppl_referral(referral_id: &str) -> Referral {
    let a1: AgentId = id("a1");
    Referral {
        program: Program::Ppl,
        ppl: Some(PplTerms {
            price: id("90.00"),
            subscriptions: [(a1.clone(), id("s1"))].into(),
            returned: None,
        }),
        ..referral(referral_id, &[a1])
    }
}

fn place(cycle: u32, quota: u32) -> QuotaPlace {
    QuotaPlace {
        subscription: id("s1"),
        cycle,
        quota,
    }
}

/// A claim counted in `place`, retried while DynamoDB reports a conflicting transaction, as the
/// app's caller retries a 503.
async fn counted_claim(store: &DynamoDbStore, referral: &str, place: &QuotaPlace) -> ClaimOutcome {
    let now = at("2026-01-02T00:00:00Z");
    loop {
        match store
            .claim_counted(&id(referral), &id("a1"), ClaimChannel::App, now, place)
            .await
        {
            Err(e) if e.is_retryable() => continue,
            other => return other.unwrap(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ppl_10_claims_stop_at_the_quota_under_concurrency() {
    let t = table("received").await;
    let store = Arc::new(t.store.clone());
    for n in 0..12 {
        store
            .create_referral(&ppl_referral(&format!("r{n}")), &[], &Effects::default())
            .await
            .unwrap();
    }
    // The claim without its count refuses to write a pay-per-lead referral.
    let uncounted = store
        .claim(
            &id("r0"),
            &id("a1"),
            ClaimChannel::App,
            at("2026-01-02T00:00:00Z"),
        )
        .await
        .unwrap();
    assert!(
        matches!(uncounted, ClaimOutcome::PayPerLead(_)),
        "{uncounted:?}"
    );
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..12 {
        let store = store.clone();
        tasks.spawn(async move { counted_claim(&store, &format!("r{n}"), &place(3, 5)).await });
    }
    let (mut won, mut full) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            ClaimOutcome::Won(_) => won += 1,
            ClaimOutcome::Refused(ClaimRefusal::QuotaReached) => full += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((won, full), (5, 7));
    assert_eq!(t.store.received(&id("s1"), 3).await.unwrap().len(), 5);
    assert!(t.store.received(&id("s1"), 4).await.unwrap().is_empty());
    // A refused claim wrote nothing: those referrals are still open.
    let mut open = 0;
    for n in 0..12 {
        let r = t
            .store
            .get_referral(&id(&format!("r{n}")))
            .await
            .unwrap()
            .unwrap();
        open += usize::from(r.value.assigned_agent().is_none());
    }
    assert_eq!(open, 7);
}

#[tokio::test]
async fn ppl_13_a_return_frees_its_place_once() {
    let t = table("returns").await;
    let s = &t.store;
    for r in ["r1", "r2"] {
        s.create_referral(&ppl_referral(r), &[], &Effects::default())
            .await
            .unwrap();
    }
    assert!(matches!(
        counted_claim(s, "r1", &place(0, 1)).await,
        ClaimOutcome::Won(_)
    ));
    assert_eq!(
        counted_claim(s, "r2", &place(0, 1)).await,
        ClaimOutcome::Refused(ClaimRefusal::QuotaReached)
    );
    let stored = s.get_referral(&id("r1")).await.unwrap().unwrap();
    let mut returned = stored.value.clone();
    returned.ppl.as_mut().unwrap().returned = Some(ReturnReason::WrongContact);
    let entry = HistoryEntry::new(
        at("2026-01-03T00:00:00Z"),
        None,
        HistoryEvent::Returned {
            reason: ReturnReason::WrongContact,
        },
    );
    assert_eq!(
        s.return_referral(
            &returned,
            stored.version,
            std::slice::from_ref(&entry),
            &place(0, 1)
        )
        .await
        .unwrap(),
        Saved::Ok
    );
    assert!(s.received(&id("s1"), 0).await.unwrap().is_empty());
    // Returned again from the same read: stale, and nothing freed twice.
    assert_eq!(
        s.return_referral(&returned, stored.version, &[entry], &place(0, 1))
            .await
            .unwrap(),
        Saved::Stale
    );
    assert!(matches!(
        counted_claim(s, "r2", &place(0, 1)).await,
        ClaimOutcome::Won(_)
    ));
    assert_eq!(
        s.received(&id("s1"), 0).await.unwrap(),
        vec![id::<ReferralId>("r2")]
    );
    let history = s.history(&id("r1")).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| matches!(h.event, HistoryEvent::Returned { .. }))
    );
}

/// A return read before its cycle's charge and written after it: refused, nothing written.
#[tokio::test]
async fn ppl_13_a_return_once_its_cycle_is_charged_writes_nothing() {
    let t = table("charged-returns").await;
    let s = &t.store;
    s.create_referral(&ppl_referral("r1"), &[], &Effects::default())
        .await
        .unwrap();
    assert!(matches!(
        counted_claim(s, "r1", &place(0, 1)).await,
        ClaimOutcome::Won(_)
    ));
    let stored = s.get_referral(&id("r1")).await.unwrap().unwrap();
    let charge = Charge {
        cycle: 1,
        amount: id("90.00"),
        at: at("2026-01-31T00:00:00Z"),
        referrals: Vec::new(),
    };
    assert!(
        s.record_charge(&id("s1"), &charge, &Effects::default())
            .await
            .unwrap()
    );
    let mut returned = stored.value.clone();
    returned.ppl.as_mut().unwrap().returned = Some(ReturnReason::WrongContact);
    let entry = HistoryEntry::new(
        at("2026-02-01T00:00:00Z"),
        None,
        HistoryEvent::Returned {
            reason: ReturnReason::WrongContact,
        },
    );
    assert_eq!(
        s.return_referral(&returned, stored.version, &[entry], &place(0, 1))
            .await
            .unwrap(),
        Saved::Stale
    );
    assert_eq!(
        s.received(&id("s1"), 0).await.unwrap(),
        vec![id::<ReferralId>("r1")]
    );
    let after = s.get_referral(&id("r1")).await.unwrap().unwrap();
    assert_eq!((after.value, after.version), (stored.value, stored.version));
    assert!(
        !s.history(&id("r1"))
            .await
            .unwrap()
            .iter()
            .any(|h| matches!(h.event, HistoryEvent::Returned { .. }))
    );
}

#[tokio::test]
async fn ppl_12_a_changed_subscription_is_found_by_its_new_zips_only() {
    let t = table("changed-subscription").await;
    let s1 = subscription("s1", "a1", &["94110"], &[ClientType::Seller]);
    t.store
        .create_subscription(&s1, at("2026-01-31T00:00:00Z"))
        .await
        .unwrap();
    let changed = Subscription {
        zips: [id("10001")].into(),
        ..s1.clone()
    };
    t.store.save_subscription(&changed).await.unwrap();
    let covering = |zip: &'static str| {
        let store = t.store.clone();
        async move {
            store
                .subscriptions_covering(&id(zip), ClientType::Seller)
                .await
                .unwrap()
        }
    };
    assert_eq!(covering("10001").await, vec![changed.clone()]);
    assert!(covering("94110").await.is_empty());
    assert_eq!(
        t.store.get_subscription(&id("s1")).await.unwrap(),
        Some(changed)
    );
}

#[tokio::test]
async fn rm_1_due_finds_only_due_work_of_its_kind_earliest_first() {
    let t = table("due-work").await;
    let now = at("2026-02-01T09:00:00Z");
    let s = &t.store;
    s.set_due(DueKind::Billing, "late", Some(at("2026-02-01T08:00:00Z")))
        .await
        .unwrap();
    s.set_due(
        DueKind::Billing,
        "early",
        Some(at("2026-01-15T00:00:00.123456789Z")),
    )
    .await
    .unwrap();
    s.set_due(DueKind::Billing, "exactly-now", Some(now))
        .await
        .unwrap();
    s.set_due(
        DueKind::Billing,
        "future",
        Some(at("2026-02-01T09:00:00.001Z")),
    )
    .await
    .unwrap();
    s.set_due(
        DueKind::Reminder,
        "agent-1",
        Some(at("2026-01-01T00:00:00Z")),
    )
    .await
    .unwrap();
    s.set_due(
        DueKind::Billing,
        "cleared",
        Some(at("2026-01-01T00:00:00Z")),
    )
    .await
    .unwrap();
    s.set_due(DueKind::Billing, "cleared", None).await.unwrap();

    assert_eq!(
        s.due(DueKind::Billing, now).await.unwrap(),
        vec![
            ("early".to_owned(), at("2026-01-15T00:00:00.123456789Z")),
            ("late".to_owned(), at("2026-02-01T08:00:00Z")),
            ("exactly-now".to_owned(), now),
        ]
    );
    assert_eq!(
        s.due(DueKind::Reminder, now).await.unwrap(),
        vec![("agent-1".to_owned(), at("2026-01-01T00:00:00Z"))]
    );

    // Re-setting moves the time; set-if-absent never does.
    assert!(
        !s.set_due_if_absent(DueKind::Billing, "late", at("2020-01-01T00:00:00Z"))
            .await
            .unwrap()
    );
    assert!(
        s.set_due_if_absent(DueKind::Reminder, "agent-2", at("2026-01-20T00:00:00Z"))
            .await
            .unwrap()
    );
    s.set_due(
        DueKind::Reminder,
        "agent-1",
        Some(at("2026-03-01T00:00:00Z")),
    )
    .await
    .unwrap();
    assert_eq!(
        s.due(DueKind::Reminder, now).await.unwrap(),
        vec![("agent-2".to_owned(), at("2026-01-20T00:00:00Z"))]
    );
}

#[tokio::test]
async fn rm_2_advance_due_moves_a_due_time_once() {
    let t = table("advance-due").await;
    let s = &t.store;
    let due = at("2026-01-15T00:00:00Z");
    let next = at("2026-01-29T00:00:00Z");
    s.set_due(DueKind::Reminder, "agent-1", Some(due))
        .await
        .unwrap();
    // Two overlapping sweeps read the same due time: only the first moves it.
    assert!(
        s.advance_due(
            DueKind::Reminder,
            "agent-1",
            due,
            Some(next),
            &shared::effects::Effects::default()
        )
        .await
        .unwrap()
    );
    assert!(
        !s.advance_due(
            DueKind::Reminder,
            "agent-1",
            due,
            Some(next),
            &shared::effects::Effects::default()
        )
        .await
        .unwrap()
    );
    assert!(
        s.due(DueKind::Reminder, at("2026-01-20T00:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.due(DueKind::Reminder, next).await.unwrap(),
        vec![("agent-1".to_owned(), next)]
    );
    // Advancing to nothing clears it, once.
    assert!(
        s.advance_due(
            DueKind::Reminder,
            "agent-1",
            next,
            None,
            &shared::effects::Effects::default()
        )
        .await
        .unwrap()
    );
    assert!(
        !s.advance_due(
            DueKind::Reminder,
            "agent-1",
            next,
            None,
            &shared::effects::Effects::default()
        )
        .await
        .unwrap()
    );
    assert!(
        s.due(DueKind::Reminder, at("2030-01-01T00:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    // A key that was never due cannot be advanced (and is not created by trying).
    assert!(
        !s.advance_due(
            DueKind::Billing,
            "ghost",
            due,
            Some(next),
            &shared::effects::Effects::default()
        )
        .await
        .unwrap()
    );
    assert!(
        s.due(DueKind::Billing, at("2030-01-01T00:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// DESIGN target: a sweep reads the items due, not the table (items read / items due <= 1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ppl_2_sweep_reads_only_what_is_due() {
    const RECORDS: usize = 2000;
    const DUE_EVERY: usize = 100; // 1% due
    let t = table("due-sweep").await;
    let store = Arc::new(t.store.clone());
    let now = at("2026-06-01T00:00:00Z");
    let mut seeding = tokio::task::JoinSet::new();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(RECORDS / 20) {
        let (store, chunk) = (store.clone(), chunk.to_vec());
        seeding.spawn(async move {
            for i in chunk {
                let due: Timestamp = if i % DUE_EVERY == 0 {
                    now - SignedDuration::from_hours(i as i64 + 1)
                } else {
                    now + SignedDuration::from_mins(i as i64 + 1)
                };
                store
                    .set_due(DueKind::Billing, &format!("sub-{i:05}"), Some(due))
                    .await
                    .unwrap();
                // The other kind of work lives in its own partition: never read by this sweep.
                store
                    .set_due(DueKind::Reminder, &format!("agent-{i:05}"), Some(now))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = seeding.join_next().await {
        done.unwrap();
    }

    let scan = t
        .store
        .due_with_capacity(DueKind::Billing, now)
        .await
        .unwrap();
    let expected = RECORDS / DUE_EVERY;
    assert_eq!(scan.due.len(), expected);
    assert!(
        scan.due.windows(2).all(|w| w[0].1 <= w[1].1),
        "earliest first"
    );
    let ratio = scan.items_read as f64 / scan.due.len() as f64;
    println!(
        "sweep: {} due of {} records ({} of each kind), items read {}, ratio {ratio:.3}, \
         {:.1} RCU, {} page(s)",
        scan.due.len(),
        RECORDS * 2,
        RECORDS,
        scan.items_read,
        scan.capacity_units,
        scan.pages
    );
    assert!(
        ratio <= 1.1,
        "read {} items for {} due",
        scan.items_read,
        scan.due.len()
    );
    assert!(scan.capacity_units > 0.0, "capacity is reported");
}

#[tokio::test]
async fn gen_5_a_once_only_effect_is_done_once_and_a_failed_one_goes_back() {
    let t = table("idempotency").await;
    let s = &t.store;
    let lease = SignedDuration::from_mins(15);
    let keep = SignedDuration::from_hours(24);
    assert_eq!(s.begin("sms:r1:a1", lease).await.unwrap(), Begun::First);
    // While the first attempt holds it, another waits.
    assert_eq!(
        s.begin("sms:r1:a1", lease).await.unwrap(),
        Begun::InProgress
    );
    s.finish("sms:r1:a1", keep, None, &[]).await.unwrap();
    assert_eq!(s.begin("sms:r1:a1", lease).await.unwrap(), Begun::Done);
    // The effect failed: let go, the retry performs it (once).
    assert_eq!(s.begin("sms:r1:a2", lease).await.unwrap(), Begun::First);
    s.abandon("sms:r1:a2").await.unwrap();
    assert_eq!(s.begin("sms:r1:a2", lease).await.unwrap(), Begun::First);
    s.abandon("never-recorded").await.unwrap();
}

#[tokio::test]
async fn ef_1_an_attempt_that_died_holding_an_effect_is_taken_over_when_its_lease_runs_out() {
    let t = table("leases").await;
    let s = &t.store;
    // Leases are whole seconds on the table: one that ended a second ago has run out.
    assert_eq!(
        s.begin("email:r2", -SignedDuration::from_secs(2))
            .await
            .unwrap(),
        Begun::First
    );
    assert_eq!(
        s.begin("email:r2", SignedDuration::from_mins(15))
            .await
            .unwrap(),
        Begun::First,
        "the dead attempt's effect is taken again"
    );
    assert_eq!(
        s.begin("email:r2", SignedDuration::from_mins(15))
            .await
            .unwrap(),
        Begun::InProgress
    );
}

#[tokio::test]
async fn ef_1_finishing_an_effect_writes_its_history_with_it() {
    let t = table("finish-history").await;
    let s = &t.store;
    let r = referral("r9", &["a1".parse().unwrap()]);
    s.create_referral(&r, &[], &shared::effects::Effects::default())
        .await
        .unwrap();
    assert_eq!(
        s.begin("notify#r9#a1#sms", SignedDuration::from_mins(15))
            .await
            .unwrap(),
        Begun::First
    );
    let notified = shared::domain::referral::HistoryEntry::new(
        at("2026-01-01T00:00:01Z"),
        None,
        shared::domain::referral::HistoryEvent::Notified {
            agent_id: "a1".parse().unwrap(),
            channel: "sms".into(),
        },
    );
    s.finish(
        "notify#r9#a1#sms",
        SignedDuration::from_hours(24),
        Some(&r.id),
        std::slice::from_ref(&notified),
    )
    .await
    .unwrap();
    assert_eq!(s.history(&r.id).await.unwrap(), vec![notified]);
}
