//! The SQS batch fixture through the broadcast consumer.

use lambda_runtime::{Context, LambdaEvent};
use shared::fixtures::event;
use shared::fixtures::seed_example;
use shared::memory::{Sent, in_memory_services};

#[tokio::test]
async fn gen_5_batch_notifies_each_channel_once_and_fails_only_the_poison_message() {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    for _ in 0..2 {
        let out = broadcast::handle(
            &s,
            LambdaEvent::new(event("broadcast", "sqs-batch"), Context::default()),
        )
        .await
        .unwrap();
        let failed: Vec<_> = out
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec!["m-bad"]);
    }
    let sent = outbox.sent();
    let count = |f: fn(&Sent) -> bool| sent.iter().filter(|x| f(x)).count();
    assert_eq!(count(|x| matches!(x, Sent::Sms { .. })), 1);
    assert_eq!(count(|x| matches!(x, Sent::Push { .. })), 1);
    assert_eq!(count(|x| matches!(x, Sent::Email(_))), 1);
}
