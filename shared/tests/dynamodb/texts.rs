//! Texts and identity on DynamoDB Local: opt-outs (TX-2), the count of a phone's wrong codes and
//! PINs, and each caller's requests per minute (TX-5).

use std::sync::Arc;

use shared::domain::values::Phone;
use shared::ports::{ClaimLines, RequestCounter};

use crate::harness::{at, table};

fn phone() -> Phone {
    "+14155550100".parse().unwrap()
}

#[tokio::test]
async fn tx_2_an_opt_out_is_recorded_and_removed() {
    let t = table("opt-out").await;
    assert!(!t.store.opted_out(&phone()).await.unwrap());
    t.store.set_opted_out(&phone(), true).await.unwrap();
    // A STOP delivered twice is one opt-out.
    t.store.set_opted_out(&phone(), true).await.unwrap();
    assert!(t.store.opted_out(&phone()).await.unwrap());
    t.store.set_opted_out(&phone(), false).await.unwrap();
    assert!(!t.store.opted_out(&phone()).await.unwrap());
}

#[tokio::test]
async fn tx_5_wrong_guesses_count_for_an_hour_from_the_first_then_start_again() {
    let t = table("guesses").await;
    assert_eq!(t.store.wrong_guesses(&phone()).await.unwrap(), None);
    let first = at("2026-03-02T17:00:00Z");
    for (n, when) in [
        (1, "2026-03-02T17:00:00Z"),
        (2, "2026-03-02T17:20:00Z"),
        (3, "2026-03-02T17:59:59Z"),
    ] {
        let g = t.store.count_wrong_guess(&phone(), at(when)).await.unwrap();
        assert_eq!((g.count, g.since), (n, first));
    }
    let g = t.store.wrong_guesses(&phone()).await.unwrap().unwrap();
    assert!(g.locked(at("2026-03-02T17:59:59Z")));
    assert!(!g.locked(at("2026-03-02T18:00:00Z")));
    // Past the hour, the next wrong guess starts a new count.
    let g = t
        .store
        .count_wrong_guess(&phone(), at("2026-03-02T18:00:00Z"))
        .await
        .unwrap();
    assert_eq!((g.count, g.since), (1, at("2026-03-02T18:00:00Z")));
}

#[tokio::test]
async fn tx_5_concurrent_wrong_guesses_are_each_counted() {
    let t = Arc::new(table("guesses-race").await);
    let now = at("2026-03-02T17:00:00Z");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            t.store.count_wrong_guess(&phone(), now).await.unwrap()
        }));
    }
    let mut counts: Vec<u32> = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap().count);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=8).collect::<Vec<u32>>());
}

#[tokio::test]
async fn tx_5_requests_are_counted_per_caller_and_minute() {
    let t = table("requests").await;
    let minute = at("2026-03-02T17:01:00Z");
    for n in 1..=3 {
        assert_eq!(t.store.count_request("user#a1", minute).await.unwrap(), n);
    }
    assert_eq!(t.store.count_request("user#a2", minute).await.unwrap(), 1);
    let next = at("2026-03-02T17:02:00Z");
    assert_eq!(t.store.count_request("user#a1", next).await.unwrap(), 1);
}
