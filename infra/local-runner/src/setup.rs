//! Creates in the emulators what CloudFormation would: the table, the queues, the buses with a
//! rule and queue per `EventBridgeRule` event, the schedule groups, the sender identity and the
//! push platform application, named as the template names them; and records every resource's
//! local name and attributes in the [`Stack`] the template's intrinsics resolve against. Every
//! step tolerates what a previous run left behind.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value as Json;
use serde_json::json;
use shared::dynamodb::table::{RESOURCE, TableDeclaration};

use crate::cloudformation::{ACCOUNT, Mode, Physical, Stack};
use crate::template::{BusRule, Template, Wiring};

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
    #[error("the template: {0}")]
    Template(String),
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
    Ok((
        dynamodb.trim_end_matches('/').to_owned(),
        moto.trim_end_matches('/').to_owned(),
    ))
}

pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// What was created beyond the stack's names: the queues by logical id, each bus rule with the
/// queue that receives its events, and the schedule groups.
pub struct Provisioned {
    pub queues: HashMap<String, Queue>,
    pub rule_queues: Vec<(BusRule, Queue)>,
    pub schedule_groups: Vec<String>,
}

/// Creates the table `name` from the template's declaration (unless it exists) and records its
/// names, stream included, in `stack`.
pub async fn create_table(
    sdk: &SdkConfig,
    template: &str,
    name: &str,
    stack: &mut Stack,
) -> Result<(), SetupError> {
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
    } else {
        declaration
            .create(&client, name)
            .await
            .map_err(|e| SetupError::Aws("CreateTable", e.to_string()))?;
        tracing::info!(table = name, "table created");
    }
    let stream = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(aws("DescribeTable"))?
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned)
        .unwrap_or_default();
    stack.resources.insert(
        RESOURCE.to_owned(),
        Physical::new(name)
            .with("Arn", stack.arn("dynamodb", &format!("table/{name}")))
            .with("StreamArn", stream),
    );
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

/// The name [`plan`] gave the resource `id`.
fn planned(stack: &Stack, id: &str) -> Result<String, SetupError> {
    stack
        .resources
        .get(id)
        .map(|r| r.reference.clone())
        .ok_or_else(|| SetupError::Template(format!("{id} was not planned")))
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

/// A resource's name as the template gives it (`Name: !Sub "${AWS::StackName}-events"`), or
/// the stack-prefixed logical id CloudFormation's generated names resemble.
fn declared_name(
    stack: &Stack,
    id: &str,
    resource: &Json,
    property: &str,
    limit: usize,
) -> Result<String, SetupError> {
    match resource.pointer(&format!("/Properties/{property}")) {
        Some(v) => stack
            .string(v, Mode::Local)
            .map_err(|e| SetupError::Template(format!("{id}.{property}: {e}")))?
            .ok_or_else(|| SetupError::Template(format!("{id}.{property} has no value"))),
        None => Ok(name(&stack.name, id, limit)),
    }
}

/// The names of what the runner does not create but functions may name: roles, functions, log
/// groups, topics. Resources of other types stay unnamed; a function that refers to one fails
/// to resolve, saying which.
pub fn name_resources(template: &Template, stack: &mut Stack) -> Result<(), SetupError> {
    for (id, resource) in template.resources() {
        let kind = resource.get("Type").and_then(Json::as_str).unwrap_or("");
        let physical = match kind {
            "AWS::IAM::Role" => {
                let n = declared_name(stack, &id, &resource, "RoleName", 64)?;
                Physical::new(&n)
                    .with("Arn", format!("arn:aws:iam::{ACCOUNT}:role/{n}"))
                    .with("RoleId", format!("AROA{}", id.to_uppercase()))
            }
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => {
                let n = declared_name(stack, &id, &resource, "FunctionName", 64)?;
                let arn = stack.arn("lambda", &format!("function:{n}"));
                Physical::new(&n).with("Arn", arn)
            }
            "AWS::Logs::LogGroup" => {
                let n = declared_name(stack, &id, &resource, "LogGroupName", 512)?;
                let arn = stack.arn("logs", &format!("log-group:{n}:*"));
                Physical::new(&n).with("Arn", arn)
            }
            "AWS::SNS::Topic" => {
                let n = declared_name(stack, &id, &resource, "TopicName", 256)?;
                let arn = stack.arn("sns", &n);
                Physical::new(&arn)
                    .with("TopicArn", &arn)
                    .with("TopicName", n)
            }
            _ => continue,
        };
        stack.resources.insert(id, physical);
    }
    Ok(())
}

/// The names and attributes of everything the template declares, as [`provision`] will create
/// it, without creating anything: the table (named after the stack), queues (their URLs on
/// `sqs_base`), buses, schedule groups, and what [`name_resources`] names.
pub fn plan(template: &Template, stack: &mut Stack, sqs_base: &str) -> Result<(), SetupError> {
    name_resources(template, stack)?;
    let table = stack.name.clone();
    let table_arn = stack.arn("dynamodb", &format!("table/{table}"));
    stack.resources.insert(
        RESOURCE.to_owned(),
        Physical::new(&table)
            .with("StreamArn", format!("{table_arn}/stream/local"))
            .with("Arn", table_arn),
    );
    for (id, resource) in template.resources() {
        let physical = match resource.get("Type").and_then(Json::as_str) {
            Some("AWS::SQS::Queue") => {
                let n = declared_name(stack, &id, &resource, "QueueName", 80)?;
                let url = format!("{}/{ACCOUNT}/{n}", sqs_base.trim_end_matches('/'));
                Physical::new(&url)
                    .with("Arn", stack.arn("sqs", &n))
                    .with("QueueName", &n)
                    .with("QueueUrl", &url)
            }
            Some("AWS::Events::EventBus") => {
                let n = declared_name(stack, &id, &resource, "Name", 256)?;
                let arn = stack.arn("events", &format!("event-bus/{n}"));
                Physical::new(&n).with("Arn", arn).with("Name", &n)
            }
            Some("AWS::Scheduler::ScheduleGroup") => {
                let n = declared_name(stack, &id, &resource, "Name", 64)?;
                let arn = stack.arn("scheduler", &format!("schedule-group/{n}"));
                Physical::new(&n).with("Arn", arn)
            }
            _ => continue,
        };
        stack.resources.insert(id, physical);
    }
    Ok(())
}

/// The push platform application [`provision`] creates for `stack`.
pub fn push_application_arn(stack: &Stack) -> String {
    stack.arn(
        "sns",
        &format!("app/GCM/{}", name(&stack.name, "push", 256)),
    )
}

/// Creates the queues, buses, rules, schedule groups, the sender identity and the push platform
/// application [`plan`] named, recording what the services answer (queue URLs) in `stack`. The
/// table is created by [`create_table`].
pub async fn provision(
    sdk: &SdkConfig,
    template: &Template,
    wiring: &Wiring,
    stack: &mut Stack,
    sender: &str,
) -> Result<Provisioned, SetupError> {
    let resources = template.resources();
    let of_type = |kind: &str| -> Vec<String> {
        resources
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Json::as_str) == Some(kind))
            .map(|(id, _)| id.clone())
            .collect()
    };

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut queues = HashMap::new();
    let mut declared = wiring.queues.clone();
    // Dead-letter queues first: their ARNs go into the others' redrive policies.
    declared.sort_by_key(|q| q.dead_letter.is_some());
    for q in declared {
        let queue_name = stack
            .resources
            .get(&q.logical_id)
            .and_then(|r| r.attributes.get("QueueName"))
            .cloned()
            .ok_or_else(|| SetupError::Template(format!("{} was not planned", q.logical_id)))?;
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
        let queue = create_queue(&sqs, &queue_name, attributes).await?;
        tracing::info!(queue = q.logical_id, url = queue.url, "queue ready");
        stack.resources.insert(
            q.logical_id.clone(),
            Physical::new(&queue.url)
                .with("Arn", &queue.arn)
                .with("QueueName", &queue_name)
                .with("QueueUrl", &queue.url),
        );
        queues.insert(q.logical_id, queue);
    }

    let events = aws_sdk_eventbridge::Client::new(sdk);
    for id in of_type("AWS::Events::EventBus") {
        let bus = planned(stack, &id)?;
        if let Err(e) = events.create_event_bus().name(&bus).send().await
            && !e
                .as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception())
        {
            return Err(aws("CreateEventBus")(e));
        }
    }
    let mut rule_queues = vec![];
    for (i, rule) in wiring.rules.iter().enumerate() {
        let bus = match &rule.bus {
            Some(v) => stack
                .string(v, Mode::Local)
                .map_err(|e| SetupError::Template(format!("rule {}: {e}", rule.name)))?
                .unwrap_or_else(|| "default".to_owned()),
            None => "default".to_owned(),
        };
        // The index keeps names unique when the 64-character limit cuts them.
        let rule_name = name(&stack.name, &format!("{i}-{}", rule.name), 64);
        let queue = create_queue(
            &sqs,
            &name(&stack.name, &format!("rule-{}", rule.name), 80),
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
        tracing::info!(
            rule = rule_name,
            bus,
            function = rule.binary,
            "bus rule ready"
        );
        rule_queues.push((rule.clone(), queue));
    }

    let scheduler = aws_sdk_scheduler::Client::new(sdk);
    let mut schedule_groups = vec![];
    for id in of_type("AWS::Scheduler::ScheduleGroup") {
        let group = planned(stack, &id)?;
        if let Err(e) = scheduler.create_schedule_group().name(&group).send().await
            && !e
                .as_service_error()
                .is_some_and(|s| s.is_conflict_exception())
        {
            return Err(aws("CreateScheduleGroup")(e));
        }
        schedule_groups.push(group);
    }

    // Deployed, the sender is verified in SES once by hand; locally it is verified here.
    shared::aws::ensure_sender_identity(&aws_sdk_sesv2::Client::new(sdk), sender)
        .await
        .map_err(|e| SetupError::Aws("CreateEmailIdentity", e.to_string()))?;

    let created = aws_sdk_sns::Client::new(sdk)
        .create_platform_application()
        .name(name(&stack.name, "push", 256))
        .platform("GCM")
        .attributes("PlatformCredential", "local")
        .send()
        .await
        .map_err(aws("CreatePlatformApplication"))?
        .platform_application_arn
        .unwrap_or_default();
    if created != push_application_arn(stack) {
        return Err(SetupError::Template(format!(
            "the push application is {created}, not the {} the functions were told",
            push_application_arn(stack)
        )));
    }

    Ok(Provisioned {
        queues,
        rule_queues,
        schedule_groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_named_as_the_template_names_them() {
        let template = Template::parse(
            r#"
Resources:
  Timers:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${AWS::StackName}-timers"
  Settings:
    Type: AWS::Serverless::Function
  SchedulerRole:
    Type: AWS::IAM::Role
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/aws/lambda/${AWS::StackName}-timers"
"#,
        )
        .unwrap();
        let mut stack = Stack {
            name: "demo".into(),
            region: "us-east-1".into(),
            ..Stack::default()
        };
        name_resources(&template, &mut stack).unwrap();
        assert_eq!(stack.resources["Timers"].reference, "demo-timers");
        assert_eq!(
            stack.resources["Timers"].attributes["Arn"],
            "arn:aws:lambda:us-east-1:123456789012:function:demo-timers"
        );
        assert_eq!(stack.resources["Settings"].reference, "demo-Settings");
        assert_eq!(
            stack.resources["SchedulerRole"].attributes["Arn"],
            "arn:aws:iam::123456789012:role/demo-SchedulerRole"
        );
        assert_eq!(stack.resources["Logs"].reference, "/aws/lambda/demo-timers");
    }
}
