//! What the stack would be billed for, counted on the wire: every AWS request a function makes
//! (by service and operation, as the permission check reads it), every Lambda invocation (by
//! function), every HTTP API request, every SQS batch an event source receives and deletes, and
//! every schedule fired. `GET /_local/requests` answers the counts so far; `make bench` reads them
//! before and after one referral's life to price it.
//!
//! One meter per runner process: the runner is the one account it plays, so a process-wide
//! counter is what AWS's bill is, without threading a handle through every poller.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use serde_json::{Value, json};

static COUNTS: LazyLock<Mutex<BTreeMap<String, u64>>> = LazyLock::new(Mutex::default);
/// The AWS requests again, by the function that made them: where a cut would come from.
static BY_FUNCTION: LazyLock<Mutex<BTreeMap<String, BTreeMap<String, u64>>>> =
    LazyLock::new(Mutex::default);

/// Counts `n` more of `what` (e.g. `dynamodb PutItem`, `lambda Invoke claim`).
pub fn count(what: impl Into<String>, n: u64) {
    let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    *counts.entry(what.into()).or_default() += n;
}

/// `{"counts": {"<service> <operation>": n, ...}, "byFunction": {"<function>": {...}}}` for
/// `GET /_local/requests`.
pub fn snapshot() -> Value {
    let counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let by_function = BY_FUNCTION
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json!({ "counts": counts, "byFunction": by_function })
}

/// The name a request is counted under: SNS's `Publish` is a text when it names a phone number
/// and a push when it names an endpoint, priced apart; a transaction also counts its items, each
/// of which is billed as two units.
pub fn aws_request(function: &str, service: &str, operation: &str, body: &[u8]) {
    {
        let mut by_function = BY_FUNCTION.lock().unwrap_or_else(|e| e.into_inner());
        *by_function
            .entry(function.to_owned())
            .or_default()
            .entry(format!("{service} {operation}"))
            .or_default() += 1;
    }
    match (service, operation) {
        ("sns", "Publish") => {
            let fields: BTreeMap<String, String> = form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let kind = if fields.contains_key("PhoneNumber") {
                "sns Publish SMS"
            } else {
                "sns Publish push"
            };
            count(kind, 1);
        }
        ("dynamodb", "TransactWriteItems" | "TransactGetItems") => {
            count(format!("{service} {operation}"), 1);
            let items = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| {
                    v.get("TransactItems")
                        .and_then(Value::as_array)
                        .map(Vec::len)
                })
                .unwrap_or(0);
            count(format!("{service} {operation} items"), items as u64);
        }
        _ => count(format!("{service} {operation}"), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(what: &str) -> u64 {
        snapshot()["counts"][what].as_u64().unwrap_or(0)
    }

    #[test]
    fn a_text_and_a_push_are_counted_apart_and_a_transaction_counts_its_items() {
        let (sms, push, items) = (
            counted("sns Publish SMS"),
            counted("sns Publish push"),
            counted("dynamodb TransactWriteItems items"),
        );
        aws_request(
            "f",
            "sns",
            "Publish",
            b"Action=Publish&PhoneNumber=%2B15550100&Message=hi",
        );
        aws_request(
            "f",
            "sns",
            "Publish",
            b"Action=Publish&TargetArn=arn%3Aaws%3Asns&Message=hi",
        );
        aws_request(
            "f",
            "dynamodb",
            "TransactWriteItems",
            br#"{"TransactItems":[{"Put":{}},{"Update":{}},{"ConditionCheck":{}}]}"#,
        );
        assert_eq!(counted("sns Publish SMS"), sms + 1);
        assert_eq!(counted("sns Publish push"), push + 1);
        assert_eq!(counted("dynamodb TransactWriteItems items"), items + 3);
    }
}
