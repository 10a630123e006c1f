//! Cold starts (DESIGN.md): each function's release binary is spawned the way Lambda spawns it,
//! against a Runtime API served here, and timed from spawn to its first poll for an invocation.
//! The baseline is `hello-lambda`, built with the same profile and spawned the same way.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{Mutex, mpsc};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The longest an init may take before the bench calls the binary broken.
const INIT_LIMIT: Duration = Duration::from_secs(30);

/// What one spawn of a binary showed.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Spawn to the first `GET /runtime/invocation/next`.
    pub init: Duration,
    /// The process's peak resident memory (VmHWM) when measured.
    pub peak_kib: u64,
}

/// What the Runtime API saw from the process.
enum Seen {
    Poll(Instant),
    Answer { path: String, body: String },
}

/// Serves the Lambda Runtime API on a free port for one process: hands it `event` on its first
/// poll (or holds the poll open when there is none) and reports polls and answers.
async fn runtime_api(event: Option<String>) -> Result<(u16, mpsc::UnboundedReceiver<Seen>), Error> {
    let (events, fed) = mpsc::unbounded_channel();
    if let Some(event) = event {
        events.send(event)?;
    }
    // Dropped: once the one event is taken, polls stay open.
    drop(events);
    runtime_api_fed(fed).await
}

/// As `runtime_api`, handing the process each event sent on `events`, in turn, when it polls.
async fn runtime_api_fed(
    events: mpsc::UnboundedReceiver<String>,
) -> Result<(u16, mpsc::UnboundedReceiver<Seen>), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::unbounded_channel();
    let event = Arc::new(Mutex::new(events));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, event) = (tx.clone(), event.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (tx, event) = (tx.clone(), event.clone());
                    async move { Ok::<_, Infallible>(answer(req, &tx, &event).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((port, rx))
}

async fn answer(
    req: Request<Incoming>,
    tx: &mpsc::UnboundedSender<Seen>,
    event: &Mutex<mpsc::UnboundedReceiver<String>>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path.ends_with("/invocation/next") {
        let _ = tx.send(Seen::Poll(Instant::now()));
        let Some(body) = event.lock().await.recv().await else {
            // No (more) events: the poll stays open, as Lambda's does, until the process ends.
            std::future::pending::<()>().await;
            unreachable!()
        };
        let deadline = jiff::Timestamp::now().as_millisecond() + 60_000;
        return Response::builder()
            // Lambda always sends the event's type; AWS's Python runtime client crashes
            // without it.
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", "bench-1")
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(Bytes::from(body)))
            .expect("static headers");
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let _ = tx.send(Seen::Answer { path, body });
    Response::builder()
        .status(202)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("static response")
}

/// Peak resident memory of a live process, in KiB.
fn peak_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status").into())
}

/// Spawns `binary` with `env`, waits for its first poll and, when `event` is given, for its
/// answer to that event; then reads its peak memory and stops it.
pub async fn start(
    binary: &Path,
    env: &HashMap<String, String>,
    event: Option<String>,
) -> Result<Start, Error> {
    start_command(&Runtime::Binary(binary.to_owned()), env, event).await
}

/// How a function is started: its own executable (a `provided.al2023` function), or a Python
/// handler under the AWS Lambda Python runtime interface client (`awslambdaric`), as AWS's
/// Python images run it.
pub enum Runtime {
    Binary(PathBuf),
    Python {
        python: PathBuf,
        /// The handler's directory (LAMBDA_TASK_ROOT) and `module.function`.
        root: PathBuf,
        handler: String,
    },
}

impl Runtime {
    fn name(&self) -> String {
        match self {
            Runtime::Binary(binary) => binary
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Runtime::Python { handler, .. } => format!("python {handler}"),
        }
    }

    /// The process as Lambda spawns it, polling the Runtime API on `port`.
    fn command(&self, env: &HashMap<String, String>, port: u16) -> Command {
        let name = self.name();
        let mut command = match self {
            Runtime::Binary(binary) => Command::new(binary),
            Runtime::Python {
                python,
                root,
                handler,
            } => {
                let mut c = Command::new(python);
                c.args(["-m", "awslambdaric", handler])
                    .current_dir(root)
                    .env("LAMBDA_TASK_ROOT", root)
                    .env("PYTHONPATH", root);
                c
            }
        };
        command
            .env_clear()
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        command
    }
}

/// As `start`, for any runtime.
pub async fn start_command(
    runtime: &Runtime,
    env: &HashMap<String, String>,
    event: Option<String>,
) -> Result<Start, Error> {
    let invoked = event.is_some();
    let (port, mut seen) = runtime_api(event).await?;
    let name = runtime.name();
    let mut command = runtime.command(env, port);
    let spawned = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("{name}: {e}"))?;
    let pid = child.id().ok_or("the process ended at once")?;
    let first_poll = match tokio::time::timeout(INIT_LIMIT, seen.recv()).await {
        Ok(Some(Seen::Poll(at))) => at,
        Ok(Some(Seen::Answer { path, body })) => {
            return Err(format!("{name} reported {path} before polling: {body}").into());
        }
        Ok(None) | Err(_) => {
            let status = child.try_wait()?;
            return Err(format!("{name} never polled the Runtime API (exit: {status:?})").into());
        }
    };
    if invoked {
        match tokio::time::timeout(INIT_LIMIT, seen.recv()).await {
            Ok(Some(Seen::Answer { path, .. })) if path.ends_with("/response") => {}
            Ok(Some(Seen::Answer { path, body })) => {
                return Err(format!("{name} answered {path}: {body}").into());
            }
            _ => return Err(format!("{name} never answered its event").into()),
        }
        // The answer is sent before the next poll; that poll shows the invocation is over.
        match tokio::time::timeout(INIT_LIMIT, seen.recv()).await {
            Ok(Some(Seen::Poll(_))) => {}
            _ => return Err(format!("{name} did not poll again after its event").into()),
        }
    }
    let peak_kib = peak_kib(pid)?;
    child.kill().await?;
    Ok(Start {
        init: first_poll - spawned,
        peak_kib,
    })
}

/// The workspace's release binary `name`, which `make bench` builds first.
pub fn release_binary(workspace: &Path, name: &str) -> Result<PathBuf, Error> {
    let path = workspace.join("target/release").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: `make bench` builds the release binaries first",
            path.display()
        )
        .into())
    }
}

/// A function kept warm: events are handed to it one at a time, each timed from the moment it
/// is handed over to the function's answer.
pub struct Warm {
    events: mpsc::UnboundedSender<String>,
    seen: mpsc::UnboundedReceiver<Seen>,
    _child: tokio::process::Child,
    name: String,
}

impl Warm {
    /// Starts `runtime` and waits for its first poll.
    pub async fn start(runtime: &Runtime, env: &HashMap<String, String>) -> Result<Warm, Error> {
        let (events, fed) = mpsc::unbounded_channel();
        let (port, mut seen) = runtime_api_fed(fed).await?;
        let name = runtime.name();
        let child = runtime
            .command(env, port)
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        match tokio::time::timeout(INIT_LIMIT, seen.recv()).await {
            Ok(Some(Seen::Poll(_))) => Ok(Warm {
                events,
                seen,
                _child: child,
                name,
            }),
            _ => Err(format!("{name} never polled the Runtime API").into()),
        }
    }

    /// Hands over `event` and waits for the answer: (time taken, the response's body).
    pub async fn invoke(&mut self, event: String) -> Result<(Duration, String), Error> {
        let name = &self.name;
        let handed = Instant::now();
        self.events.send(event)?;
        loop {
            match tokio::time::timeout(INIT_LIMIT, self.seen.recv()).await {
                Ok(Some(Seen::Poll(_))) => continue,
                Ok(Some(Seen::Answer { path, body })) if path.ends_with("/response") => {
                    return Ok((handed.elapsed(), body));
                }
                Ok(Some(Seen::Answer { path, body })) => {
                    return Err(format!("{name} answered {path}: {body}").into());
                }
                _ => return Err(format!("{name} never answered its event").into()),
            }
        }
    }
}
