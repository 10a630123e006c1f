//! The scheduled fixture through the billing handler.

use lambda_runtime::{Context, LambdaEvent};
use shared::app::Actor;
use shared::app::billing::sign_up;
use shared::app::claim::claim_referral;
use shared::app::intake::create_referral;
use shared::domain::billing::SignUp;
use shared::domain::referral::ClaimChannel;
use shared::domain::values::ClientType;
use shared::fixtures::event;
use shared::fixtures::seed_example;
use shared::memory::in_memory_services;
use shared::ports::SubscriptionStore;

#[tokio::test]
async fn ppl_2_ppl_11_scheduled_fixture_charges_a_cycle_once_for_what_it_received() {
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
    // Ana receives the example pay-per-lead buyer (call-first: claimed by phone), $60 in 94110.
    let advisor = Actor {
        user: "advisor-1".parse().unwrap(),
        role: shared::app::Role::Advisor,
    };
    let body = shared::fixtures::json("intake", "new-ppl-referral")["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).unwrap())
        .unwrap();
    let lead = create_referral(&s, &advisor, body, None, start)
        .await
        .unwrap();
    claim_referral(
        &s,
        &"ana".parse().unwrap(),
        &lead.id,
        ClaimChannel::Call,
        start,
    )
    .await
    .unwrap();
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
    assert_eq!(charges[0].amount.to_string(), "60.00");
    assert_eq!(charges[0].referrals.len(), 1);
}
