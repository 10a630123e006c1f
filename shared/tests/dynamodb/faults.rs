//! Faults DynamoDB Local cannot produce (throttling, transaction conflicts), from mocked HTTP
//! responses shaped as DynamoDB sends them, so the SDK's own error parsing runs.

use std::error::Error;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use shared::domain::referral::ClaimChannel;
use shared::dynamodb::DynamoDbStore;
use shared::ports::{AgentDirectory, ReferralStore, StoreError, SubscriptionStore};

use crate::harness::{at, id, referral};

/// A client whose every call is answered by `rules`, with the SDK's retries off so that one
/// fault is one answer.
fn mocked(rules: &[&Rule]) -> DynamoDbStore {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .retry_config(RetryConfig::disabled())
        .build();
    DynamoDbStore::new(Client::from_conf(config), "mocked")
}

/// A DynamoDB error body, as the service sends it.
fn error_body(code: &str, message: &str) -> String {
    format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{message}"}}"#)
}

fn cancelled_body(first_reason: &str) -> String {
    format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [{first_reason}, None]",
            "CancellationReasons":[{{"Code":"{first_reason}","Message":"busy"}},{{"Code":"None"}}]}}"#
    )
}

fn chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(" <- ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[tokio::test]
async fn wt_4_throttled_claim_is_retryable() {
    let throttled = mock!(Client::update_item)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ProvisionedThroughputExceededException",
                "slow down",
            )),
        )
        .repeatedly()
        .build();
    let store = mocked(&[&throttled]);
    let err = store
        .claim(
            &id("r1"),
            &id("a1"),
            ClaimChannel::App,
            at("2026-01-01T00:00:00Z"),
        )
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        chain(&err).contains("ProvisionedThroughputExceededException"),
        "{}",
        chain(&err)
    );
    assert_eq!(throttled.num_calls(), 1);
}

#[tokio::test]
async fn throttling_exception_on_a_read_is_retryable() {
    let throttled = mock!(Client::get_item)
        .sequence()
        .http_status(
            400,
            Some(error_body("ThrottlingException", "rate exceeded")),
        )
        .repeatedly()
        .build();
    let store = mocked(&[&throttled]);
    let err = store.get_agent(&id("a1")).await.unwrap_err();
    assert!(matches!(err, StoreError::Retryable(_)), "{err:?}");
}

#[tokio::test]
async fn gen_5_transaction_conflict_is_retryable_not_a_lost_claim_or_stale_update() {
    // A claim that meets a transaction in flight on its item (one UpdateItem).
    let busy_item = mock!(Client::update_item)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "TransactionConflictException",
                "transaction in progress",
            )),
        )
        .repeatedly()
        .build();
    // A versioned update or a create that conflicts with another transaction.
    let conflict = mock!(Client::transact_write_items)
        .sequence()
        .http_status(400, Some(cancelled_body("TransactionConflict")))
        .repeatedly()
        .build();
    let store = mocked(&[&busy_item, &conflict]);
    let claim = store
        .claim(
            &id("r1"),
            &id("a1"),
            ClaimChannel::App,
            at("2026-01-01T00:00:00Z"),
        )
        .await;
    assert!(matches!(claim, Err(StoreError::Retryable(_))), "{claim:?}");
    let update = store
        .update_referral(
            &referral("r1", &[id("a1")]),
            1,
            &[],
            &shared::effects::Effects::default(),
        )
        .await;
    assert!(
        matches!(update, Err(StoreError::Retryable(_))),
        "{update:?}"
    );
    let create = store
        .create_referral(
            &referral("r1", &[id("a1")]),
            &[],
            &shared::effects::Effects::default(),
        )
        .await;
    assert!(
        matches!(create, Err(StoreError::Retryable(_))),
        "{create:?}"
    );
}

#[tokio::test]
async fn other_failures_are_internal_and_keep_their_cause() {
    let missing_table = mock!(Client::transact_write_items)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ResourceNotFoundException",
                "Requested resource not found",
            )),
        )
        .repeatedly()
        .build();
    let store = mocked(&[&missing_table]);
    let charge = shared::ports::Charge {
        cycle: 1,
        amount: id("1.00"),
        at: at("2026-01-01T00:00:00Z"),
        referrals: Vec::new(),
    };
    let err = store
        .record_charge(&id("s1"), &charge, &shared::effects::Effects::default())
        .await
        .unwrap_err();
    let StoreError::Internal(cause) = &err else {
        panic!("expected Internal, got {err:?}");
    };
    assert!(cause.to_string().contains("TransactWriteItems"), "{cause}");
    assert!(
        cause.to_string().contains("ResourceNotFoundException"),
        "{cause}"
    );
    // The SDK error itself is still reachable as a source.
    assert!(
        err.source().and_then(|s| s.source()).is_some(),
        "{}",
        chain(&err)
    );
}
