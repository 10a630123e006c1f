//! The wiring the runner plays, read from `infra/template.yaml`: each function's HTTP routes, SQS
//! event sources, bus rules and recurring schedules, and the queues they use; and each function's
//! declaration (its properties merged with `Globals`), from which its environment and its policy
//! are resolved.
//!
//! The YAML is read into `serde_norway::Value`, which keeps CloudFormation's short tags (`!Ref`,
//! `!GetAtt`, `!Sub`) as tagged values instead of failing on them.

use jiff::SignedDuration;
use serde_json::{Map, Value as Json};
use serde_norway::Value;

use crate::cloudformation::normalize;

/// A function as the template declares it, with `Globals.Function` merged in the way SAM merges
/// it: maps (such as `Environment.Variables`) key by key, the function's own value winning;
/// everything else replaced by the function's own.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDecl {
    pub logical_id: String,
    pub binary: String,
    /// The merged `Properties`, in long form (see `cloudformation::normalize`).
    pub properties: Json,
}

impl FunctionDecl {
    /// The template's `Environment.Variables`, unresolved.
    pub fn variables(&self) -> Map<String, Json> {
        self.properties
            .pointer("/Environment/Variables")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// `Timeout` in seconds; Lambda's default is 3.
    pub fn timeout_seconds(&self) -> u64 {
        self.properties
            .get("Timeout")
            .and_then(Json::as_u64)
            .unwrap_or(3)
    }

    /// `MemorySize` in MB; Lambda's default is 128.
    pub fn memory_mb(&self) -> u64 {
        self.properties
            .get("MemorySize")
            .and_then(Json::as_u64)
            .unwrap_or(128)
    }
}

/// SAM's merge of a global property into a function's.
fn merge(global: &Json, own: &Json) -> Json {
    match (global, own) {
        (Json::Object(g), Json::Object(o)) if !is_intrinsic(o) && !is_intrinsic(g) => {
            let mut out = g.clone();
            for (k, v) in o {
                let merged = match g.get(k) {
                    Some(gv) => merge(gv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Json::Object(out)
        }
        _ => own.clone(),
    }
}

fn is_intrinsic(m: &Map<String, Json>) -> bool {
    m.len() == 1
        && m.keys()
            .next()
            .is_some_and(|k| k == "Ref" || k == "Condition" || k.starts_with("Fn::"))
}

/// The whole template in long form, with its functions' merged declarations.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pub document: Json,
    pub functions: Vec<FunctionDecl>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let yaml: Value = serde_norway::from_str(text)?;
        let document = normalize(&yaml);
        let globals = document
            .pointer("/Globals/Function")
            .cloned()
            .unwrap_or(Json::Object(Map::new()));
        let mut functions = vec![];
        for (id, resource) in Self::section(&document, "Resources") {
            if resource.get("Type").and_then(Json::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let own = resource
                .get("Properties")
                .cloned()
                .unwrap_or(Json::Object(Map::new()));
            functions.push(FunctionDecl {
                logical_id: id.clone(),
                binary: binary_of(&id, &resource),
                properties: merge(&globals, &own),
            });
        }
        Ok(Template {
            document,
            functions,
        })
    }

    fn section(document: &Json, name: &str) -> Map<String, Json> {
        document
            .get(name)
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default()
    }

    pub fn parameters(&self) -> Map<String, Json> {
        Self::section(&self.document, "Parameters")
    }

    pub fn conditions(&self) -> Map<String, Json> {
        Self::section(&self.document, "Conditions")
    }

    pub fn resources(&self) -> Map<String, Json> {
        Self::section(&self.document, "Resources")
    }

    #[cfg(test)]
    pub fn function(&self, binary: &str) -> Option<&FunctionDecl> {
        self.functions.iter().find(|f| f.binary == binary)
    }
}

/// The binary a function resource runs: `Metadata.BuildProperties.Binary`, else the last part
/// of its `CodeUri`, else its logical id.
fn binary_of(id: &str, resource: &Json) -> String {
    resource
        .pointer("/Metadata/BuildProperties/Binary")
        .and_then(Json::as_str)
        .map(str::to_owned)
        .or_else(|| {
            resource
                .pointer("/Properties/CodeUri")
                .and_then(Json::as_str)
                .and_then(|uri| uri.trim_end_matches('/').rsplit('/').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| id.to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the template is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("function {function}, event {event}: {problem}")]
    Event {
        function: String,
        event: String,
        problem: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Upper case; `ANY` matches every method.
    pub method: String,
    /// The path template, e.g. `/teams/{teamId}/routing`.
    pub path: String,
    /// False for `Auth: {Authorizer: NONE}` (the telephony webhooks).
    pub authorized: bool,
    pub binary: String,
}

impl Route {
    /// API Gateway's `routeKey`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSource {
    pub binary: String,
    /// The logical id of the `AWS::SQS::Queue` the event reads.
    pub queue: String,
    pub batch_size: i32,
}

/// A function fed by the table's stream (a `DynamoDB` event), with its filter patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSource {
    pub binary: String,
    pub batch_size: usize,
    /// Lambda's filter criteria: a record is delivered if any pattern matches; none means all.
    pub filters: Vec<serde_json::Value>,
    /// `MaximumRetryAttempts`: how often a failing record is delivered again; `None` (-1, or
    /// absent, as on AWS) until it is older than `max_age`.
    pub retries: Option<u32>,
    /// `MaximumRecordAgeInSeconds`: a failing record older than this is given up.
    pub max_age: Option<std::time::Duration>,
    /// `DestinationConfig.OnFailure`: the queue (logical id) told of each record given up.
    pub on_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BusRule {
    /// `<function logical id>-<event name>`: unique in the template, used to name the rule.
    pub name: String,
    pub binary: String,
    pub pattern: serde_json::Value,
    /// `EventBusName`, unresolved (long form); the account's default bus when absent.
    pub bus: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurringSchedule {
    pub name: String,
    pub binary: String,
    pub every: SignedDuration,
    /// The target input, with `<aws.scheduler.scheduled-time>` still in it.
    pub input: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDeclaration {
    pub logical_id: String,
    pub visibility_timeout: Option<i64>,
    /// The dead-letter queue's logical id and `maxReceiveCount`.
    pub dead_letter: Option<(String, i64)>,
}

/// A function subscribed to an SNS topic (an `SNS` event): what is published there reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSource {
    pub binary: String,
    /// The logical id of the `AWS::SNS::Topic`.
    pub topic: String,
}

#[derive(Debug, Clone, Default)]
pub struct Wiring {
    pub binaries: Vec<String>,
    pub routes: Vec<Route>,
    pub topic_sources: Vec<TopicSource>,
    pub queue_sources: Vec<QueueSource>,
    pub stream_sources: Vec<StreamSource>,
    pub rules: Vec<BusRule>,
    pub schedules: Vec<RecurringSchedule>,
    pub queues: Vec<QueueDeclaration>,
}

/// The logical id named by `!Ref X`, `!GetAtt X.Arn`, `{Ref: X}` or `{Fn::GetAtt: [X, Arn]}`.
pub fn referenced_id(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" || t.tag == "GetAtt" => match &t.value {
            Value::String(s) => s.split('.').next().map(str::to_owned),
            Value::Sequence(seq) => seq.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        },
        Value::Mapping(m) => m
            .get("Ref")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                m.get("Fn::GetAtt")
                    .and_then(|g| g.get(0))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }),
        _ => None,
    }
}

/// `rate(14 days)` as a duration. Cron expressions are not played locally.
pub fn parse_rate(expression: &str) -> Option<SignedDuration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(SignedDuration::from_secs(n * seconds))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

/// Reads the function wiring and the queues from the template's text.
pub fn parse(text: &str) -> Result<Wiring, TemplateError> {
    let doc: Value = serde_norway::from_str(text)?;
    let mut wiring = Wiring::default();
    let Some(resources) = doc.get("Resources").and_then(Value::as_mapping) else {
        return Ok(wiring);
    };
    for (id, resource) in resources {
        let Some(id) = id.as_str() else { continue };
        let props = resource.get("Properties");
        match str_at(resource, &["Type"]) {
            Some("AWS::SQS::Queue") => wiring.queues.push(QueueDeclaration {
                logical_id: id.to_owned(),
                visibility_timeout: props
                    .and_then(|p| p.get("VisibilityTimeout"))
                    .and_then(Value::as_i64),
                dead_letter: props.and_then(|p| p.get("RedrivePolicy")).and_then(|r| {
                    let target = referenced_id(r.get("deadLetterTargetArn")?)?;
                    let max = r.get("maxReceiveCount").and_then(|m| {
                        m.as_i64()
                            .or_else(|| m.as_str().and_then(|s| s.parse().ok()))
                    })?;
                    Some((target, max))
                }),
            }),
            Some("AWS::Serverless::Function") => {
                let binary = binary_of(id, &normalize(resource));
                wiring.binaries.push(binary.clone());
                let Some(events) = props
                    .and_then(|p| p.get("Events"))
                    .and_then(Value::as_mapping)
                else {
                    continue;
                };
                for (name, event) in events {
                    let name = name.as_str().unwrap_or_default();
                    read_event(&mut wiring, id, name, &binary, event)?;
                }
            }
            _ => {}
        }
    }
    Ok(wiring)
}

fn read_event(
    wiring: &mut Wiring,
    function: &str,
    name: &str,
    binary: &str,
    event: &Value,
) -> Result<(), TemplateError> {
    let fail = |problem: &str| TemplateError::Event {
        function: function.to_owned(),
        event: name.to_owned(),
        problem: problem.to_owned(),
    };
    let props = event
        .get("Properties")
        .ok_or_else(|| fail("no Properties"))?;
    match str_at(event, &["Type"]) {
        Some("HttpApi") => wiring.routes.push(Route {
            method: props
                .get("Method")
                .and_then(Value::as_str)
                .map(|m| m.to_ascii_uppercase())
                .ok_or_else(|| fail("no Method"))?,
            path: props
                .get("Path")
                .and_then(Value::as_str)
                .ok_or_else(|| fail("no Path"))?
                .to_owned(),
            authorized: str_at(props, &["Auth", "Authorizer"]) != Some("NONE"),
            binary: binary.to_owned(),
        }),
        Some("SNS") => wiring.topic_sources.push(TopicSource {
            binary: binary.to_owned(),
            topic: props
                .get("Topic")
                .and_then(referenced_id)
                .ok_or_else(|| fail("Topic must be !Ref <Topic>"))?,
        }),
        Some("SQS") => wiring.queue_sources.push(QueueSource {
            binary: binary.to_owned(),
            queue: props
                .get("Queue")
                .and_then(referenced_id)
                .ok_or_else(|| fail("Queue must be !GetAtt <Queue>.Arn"))?,
            batch_size: props
                .get("BatchSize")
                .and_then(Value::as_i64)
                .map_or(10, |b| b.clamp(1, 10) as i32),
        }),
        Some("DynamoDB") => wiring.stream_sources.push(StreamSource {
            binary: binary.to_owned(),
            batch_size: props
                .get("BatchSize")
                .and_then(Value::as_i64)
                .map_or(100, |b| b.clamp(1, 10_000) as usize),
            filters: props
                .get("FilterCriteria")
                .and_then(|f| f.get("Filters"))
                .and_then(Value::as_sequence)
                .map(|filters| {
                    filters
                        .iter()
                        .map(|f| {
                            let text = f
                                .get("Pattern")
                                .and_then(Value::as_str)
                                .ok_or_else(|| fail("a filter needs a Pattern string"))?;
                            serde_json::from_str(text).map_err(|e| fail(&e.to_string()))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
            retries: props
                .get("MaximumRetryAttempts")
                .and_then(Value::as_i64)
                .and_then(|r| u32::try_from(r).ok()),
            max_age: props
                .get("MaximumRecordAgeInSeconds")
                .and_then(Value::as_i64)
                .and_then(|s| u64::try_from(s).ok())
                .map(std::time::Duration::from_secs),
            on_failure: props
                .get("DestinationConfig")
                .and_then(|d| d.get("OnFailure"))
                .and_then(|o| o.get("Destination"))
                .and_then(referenced_id),
        }),
        Some("EventBridgeRule") => wiring.rules.push(BusRule {
            name: format!("{function}-{name}"),
            binary: binary.to_owned(),
            pattern: serde_json::to_value(props.get("Pattern").ok_or_else(|| fail("no Pattern"))?)
                .map_err(|e| fail(&e.to_string()))?,
            bus: props.get("EventBusName").map(normalize),
        }),
        Some("ScheduleV2" | "Schedule") => {
            let expression = props
                .get("ScheduleExpression")
                .and_then(Value::as_str)
                .ok_or_else(|| fail("no ScheduleExpression"))?;
            match parse_rate(expression) {
                Some(every) => wiring.schedules.push(RecurringSchedule {
                    name: format!("{function}-{name}"),
                    binary: binary.to_owned(),
                    every,
                    input: props
                        .get("Input")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                }),
                None => tracing::warn!(
                    function,
                    event = name,
                    expression,
                    "only rate(...) schedules are played locally"
                ),
            }
        }
        other => {
            tracing::warn!(function, event = name, kind = ?other, "event type not played locally")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
Resources:
  BroadcastDeadLetterQueue:
    Type: AWS::SQS::Queue
  BroadcastQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt BroadcastDeadLetterQueue.Arn
        maxReceiveCount: 3
  SettingsFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: settings
    Properties:
      CodeUri: ../
      Events:
        PutTeam:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: /teams/{teamId}
            Method: put
  ClaimFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: claim
    Properties:
      Events:
        Sms:
          Type: HttpApi
          Properties:
            Path: /twilio/sms
            Method: POST
            Auth:
              Authorizer: NONE
  BroadcastFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: broadcast
    Properties:
      Events:
        Notifications:
          Type: SQS
          Properties:
            Queue: !GetAtt BroadcastQueue.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
  FollowupFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: outbox
    Properties:
      Events:
        Claimed:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref Bus
            Pattern:
              source: [referrals]
              detail-type: [ReferralClaimed]
  RemindersFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: reminders
    Properties:
      Events:
        Biweekly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(14 days)
            Input: '{"time": "<aws.scheduler.scheduled-time>"}'
"#;

    #[test]
    fn routes_carry_method_path_auth_and_binary() {
        let w = parse(SAMPLE).unwrap();
        assert!(w.routes.contains(&Route {
            method: "PUT".into(),
            path: "/teams/{teamId}".into(),
            authorized: true,
            binary: "settings".into(),
        }));
        let sms = w.routes.iter().find(|r| r.path == "/twilio/sms").unwrap();
        assert!(!sms.authorized);
        assert_eq!(sms.key(), "POST /twilio/sms");
    }

    #[test]
    fn queues_rules_and_schedules_are_read() {
        let w = parse(SAMPLE).unwrap();
        assert_eq!(
            w.queue_sources,
            vec![QueueSource {
                binary: "broadcast".into(),
                queue: "BroadcastQueue".into(),
                batch_size: 5
            }]
        );
        let main = w
            .queues
            .iter()
            .find(|q| q.logical_id == "BroadcastQueue")
            .unwrap();
        assert_eq!(main.visibility_timeout, Some(60));
        assert_eq!(
            main.dead_letter,
            Some(("BroadcastDeadLetterQueue".into(), 3))
        );
        assert_eq!(w.rules.len(), 1);
        assert_eq!(w.rules[0].binary, "outbox");
        assert_eq!(w.rules[0].pattern["detail-type"][0], "ReferralClaimed");
        assert_eq!(w.schedules[0].every, SignedDuration::from_hours(14 * 24));
        assert!(
            w.schedules[0]
                .input
                .as_deref()
                .unwrap()
                .contains("<aws.scheduler.scheduled-time>")
        );
    }

    #[test]
    fn rates_parse_in_minutes_hours_and_days() {
        assert_eq!(
            parse_rate("rate(1 day)"),
            Some(SignedDuration::from_hours(24))
        );
        assert_eq!(
            parse_rate("rate(30 days)"),
            Some(SignedDuration::from_hours(720))
        );
        assert_eq!(
            parse_rate("rate(2 hours)"),
            Some(SignedDuration::from_hours(2))
        );
        assert_eq!(
            parse_rate("rate(5 minutes)"),
            Some(SignedDuration::from_mins(5))
        );
        assert_eq!(parse_rate("rate(0 days)"), None);
        assert_eq!(parse_rate("cron(0 8 * * ? *)"), None);
        assert_eq!(parse_rate("rate(3 weeks)"), None);
    }

    /// The real template: every function it declares has a crate under `functions/`, and every
    /// HTTP route the settings function answers (per its module docs) is wired.
    #[test]
    fn the_real_template_parses_and_names_existing_binaries() {
        let w = parse(shared::dynamodb::table::TEMPLATE).unwrap();
        let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../functions");
        for binary in &w.binaries {
            assert!(
                functions.join(binary).is_dir(),
                "no crate for binary {binary}"
            );
        }
        for route in &w.routes {
            assert!(route.path.starts_with('/'), "{route:?}");
        }
        for source in &w.queue_sources {
            assert!(
                w.queues.iter().any(|q| q.logical_id == source.queue),
                "{source:?} reads an undeclared queue"
            );
        }
    }

    /// The Twilio auth token, a secret, reaches only the functions that use it: the claim
    /// function checks the webhooks' signatures, the broadcast function places the calls.
    #[test]
    fn the_real_template_gives_the_twilio_token_to_the_functions_that_use_it_only() {
        let t = Template::parse(shared::dynamodb::table::TEMPLATE).unwrap();
        let mut holders: Vec<&str> = t
            .functions
            .iter()
            .filter(|f| {
                f.variables().get("TWILIO_AUTH_TOKEN")
                    == Some(&serde_json::json!({"Ref": "TwilioAuthToken"}))
            })
            .map(|f| f.binary.as_str())
            .collect();
        holders.sort_unstable();
        assert_eq!(holders, ["broadcast", "claim"]);
        let declared = t.parameters();
        assert_eq!(declared["TwilioAuthToken"]["NoEcho"], true);
    }

    /// RC-4: the contact-key secret, which keys the duplicates index, reaches intake alone, from
    /// a parameter CloudFormation never shows.
    #[test]
    fn rc_4_the_real_template_gives_the_contact_key_secret_to_intake_only() {
        let t = Template::parse(shared::dynamodb::table::TEMPLATE).unwrap();
        let holders: Vec<&str> = t
            .functions
            .iter()
            .filter(|f| f.variables().contains_key("CONTACT_KEY_SECRET"))
            .map(|f| f.binary.as_str())
            .collect();
        assert_eq!(holders, ["intake"]);
        let declared = t.parameters();
        assert_eq!(declared["ContactKeySecret"]["NoEcho"], true);
        assert_eq!(declared["ContactKeySecret"]["MinLength"], 32);
    }

    /// Every function logs to a log group of its own, made with a retention.
    #[test]
    fn the_real_template_keeps_every_functions_logs_for_a_while() {
        let t = Template::parse(shared::dynamodb::table::TEMPLATE).unwrap();
        let resources = t.resources();
        for f in &t.functions {
            let group = f
                .properties
                .pointer("/LoggingConfig/LogGroup/Ref")
                .and_then(Json::as_str)
                .unwrap_or_else(|| panic!("{} names no log group", f.logical_id));
            let declared = &resources[group];
            assert_eq!(declared["Type"], "AWS::Logs::LogGroup", "{group}");
            assert!(
                declared.pointer("/Properties/RetentionInDays").is_some(),
                "{group} keeps logs forever"
            );
        }
    }

    /// The alarms and the dashboard read the metrics the functions write (`shared::telemetry`):
    /// in the namespace every function is given, by the names and dimensions they are written
    /// with, so no alarm watches a metric that never comes.
    #[test]
    fn the_real_template_alarms_and_dashboard_read_the_metrics_as_the_functions_write_them() {
        use shared::telemetry::{METRICS, NAMESPACE_VARIABLE};
        let t = Template::parse(shared::dynamodb::table::TEMPLATE).unwrap();
        let namespace = serde_json::json!({"Fn::Sub": "ReferralRouting/${AWS::StackName}"});
        for f in &t.functions {
            assert_eq!(
                f.variables().get(NAMESPACE_VARIABLE),
                Some(&namespace),
                "{}",
                f.logical_id
            );
        }
        let written = |metric: &str, dimensions: &[&str]| {
            let mut read = dimensions.to_vec();
            read.sort_unstable();
            let found = METRICS.iter().any(|(name, written)| {
                let mut written = written.to_vec();
                written.sort_unstable();
                *name == metric && written == read
            });
            assert!(found, "{metric} by {dimensions:?} is never written");
        };
        let resources = t.resources();
        let mut alarmed = 0;
        for alarm in resources
            .values()
            .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        {
            let p = &alarm["Properties"];
            let stats = p["Metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.pointer("/MetricStat/Metric"));
            for m in std::iter::once(p).chain(stats) {
                if m["Namespace"] != namespace {
                    continue;
                }
                let dimensions: Vec<&str> = m["Dimensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d["Name"].as_str())
                    .collect();
                written(m["MetricName"].as_str().unwrap(), &dimensions);
                alarmed += 1;
            }
        }
        assert!(alarmed >= 4, "{alarmed} alarms read the functions' metrics");
        let body = resources["OperationsDashboard"]
            .pointer("/Properties/DashboardBody/Fn::Sub")
            .and_then(Json::as_str)
            .unwrap();
        // SEARCH('{ReferralRouting/${AWS::StackName},Program,Channel} MetricName="SpeedToLead"')
        let searched = body.split("{ReferralRouting/${AWS::StackName}").skip(1);
        let mut shown = 0;
        for part in searched {
            let (schema, rest) = part.split_once('}').unwrap();
            let dimensions: Vec<&str> = schema.split(',').filter(|d| !d.is_empty()).collect();
            let metric = rest
                .split("MetricName=\\\"")
                .nth(1)
                .and_then(|r| r.split('\\').next())
                .unwrap_or_else(|| panic!("{part}"));
            written(metric, &dimensions);
            shown += 1;
        }
        // ["ReferralRouting/${AWS::StackName}", "Charges", {...}]: no dimensions.
        for part in body
            .split("[\"ReferralRouting/${AWS::StackName}\", \"")
            .skip(1)
        {
            written(part.split('"').next().unwrap(), &[]);
            shown += 1;
        }
        assert!(shown >= 8, "{shown} dashboard metrics are the functions'");
    }

    /// The logical id a normalized `{Ref: X}` or `{Fn::GetAtt: [X, A]}` names.
    fn named_id(v: &Json) -> Option<&str> {
        v.get("Ref").and_then(Json::as_str).or_else(|| {
            let att = v.get("Fn::GetAtt")?;
            att.get(0)
                .and_then(Json::as_str)
                .or_else(|| att.as_str()?.split('.').next())
        })
    }

    /// Every place work is parked (a dead-letter queue, a failure destination) raises an alarm
    /// when it holds anything, every function's errors and throttles raise one, and every alarm
    /// notifies the topic the stack is given.
    #[test]
    fn the_real_template_alarms_on_parked_work_and_on_every_functions_errors_and_throttles() {
        let t = Template::parse(shared::dynamodb::table::TEMPLATE).unwrap();
        let resources = t.resources();
        let alarms: Vec<&Json> = resources
            .values()
            .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
            .map(|r| &r["Properties"])
            .collect();
        let alarmed = |namespace: &str, metric: &str, resource: &str| {
            alarms.iter().any(|a| {
                a["Namespace"] == namespace
                    && a["MetricName"] == metric
                    && a["Dimensions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|d| named_id(&d["Value"]) == Some(resource))
            })
        };
        for f in &t.functions {
            for metric in ["Errors", "Throttles"] {
                assert!(
                    alarmed("AWS/Lambda", metric, &f.logical_id),
                    "no alarm on {}'s {metric}",
                    f.logical_id
                );
            }
        }
        let mut parking = std::collections::BTreeSet::new();
        for (id, r) in &resources {
            let p = &r["Properties"];
            for target in [
                p.pointer("/RedrivePolicy/deadLetterTargetArn"),
                p.pointer("/DeadLetterQueue/TargetArn"),
            ]
            .into_iter()
            .flatten()
            {
                parking.insert(
                    named_id(target)
                        .unwrap_or_else(|| panic!("{id}"))
                        .to_owned(),
                );
            }
            for event in p["Events"].as_object().into_iter().flat_map(|e| e.values()) {
                if let Some(d) =
                    event.pointer("/Properties/DestinationConfig/OnFailure/Destination")
                {
                    parking.insert(named_id(d).unwrap_or_else(|| panic!("{id}")).to_owned());
                }
            }
        }
        assert!(
            parking.contains("BroadcastDeadLetterQueue") && parking.contains("AsyncFailureQueue")
        );
        for queue in &parking {
            assert!(
                alarmed("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue),
                "nothing alarms when {queue} holds parked work"
            );
        }
        assert!(alarmed("AWS/Lambda", "Duration", "ClaimFunction"));
        let notify = serde_json::json!([{"Fn::If": [
            "HasAlarmNotificationTopic",
            {"Ref": "AlarmNotificationTopicArn"},
            {"Ref": "AlarmTopic"}
        ]}]);
        for a in &alarms {
            assert_eq!(a["AlarmActions"], notify, "{a}");
        }
    }

    /// The routes and sources the e2e test and the broadcast rely on are in the real template.
    #[test]
    fn the_real_template_wires_settings_and_broadcast() {
        let w = parse(shared::dynamodb::table::TEMPLATE).unwrap();
        for key in [
            "PUT /teams/{teamId}",
            "PUT /agents/{agentId}",
            "PUT /agents/{agentId}/agreement",
            "PUT /agents/{agentId}/vacation",
            "DELETE /agents/{agentId}/vacation",
            "GET /teams/{teamId}/routing",
            "PUT /teams/{teamId}/routing",
        ] {
            let route = w.routes.iter().find(|r| r.key() == key);
            assert!(
                route.is_some_and(|r| r.binary == "settings" && r.authorized),
                "{key}"
            );
        }
        let broadcast = w
            .queue_sources
            .iter()
            .find(|s| s.binary == "broadcast")
            .unwrap();
        assert_eq!(broadcast.queue, "BroadcastQueue");
        let outbox = w
            .stream_sources
            .iter()
            .find(|s| s.binary == "outbox")
            .unwrap();
        assert_eq!(outbox.filters.len(), 3, "{outbox:?}");
        // Retried until six hours old, then reported to the failure queue.
        assert_eq!(
            (outbox.retries, outbox.max_age, outbox.on_failure.as_deref()),
            (
                None,
                Some(std::time::Duration::from_secs(6 * 3600)),
                Some("AsyncFailureQueue")
            )
        );
        assert!(w.rules.iter().any(|r| r.binary == "escrow-docs"));
    }
}
