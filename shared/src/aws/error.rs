//! AWS SDK failures to [`SendError`], in one place for every adapter in this folder.
//!
//! The SDK has already retried transient faults with its standard policy by the time an error
//! reaches us, so what is decided here is what the *caller* does next: `Retryable` hands the
//! work back to the Lambda event source (the message is redelivered later), `Rejected` means the
//! same request will never succeed, so retrying it would only burn invocations.
//!
//! | failure | becomes |
//! |---|---|
//! | throttling codes, HTTP 429 and 5xx, timeouts, connection failures, unreadable responses | `Retryable`, keeping the SDK error as its source |
//! | any other service error (validation, not found, not authorised: the 4xx family) | `Rejected`, naming the operation, code and message |
//! | a request the SDK could not even build | `Rejected` |

use std::error::Error;
use std::fmt;

use aws_sdk_sns::config::http::HttpResponse;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};

use crate::ports::SendError;

/// Error codes that mean "busy, try again later" across SNS, SQS, SESv2, EventBridge and
/// Scheduler. Some of them come back with a 400 status, so the status alone is not enough.
const RETRYABLE_CODES: [&str; 14] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "KMSThrottlingException",
    "SlowDown",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerException",
];

/// Whether an error code names a transient fault.
pub(crate) fn is_retryable_code(code: &str) -> bool {
    RETRYABLE_CODES.contains(&code)
}

/// An AWS call that failed: which operation, what the service said, and the SDK error.
#[derive(Debug)]
pub struct AwsCallError {
    operation: &'static str,
    code: Option<String>,
    message: Option<String>,
    source: Box<dyn Error + Send + Sync>,
}

impl fmt::Display for AwsCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation)?;
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => write!(f, ": {c}: {m}"),
            (Some(c), None) => write!(f, ": {c}"),
            // Without service metadata the SDK error's own chain is the only clue.
            (None, _) => write!(
                f,
                ": {}",
                aws_sdk_sns::error::DisplayErrorContext(self.source.as_ref())
            ),
        }
    }
}

impl Error for AwsCallError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Maps a failed SDK call. `operation` names it for the message, e.g. `"SNS Publish"`.
pub(crate) fn send_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> SendError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            status == 429 || status >= 500 || service.err().code().is_some_and(is_retryable_code)
        }
        // ConstructionFailure, and any kind a future SDK adds: the request itself is wrong.
        _ => false,
    };
    let call = AwsCallError {
        operation,
        code: err.code().map(str::to_owned),
        message: err.message().map(str::to_owned),
        source: Box::new(err),
    };
    if retryable {
        SendError::Retryable(Box::new(call))
    } else {
        SendError::Rejected(call.to_string())
    }
}

/// A failure reported inside a successful response (a failed batch entry, a failed event entry).
pub(crate) fn entry_error(
    operation: &'static str,
    code: Option<&str>,
    message: Option<&str>,
) -> SendError {
    let call = AwsCallError {
        operation,
        code: code.map(str::to_owned),
        message: message.map(str::to_owned),
        source: "the entry was not accepted".into(),
    };
    if code.is_some_and(is_retryable_code) {
        SendError::Retryable(Box::new(call))
    } else {
        SendError::Rejected(call.to_string())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sns::error::ErrorMetadata;
    use aws_sdk_sns::operation::publish::PublishError;

    use super::*;

    fn service_error(status: u16, code: &str) -> SdkError<PublishError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("from the test")
            .build();
        let raw = HttpResponse::new(status.try_into().unwrap(), "".into());
        SdkError::service_error(PublishError::generic(meta), raw)
    }

    #[test]
    fn throttling_and_server_faults_are_retryable_with_their_cause() {
        for (status, code) in [
            (400, "Throttling"),
            (400, "ThrottlingException"),
            (429, "TooManyRequestsException"),
            (500, "InternalError"),
            (503, "Whatever"),
        ] {
            let err = send_error("SNS Publish", service_error(status, code));
            match err {
                SendError::Retryable(source) => {
                    assert!(source.to_string().contains(code), "{source}");
                    assert!(source.source().is_some());
                }
                other => panic!("{status} {code}: expected retryable, got {other:?}"),
            }
        }
    }

    #[test]
    fn validation_faults_are_rejected_naming_the_operation_and_code() {
        let err = send_error("SNS Publish", service_error(400, "InvalidParameter"));
        match err {
            SendError::Rejected(text) => {
                assert_eq!(text, "SNS Publish failed: InvalidParameter: from the test");
            }
            other => panic!("expected rejected, got {other:?}"),
        }
    }

    #[test]
    fn timeouts_and_connection_failures_are_retryable() {
        let timeout: SdkError<PublishError, HttpResponse> = SdkError::timeout_error("too slow");
        assert!(matches!(
            send_error("SNS Publish", timeout),
            SendError::Retryable(_)
        ));
        let construction: SdkError<PublishError, HttpResponse> =
            SdkError::construction_failure("bad input");
        assert!(matches!(
            send_error("SNS Publish", construction),
            SendError::Rejected(_)
        ));
    }

    #[test]
    fn failed_entries_follow_the_same_codes() {
        assert!(matches!(
            entry_error("SQS SendMessageBatch", Some("InternalError"), None),
            SendError::Retryable(_)
        ));
        assert!(matches!(
            entry_error(
                "SQS SendMessageBatch",
                Some("InvalidParameterValue"),
                Some("no")
            ),
            SendError::Rejected(_)
        ));
    }
}
