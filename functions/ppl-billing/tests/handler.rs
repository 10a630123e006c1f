//! The scheduled fixture through the billing handler.

use lambda_runtime::{Context, LambdaEvent};
use shared::app::Actor;
use shared::app::billing::sign_up;
use shared::domain::billing::SignUp;
use shared::domain::values::ClientType;
use shared::fixtures::event;
use shared::fixtures::seed_example;
use shared::memory::in_memory_services;
use shared::ports::SubscriptionStore;

#[tokio::test]
async fn ppl_2_scheduled_fixture_charges_a_cycle_once_even_when_fired_twice() {
    let (s, store, _) = in_memory_services();
    let start = "2027-01-01T00:00:00Z".parse().unwrap();
    seed_example(&store, start).await;
    let ana = Actor {
        user: "ana".parse().unwrap(),
        role: shared::app::Role::Agent,
    };
    let request = SignUp {
        zips: ["94110".parse().unwrap()].into(),
        client_types: [ClientType::Buyer].into(),
        referrals_per_cycle: 2,
    };
    let sub = sign_up(&s, &ana, request, None, start)
        .await
        .unwrap()
        .0
        .subscription;
    for _ in 0..2 {
        let out = ppl_billing::handle(
            &s,
            LambdaEvent::new(event("ppl-billing", "scheduled"), Context::default()),
        )
        .await
        .unwrap();
        assert!(out["charged"].is_array());
    }
    let charges = store.charges(&sub.id).await.unwrap();
    assert_eq!(charges.iter().map(|c| c.cycle).collect::<Vec<_>>(), vec![1]);
    assert_eq!(charges[0].amount.to_string(), "120.00");
}
