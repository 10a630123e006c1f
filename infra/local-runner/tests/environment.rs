//! Every function starts with exactly the environment its template entry gives it (`Globals` and
//! its own variables, as `local-runner environment` resolves them, plus what Lambda sets), and
//! each of those variables is one it needs: without any one of them it stops at start, naming
//! it. So the template gives each function what it reads, and nothing it does not.
//!
//! Each built binary is spawned with that environment and nothing else, against a Runtime API
//! that only waits for the first `GET .../invocation/next`: reaching it means the function
//! started. No emulator is needed; the functions make no AWS call at start.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Optional by design: the template leaves it unset when there is no push application.
const OPTIONAL: [&str; 1] = ["PUSH_PLATFORM_APPLICATION_ARN"];

/// How long a function may take to start before it counts as hung.
const START: Duration = Duration::from_secs(30);

enum Start {
    /// Reached its first poll for an invocation.
    Polled,
    Exited {
        status: String,
        stderr: String,
    },
    Hung,
}

impl std::fmt::Debug for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::Polled => f.write_str("it started"),
            Start::Exited { status, stderr } => write!(f, "it exited ({status}): {stderr}"),
            Start::Hung => write!(f, "it neither polled nor exited within {START:?}"),
        }
    }
}

/// Spawns `executable` with exactly `env` against a Runtime API of its own.
fn start(executable: &str, env: &BTreeMap<String, String>) -> Start {
    let runtime = TcpListener::bind("127.0.0.1:0").unwrap();
    runtime.set_nonblocking(true).unwrap();
    let mut child = Command::new(executable)
        .env_clear()
        .envs(env)
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("127.0.0.1:{}", runtime.local_addr().unwrap().port()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{executable}: {e}"));
    let deadline = Instant::now() + START;
    let outcome = loop {
        if let Ok((mut stream, _)) = runtime.accept() {
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut head = [0u8; 512];
            let n = stream.read(&mut head).unwrap_or(0);
            if String::from_utf8_lossy(&head[..n]).contains("/runtime/invocation/next") {
                break Start::Polled;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            return Start::Exited {
                status: status.to_string(),
                stderr,
            };
        }
        if Instant::now() > deadline {
            break Start::Hung;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn every_function_starts_with_its_template_environment_and_needs_all_of_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_local-runner"))
        .args(["environment", "--build", "--table", "environment-check"])
        .stderr(Stdio::inherit())
        .output()
        .expect("the runner starts");
    assert!(output.status.success(), "local-runner environment failed");
    let functions: Value = serde_json::from_slice(&output.stdout).unwrap();
    let functions = functions.as_object().unwrap();
    assert!(functions.len() >= 12, "{functions:?}");

    let mut problems = vec![];
    for (binary, f) in functions {
        let executable = f["executable"].as_str().unwrap();
        let template = strings(&f["template"]);
        let mut env = strings(&f["lambda"]);
        env.extend(template.clone());
        match start(executable, &env) {
            Start::Polled => {}
            other => {
                problems.push(format!(
                    "{binary} does not start with its template environment: {other:?}"
                ));
                continue;
            }
        }
        for variable in template.keys() {
            let mut without = env.clone();
            without.remove(variable);
            let outcome = start(executable, &without);
            let stopped_naming_it = matches!(
                &outcome,
                Start::Exited { stderr, .. } if stderr.contains(variable.as_str())
            );
            if OPTIONAL.contains(&variable.as_str()) {
                if !matches!(outcome, Start::Polled) {
                    problems.push(format!(
                        "{binary} needs {variable}, which the template may leave unset: {outcome:?}"
                    ));
                }
            } else if !stopped_naming_it {
                problems.push(format!(
                    "{binary} does not stop, naming it, without {variable}: either the template \
                     gives it a variable it does not read, or it reads it with a fallback \
                     ({outcome:?})"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
