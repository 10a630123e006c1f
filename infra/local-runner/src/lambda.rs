//! The Lambda service, played locally: the invoke API (`POST
//! /2015-03-31/functions/{name}/invocations`, what `cargo lambda invoke` and the runner call) and
//! the Runtime API the functions poll, with each function's prebuilt binary run as instances of
//! its own.
//!
//! As on Lambda:
//! - each instance is a process with exactly its function's environment;
//! - an instance handles one invocation at a time, and a function gets another instance when
//!   every one it has is busy (up to a cap), so concurrent requests race between processes;
//! - an invocation fails (`Runtime.ExitError`) when its instance exits, dies at start or
//!   outlives the function's `Timeout` (`Sandbox.Timedout`; the instance is stopped), instead of
//!   waiting for an answer that never comes.
//!
//! Each instance polls under a base path of its own (`AWS_LAMBDA_RUNTIME_API=
//! http://127.0.0.1:<port>/<binary>/<instance>`), so the service knows which instance takes and answers
//! which invocation.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{Notify, oneshot};

/// Lambda's limit on a function's init phase.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of an instance's error output kept to explain a failed start.
const STDERR_TAIL: usize = 20;

/// One function as the service runs it.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub binary: String,
    /// The deployed name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    pub arn: String,
    pub executable: PathBuf,
    /// Everything the process gets but `AWS_LAMBDA_RUNTIME_API`, which names its instance.
    pub environment: BTreeMap<String, String>,
    pub timeout: Duration,
}

/// How an invocation ended, as the invoke API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Response(Bytes),
    /// The function's error (or the service's, for an instance that failed): a JSON body with
    /// `errorType` and `errorMessage`.
    Error(Bytes),
}

fn error_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(json!({"errorType": error_type, "errorMessage": message}).to_string())
}

struct Pending {
    request_id: String,
    payload: Bytes,
    respond: oneshot::Sender<Outcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Spawned; has not polled yet.
    Starting,
    /// Waiting in `next` for an invocation.
    Idle,
    Busy,
}

struct Instance {
    status: Status,
    pid: Option<u32>,
    /// Running an older binary (after a rebuild): stopped instead of given more work.
    retired: bool,
    current: Option<(String, oneshot::Sender<Outcome>)>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Pending>,
    instances: BTreeMap<u64, Instance>,
    next_instance: u64,
}

struct Pool {
    spec: Mutex<FunctionSpec>,
    state: Mutex<PoolState>,
    /// Woken when an invocation is queued or an instance goes away.
    changed: Notify,
}

/// The service: every function's pool, and what starts their instances.
pub struct Lambda {
    pools: BTreeMap<String, Arc<Pool>>,
    instances: Arc<Instances>,
    /// Whether the binaries are built: invocations wait until they are.
    built: tokio::sync::watch::Sender<Build>,
}

/// Where the build of the binaries is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Build {
    Running,
    Done,
    Failed(String),
}

/// Starts and reaps instances: the Runtime API's address and the cap per function.
struct Instances {
    runtime: String,
    max_instances: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("no function {0}")]
    NoSuchFunction(String),
    #[error("function {binary} failed: {body}")]
    Failed { binary: String, body: String },
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a pid this service spawned and has not reaped; no memory is touched.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

impl Lambda {
    /// Starts the Runtime API on a free port. Instances start on demand, once [`Lambda::built`]
    /// has given the binaries.
    pub async fn start(
        functions: Vec<FunctionSpec>,
        max_instances: usize,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let runtime = format!("127.0.0.1:{}", listener.local_addr()?.port());
        let pools = functions
            .into_iter()
            .map(|spec| {
                (
                    spec.binary.clone(),
                    Arc::new(Pool {
                        spec: Mutex::new(spec),
                        state: Mutex::new(PoolState::default()),
                        changed: Notify::new(),
                    }),
                )
            })
            .collect();
        let lambda = Arc::new(Lambda {
            pools,
            instances: Arc::new(Instances {
                runtime,
                max_instances: max_instances.max(1),
            }),
            built: tokio::sync::watch::Sender::new(Build::Running),
        });
        let served = lambda.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let lambda = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let lambda = lambda.clone();
                        async move { Ok::<_, Infallible>(lambda.runtime_api(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(lambda)
    }

    /// The function a name given to the invoke API means: its binary, its deployed name or its
    /// ARN (with or without a qualifier).
    pub fn binary_of(&self, name: &str) -> Option<String> {
        let short = name
            .split_once(":function:")
            .map_or(name, |(_, rest)| rest.split(':').next().unwrap_or(rest));
        self.pools
            .iter()
            .find(|(binary, pool)| {
                *binary == short || pool.spec.lock().expect("spec lock").name == short
            })
            .map(|(binary, _)| binary.clone())
    }

    pub fn binaries(&self) -> Vec<String> {
        self.pools.keys().cloned().collect()
    }

    /// The binaries are built (each function's executable), or could not be.
    pub fn built(&self, result: Result<BTreeMap<String, PathBuf>, String>) {
        match result {
            Ok(executables) => {
                for (binary, path) in executables {
                    if let Some(pool) = self.pools.get(&binary) {
                        pool.spec.lock().expect("spec lock").executable = path;
                    }
                }
                self.built.send_replace(Build::Done);
            }
            Err(e) => {
                self.built.send_replace(Build::Failed(e));
            }
        }
    }

    /// Runs one invocation of `binary` and waits for its outcome.
    pub async fn invoke(&self, binary: &str, payload: Bytes) -> Result<Outcome, InvokeError> {
        let pool = self
            .pools
            .get(binary)
            .cloned()
            .ok_or_else(|| InvokeError::NoSuchFunction(binary.to_owned()))?;
        let build = self
            .built
            .subscribe()
            .wait_for(|b| *b != Build::Running)
            .await
            .map(|b| b.clone())
            .unwrap_or(Build::Running);
        if let Build::Failed(e) = build {
            return Ok(Outcome::Error(error_body(
                "Runtime.InvalidEntrypoint",
                &format!("the functions did not build: {e}"),
            )));
        }
        crate::meter::count(format!("lambda Invoke {binary}"), 1);
        let (respond, answer) = oneshot::channel();
        let request_id = ulid::Ulid::new().to_string().to_lowercase();
        {
            let mut state = pool.state.lock().expect("pool lock");
            state.queue.push_back(Pending {
                request_id,
                payload,
                respond,
            });
            self.instances.scale(binary, &pool, &mut state);
        }
        pool.changed.notify_waiters();
        Ok(answer.await.unwrap_or_else(|_| {
            Outcome::Error(error_body(
                "Runtime.Unknown",
                "the invocation was dropped by the local Lambda service",
            ))
        }))
    }

    /// The invocation's answer as JSON, or the error it ended in.
    pub async fn invoke_json(&self, binary: &str, payload: &Value) -> Result<Value, InvokeError> {
        match self
            .invoke(binary, Bytes::from(payload.to_string()))
            .await?
        {
            Outcome::Response(body) => Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
            Outcome::Error(body) => Err(InvokeError::Failed {
                binary: binary.to_owned(),
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
        }
    }

    /// Stops every instance of `binary` (after a rebuild): idle ones now, busy ones when they
    /// answer. New invocations start instances of the new binary.
    pub fn retire(&self, binary: &str, executable: PathBuf) {
        let Some(pool) = self.pools.get(binary) else {
            return;
        };
        pool.spec.lock().expect("spec lock").executable = executable;
        let mut state = pool.state.lock().expect("pool lock");
        for instance in state.instances.values_mut() {
            instance.retired = true;
            if instance.status != Status::Busy
                && let Some(pid) = instance.pid
            {
                kill(pid, libc::SIGTERM);
            }
        }
    }

    async fn runtime_api(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let [binary, instance, "2018-06-01", "runtime", rest @ ..] = parts.as_slice() else {
            return plain(StatusCode::NOT_FOUND, "no such Runtime API path");
        };
        let (Some(pool), Ok(instance)) = (self.pools.get(*binary), instance.parse::<u64>()) else {
            return plain(StatusCode::NOT_FOUND, "no such function instance");
        };
        let error_type = req
            .headers()
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        match rest {
            ["invocation", "next"] => self.next(binary, pool, instance).await,
            ["invocation", request_id, "response"] => {
                answer(pool, instance, request_id, Outcome::Response(body))
            }
            ["invocation", request_id, "error"] => {
                let body = with_error_type(body, error_type.as_deref());
                answer(pool, instance, request_id, Outcome::Error(body))
            }
            ["init", "error"] => {
                let state = pool.state.lock().expect("pool lock");
                if let Some(i) = state.instances.get(&instance) {
                    push_tail(&i.stderr, String::from_utf8_lossy(&body).into_owned());
                }
                accepted()
            }
            _ => plain(StatusCode::NOT_FOUND, "no such Runtime API path"),
        }
    }

    /// `GET .../invocation/next`: hands the instance the next queued invocation, waiting for one.
    async fn next(&self, binary: &str, pool: &Arc<Pool>, id: u64) -> Response<Full<Bytes>> {
        loop {
            let changed = pool.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = pool.state.lock().expect("pool lock");
                let Some(instance) = state.instances.get_mut(&id) else {
                    return plain(StatusCode::GONE, "this instance has stopped");
                };
                if instance.retired {
                    if let Some(pid) = instance.pid {
                        kill(pid, libc::SIGTERM);
                    }
                    return plain(StatusCode::GONE, "this instance runs an older build");
                }
                instance.status = Status::Idle;
                if let Some(p) = state.queue.pop_front() {
                    let instance = state.instances.get_mut(&id).expect("checked above");
                    instance.status = Status::Busy;
                    instance.current = Some((p.request_id.clone(), p.respond));
                    let spec = pool.spec.lock().expect("spec lock").clone();
                    self.watch_timeout(pool, id, &p.request_id, spec.timeout);
                    let deadline =
                        jiff::Timestamp::now().as_millisecond() + spec.timeout.as_millis() as i64;
                    tracing::debug!(
                        function = binary,
                        instance = id,
                        request = p.request_id,
                        "invocation"
                    );
                    return Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/json")
                        .header("lambda-runtime-aws-request-id", &p.request_id)
                        .header("lambda-runtime-deadline-ms", deadline.to_string())
                        .header("lambda-runtime-invoked-function-arn", &spec.arn)
                        .header(
                            "lambda-runtime-trace-id",
                            format!("Root=1-{}", p.request_id),
                        )
                        .body(Full::new(p.payload))
                        .expect("valid headers");
                }
            }
            // Woken by a new invocation; the timer catches an instance that went away meanwhile.
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Stops an instance that outlives the function's `Timeout` and fails its invocation.
    fn watch_timeout(&self, pool: &Arc<Pool>, id: u64, request_id: &str, timeout: Duration) {
        let pool = pool.clone();
        let request_id = request_id.to_owned();
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let mut state = pool.state.lock().expect("pool lock");
            let Some(instance) = state.instances.get_mut(&id) else {
                return;
            };
            if instance
                .current
                .as_ref()
                .is_some_and(|(r, _)| *r == request_id)
            {
                let (_, respond) = instance.current.take().expect("checked");
                let message = format!(
                    "{request_id} Task timed out after {:.2} seconds",
                    started.elapsed().as_secs_f64()
                );
                tracing::error!(instance = id, "{message}");
                let _ = respond.send(Outcome::Error(error_body("Sandbox.Timedout", &message)));
                instance.retired = true;
                if let Some(pid) = instance.pid {
                    kill(pid, libc::SIGKILL);
                }
            }
        });
    }
}

impl Instances {
    /// Starts another instance when queued invocations outnumber the instances that will take
    /// them (idle or starting), up to the cap.
    fn scale(self: &Arc<Self>, binary: &str, pool: &Arc<Pool>, state: &mut PoolState) {
        let available = state
            .instances
            .values()
            .filter(|i| !i.retired && matches!(i.status, Status::Idle | Status::Starting))
            .count();
        let live = state.instances.values().filter(|i| !i.retired).count();
        if state.queue.len() > available && live < self.max_instances {
            self.spawn(binary, pool, state);
        }
    }

    fn spawn(self: &Arc<Self>, binary: &str, pool: &Arc<Pool>, state: &mut PoolState) {
        let id = state.next_instance;
        state.next_instance += 1;
        let spec = pool.spec.lock().expect("spec lock").clone();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let mut command = Command::new(&spec.executable);
        command
            .env_clear()
            .envs(&spec.environment)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                // A base path needs a scheme; Lambda's own value is a bare host:port.
                format!("http://{}/{binary}/{id}", self.runtime),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/{id}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                let message = format!("cannot start {}: {e}", spec.executable.display());
                tracing::error!(function = binary, "{message}");
                if let Some(p) = state.queue.pop_front() {
                    let _ = p.respond.send(Outcome::Error(error_body(
                        "Runtime.InvalidEntrypoint",
                        &message,
                    )));
                }
                return;
            }
        };
        let label = format!("{binary}#{id}");
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, label.clone(), None));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, label.clone(), Some(stderr_tail.clone())));
        }
        state.instances.insert(
            id,
            Instance {
                status: Status::Starting,
                pid: child.id(),
                retired: false,
                current: None,
                stderr: stderr_tail,
            },
        );
        tracing::debug!(function = binary, instance = id, "instance started");
        let pool_for_exit = pool.clone();
        let binary_for_exit = binary.to_owned();
        let instances = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            instances.on_exit(&binary_for_exit, &pool_for_exit, id, status);
        });
        let pool_for_init = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep(INIT_TIMEOUT).await;
            let state = pool_for_init.state.lock().expect("pool lock");
            if let Some(i) = state.instances.get(&id)
                && i.status == Status::Starting
                && let Some(pid) = i.pid
            {
                tracing::error!(instance = id, "init took longer than 10 s; stopping it");
                kill(pid, libc::SIGKILL);
            }
        });
    }

    /// Handles an instance's exit: fails the invocation it held, or (when it never polled) the
    /// first queued one with the start failure, and starts another instance for what is left.
    fn on_exit(
        self: &Arc<Self>,
        binary: &str,
        pool: &Arc<Pool>,
        id: u64,
        status: std::io::Result<std::process::ExitStatus>,
    ) {
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        {
            let mut state = pool.state.lock().expect("pool lock");
            let Some(instance) = state.instances.remove(&id) else {
                return;
            };
            let tail: Vec<String> = instance
                .stderr
                .lock()
                .expect("tail lock")
                .iter()
                .cloned()
                .collect();
            if let Some((request_id, respond)) = instance.current {
                let message =
                    format!("RequestId: {request_id} Error: Runtime exited with error: {status}");
                tracing::error!(function = binary, instance = id, "{message}");
                let _ = respond.send(Outcome::Error(error_body("Runtime.ExitError", &message)));
            } else if instance.status == Status::Starting {
                let message = format!(
                    "Runtime exited with error: {status} before its first poll: {}",
                    tail.join(" | ")
                );
                tracing::error!(function = binary, instance = id, "{message}");
                if let Some(p) = state.queue.pop_front() {
                    let _ = p
                        .respond
                        .send(Outcome::Error(error_body("Runtime.ExitError", &message)));
                }
            } else if !instance.retired {
                tracing::warn!(function = binary, instance = id, %status, "instance exited");
            }
            // What is still queued gets an instance of its own.
            self.scale(binary, pool, &mut state);
        }
        pool.changed.notify_waiters();
    }
}

fn answer(pool: &Pool, id: u64, request_id: &str, outcome: Outcome) -> Response<Full<Bytes>> {
    let mut state = pool.state.lock().expect("pool lock");
    let Some(instance) = state.instances.get_mut(&id) else {
        return plain(StatusCode::GONE, "this instance has stopped");
    };
    match instance.current.take() {
        Some((current, respond)) if current == request_id => {
            instance.status = Status::Idle;
            let _ = respond.send(outcome);
            accepted()
        }
        other => {
            instance.current = other;
            plain(StatusCode::BAD_REQUEST, "not this instance's invocation")
        }
    }
}

/// Lambda names the error type from the header when the body does not.
fn with_error_type(body: Bytes, header: Option<&str>) -> Bytes {
    let mut v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({"errorMessage": String::from_utf8_lossy(&body)}));
    if v.get("errorType").is_none()
        && let Some(t) = header
    {
        v["errorType"] = json!(t);
    }
    Bytes::from(v.to_string())
}

fn push_tail(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut t = tail.lock().expect("tail lock");
    if t.len() == STDERR_TAIL {
        t.pop_front();
    }
    t.push_back(line);
}

/// Copies a function's output to the runner's error output, each line labelled with the instance,
/// as CloudWatch Logs keeps each instance's stream.
async fn forward_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    label: String,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{label}] {line}");
        if let Some(t) = &tail {
            push_tail(t, line);
        }
    }
}

fn plain(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({"errorMessage": message}).to_string(),
        )))
        .expect("valid response")
}

fn accepted() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(Full::new(Bytes::from_static(b"{\"status\":\"OK\"}")))
        .expect("valid response")
}

/// The invoke API on `port`: `POST /2015-03-31/functions/{name}/invocations`. A function's error
/// answers 500 with its `errorType` and `errorMessage` (and `X-Amz-Function-Error`), which
/// `cargo lambda invoke` reports as a failure.
pub async fn serve_invoke_api(lambda: Arc<Lambda>, listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        let lambda = lambda.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let lambda = lambda.clone();
                async move { Ok::<_, Infallible>(invoke_api(&lambda, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn invoke_api(lambda: &Lambda, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let ["2015-03-31", "functions", name, "invocations"] = parts.as_slice() else {
        return plain(
            StatusCode::NOT_FOUND,
            "expected POST /2015-03-31/functions/{name}/invocations",
        );
    };
    let name = (*name).to_owned();
    let Some(binary) = lambda.binary_of(&name) else {
        let known = lambda.binaries().join(", ");
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("x-amzn-errortype", "ResourceNotFoundException")
            .body(Full::new(error_body(
                "ResourceNotFoundException",
                &format!("Function not found: {name}; the local stack has {known}"),
            )))
            .expect("valid response");
    };
    let payload = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match lambda.invoke(&binary, payload).await {
        Ok(Outcome::Response(body)) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("x-amz-executed-version", "$LATEST")
            .body(Full::new(body))
            .expect("valid response"),
        Ok(Outcome::Error(body)) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header("content-type", "application/json")
            .header("x-amz-function-error", "Unhandled")
            .body(Full::new(body))
            .expect("valid response"),
        Err(e) => plain(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_without_a_type_takes_the_headers() {
        let b = with_error_type(
            Bytes::from_static(b"{\"errorMessage\":\"boom\"}"),
            Some("E"),
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["errorType"], "E");
        let b = with_error_type(Bytes::from_static(b"not json"), None);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["errorMessage"], "not json");
    }
}
