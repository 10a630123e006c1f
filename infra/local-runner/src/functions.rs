//! The functions, as `cargo lambda watch` serves them: starting it with the environment every
//! function reads, and invoking a function through its invoke endpoint.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

/// A first invocation compiles the function; on a busy 2-core machine that takes minutes.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("could not reach cargo lambda watch: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("function {binary} failed ({status}): {body}")]
    Failed {
        binary: String,
        status: u16,
        body: String,
    },
}

/// Starts `cargo lambda watch` in `workspace`, answering invocations on 127.0.0.1:`port`. The
/// child inherits the runner's process group, so stopping the group stops both.
pub fn start_watch(
    workspace: &Path,
    port: u16,
    env: &[(String, String)],
    reload: bool,
) -> std::io::Result<Child> {
    let mut command = Command::new("cargo-lambda");
    command
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .current_dir(workspace)
        // The functions are children of cargo lambda and inherit this environment.
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if !reload {
        command.arg("--ignore-changes");
    }
    command.spawn()
}

#[derive(Debug, Clone)]
pub struct Functions {
    http: reqwest::Client,
    base: String,
    port: u16,
}

impl Functions {
    pub fn new(port: u16) -> Self {
        Functions {
            http: reqwest::Client::builder()
                .timeout(INVOKE_TIMEOUT)
                .build()
                .expect("a plain HTTP client builds"),
            base: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// True once cargo lambda listens on its invoke port. A TCP connect, not a request: cargo
    /// lambda logs an error for any request that names no function.
    pub async fn ready(&self) -> bool {
        tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
    }

    /// Invokes `binary` with `payload` and returns its response payload.
    #[tracing::instrument(skip(self, payload))]
    pub async fn invoke(&self, binary: &str, payload: &Value) -> Result<Value, InvokeError> {
        let response = self
            .http
            .post(format!(
                "{}/2015-03-31/functions/{binary}/invocations",
                self.base
            ))
            .json(payload)
            .send()
            .await?;
        let status = response.status().as_u16();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = response.text().await?;
        if !(200..300).contains(&status) || function_error {
            return Err(InvokeError::Failed {
                binary: binary.to_owned(),
                status,
                body,
            });
        }
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}
