//! CloudFormation's intrinsic functions, evaluated against the local stack: what `!Ref`,
//! `!GetAtt`, `!Sub`, `!If` and their kin come to when the template is deployed on the emulators.
//! One resolver serves every reader of the template: each function's environment, its policy and
//! the names of the resources the runner creates.
//!
//! The template's short tags (`!Ref X`) are first rewritten to CloudFormation's long form
//! (`{"Ref": "X"}`), the form SAM's policy templates are written in too, so both go through the
//! same code.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The account moto serves (and every local ARN names).
pub const ACCOUNT: &str = "123456789012";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("!Ref {0}: no such parameter or resource")]
    UnknownReference(String),
    #[error("!GetAtt {0}.{1}: the local stack has no such attribute")]
    UnknownAttribute(String, String),
    #[error("condition {0} is not declared")]
    UnknownCondition(String),
    #[error("{function} is not played locally")]
    Unsupported { function: String },
    #[error("{function}: {problem}")]
    Malformed { function: String, problem: String },
}

fn malformed(function: &str, problem: impl Into<String>) -> ResolveError {
    ResolveError::Malformed {
        function: function.to_owned(),
        problem: problem.into(),
    }
}

/// The template's YAML with its short tags in long form: `!Ref X` becomes `{"Ref": "X"}`,
/// `!GetAtt A.B` becomes `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` becomes `{"Fn::Sub": s}`.
pub fn normalize(v: &serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(seq) => Value::Array(seq.iter().map(normalize).collect()),
        Y::Mapping(m) => Value::Object(
            m.iter()
                .filter_map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        Y::Bool(b) => b.to_string(),
                        Y::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((key, normalize(v)))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = normalize(&t.value);
            match name {
                "Ref" => json!({ "Ref": inner }),
                "Condition" => json!({ "Condition": inner }),
                "GetAtt" => match inner {
                    Value::String(s) => match s.split_once('.') {
                        Some((resource, attribute)) => {
                            json!({ "Fn::GetAtt": [resource, attribute] })
                        }
                        None => json!({ "Fn::GetAtt": [s] }),
                    },
                    other => json!({ "Fn::GetAtt": other }),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

/// A resource as CloudFormation would have created it: what `!Ref` returns and its attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Physical {
    pub reference: String,
    pub attributes: BTreeMap<String, String>,
}

impl Physical {
    pub fn new(reference: impl Into<String>) -> Self {
        Physical {
            reference: reference.into(),
            attributes: BTreeMap::new(),
        }
    }

    pub fn with(mut self, attribute: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(attribute.to_owned(), value.into());
        self
    }
}

/// The local stack: its name and region, the values of the template's parameters and what each
/// resource is called on the emulators.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    pub name: String,
    pub region: String,
    pub parameters: BTreeMap<String, String>,
    pub resources: BTreeMap<String, Physical>,
    /// The template's `Conditions`, in long form, evaluated when used.
    pub conditions: Map<String, Value>,
    /// Names what the stack does not hold (`<Resource.Attribute>`) instead of failing: for
    /// reading a template's permissions without creating anything.
    pub placeholders: bool,
}

/// How references come out: as the local stack's values, or as the template names them
/// (`${ReferralTable.Arn}`, whatever the stack holds), which names a permission the same way
/// across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Symbolic,
}

impl Stack {
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:aws:{service}:{}:{ACCOUNT}:{resource}", self.region)
    }

    fn pseudo(&self, name: &str, mode: Mode) -> Option<String> {
        let local = match name {
            "AWS::StackName" => self.name.clone(),
            "AWS::Region" => self.region.clone(),
            "AWS::AccountId" => ACCOUNT.to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "AWS::StackId" => self.arn("cloudformation", &format!("stack/{}/local", self.name)),
            _ => return None,
        };
        Some(match mode {
            Mode::Local => local,
            Mode::Symbolic => format!("${{{name}}}"),
        })
    }

    /// `!Ref name`: a pseudo parameter, a parameter or a resource. Symbolic names need not
    /// exist in the stack: the report of unused permissions names grants without one.
    fn reference(&self, name: &str, mode: Mode) -> Result<String, ResolveError> {
        if let Some(v) = self.pseudo(name, mode) {
            return Ok(v);
        }
        if mode == Mode::Symbolic {
            return Ok(format!("${{{name}}}"));
        }
        self.parameters
            .get(name)
            .cloned()
            .or_else(|| self.resources.get(name).map(|r| r.reference.clone()))
            .or_else(|| self.placeholders.then(|| format!("<{name}>")))
            .ok_or_else(|| ResolveError::UnknownReference(name.to_owned()))
    }

    fn attribute(
        &self,
        resource: &str,
        attribute: &str,
        mode: Mode,
    ) -> Result<String, ResolveError> {
        if mode == Mode::Symbolic {
            return Ok(format!("${{{resource}.{attribute}}}"));
        }
        self.resources
            .get(resource)
            .and_then(|r| r.attributes.get(attribute))
            .cloned()
            .or_else(|| {
                self.placeholders
                    .then(|| format!("<{resource}.{attribute}>"))
            })
            .ok_or_else(|| {
                ResolveError::UnknownAttribute(resource.to_owned(), attribute.to_owned())
            })
    }

    /// Whether the named condition holds (conditions are always evaluated with local values).
    pub fn condition(&self, name: &str) -> Result<bool, ResolveError> {
        let expression = self
            .conditions
            .get(name)
            .ok_or_else(|| ResolveError::UnknownCondition(name.to_owned()))?;
        self.truth(expression)
    }

    fn truth(&self, v: &Value) -> Result<bool, ResolveError> {
        match self.resolve(v, Mode::Local)? {
            Some(Value::Bool(b)) => Ok(b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            other => Err(malformed(
                "condition",
                format!("{other:?} is not a boolean"),
            )),
        }
    }

    /// Evaluates every intrinsic function in `v`. `None` is `AWS::NoValue`: the property (or list
    /// item) is left out, as CloudFormation leaves it out.
    pub fn resolve(&self, v: &Value, mode: Mode) -> Result<Option<Value>, ResolveError> {
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(r) = self.resolve(item, mode)? {
                        out.push(r);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(m) if m.len() == 1 => {
                let (key, arg) = m.iter().next().expect("one entry");
                if key == "Ref" || key.starts_with("Fn::") || key == "Condition" {
                    self.function(key, arg, mode)
                } else {
                    self.object(m, mode)
                }
            }
            Value::Object(m) => self.object(m, mode),
            other => Ok(Some(other.clone())),
        }
    }

    fn object(&self, m: &Map<String, Value>, mode: Mode) -> Result<Option<Value>, ResolveError> {
        let mut out = Map::new();
        for (k, v) in m {
            if let Some(r) = self.resolve(v, mode)? {
                out.insert(k.clone(), r);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    /// Resolves `v` to a string (numbers are written out, as CloudFormation does).
    pub fn string(&self, v: &Value, mode: Mode) -> Result<Option<String>, ResolveError> {
        Ok(match self.resolve(v, mode)? {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(other) => return Err(malformed("value", format!("{other} is not a string"))),
        })
    }

    fn required_string(&self, v: &Value, mode: Mode, what: &str) -> Result<String, ResolveError> {
        self.string(v, mode)?
            .ok_or_else(|| malformed(what, "AWS::NoValue where a value is needed"))
    }

    fn function(&self, name: &str, arg: &Value, mode: Mode) -> Result<Option<Value>, ResolveError> {
        let text = |s: String| Ok(Some(Value::String(s)));
        match name {
            "Ref" => {
                let target = arg
                    .as_str()
                    .ok_or_else(|| malformed("Ref", "needs a name"))?;
                if target == "AWS::NoValue" {
                    return Ok(None);
                }
                text(self.reference(target, mode)?)
            }
            "Fn::GetAtt" => {
                let parts: Vec<String> = match arg {
                    Value::Array(a) => a
                        .iter()
                        .map(|p| self.required_string(p, mode, "Fn::GetAtt"))
                        .collect::<Result<_, _>>()?,
                    Value::String(s) => s.splitn(2, '.').map(str::to_owned).collect(),
                    _ => vec![],
                };
                let [resource, attribute] = parts.as_slice() else {
                    return Err(malformed("Fn::GetAtt", "needs Resource.Attribute"));
                };
                text(self.attribute(resource, attribute, mode)?)
            }
            "Fn::Sub" => {
                let (template, vars) = match arg {
                    Value::String(s) => (s.as_str(), Map::new()),
                    Value::Array(a) if a.len() == 2 => (
                        a[0].as_str()
                            .ok_or_else(|| malformed("Fn::Sub", "the template is not a string"))?,
                        a[1].as_object().cloned().unwrap_or_default(),
                    ),
                    _ => return Err(malformed("Fn::Sub", "needs a string or [string, map]")),
                };
                let mut values = BTreeMap::new();
                for (k, v) in &vars {
                    values.insert(k.clone(), self.required_string(v, mode, "Fn::Sub")?);
                }
                text(self.substitute(template, &values, mode)?)
            }
            "Fn::If" => {
                let [condition, yes, no] = arg.as_array().map(Vec::as_slice).unwrap_or_default()
                else {
                    return Err(malformed("Fn::If", "needs [condition, then, else]"));
                };
                let condition = condition
                    .as_str()
                    .ok_or_else(|| malformed("Fn::If", "the condition is not a name"))?;
                self.resolve(if self.condition(condition)? { yes } else { no }, mode)
            }
            "Condition" => {
                let condition = arg
                    .as_str()
                    .ok_or_else(|| malformed("Condition", "needs a name"))?;
                Ok(Some(Value::Bool(self.condition(condition)?)))
            }
            "Fn::Equals" => {
                let [a, b] = arg.as_array().map(Vec::as_slice).unwrap_or_default() else {
                    return Err(malformed("Fn::Equals", "needs two values"));
                };
                Ok(Some(Value::Bool(
                    self.resolve(a, Mode::Local)? == self.resolve(b, Mode::Local)?,
                )))
            }
            "Fn::Not" => {
                let [a] = arg.as_array().map(Vec::as_slice).unwrap_or_default() else {
                    return Err(malformed("Fn::Not", "needs one condition"));
                };
                Ok(Some(Value::Bool(!self.truth(a)?)))
            }
            "Fn::And" | "Fn::Or" => {
                let items = arg
                    .as_array()
                    .ok_or_else(|| malformed(name, "needs a list of conditions"))?;
                let mut values = items.iter().map(|c| self.truth(c));
                let result = if name == "Fn::And" {
                    values.try_fold(true, |acc, v| v.map(|v| acc && v))?
                } else {
                    values.try_fold(false, |acc, v| v.map(|v| acc || v))?
                };
                Ok(Some(Value::Bool(result)))
            }
            "Fn::Join" => {
                let [separator, items] = arg.as_array().map(Vec::as_slice).unwrap_or_default()
                else {
                    return Err(malformed("Fn::Join", "needs [separator, list]"));
                };
                let separator = separator.as_str().unwrap_or_default();
                let Some(Value::Array(items)) = self.resolve(items, mode)? else {
                    return Err(malformed("Fn::Join", "the second argument is not a list"));
                };
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                text(parts.join(separator))
            }
            "Fn::Split" => {
                let [separator, source] = arg.as_array().map(Vec::as_slice).unwrap_or_default()
                else {
                    return Err(malformed("Fn::Split", "needs [separator, string]"));
                };
                let separator = separator.as_str().unwrap_or_default();
                let source = self.required_string(source, mode, "Fn::Split")?;
                Ok(Some(Value::Array(
                    source
                        .split(separator)
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                )))
            }
            "Fn::Select" => {
                let [index, list] = arg.as_array().map(Vec::as_slice).unwrap_or_default() else {
                    return Err(malformed("Fn::Select", "needs [index, list]"));
                };
                let index: usize = self
                    .required_string(index, mode, "Fn::Select")?
                    .parse()
                    .map_err(|_| malformed("Fn::Select", "the index is not a number"))?;
                let Some(Value::Array(items)) = self.resolve(list, mode)? else {
                    return Err(malformed("Fn::Select", "the second argument is not a list"));
                };
                items
                    .get(index)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| malformed("Fn::Select", "the index is past the list"))
            }
            other => Err(ResolveError::Unsupported {
                function: other.to_owned(),
            }),
        }
    }

    /// `Fn::Sub`'s `${Name}`, `${Resource.Attribute}` and `${!Literal}`.
    fn substitute(
        &self,
        template: &str,
        values: &BTreeMap<String, String>,
        mode: Mode,
    ) -> Result<String, ResolveError> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| malformed("Fn::Sub", format!("unclosed ${{ in {template}")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = values.get(name) {
                out.push_str(v);
            } else if let Some((resource, attribute)) = name.split_once('.')
                && self.pseudo(name, mode).is_none()
            {
                out.push_str(&self.attribute(resource, attribute, mode)?);
            } else {
                out.push_str(&self.reference(name, mode)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        let mut s = Stack {
            name: "demo".into(),
            region: "us-east-1".into(),
            ..Stack::default()
        };
        s.parameters.insert("Empty".into(), String::new());
        s.parameters
            .insert("Sender".into(), "no-reply@example.com".into());
        s.resources.insert(
            "Table".into(),
            Physical::new("demo-table").with("Arn", s.arn("dynamodb", "table/demo-table")),
        );
        s.conditions.insert(
            "HasEmpty".into(),
            json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "Empty"}, ""]}]}),
        );
        s
    }

    fn yaml(text: &str) -> Value {
        normalize(&serde_norway::from_str(text).unwrap())
    }

    #[test]
    fn short_tags_become_the_long_form() {
        assert_eq!(yaml("!Ref Table"), json!({"Ref": "Table"}));
        assert_eq!(
            yaml("!GetAtt Table.Arn"),
            json!({"Fn::GetAtt": ["Table", "Arn"]})
        );
        assert_eq!(
            yaml("!If [HasEmpty, a, !Ref AWS::NoValue]"),
            json!({"Fn::If": ["HasEmpty", "a", {"Ref": "AWS::NoValue"}]})
        );
    }

    #[test]
    fn references_attributes_and_substitutions_resolve_to_local_names() {
        let s = stack();
        let local = |t: &str| s.resolve(&yaml(t), Mode::Local).unwrap();
        assert_eq!(local("!Ref Table"), Some(json!("demo-table")));
        assert_eq!(
            local(r#"!Sub "${Table.Arn}/index/Area""#),
            Some(json!(
                "arn:aws:dynamodb:us-east-1:123456789012:table/demo-table/index/Area"
            ))
        );
        assert_eq!(
            local(
                r#"!Sub "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${Sender}""#
            ),
            Some(json!(
                "arn:aws:ses:us-east-1:123456789012:identity/no-reply@example.com"
            ))
        );
        assert_eq!(
            local(r#"!Sub ["${name}-x", {name: !Ref AWS::StackName}]"#),
            Some(json!("demo-x"))
        );
        assert_eq!(
            local(r#"!Select [1, !Split ["@", !Ref Sender]]"#),
            Some(json!("example.com"))
        );
    }

    #[test]
    fn conditions_choose_and_no_value_leaves_out() {
        let s = stack();
        let v = yaml("{A: !If [HasEmpty, yes, !Ref AWS::NoValue], B: [1, !Ref AWS::NoValue]}");
        assert_eq!(s.resolve(&v, Mode::Local).unwrap(), Some(json!({"B": [1]})));
    }

    #[test]
    fn symbolic_names_say_what_the_template_says() {
        let s = stack();
        let v = yaml(r#"!Sub "${Table.Arn}/index/Area""#);
        assert_eq!(
            s.resolve(&v, Mode::Symbolic).unwrap(),
            Some(json!("${Table.Arn}/index/Area"))
        );
        assert_eq!(
            s.resolve(&yaml("!GetAtt Table.Arn"), Mode::Symbolic)
                .unwrap(),
            Some(json!("${Table.Arn}"))
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let s = stack();
        assert_eq!(
            s.resolve(&yaml("!Ref Nope"), Mode::Local),
            Err(ResolveError::UnknownReference("Nope".into()))
        );
        assert!(
            s.resolve(&yaml("!GetAtt Table.StreamArn"), Mode::Local)
                .is_err()
        );
        assert!(s.resolve(&yaml("!ImportValue x"), Mode::Local).is_err());
    }
}
