//! DynamoDB failures to `StoreError`, in one place.
//!
//! A failed condition is never an error here: each operation turns it into its domain outcome
//! (`ClaimOutcome::Refused`, `Saved::Stale`, `false`) with `condition_failed` or
//! `cancelled_by_condition` first. What is left maps as follows: throttling and transaction
//! conflicts are `Retryable`; everything else is `Internal`, keeping the SDK error as its source.

use std::any::Any;
use std::collections::HashMap;
use std::error::Error;
use std::fmt;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason};

use crate::ports::StoreError;

/// Error codes of a whole request that mean "busy, try again".
const RETRYABLE_CODES: [&str; 5] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    // A single-item write that collided with a transaction in flight.
    "TransactionConflictException",
    "TransactionInProgressException",
];

/// Codes of one item's `CancellationReason` that make a cancelled transaction retryable.
const RETRYABLE_REASONS: [&str; 3] = [
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
];

const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
const CONDITION_FAILED_REASON: &str = "ConditionalCheckFailed";

/// A DynamoDB call that failed, with the operation it was and the SDK error as its source.
#[derive(Debug)]
pub struct DynamoDbError {
    operation: &'static str,
    code: Option<String>,
    message: Option<String>,
    source: Box<dyn Error + Send + Sync>,
}

impl fmt::Display for DynamoDbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DynamoDB {} failed", self.operation)?;
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => write!(f, ": {c}: {m}"),
            (Some(c), None) => write!(f, ": {c}"),
            (None, _) => write!(f, ": {}", self.source),
        }
    }
}

impl Error for DynamoDbError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Maps an SDK error that is not a business outcome.
pub(crate) fn store_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let message = err.message().map(str::to_owned);
    let retryable = code
        .as_deref()
        .is_some_and(|c| RETRYABLE_CODES.contains(&c))
        || cancellation_reasons(&err)
            .iter()
            .any(|r| r.code().is_some_and(|c| RETRYABLE_REASONS.contains(&c)));
    let wrapped = Box::new(DynamoDbError {
        operation,
        code,
        message,
        source: Box::new(err),
    });
    if retryable {
        StoreError::Retryable(wrapped)
    } else {
        StoreError::Internal(wrapped)
    }
}

/// Whether a single-item write was refused by its condition expression.
pub(crate) fn condition_failed<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    err.code() == Some(CONDITION_FAILED)
}

/// The old item a refused single-item write returned with `ReturnValuesOnConditionCheckFailure`.
pub(crate) type OldItem = Option<HashMap<String, AttributeValue>>;

/// If a transaction was cancelled because the condition of its item `index` failed (and not for a
/// retryable reason), the old item that write returned, if any.
pub(crate) fn cancelled_by_condition<R>(
    err: &SdkError<TransactWriteItemsError, R>,
    index: usize,
) -> Option<OldItem> {
    let reasons = cancellation_reasons(err);
    let reason = reasons.get(index)?;
    (reason.code() == Some(CONDITION_FAILED_REASON)).then(|| reason.item().cloned())
}

/// Whether a cancelled transaction failed any of its conditions.
pub(crate) fn cancelled_by_any_condition<R>(err: &SdkError<TransactWriteItemsError, R>) -> bool {
    cancellation_reasons(err)
        .iter()
        .any(|r| r.code() == Some(CONDITION_FAILED_REASON))
}

/// The per-item reasons of a cancelled transaction; empty for any other error. Generic so that
/// `store_error` can look inside a `TransactWriteItems` failure without a separate mapper.
fn cancellation_reasons<E: 'static, R>(err: &SdkError<E, R>) -> &[CancellationReason] {
    let Some(service) = err.as_service_error() else {
        return &[];
    };
    match (service as &dyn Any).downcast_ref::<TransactWriteItemsError>() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => e.cancellation_reasons(),
        _ => &[],
    }
}

/// A request that could not be built or an item that could not be encoded: a bug, not the table.
pub(crate) fn internal(err: impl Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(err))
}

/// Too many optimistic retries against concurrent writers.
#[derive(Debug, thiserror::Error)]
#[error("{0}: still contended after retries")]
pub(crate) struct Contended(pub &'static str);

/// The raw result of an SDK call whose error the caller interprets before mapping it.
pub(crate) type SdkResult<E> =
    Result<(), SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>;
