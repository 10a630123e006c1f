//! The stream fixtures through the outbox handler: a change's committed effects relayed, a
//! referral claimed by ana (then a later change to it, which is not a claim), and failures.

use lambda_runtime::{Context, LambdaEvent};
use shared::domain::referral::ClaimChannel;
use shared::fixtures::{event, seed_example};
use shared::memory::{Fault, Sent, Service, in_memory_services};
use shared::ports::ReferralStore;

fn stream(name: &str) -> LambdaEvent<aws_lambda_events::event::dynamodb::Event> {
    LambdaEvent::new(event("outbox", name), Context::default())
}

#[tokio::test]
async fn ef_1_a_committed_outbox_item_reaches_the_queue_the_bus_and_the_scheduler() {
    let (s, _, outbox) = in_memory_services();
    let answer = outbox::handle(&s, stream("stream-effects")).await.unwrap();
    assert!(answer.batch_item_failures.is_empty());
    let sent = outbox.sent();
    let queued: Vec<&str> = sent
        .iter()
        .filter_map(|x| match x {
            Sent::Queued(d) => Some(d.key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(queued, ["notify#ref-9#ana#sms", "notify#ref-9#ana#push"]);
    assert!(
        sent.iter().any(
            |x| matches!(x, Sent::Event(t, d) if t == "StageChanged" && d.contains("in_escrow"))
        )
    );
    assert!(
        sent.iter()
            .any(|x| matches!(x, Sent::Scheduled(t) if t.name == "coming-soon-ref-1"))
    );
}

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
        let answer = outbox::handle(&s, stream("stream-claimed")).await.unwrap();
        assert!(answer.batch_item_failures.is_empty());
    }
    shared::memory::deliver(&s, &outbox, at).await.unwrap();
    let emails = outbox.emails();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].to.as_str(), "ana@agents.example.com");
    assert!(emails[0].body.contains("casey@example.com"));
}

#[tokio::test]
async fn ef_2_a_transient_failure_is_reported_for_redelivery_and_the_retry_performs_it() {
    let (s, _, outbox) = in_memory_services();
    outbox.faults.inject_next(Service::Bus, Fault::Fails);
    let answer = outbox::handle(&s, stream("stream-effects")).await.unwrap();
    assert_eq!(answer.batch_item_failures.len(), 1);
    assert_eq!(
        answer.batch_item_failures[0].item_identifier.as_deref(),
        Some("100000000000000000010")
    );
    // The stream delivers the record again: the event goes out, the deliveries are queued again
    // (the broadcast consumer sends each once).
    let answer = outbox::handle(&s, stream("stream-effects")).await.unwrap();
    assert!(answer.batch_item_failures.is_empty());
    let events = outbox
        .sent()
        .into_iter()
        .filter(|x| matches!(x, Sent::Event(..)))
        .count();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn ef_2_a_refusal_is_not_retried() {
    // No such referral in an empty store: nothing to follow up, and nothing to retry.
    let (s, _, outbox) = in_memory_services();
    let answer = outbox::handle(&s, stream("stream-claimed")).await.unwrap();
    assert!(answer.batch_item_failures.is_empty());
    assert!(outbox.sent().is_empty());
}
