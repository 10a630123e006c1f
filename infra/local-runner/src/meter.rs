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
/// Each text, push and email handed to SNS or SES: when (milliseconds since the epoch) and to
/// whom (a phone, a device's platform endpoint, an address), for the speed to lead of the whole
/// system.
static SENDS: LazyLock<Mutex<Vec<(f64, String)>>> = LazyLock::new(Mutex::default);
/// Platform endpoints by the device token they were made for, to name a push's device.
static ENDPOINTS: LazyLock<Mutex<BTreeMap<String, String>>> = LazyLock::new(Mutex::default);
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
    let endpoints = ENDPOINTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let sends: Vec<Value> = SENDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(at, to)| json!({"at": at, "to": endpoints.get(to).unwrap_or(to)}))
        .collect();
    json!({ "counts": counts, "byFunction": by_function, "sends": sends })
}

fn sent(to: String) {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    SENDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((at, to));
}

/// SNS made endpoint `arn` for device `token` (from `CreatePlatformEndpoint`'s request and
/// answer).
pub fn endpoint(request: &[u8], answer: &[u8]) {
    let token = form_urlencoded::parse(request).find(|(k, _)| k == "Token");
    let arn = std::str::from_utf8(answer).ok().and_then(|text| {
        let start = text.find("<EndpointArn>")? + "<EndpointArn>".len();
        let end = start + text[start..].find("</EndpointArn>")?;
        Some(text[start..end].to_owned())
    });
    if let (Some((_, token)), Some(arn)) = (token, arn) {
        ENDPOINTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(arn, token.into_owned());
    }
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
            let (kind, to) = match fields.get("PhoneNumber") {
                Some(phone) => ("sns Publish SMS", phone.clone()),
                None => (
                    "sns Publish push",
                    fields.get("TargetArn").cloned().unwrap_or_default(),
                ),
            };
            count(kind, 1);
            sent(to);
        }
        ("ses", "SendEmail") => {
            count("ses SendEmail", 1);
            let to = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| {
                    v["Destination"]["ToAddresses"][0]
                        .as_str()
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            sent(to);
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
