//! The Coming Soon timer fixture through the handler (ST-3).

use lambda_runtime::{Context, LambdaEvent};
use shared::app::pipeline::change_stage;
use shared::app::{Actor, Role};
use shared::domain::stage::{Stage, StageChange};
use shared::fixtures::claimed_example;
use shared::fixtures::event;
use shared::ports::ReferralStore;

#[tokio::test]
async fn st_3_list_on_date_fixture_moves_coming_soon_to_listing_once() {
    let at = "2027-01-01T00:00:00Z".parse().unwrap();
    let (s, store, _) = claimed_example(at).await;
    let id = "ref-1".parse().unwrap();
    let ana = Actor {
        user: "ana".parse().unwrap(),
        role: Role::Agent,
    };
    let soon = StageChange {
        list_date: Some(jiff::civil::date(2027, 1, 20)),
        ..StageChange::to(Stage::ComingSoon)
    };
    change_stage(&s, &ana, &id, &soon, at).await.unwrap();
    let first = timers::handle(
        &s,
        LambdaEvent::new(event("timers", "list-on-date"), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(first["listed"], true);
    let again = timers::handle(
        &s,
        LambdaEvent::new(event("timers", "list-on-date"), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(again["listed"], false);
    let r = store.get_referral(&id).await.unwrap().unwrap().value;
    assert_eq!(r.stage(), Some(Stage::Listing));
}

#[tokio::test]
async fn wt_6_the_timeout_fixture_ends_the_unanswered_transfer_once() {
    let at = "2027-01-01T00:00:00Z".parse().unwrap();
    let (s, store, outbox) = shared::memory::in_memory_services();
    shared::fixtures::seed_example(&store, at).await;
    let fire = || {
        timers::handle(
            &s,
            LambdaEvent::new(event("timers", "warm-transfer-timeout"), Context::default()),
        )
    };
    assert_eq!(fire().await.unwrap()["timedOut"], true);
    assert_eq!(fire().await.unwrap()["timedOut"], false);
    let r = store
        .get_referral(&"wt-1".parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(r.closure.is_some());
    let routed = store
        .get_referral(&"wt-1-routed".parse().unwrap())
        .await
        .unwrap();
    assert!(routed.is_some(), "the client went to ordinary routing");
    shared::memory::deliver(&s, &outbox, at).await.unwrap();
    assert_eq!(
        outbox
            .emails()
            .iter()
            .filter(|m| m.to.as_str() == "advisors@referrals.example.com")
            .count(),
        1
    );
}

#[tokio::test]
async fn ef_2_a_timer_for_a_referral_that_is_gone_is_answered_not_retried() {
    let (s, _, _) = shared::memory::in_memory_services();
    let answer = timers::handle(
        &s,
        LambdaEvent::new(event("timers", "list-on-date"), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(answer["refused"], "not_found");
}
