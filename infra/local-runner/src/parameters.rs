//! The local values of the template's parameters. Development values live here and in
//! `infra/local/parameters.env`, never in the functions: a function reads what the template
//! gives it, locally as when deployed.
//!
//! A value comes from, later ones winning:
//! 1. the parameter's `Default` in the template;
//! 2. `infra/local/parameters.env` (`Name=Value` lines, as `sam deploy --parameter-overrides`
//!    takes them);
//! 3. the runner's environment, by the variable the template sets from the parameter
//!    (`TWILIO_AUTH_TOKEN` for `TwilioAuthToken`), so `WARM_TRANSFER_TIMEOUT_SECONDS=600 make run`
//!    does what it says;
//! 4. `--parameter Name=Value`;
//! 5. what only the runner knows (the gateway's URL, the platform application it created).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::template::Template;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParameterError {
    #[error("cannot read {path}: {problem}")]
    File { path: String, problem: String },
    #[error("{path}:{line}: expected Name=Value")]
    Syntax { path: String, line: usize },
    #[error("{path}: {name} is not a parameter of the template")]
    Unknown { path: String, name: String },
    #[error(
        "parameter {0} has no local value: add `{0}=...` to infra/local/parameters.env (it has no Default)"
    )]
    Missing(String),
}

/// `Name=Value` lines; `#` starts a comment line.
pub fn read_file(path: &Path) -> Result<Vec<(String, String)>, ParameterError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ParameterError::File {
        path: shown.clone(),
        problem: e.to_string(),
    })?;
    parse_lines(&text, &shown)
}

pub fn parse_lines(text: &str, path: &str) -> Result<Vec<(String, String)>, ParameterError> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or(ParameterError::Syntax {
            path: path.to_owned(),
            line: i + 1,
        })?;
        out.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

/// Parameters of the API itself rather than of a function, set from the runner's environment by
/// these variables.
const RUNNER_VARIABLES: [(&str, &str); 1] = [("CORS_ALLOWED_ORIGINS", "CorsAllowedOrigins")];

/// Which parameter each environment variable is set from, where the template sets it with a
/// plain `!Ref Parameter` (in `Globals` or a function), and the runner's own.
pub fn variables_from_parameters(template: &Template) -> BTreeMap<String, String> {
    let parameters = template.parameters();
    let mut out = BTreeMap::new();
    for (variable, parameter) in RUNNER_VARIABLES {
        if parameters.contains_key(parameter) {
            out.insert(variable.to_owned(), parameter.to_owned());
        }
    }
    for f in &template.functions {
        for (variable, value) in f.variables() {
            if let Some(p) = value.get("Ref").and_then(Value::as_str)
                && parameters.contains_key(p)
            {
                out.insert(variable, p.to_owned());
            }
        }
    }
    out
}

/// Every parameter's local value, by the order in the module docs.
pub fn local_values(
    template: &Template,
    file: &[(String, String)],
    file_path: &str,
    environment: impl Fn(&str) -> Option<String>,
    overrides: &[(String, String)],
    computed: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ParameterError> {
    let declared = template.parameters();
    let mut values = BTreeMap::new();
    for (name, declaration) in &declared {
        if let Some(default) = declaration.get("Default") {
            let text = match default {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            values.insert(name.clone(), text);
        }
    }
    for (name, value) in file.iter().chain(overrides) {
        if !declared.contains_key(name) {
            return Err(ParameterError::Unknown {
                path: file_path.to_owned(),
                name: name.clone(),
            });
        }
        values.insert(name.clone(), value.clone());
    }
    for (variable, parameter) in variables_from_parameters(template) {
        if let Some(v) = environment(&variable).filter(|v| !v.is_empty()) {
            values.insert(parameter, v);
        }
    }
    // Overrides win over the environment too.
    for (name, value) in overrides {
        values.insert(name.clone(), value.clone());
    }
    for (name, value) in computed {
        if declared.contains_key(name) {
            values.insert(name.clone(), value.clone());
        }
    }
    if let Some(missing) = declared.keys().find(|k| !values.contains_key(*k)) {
        return Err(ParameterError::Missing(missing.clone()));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Token:
    Type: String
    NoEcho: true
  Timeout:
    Type: Number
    Default: 90
  Url:
    Type: String
Globals:
  Function:
    Environment:
      Variables:
        TOKEN: !Ref Token
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          TIMEOUT_SECONDS: !Ref Timeout
          URL: !Ref Url
"#;

    #[test]
    fn defaults_file_environment_overrides_and_computed_values_in_that_order() {
        let t = Template::parse(TEMPLATE).unwrap();
        let file = parse_lines("# local\nToken=from-file\n\nTimeout = 60\n", "p.env").unwrap();
        let computed = BTreeMap::from([("Url".to_owned(), "http://127.0.0.1:3000".to_owned())]);
        let env = |v: &str| (v == "TIMEOUT_SECONDS").then(|| "600".to_owned());
        let values = local_values(&t, &file, "p.env", env, &[], &computed).unwrap();
        assert_eq!(values["Token"], "from-file");
        assert_eq!(values["Timeout"], "600");
        assert_eq!(values["Url"], "http://127.0.0.1:3000");
        let overrides = [("Timeout".to_owned(), "5".to_owned())];
        let values = local_values(&t, &file, "p.env", env, &overrides, &computed).unwrap();
        assert_eq!(values["Timeout"], "5");
    }

    #[test]
    fn a_parameter_without_a_value_or_an_unknown_name_is_refused() {
        let t = Template::parse(TEMPLATE).unwrap();
        let none = |_: &str| None;
        assert_eq!(
            local_values(&t, &[], "p.env", none, &[], &BTreeMap::new()),
            Err(ParameterError::Missing("Token".into()))
        );
        let file = parse_lines("Nope=1", "p.env").unwrap();
        assert!(matches!(
            local_values(&t, &file, "p.env", none, &[], &BTreeMap::new()),
            Err(ParameterError::Unknown { .. })
        ));
        assert!(parse_lines("just words", "p.env").is_err());
    }

    #[test]
    fn variables_name_the_parameter_they_are_set_from() {
        let t = Template::parse(TEMPLATE).unwrap();
        let map = variables_from_parameters(&t);
        assert_eq!(map["TOKEN"], "Token");
        assert_eq!(map["TIMEOUT_SECONDS"], "Timeout");
    }
}
