//! The scheduled fixture through the reminders handler.

use lambda_runtime::{Context, LambdaEvent};
use shared::domain::referral::ClaimChannel;
use shared::fixtures::event;
use shared::memory::{Sent, in_memory_services, seed_example};
use shared::ports::{DueKind, DueWork, ReferralStore};

#[tokio::test]
async fn rm_2_scheduled_fixture_reminds_a_due_agent_once_even_when_fired_twice() {
    let (s, store, outbox) = in_memory_services();
    let at = "2027-01-01T00:00:00Z".parse().unwrap();
    seed_example(&store, at).await;
    store
        .claim(
            &"ref-1".parse().unwrap(),
            &"ana".parse().unwrap(),
            ClaimChannel::App,
            at,
        )
        .await
        .unwrap();
    store
        .set_due(
            DueKind::Reminder,
            "ana",
            Some("2027-01-15T00:00:00Z".parse().unwrap()),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        reminders::handle(
            &s,
            LambdaEvent::new(event("reminders", "scheduled"), Context::default()),
        )
        .await
        .unwrap();
    }
    let emails: Vec<_> = outbox
        .sent()
        .into_iter()
        .filter(|x| matches!(x, Sent::Email(_)))
        .collect();
    assert_eq!(emails.len(), 1);
}
