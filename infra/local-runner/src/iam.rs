//! Each function's identity-based policy, as the template grants it, and IAM's decision on a
//! request: an explicit `Deny` wins, else any matching `Allow` allows, else the request is
//! denied. Actions match case-insensitively and resources case-sensitively, both with `*` and
//! `?` wildcards; conditions with the `String*`, `Arn*` and `Bool` operators are evaluated.
//!
//! A function's `Policies` are inline policy documents or SAM policy templates, which are
//! expanded as SAM's own `policy_templates.json` defines them (read from the SAM translator the
//! SAM CLI installs into the project's virtualenv, so `sam build` and the local check expand the
//! same text). Managed policies are refused: the check could not say what they allow.
//!
//! Every statement is resolved twice: with the local stack's values, to decide requests, and as
//! the template names it (`${ReferralTable.Arn}/index/AreaIndex`), to name each grant the same way
//! in every run, so the grants no run ever used can be listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cloudformation::{Mode, ResolveError, Stack};
use crate::template::FunctionDecl;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{function}: {source}")]
    Resolve {
        function: String,
        #[source]
        source: ResolveError,
    },
    #[error("{function}: {problem}")]
    Policy { function: String, problem: String },
    #[error(
        "SAM's policy templates are not at {0}: run `infra/local/stack.sh install` (it installs the SAM CLI)"
    )]
    NoSamTemplates(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A resource pattern: what it is locally, and how the template names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub local: String,
    pub named: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub resources: Vec<Pattern>,
    pub not_resources: Vec<Pattern>,
    pub conditions: Vec<Condition>,
}

/// One permission a function is granted: an action (as written, wildcards and all) on a
/// resource (as the template names it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Grant {
    pub function: String,
    pub action: String,
    pub resource: String,
}

/// A function's policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The function's logical id.
    pub function: String,
    pub statements: Vec<Statement>,
}

/// What a request asks: one action on one resource (an ARN, or `*` for actions that name none),
/// with the request's condition keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub action: String,
    pub resource: String,
    pub context: BTreeMap<String, String>,
}

impl Check {
    pub fn new(action: &str, resource: impl Into<String>) -> Self {
        Check {
            action: action.to_owned(),
            resource: resource.into(),
            context: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.context.insert(key.to_owned(), value.to_owned());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// With the grants that allowed it.
    Allowed(Vec<Grant>),
    Denied {
        explicit: bool,
    },
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
pub fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if ignore_case {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (fold(pattern), fold(text));
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

const OPERATORS: [&str; 10] = [
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
];

impl Condition {
    fn holds(&self, context: &BTreeMap<String, String>) -> bool {
        let (operator, if_exists) = match self.operator.strip_suffix("IfExists") {
            Some(op) => (op, true),
            None => (self.operator.as_str(), false),
        };
        let Some(value) = context
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&self.key))
            .map(|(_, v)| v)
        else {
            // A missing key fails every operator but the negated ones and `...IfExists`.
            return if_exists || operator.contains("Not");
        };
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|v| f(v));
        match operator {
            "StringEquals" | "ArnEquals" => any(&|v| v == value),
            "StringNotEquals" | "ArnNotEquals" => !any(&|v| v == value),
            "StringEqualsIgnoreCase" => any(&|v| v.eq_ignore_ascii_case(value)),
            "StringNotEqualsIgnoreCase" => !any(&|v| v.eq_ignore_ascii_case(value)),
            "StringLike" | "ArnLike" => any(&|v| wildcard(v, value, false)),
            "StringNotLike" | "ArnNotLike" => !any(&|v| wildcard(v, value, false)),
            "Bool" => any(&|v| v.eq_ignore_ascii_case(value)),
            _ => false,
        }
    }
}

impl Statement {
    fn applies(&self, check: &Check) -> bool {
        let action =
            |patterns: &[String]| patterns.iter().any(|p| wildcard(p, &check.action, true));
        let resource = |patterns: &[Pattern]| {
            patterns
                .iter()
                .any(|p| wildcard(&p.local, &check.resource, false))
        };
        let action_ok = if self.not_actions.is_empty() {
            action(&self.actions)
        } else {
            !action(&self.not_actions)
        };
        let resource_ok = if self.not_resources.is_empty() {
            resource(&self.resources)
        } else {
            !resource(&self.not_resources)
        };
        action_ok && resource_ok && self.conditions.iter().all(|c| c.holds(&check.context))
    }
}

impl Policy {
    /// IAM's decision on `check`.
    pub fn decide(&self, check: &Check) -> Decision {
        let applying: Vec<&Statement> = self
            .statements
            .iter()
            .filter(|s| s.applies(check))
            .collect();
        if applying.iter().any(|s| s.effect == Effect::Deny) {
            return Decision::Denied { explicit: true };
        }
        let mut grants = vec![];
        for s in applying {
            for a in s
                .actions
                .iter()
                .filter(|a| wildcard(a, &check.action, true))
            {
                for r in s
                    .resources
                    .iter()
                    .filter(|r| wildcard(&r.local, &check.resource, false))
                {
                    grants.push(self.grant(a, &r.named));
                }
            }
        }
        if grants.is_empty() {
            Decision::Denied { explicit: false }
        } else {
            grants.sort();
            grants.dedup();
            Decision::Allowed(grants)
        }
    }

    fn grant(&self, action: &str, resource: &str) -> Grant {
        Grant {
            function: self.function.clone(),
            action: action.to_owned(),
            resource: resource.to_owned(),
        }
    }

    /// Every action-on-resource pair the policy allows.
    pub fn grants(&self) -> Vec<Grant> {
        let mut out = vec![];
        for s in self.statements.iter().filter(|s| s.effect == Effect::Allow) {
            for a in &s.actions {
                for r in &s.resources {
                    out.push(self.grant(a, &r.named));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// SAM's policy templates (`Templates` of its `policy_templates.json`).
#[derive(Debug, Clone, Default)]
pub struct SamTemplates(Map<String, Value>);

impl SamTemplates {
    /// From SAM's translator in the project's virtualenv (`$SAM_POLICY_TEMPLATES` names another
    /// file).
    pub fn installed(workspace: &Path) -> Result<Self, PolicyError> {
        let path = match std::env::var_os("SAM_POLICY_TEMPLATES") {
            Some(p) => PathBuf::from(p),
            None => find_installed(workspace).unwrap_or_else(|| {
                workspace.join(
                    ".local/venv/lib/python3/site-packages/samtranslator/policy_templates_data/policy_templates.json",
                )
            }),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|_| PolicyError::NoSamTemplates(path.display().to_string()))?;
        Self::parse(&text).map_err(|_| PolicyError::NoSamTemplates(path.display().to_string()))
    }

    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let doc: Value = serde_json::from_str(text)?;
        Ok(SamTemplates(
            doc.get("Templates")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        ))
    }

    /// The template `name` with its `{"Ref": Parameter}`s replaced by `values`, as SAM expands it.
    fn expand(&self, name: &str, values: &Map<String, Value>) -> Result<Value, String> {
        let template = self.0.get(name).ok_or_else(|| {
            format!("{name} is neither a policy document nor a SAM policy template")
        })?;
        let declared = template
            .get("Parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(missing) = declared.keys().find(|p| !values.contains_key(*p)) {
            return Err(format!("{name} needs its parameter {missing}"));
        }
        let definition = template
            .get("Definition")
            .cloned()
            .ok_or_else(|| format!("{name} has no Definition"))?;
        Ok(replace_refs(&definition, values))
    }
}

fn find_installed(workspace: &Path) -> Option<PathBuf> {
    let lib = workspace.join(".local/venv/lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|entry| {
        let p = entry
            .path()
            .join("site-packages/samtranslator/policy_templates_data/policy_templates.json");
        p.is_file().then_some(p)
    })
}

fn replace_refs(v: &Value, values: &Map<String, Value>) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 => {
            if let Some(Value::String(name)) = m.get("Ref")
                && let Some(value) = values.get(name)
            {
                return value.clone();
            }
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), replace_refs(v, values)))
                    .collect(),
            )
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), replace_refs(v, values)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| replace_refs(v, values)).collect()),
        other => other.clone(),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                other if !other.is_null() => Some(other.to_string()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// The function's policy, resolved against `stack`.
pub fn policy(f: &FunctionDecl, stack: &Stack, sam: &SamTemplates) -> Result<Policy, PolicyError> {
    let fail = |problem: String| PolicyError::Policy {
        function: f.logical_id.clone(),
        problem,
    };
    let resolve = |v: &Value, mode: Mode| {
        stack
            .resolve(v, mode)
            .map_err(|source| PolicyError::Resolve {
                function: f.logical_id.clone(),
                source,
            })
    };
    let raw = match f.properties.get("Policies") {
        None => Value::Array(vec![]),
        Some(Value::Array(a)) => Value::Array(a.clone()),
        Some(other) => Value::Array(vec![other.clone()]),
    };
    // Conditions are decided with local values in both passes, so the two line up item by item.
    let local = resolve(&raw, Mode::Local)?.unwrap_or(Value::Array(vec![]));
    let named = resolve(&raw, Mode::Symbolic)?.unwrap_or(Value::Array(vec![]));
    let (Value::Array(local), Value::Array(named)) = (local, named) else {
        return Err(fail("Policies is not a list".into()));
    };
    let mut statements = vec![];
    for (l, n) in local.iter().zip(&named) {
        let (l, n) = match l {
            Value::String(name) => {
                return Err(fail(format!(
                    "the managed policy {name} is not checked locally: write the statements it is for inline"
                )));
            }
            Value::Object(m) if m.contains_key("Statement") => (l.clone(), n.clone()),
            Value::Object(m) if m.len() == 1 => {
                let (name, values) = m.iter().next().expect("one entry");
                let values = values.as_object().cloned().unwrap_or_default();
                let named_values = n
                    .get(name)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let l = sam.expand(name, &values).map_err(fail)?;
                let n = sam.expand(name, &named_values).map_err(fail)?;
                (
                    resolve(&l, Mode::Local)?.unwrap_or_default(),
                    resolve(&n, Mode::Symbolic)?.unwrap_or_default(),
                )
            }
            other => return Err(fail(format!("cannot read the policy {other}"))),
        };
        let local_statements = l.get("Statement").cloned().unwrap_or_default();
        let named_statements = n.get("Statement").cloned().unwrap_or_default();
        let as_list = |v: Value| match v {
            Value::Array(a) => a,
            Value::Null => vec![],
            other => vec![other],
        };
        for (ls, ns) in as_list(local_statements)
            .into_iter()
            .zip(as_list(named_statements))
        {
            statements.push(statement(&ls, &ns).map_err(fail)?);
        }
    }
    Ok(Policy {
        function: f.logical_id.clone(),
        statements,
    })
}

fn statement(local: &Value, named: &Value) -> Result<Statement, String> {
    let effect = match local.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        other => return Err(format!("a statement's Effect is {other:?}")),
    };
    let patterns = |key: &str| -> Vec<Pattern> {
        strings(local.get(key))
            .into_iter()
            .zip(strings(named.get(key)))
            .map(|(local, named)| Pattern { local, named })
            .collect()
    };
    let mut conditions = vec![];
    if let Some(block) = local.get("Condition").and_then(Value::as_object) {
        for (operator, keys) in block {
            let base = operator.strip_suffix("IfExists").unwrap_or(operator);
            if !OPERATORS.contains(&base) && base != "Bool" {
                return Err(format!(
                    "the condition operator {operator} is not evaluated locally"
                ));
            }
            for (key, values) in keys.as_object().cloned().unwrap_or_default() {
                conditions.push(Condition {
                    operator: operator.clone(),
                    key,
                    values: strings(Some(&values)),
                });
            }
        }
    }
    let s = Statement {
        effect,
        actions: strings(local.get("Action")),
        not_actions: strings(local.get("NotAction")),
        resources: patterns("Resource"),
        not_resources: patterns("NotResource"),
        conditions,
    };
    if s.actions.is_empty() && s.not_actions.is_empty() {
        return Err("a statement has no Action".into());
    }
    if s.resources.is_empty() && s.not_resources.is_empty() {
        return Err("a statement has no Resource".into());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudformation::Physical;
    use crate::template::Template;

    const SAM: &str = r#"{"Templates": {
      "SQSSendMessagePolicy": {
        "Definition": {"Statement": [{"Action": ["sqs:SendMessage*"], "Effect": "Allow",
          "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}",
            {"queueName": {"Ref": "QueueName"}}]}}]},
        "Parameters": {"QueueName": {}}}}}"#;

    const TEMPLATE: &str = r#"
Conditions:
  Yes: !Equals [a, a]
Resources:
  Table: {Type: AWS::DynamoDB::Table}
  Queue: {Type: AWS::SQS::Queue}
  Role: {Type: AWS::IAM::Role}
  F:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:Query]
              Resource: !GetAtt Table.Arn
            - Effect: Allow
              Action: dynamodb:Query
              Resource: !Sub "${Table.Arn}/index/*"
            - !If
              - Yes
              - Effect: Allow
                Action: iam:PassRole
                Resource: !GetAtt Role.Arn
                Condition:
                  StringEquals:
                    iam:PassedToService: scheduler.amazonaws.com
              - !Ref AWS::NoValue
            - Effect: Deny
              Action: dynamodb:*
              Resource: !Sub "${Table.Arn}/index/Secret"
        - SQSSendMessagePolicy:
            QueueName: !GetAtt Queue.QueueName
"#;

    fn policy_of_f() -> Policy {
        let t = Template::parse(TEMPLATE).unwrap();
        let mut s = Stack {
            name: "demo".into(),
            region: "us-east-1".into(),
            conditions: t.conditions(),
            ..Stack::default()
        };
        let table = s.arn("dynamodb", "table/demo-table");
        s.resources.insert(
            "Table".into(),
            Physical::new("demo-table").with("Arn", table),
        );
        s.resources.insert(
            "Queue".into(),
            Physical::new("http://q").with("QueueName", "demo-q"),
        );
        s.resources.insert(
            "Role".into(),
            Physical::new("r").with("Arn", "arn:aws:iam::123456789012:role/r"),
        );
        let sam = SamTemplates::parse(SAM).unwrap();
        policy(&t.functions[0], &s, &sam).unwrap()
    }

    const TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/demo-table";

    #[test]
    fn wildcards_match_as_iam_matches() {
        assert!(wildcard("dynamodb:*", "dynamodb:Query", true));
        assert!(wildcard("DynamoDB:query", "dynamodb:Query", true));
        assert!(!wildcard("dynamodb:Get*", "dynamodb:Query", true));
        assert!(wildcard("arn:aws:s?s:*:q", "arn:aws:sqs:x:q", false));
        assert!(!wildcard("arn:aws:sqs:*:Q", "arn:aws:sqs:x:q", false));
        assert!(wildcard("*", "*", false));
        assert!(!wildcard("arn:*", "*", false));
    }

    #[test]
    fn allowed_requests_name_the_grants_that_allowed_them() {
        let p = policy_of_f();
        assert_eq!(
            p.decide(&Check::new("dynamodb:Query", TABLE)),
            Decision::Allowed(vec![Grant {
                function: "F".into(),
                action: "dynamodb:Query".into(),
                resource: "${Table.Arn}".into()
            }])
        );
        let index = format!("{TABLE}/index/Area");
        assert!(matches!(
            p.decide(&Check::new("dynamodb:Query", &index)),
            Decision::Allowed(g) if g[0].resource == "${Table.Arn}/index/*"
        ));
        assert_eq!(
            p.decide(&Check::new("dynamodb:GetItem", &index)),
            Decision::Denied { explicit: false }
        );
        assert_eq!(
            p.decide(&Check::new("dynamodb:PutItem", TABLE)),
            Decision::Denied { explicit: false }
        );
    }

    #[test]
    fn an_explicit_deny_wins() {
        let p = policy_of_f();
        let secret = format!("{TABLE}/index/Secret");
        assert_eq!(
            p.decide(&Check::new("dynamodb:Query", &secret)),
            Decision::Denied { explicit: true }
        );
    }

    #[test]
    fn conditions_are_evaluated_against_the_request() {
        let p = policy_of_f();
        let role = "arn:aws:iam::123456789012:role/r";
        let pass = Check::new("iam:PassRole", role);
        assert_eq!(p.decide(&pass), Decision::Denied { explicit: false });
        let to_scheduler = pass.with("iam:PassedToService", "scheduler.amazonaws.com");
        assert!(matches!(p.decide(&to_scheduler), Decision::Allowed(_)));
    }

    #[test]
    fn sam_policy_templates_expand_as_sam_defines_them() {
        let p = policy_of_f();
        let queue = "arn:aws:sqs:us-east-1:123456789012:demo-q";
        assert_eq!(
            p.decide(&Check::new("sqs:SendMessage", queue)),
            Decision::Allowed(vec![Grant {
                function: "F".into(),
                action: "sqs:SendMessage*".into(),
                resource:
                    "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${Queue.QueueName}"
                        .into()
            }])
        );
        assert_eq!(p.grants().len(), 5);
    }

    #[test]
    fn managed_policies_and_unknown_templates_are_refused() {
        let t = Template::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Policies: [AmazonDynamoDBFullAccess]\n",
        )
        .unwrap();
        let s = Stack::default();
        let e = policy(&t.functions[0], &s, &SamTemplates::default()).unwrap_err();
        assert!(e.to_string().contains("managed policy"), "{e}");
        let t = Template::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Policies: [{NoSuchPolicy: {}}]\n",
        )
        .unwrap();
        let e = policy(&t.functions[0], &s, &SamTemplates::default()).unwrap_err();
        assert!(e.to_string().contains("NoSuchPolicy"), "{e}");
    }
}
