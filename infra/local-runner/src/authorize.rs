//! What an AWS request asks IAM for, as each service authorizes it: the action or actions and the
//! resource of each (an ARN, or `*` where the action names none). Read from the request itself:
//! the service its signature is scoped to, the operation (`X-Amz-Target`, `Action=` or the REST
//! path) and the parameters that name resources.
//!
//! As AWS authorizes them:
//! - DynamoDB: `TransactWriteItems` item by item as `PutItem`, `UpdateItem`, `DeleteItem` or
//!   `ConditionCheckItem`, `TransactGetItems` as `GetItem`; `BatchGetItem`/`BatchWriteItem` per
//!   table; a `Query` or `Scan` with `IndexName` on the index's ARN.
//! - SQS on the queue's ARN (from `QueueUrl`); the batch operations as their single ones.
//! - SNS `Publish` on the topic or endpoint ARN, or on `*` for a phone number;
//!   `CreatePlatformEndpoint` on `*` (it supports no resource-level permission).
//! - SESv2 `SendEmail` as `ses:SendEmail` on the sender's identity.
//! - EventBridge `PutEvents` on each entry's bus.
//! - Scheduler `CreateSchedule`/`UpdateSchedule` on `schedule/<group>/<name>`, with
//!   `iam:PassRole` on the target's role (passed to `scheduler.amazonaws.com`);
//!   `DeleteSchedule`/`GetSchedule` on the schedule.

use serde_json::Value;

use crate::cloudformation::ACCOUNT;
use crate::iam::Check;

/// How a service speaks, which decides how it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `application/x-amz-json-*` with `X-Amz-Target`.
    Json,
    /// Form-encoded `Action=...`, XML answers.
    Query,
    /// REST paths with JSON bodies.
    Rest,
}

/// One request: its service (the signature's scope), operation and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub protocol: Protocol,
    pub checks: Vec<Check>,
}

/// The request as the check reads it.
pub struct Request<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub target: Option<&'a str>,
    pub body: &'a [u8],
}

fn arn(service: &str, region: &str, resource: &str) -> String {
    format!("arn:aws:{service}:{region}:{ACCOUNT}:{resource}")
}

/// What `request` asks for, or why it cannot be read.
pub fn call(request: &Request) -> Result<Call, String> {
    match request.service {
        "dynamodb" => dynamodb(request),
        "sqs" => sqs(request),
        "sns" => sns(request),
        "ses" => sesv2(request),
        "events" => events(request),
        "scheduler" => scheduler(request),
        other => Err(format!("the {other} service is not checked locally")),
    }
}

fn json_body(request: &Request) -> Value {
    serde_json::from_slice(request.body).unwrap_or(Value::Null)
}

/// The operation and parameters of a JSON (`X-Amz-Target: Prefix.Operation`) or query
/// (`Action=Operation&...`) request, the parameters as JSON either way.
fn operation(request: &Request) -> Result<(String, Protocol, Value), String> {
    if let Some(target) = request.target {
        let op = target.rsplit('.').next().unwrap_or(target).to_owned();
        return Ok((op, Protocol::Json, json_body(request)));
    }
    let mut params = serde_json::Map::new();
    for (k, v) in
        form_urlencoded::parse(request.body).chain(form_urlencoded::parse(request.query.as_bytes()))
    {
        params.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    let op = params
        .get("Action")
        .and_then(Value::as_str)
        .ok_or("the request names no operation (no X-Amz-Target, no Action)")?
        .to_owned();
    Ok((op, Protocol::Query, Value::Object(params)))
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn dynamodb(r: &Request) -> Result<Call, String> {
    let (op, protocol, body) = operation(r)?;
    let table = |name: &str| -> String {
        if name.starts_with("arn:") {
            name.to_owned()
        } else {
            arn("dynamodb", r.region, &format!("table/{name}"))
        }
    };
    let action = |a: &str| format!("dynamodb:{a}");
    let streams = r.target.is_some_and(|t| t.starts_with("DynamoDBStreams"));
    let mut checks = vec![];
    match op.as_str() {
        _ if streams => {
            let resource = text(&body, "StreamArn").unwrap_or("*").to_owned();
            checks.push(Check::new(&action(&op), resource));
        }
        "Query" | "Scan" => {
            let t = table(text(&body, "TableName").ok_or("no TableName")?);
            let resource = match text(&body, "IndexName") {
                Some(index) => format!("{t}/index/{index}"),
                None => t,
            };
            checks.push(Check::new(&action(&op), resource));
        }
        "BatchGetItem" | "BatchWriteItem" => {
            let items = body
                .get("RequestItems")
                .and_then(Value::as_object)
                .ok_or("no RequestItems")?;
            for name in items.keys() {
                checks.push(Check::new(&action(&op), table(name)));
            }
        }
        "TransactWriteItems" | "TransactGetItems" => {
            let items = body
                .get("TransactItems")
                .and_then(Value::as_array)
                .ok_or("no TransactItems")?;
            for item in items {
                let (kind, inner) = item
                    .as_object()
                    .and_then(|m| m.iter().next())
                    .ok_or("an empty transaction item")?;
                let single = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    other => return Err(format!("a transaction item of kind {other}")),
                };
                let name =
                    text(inner, "TableName").ok_or("a transaction item without TableName")?;
                checks.push(Check::new(&action(single), table(name)));
            }
        }
        "ListTables" => checks.push(Check::new(&action(&op), "*")),
        _ => {
            let resource = text(&body, "TableName").map_or_else(|| "*".to_owned(), table);
            checks.push(Check::new(&action(&op), resource));
        }
    }
    Ok(Call {
        service: "dynamodb".into(),
        operation: op,
        protocol,
        checks,
    })
}

/// `https://host/123456789012/name` as the queue's ARN.
fn queue_arn(url: &str, region: &str) -> Option<String> {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let name = parts.next()?;
    let account = parts.next()?;
    Some(format!("arn:aws:sqs:{region}:{account}:{name}"))
}

fn sqs(r: &Request) -> Result<Call, String> {
    let (op, protocol, body) = operation(r)?;
    let single = match op.as_str() {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        other => other,
    };
    let resource = if let Some(url) = text(&body, "QueueUrl") {
        queue_arn(url, r.region).ok_or_else(|| format!("cannot read the QueueUrl {url}"))?
    } else if let Some(name) = text(&body, "QueueName") {
        arn("sqs", r.region, name)
    } else {
        "*".to_owned()
    };
    Ok(Call {
        service: "sqs".into(),
        operation: op.clone(),
        protocol,
        checks: vec![Check::new(&format!("sqs:{single}"), resource)],
    })
}

fn sns(r: &Request) -> Result<Call, String> {
    let (op, protocol, body) = operation(r)?;
    let resource = match op.as_str() {
        "Publish" | "PublishBatch" => text(&body, "TopicArn")
            .or_else(|| text(&body, "TargetArn"))
            // A phone number has no ARN: SMS is authorized on `*`.
            .unwrap_or("*")
            .to_owned(),
        "CreatePlatformEndpoint" | "ListTopics" | "ListPlatformApplications" => "*".to_owned(),
        "CreateTopic" => arn("sns", r.region, text(&body, "Name").unwrap_or("*")),
        _ => text(&body, "EndpointArn")
            .or_else(|| text(&body, "TopicArn"))
            .or_else(|| text(&body, "PlatformApplicationArn"))
            .unwrap_or("*")
            .to_owned(),
    };
    let action = if op == "PublishBatch" { "Publish" } else { &op };
    Ok(Call {
        service: "sns".into(),
        operation: op.clone(),
        protocol,
        checks: vec![Check::new(&format!("sns:{action}"), resource)],
    })
}

/// The address in `Name <address>` or a bare address.
fn address(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(start), Some(end)) if start < end => &from[start + 1..end],
        _ => from.trim(),
    }
}

fn sesv2(r: &Request) -> Result<Call, String> {
    let body = json_body(r);
    let path = r.path.trim_end_matches('/');
    let (op, resource) = match (r.method, path) {
        ("POST", "/v2/email/outbound-emails") => {
            let identity = match text(&body, "FromEmailAddressIdentityArn") {
                Some(arn) => arn.to_owned(),
                None => {
                    let from = text(&body, "FromEmailAddress")
                        .ok_or("SendEmail without FromEmailAddress is not checked locally")?;
                    arn("ses", r.region, &format!("identity/{}", address(from)))
                }
            };
            ("SendEmail", identity)
        }
        ("POST", "/v2/email/identities") => (
            "CreateEmailIdentity",
            arn(
                "ses",
                r.region,
                &format!("identity/{}", text(&body, "EmailIdentity").unwrap_or("*")),
            ),
        ),
        (method, p) => {
            return Err(format!(
                "the SESv2 request {method} {p} is not checked locally"
            ));
        }
    };
    Ok(Call {
        service: "ses".into(),
        operation: op.to_owned(),
        protocol: Protocol::Rest,
        checks: vec![Check::new(&format!("ses:{op}"), resource)],
    })
}

fn events(r: &Request) -> Result<Call, String> {
    let (op, protocol, body) = operation(r)?;
    let bus = |name: &str| -> String {
        if name.starts_with("arn:") {
            name.to_owned()
        } else {
            arn("events", r.region, &format!("event-bus/{name}"))
        }
    };
    let mut checks = vec![];
    if op == "PutEvents" {
        let entries = body
            .get("Entries")
            .and_then(Value::as_array)
            .ok_or("PutEvents without Entries")?;
        for entry in entries {
            let resource = bus(text(entry, "EventBusName").unwrap_or("default"));
            if !checks.iter().any(|c: &Check| c.resource == resource) {
                checks.push(Check::new("events:PutEvents", resource));
            }
        }
    } else {
        let resource = text(&body, "EventBusName")
            .or_else(|| text(&body, "Name"))
            .map_or_else(|| "*".to_owned(), bus);
        checks.push(Check::new(&format!("events:{op}"), resource));
    }
    Ok(Call {
        service: "events".into(),
        operation: op,
        protocol,
        checks,
    })
}

fn scheduler(r: &Request) -> Result<Call, String> {
    let body = json_body(r);
    let segments: Vec<String> = r
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            form_urlencoded::parse(s.as_bytes())
                .next()
                .map_or_else(|| s.to_owned(), |(k, _)| k.into_owned())
        })
        .collect();
    let query_group = form_urlencoded::parse(r.query.as_bytes())
        .find(|(k, _)| k == "groupName")
        .map(|(_, v)| v.into_owned());
    let group = text(&body, "GroupName")
        .map(str::to_owned)
        .or(query_group)
        .unwrap_or_else(|| "default".into());
    let schedule = |name: &str| arn("scheduler", r.region, &format!("schedule/{group}/{name}"));
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (op, checks) = match (r.method, segments.as_slice()) {
        (method @ ("POST" | "PUT"), ["schedules", name]) => {
            let op = if method == "POST" {
                "CreateSchedule"
            } else {
                "UpdateSchedule"
            };
            let mut checks = vec![Check::new(&format!("scheduler:{op}"), schedule(name))];
            if let Some(role) = body.pointer("/Target/RoleArn").and_then(Value::as_str) {
                checks.push(
                    Check::new("iam:PassRole", role)
                        .with("iam:PassedToService", "scheduler.amazonaws.com"),
                );
            }
            (op, checks)
        }
        ("DELETE", ["schedules", name]) => (
            "DeleteSchedule",
            vec![Check::new("scheduler:DeleteSchedule", schedule(name))],
        ),
        ("GET", ["schedules", name]) => (
            "GetSchedule",
            vec![Check::new("scheduler:GetSchedule", schedule(name))],
        ),
        ("GET", ["schedules"]) => (
            "ListSchedules",
            vec![Check::new("scheduler:ListSchedules", "*")],
        ),
        (method, _) => {
            return Err(format!(
                "the Scheduler request {method} {} is not checked locally",
                r.path
            ));
        }
    };
    Ok(Call {
        service: "scheduler".into(),
        operation: op.into(),
        protocol: Protocol::Rest,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/t";

    fn json_call(service: &str, target: &str, body: Value) -> Call {
        let body = body.to_string();
        call(&Request {
            service,
            region: "us-east-1",
            method: "POST",
            path: "/",
            query: "",
            target: Some(target),
            body: body.as_bytes(),
        })
        .unwrap()
    }

    fn rest_call(service: &str, method: &str, path: &str, query: &str, body: Value) -> Call {
        let body = body.to_string();
        call(&Request {
            service,
            region: "us-east-1",
            method,
            path,
            query,
            target: None,
            body: body.as_bytes(),
        })
        .unwrap()
    }

    fn pairs(c: &Call) -> Vec<(String, String)> {
        c.checks
            .iter()
            .map(|k| (k.action.clone(), k.resource.clone()))
            .collect()
    }

    fn pair(action: &str, resource: &str) -> (String, String) {
        (action.to_owned(), resource.to_owned())
    }

    #[test]
    fn a_transaction_is_authorized_item_by_item() {
        let c = json_call(
            "dynamodb",
            "DynamoDB_20120810.TransactWriteItems",
            json!({"TransactItems": [
                {"Put": {"TableName": "t", "Item": {}}},
                {"Update": {"TableName": "t", "Key": {}}},
                {"ConditionCheck": {"TableName": "t", "Key": {}}},
                {"Delete": {"TableName": "t", "Key": {}}}
            ]}),
        );
        assert_eq!(
            pairs(&c),
            vec![
                pair("dynamodb:PutItem", TABLE),
                pair("dynamodb:UpdateItem", TABLE),
                pair("dynamodb:ConditionCheckItem", TABLE),
                pair("dynamodb:DeleteItem", TABLE),
            ]
        );
    }

    #[test]
    fn a_query_on_an_index_is_authorized_on_the_index() {
        let c = json_call(
            "dynamodb",
            "DynamoDB_20120810.Query",
            json!({"TableName": "t", "IndexName": "AreaIndex"}),
        );
        assert_eq!(
            pairs(&c),
            vec![pair("dynamodb:Query", &format!("{TABLE}/index/AreaIndex"))]
        );
        let c = json_call(
            "dynamodb",
            "DynamoDB_20120810.BatchGetItem",
            json!({"RequestItems": {"t": {"Keys": []}}}),
        );
        assert_eq!(pairs(&c), vec![pair("dynamodb:BatchGetItem", TABLE)]);
    }

    #[test]
    fn queues_topics_phones_and_buses_are_named_as_iam_names_them() {
        let c = json_call(
            "sqs",
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": "http://127.0.0.1:5000/123456789012/q", "Entries": []}),
        );
        assert_eq!(
            pairs(&c),
            vec![pair(
                "sqs:SendMessage",
                "arn:aws:sqs:us-east-1:123456789012:q"
            )]
        );
        let body = "Action=Publish&PhoneNumber=%2B14155550101&Message=hi";
        let c = call(&Request {
            service: "sns",
            region: "us-east-1",
            method: "POST",
            path: "/",
            query: "",
            target: None,
            body: body.as_bytes(),
        })
        .unwrap();
        assert_eq!(c.protocol, Protocol::Query);
        assert_eq!(pairs(&c), vec![pair("sns:Publish", "*")]);
        let c = json_call(
            "events",
            "AWSEvents.PutEvents",
            json!({"Entries": [{"EventBusName": "bus"}, {"EventBusName": "bus"}, {}]}),
        );
        assert_eq!(
            pairs(&c),
            vec![
                pair(
                    "events:PutEvents",
                    "arn:aws:events:us-east-1:123456789012:event-bus/bus"
                ),
                pair(
                    "events:PutEvents",
                    "arn:aws:events:us-east-1:123456789012:event-bus/default"
                ),
            ]
        );
    }

    #[test]
    fn email_is_authorized_on_the_senders_identity() {
        let c = rest_call(
            "ses",
            "POST",
            "/v2/email/outbound-emails",
            "",
            json!({"FromEmailAddress": "Referrals <no-reply@example.com>"}),
        );
        assert_eq!(
            pairs(&c),
            vec![pair(
                "ses:SendEmail",
                "arn:aws:ses:us-east-1:123456789012:identity/no-reply@example.com"
            )]
        );
    }

    #[test]
    fn a_schedule_needs_its_own_permission_and_the_role_passed() {
        let c = rest_call(
            "scheduler",
            "POST",
            "/schedules/coming-soon-r1",
            "",
            json!({"GroupName": "g", "Target": {"RoleArn": "arn:aws:iam::123456789012:role/s"}}),
        );
        assert_eq!(
            pairs(&c),
            vec![
                pair(
                    "scheduler:CreateSchedule",
                    "arn:aws:scheduler:us-east-1:123456789012:schedule/g/coming-soon-r1"
                ),
                pair("iam:PassRole", "arn:aws:iam::123456789012:role/s"),
            ]
        );
        assert_eq!(
            c.checks[1].context["iam:PassedToService"],
            "scheduler.amazonaws.com"
        );
        let c = rest_call(
            "scheduler",
            "DELETE",
            "/schedules/coming-soon-r1",
            "groupName=g&clientToken=x",
            Value::Null,
        );
        assert_eq!(
            pairs(&c),
            vec![pair(
                "scheduler:DeleteSchedule",
                "arn:aws:scheduler:us-east-1:123456789012:schedule/g/coming-soon-r1"
            )]
        );
    }

    #[test]
    fn what_is_not_understood_is_said() {
        let r = call(&Request {
            service: "lambda",
            region: "us-east-1",
            method: "POST",
            path: "/",
            query: "",
            target: None,
            body: b"",
        });
        assert!(r.unwrap_err().contains("lambda"));
    }
}
