//! The `ReferralClaimed` fixture through the follow-up handler.

use lambda_runtime::{Context, LambdaEvent};
use shared::domain::referral::ClaimChannel;
use shared::fixtures::event;
use shared::memory::{in_memory_services, seed_example};
use shared::ports::ReferralStore;

#[tokio::test]
async fn ppl_3_claimed_fixture_emails_the_winner_the_client_once() {
    let (s, store, outbox) = in_memory_services();
    let at = "2027-01-01T00:00:00Z".parse().unwrap();
    seed_example(&store, at).await;
    store
        .claim(
            &"ref-1".parse().unwrap(),
            &"ana".parse().unwrap(),
            ClaimChannel::Sms,
            "2027-01-01T00:00:30Z".parse().unwrap(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        claim_followup::handle(
            &s,
            LambdaEvent::new(
                event("claim-followup", "referral-claimed"),
                Context::default(),
            ),
        )
        .await
        .unwrap();
    }
    let emails = outbox.emails();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].to.as_str(), "ana@agents.example.com");
    assert!(emails[0].body.contains("casey@example.com"));
}
