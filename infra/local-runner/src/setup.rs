//! Creates in the emulators what CloudFormation would: the table, the queues, the bus with a rule
//! and queue per `EventBridgeRule` event, the schedule group, the sender identity and the push
//! platform application. Every step tolerates what a previous run left behind.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use shared::dynamodb::table::{RESOURCE, TableDeclaration};

use crate::template::{BusRule, QueueDeclaration, Wiring};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "{0} is not reachable at {1}: start the emulators with `infra/local/stack.sh start` and `eval \"$(infra/local/stack.sh env)\"`"
    )]
    Unreachable(&'static str, String),
    #[error("environment variable {0} is not set: run `eval \"$(infra/local/stack.sh env)\"`")]
    MissingEnv(&'static str),
    #[error("the template declares no {RESOURCE} table: {0}")]
    Table(String),
    #[error("{0} failed: {1}")]
    Aws(&'static str, String),
}

fn aws<E: std::error::Error + 'static>(op: &'static str) -> impl Fn(E) -> SetupError {
    move |e| SetupError::Aws(op, with_sources(&e))
}

/// The error with its sources, so a failure says more than "service error".
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The emulators' endpoints, checked to answer.
pub async fn emulators() -> Result<(String, String), SetupError> {
    let dynamodb = std::env::var("DYNAMODB_ENDPOINT")
        .map_err(|_| SetupError::MissingEnv("DYNAMODB_ENDPOINT"))?;
    let moto =
        std::env::var("MOTO_ENDPOINT").map_err(|_| SetupError::MissingEnv("MOTO_ENDPOINT"))?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| SetupError::Aws("HTTP client", e.to_string()))?;
    for (name, url) in [("DynamoDB Local", &dynamodb), ("moto", &moto)] {
        if http.get(url.as_str()).send().await.is_err() {
            return Err(SetupError::Unreachable(name, url.clone()));
        }
    }
    Ok((dynamodb, moto.trim_end_matches('/').to_owned()))
}

pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// What was created, and the names the functions are told.
pub struct Provisioned {
    /// By the template's logical id.
    pub queues: HashMap<String, Queue>,
    pub broadcast_queue_url: String,
    pub bus: String,
    /// Each rule with the queue that receives its events.
    pub rule_queues: Vec<(BusRule, Queue)>,
    pub schedule_group: String,
    pub push_application_arn: String,
}

pub async fn create_table(sdk: &SdkConfig, template: &str, name: &str) -> Result<(), SetupError> {
    let doc: serde_norway::Value =
        serde_norway::from_str(template).map_err(|e| SetupError::Table(e.to_string()))?;
    let properties = doc
        .get("Resources")
        .and_then(|r| r.get(RESOURCE))
        .and_then(|r| r.get("Properties"))
        .cloned()
        .ok_or_else(|| SetupError::Table("no Properties".into()))?;
    let declaration: TableDeclaration =
        serde_norway::from_value(properties).map_err(|e| SetupError::Table(e.to_string()))?;
    let client = aws_sdk_dynamodb::Client::new(sdk);
    if client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .is_ok()
    {
        tracing::info!(table = name, "table exists");
        return Ok(());
    }
    declaration
        .create(&client, name)
        .await
        .map_err(|e| SetupError::Aws("CreateTable", e.to_string()))?;
    tracing::info!(table = name, "table created");
    Ok(())
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<Queue, SetupError> {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .set_attributes((!attributes.is_empty()).then_some(attributes))
        .send()
        .await
        .map_err(aws("CreateQueue"))?
        .queue_url
        .unwrap_or_default();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws("GetQueueAttributes"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    Ok(Queue { url, arn })
}

/// The template's queues; a broadcast queue and its DLQ when the template declares none yet.
fn declared_queues(wiring: &Wiring) -> Vec<QueueDeclaration> {
    if !wiring.queues.is_empty() {
        return wiring.queues.clone();
    }
    vec![
        QueueDeclaration {
            logical_id: "BroadcastDeadLetterQueue".into(),
            visibility_timeout: None,
            dead_letter: None,
        },
        QueueDeclaration {
            logical_id: "BroadcastQueue".into(),
            visibility_timeout: Some(30),
            dead_letter: Some(("BroadcastDeadLetterQueue".into(), 3)),
        },
    ]
}

/// Names are `<prefix>-<what>`, cut to the service's limit, so runs with different tables share
/// one moto without sharing queues.
fn name(prefix: &str, what: &str, limit: usize) -> String {
    let mut n: String = format!("{prefix}-{what}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    n.truncate(limit);
    n
}

pub async fn provision(
    sdk: &SdkConfig,
    wiring: &Wiring,
    prefix: &str,
    sender: &str,
) -> Result<Provisioned, SetupError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut queues = HashMap::new();
    let mut declared = declared_queues(wiring);
    // Dead-letter queues first: their ARNs go into the others' redrive policies.
    declared.sort_by_key(|q| q.dead_letter.is_some());
    for q in declared {
        let mut attributes = HashMap::new();
        if let Some(timeout) = q.visibility_timeout {
            attributes.insert(QueueAttributeName::VisibilityTimeout, timeout.to_string());
        }
        if let Some((dlq, max)) = &q.dead_letter {
            let arn = queues
                .get(dlq)
                .map(|d: &Queue| d.arn.clone())
                .unwrap_or_default();
            attributes.insert(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": arn, "maxReceiveCount": max.to_string()}).to_string(),
            );
        }
        let queue = create_queue(&sqs, &name(prefix, &q.logical_id, 80), attributes).await?;
        tracing::info!(queue = q.logical_id, url = queue.url, "queue ready");
        queues.insert(q.logical_id, queue);
    }
    let broadcast_queue_url = wiring
        .broadcast_queue()
        .or(Some("BroadcastQueue"))
        .and_then(|id| queues.get(id))
        .map(|q| q.url.clone())
        .unwrap_or_default();

    let events = aws_sdk_eventbridge::Client::new(sdk);
    let bus = name(prefix, "bus", 256);
    if let Err(e) = events.create_event_bus().name(&bus).send().await
        && !e
            .as_service_error()
            .is_some_and(|s| s.is_resource_already_exists_exception())
    {
        return Err(aws("CreateEventBus")(e));
    }
    let mut rule_queues = vec![];
    for (i, rule) in wiring.rules.iter().enumerate() {
        // The index keeps names unique when the 64-character limit cuts them.
        let rule_name = name(prefix, &format!("{i}-{}", rule.name), 64);
        let queue = create_queue(
            &sqs,
            &name(prefix, &format!("rule-{}", rule.name), 80),
            HashMap::new(),
        )
        .await?;
        events
            .put_rule()
            .name(&rule_name)
            .event_bus_name(&bus)
            .event_pattern(rule.pattern.to_string())
            .send()
            .await
            .map_err(aws("PutRule"))?;
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("local-runner")
            .arn(&queue.arn)
            .build()
            .map_err(aws("Target"))?;
        events
            .put_targets()
            .rule(&rule_name)
            .event_bus_name(&bus)
            .targets(target)
            .send()
            .await
            .map_err(aws("PutTargets"))?;
        tracing::info!(rule = rule_name, function = rule.binary, "bus rule ready");
        rule_queues.push((rule.clone(), queue));
    }

    let scheduler = aws_sdk_scheduler::Client::new(sdk);
    let schedule_group = name(prefix, "schedules", 64);
    if let Err(e) = scheduler
        .create_schedule_group()
        .name(&schedule_group)
        .send()
        .await
        && !e
            .as_service_error()
            .is_some_and(|s| s.is_conflict_exception())
    {
        return Err(aws("CreateScheduleGroup")(e));
    }

    shared::aws::ensure_sender_identity(&aws_sdk_sesv2::Client::new(sdk), sender)
        .await
        .map_err(|e| SetupError::Aws("CreateEmailIdentity", e.to_string()))?;

    let push_application_arn = aws_sdk_sns::Client::new(sdk)
        .create_platform_application()
        .name(name(prefix, "push", 256))
        .platform("GCM")
        .attributes("PlatformCredential", "local")
        .send()
        .await
        .map_err(aws("CreatePlatformApplication"))?
        .platform_application_arn
        .unwrap_or_default();

    Ok(Provisioned {
        queues,
        broadcast_queue_url,
        bus,
        rule_queues,
        schedule_group,
        push_application_arn,
    })
}
