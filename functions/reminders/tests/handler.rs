//! The scheduled fixture through the reminders handler.

use lambda_runtime::{Context, LambdaEvent};
use shared::fixtures::claimed_example;
use shared::fixtures::event;
use shared::memory::Sent;
use shared::ports::{DueKind, DueWork};

#[tokio::test]
async fn rm_2_scheduled_fixture_reminds_a_due_agent_once_even_when_fired_twice() {
    let at = "2027-01-01T00:00:00Z".parse().unwrap();
    let (s, store, outbox) = claimed_example(at).await;
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
