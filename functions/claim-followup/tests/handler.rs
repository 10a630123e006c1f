//! The stream fixture through the follow-up handler: a referral claimed by ana, then a later
//! change to the same referral (which is not a claim).

use lambda_runtime::{Context, LambdaEvent};
use shared::domain::referral::ClaimChannel;
use shared::fixtures::event;
use shared::fixtures::seed_example;
use shared::memory::in_memory_services;
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
        let answer = claim_followup::handle(
            &s,
            LambdaEvent::new(
                event("claim-followup", "stream-claimed"),
                Context::default(),
            ),
        )
        .await
        .unwrap();
        assert!(answer.batch_item_failures.is_empty());
    }
    let emails = outbox.emails();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].to.as_str(), "ana@agents.example.com");
    assert!(emails[0].body.contains("casey@example.com"));
}

#[tokio::test]
async fn gen_5_a_failing_record_is_reported_for_redelivery() {
    // No such referral in an empty store: the follow-up fails and names the record.
    let (s, _, outbox) = in_memory_services();
    let answer = claim_followup::handle(
        &s,
        LambdaEvent::new(
            event("claim-followup", "stream-claimed"),
            Context::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(answer.batch_item_failures.len(), 1);
    assert_eq!(
        answer.batch_item_failures[0].item_identifier.as_deref(),
        Some("100000000000000000001")
    );
    assert!(outbox.sent().is_empty());
}
