//! Each function's environment as Lambda gives it: the template's variables (`Globals` and the
//! function's own, resolved against the local stack), the variables Lambda itself sets, and the
//! local endpoints in place of AWS's and Twilio's. Nothing of the runner's own environment leaks
//! in, so a setting the template does not give a function is missing locally too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::cloudformation::{Mode, ResolveError, Stack};
use crate::lambda::FunctionSpec;
use crate::template::FunctionDecl;

/// Variables a developer's shell passes through to the functions: logging only.
const PASSED_THROUGH: [&str; 2] = ["RUST_LOG", "RUST_BACKTRACE"];

/// What replaces AWS and Twilio locally.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// `AWS_ENDPOINT_URL*` variables, as the SDKs read them.
    pub aws: BTreeMap<String, String>,
    /// The telephony stand-in (`TWILIO_API_BASE`), given to functions the template gives Twilio
    /// credentials.
    pub twilio_api_base: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{function}: environment variable {variable}: {source}")]
pub struct EnvironmentError {
    pub function: String,
    pub variable: String,
    #[source]
    pub source: ResolveError,
}

/// The function's template variables, resolved; a variable that comes to `AWS::NoValue` is unset.
pub fn template_variables(
    f: &FunctionDecl,
    stack: &Stack,
) -> Result<BTreeMap<String, String>, EnvironmentError> {
    let mut out = BTreeMap::new();
    for (variable, value) in f.variables() {
        let resolved = stack
            .string(&value, Mode::Local)
            .map_err(|source| EnvironmentError {
                function: f.logical_id.clone(),
                variable: variable.clone(),
                source,
            })?;
        if let Some(v) = resolved {
            out.insert(variable, v);
        }
    }
    Ok(out)
}

/// The access key id a function's requests carry: it names the function to the permission
/// check, as a deployed function's temporary credentials name its role. Letters and digits only,
/// as DynamoDB Local requires.
pub fn access_key_id(binary: &str) -> String {
    let name: String = binary
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    format!("LOCAL{name}")
}

/// The deployed name (`FunctionName`, or the stack-prefixed logical id).
pub fn function_name(f: &FunctionDecl, stack: &Stack) -> String {
    stack
        .resources
        .get(&f.logical_id)
        .map_or_else(|| f.binary.clone(), |r| r.reference.clone())
}

/// Everything the function's process gets (but `AWS_LAMBDA_RUNTIME_API` and the log stream,
/// which name its instance).
pub fn spec(
    f: &FunctionDecl,
    stack: &Stack,
    executable: PathBuf,
    endpoints: &Endpoints,
) -> Result<FunctionSpec, EnvironmentError> {
    let name = function_name(f, stack);
    let mut env = template_variables(f, stack)?;
    let log_group = f
        .properties
        .pointer("/LoggingConfig/LogGroup")
        .and_then(|v| stack.string(v, Mode::Local).ok().flatten())
        .unwrap_or_else(|| format!("/aws/lambda/{name}"));
    let handler = f
        .properties
        .get("Handler")
        .and_then(|h| h.as_str())
        .unwrap_or("bootstrap");
    let lambda_variables = [
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb().to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", log_group),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_REGION", stack.region.clone()),
        ("AWS_DEFAULT_REGION", stack.region.clone()),
        ("AWS_ACCESS_KEY_ID", access_key_id(&f.binary)),
        ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ("AWS_SESSION_TOKEN", "local".into()),
        ("_HANDLER", handler.to_owned()),
        ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
    ];
    for (k, v) in lambda_variables {
        env.insert(k.to_owned(), v);
    }
    env.extend(endpoints.aws.clone());
    if env.contains_key("TWILIO_ACCOUNT_SID") {
        env.insert("TWILIO_API_BASE".into(), endpoints.twilio_api_base.clone());
    }
    for k in PASSED_THROUGH {
        if let Ok(v) = std::env::var(k) {
            env.insert(k.to_owned(), v);
        }
    }
    Ok(FunctionSpec {
        binary: f.binary.clone(),
        arn: stack.arn("lambda", &format!("function:{name}")),
        name,
        executable,
        environment: env,
        timeout: Duration::from_secs(f.timeout_seconds()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudformation::Physical;
    use crate::template::Template;

    const TEMPLATE: &str = r#"
Parameters:
  Token: {Type: String}
  Push: {Type: String, Default: ""}
Conditions:
  HasPush: !Not [!Equals [!Ref Push, ""]]
Globals:
  Function:
    Timeout: 10
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        PUSH_ARN: !If [HasPush, !Ref Push, !Ref AWS::NoValue]
Resources:
  Table: {Type: AWS::DynamoDB::Table}
  ClaimFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: claim}}
    Properties:
      Timeout: 30
      Environment:
        Variables:
          TWILIO_ACCOUNT_SID: AC1
          TWILIO_AUTH_TOKEN: !Ref Token
  SettingsFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: settings}}
"#;

    fn stack(push: &str) -> Stack {
        let template = Template::parse(TEMPLATE).unwrap();
        let mut s = Stack {
            name: "demo".into(),
            region: "us-east-1".into(),
            conditions: template.conditions(),
            ..Stack::default()
        };
        s.parameters.insert("Token".into(), "t0k3n".into());
        s.parameters.insert("Push".into(), push.into());
        s.resources
            .insert("Table".into(), Physical::new("demo-table"));
        s
    }

    fn endpoints() -> Endpoints {
        Endpoints {
            aws: BTreeMap::from([("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:1".into())]),
            twilio_api_base: "http://127.0.0.1:2/_local/twilio".into(),
        }
    }

    #[test]
    fn each_function_gets_globals_and_its_own_variables_only() {
        let template = Template::parse(TEMPLATE).unwrap();
        let s = stack("");
        let claim = template.function("claim").unwrap();
        let settings = template.function("settings").unwrap();
        let claim_vars = template_variables(claim, &s).unwrap();
        assert_eq!(
            claim_vars.keys().collect::<Vec<_>>(),
            ["TABLE_NAME", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"]
        );
        assert_eq!(claim_vars["TWILIO_AUTH_TOKEN"], "t0k3n");
        let settings_vars = template_variables(settings, &s).unwrap();
        assert_eq!(settings_vars.keys().collect::<Vec<_>>(), ["TABLE_NAME"]);
        let with_push = template_variables(settings, &stack("arn:push")).unwrap();
        assert_eq!(with_push["PUSH_ARN"], "arn:push");
    }

    #[test]
    fn lambda_sets_its_own_variables_and_the_endpoints_point_at_the_emulators() {
        let template = Template::parse(TEMPLATE).unwrap();
        let s = stack("");
        let claim = spec(
            template.function("claim").unwrap(),
            &s,
            "/bin/claim".into(),
            &endpoints(),
        )
        .unwrap();
        assert_eq!(claim.timeout, Duration::from_secs(30));
        let env = &claim.environment;
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "claim");
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "LOCALCLAIM");
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:1");
        assert_eq!(env["TWILIO_API_BASE"], "http://127.0.0.1:2/_local/twilio");
        let settings = spec(
            template.function("settings").unwrap(),
            &s,
            "/bin/settings".into(),
            &endpoints(),
        )
        .unwrap();
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert!(!settings.environment.contains_key("TWILIO_API_BASE"));
    }
}
