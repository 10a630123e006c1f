//! The local runner as a process: found in the target directory, started on free ports with a
//! fresh table against the emulators `make test` started, stopped with everything it spawned.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::http;

/// The dev-token secret and the Twilio auth token every runner under test is given.
pub const SECRET: &str = "e2e-secret";
pub const TWILIO_TOKEN: &str = "e2e-twilio-token";
/// The warm-transfer response window the functions are given: long enough that a busy machine
/// never eats it, short enough to pass by moving the clock.
pub const WINDOW_SECONDS: i64 = 300;

/// A running `local-runner serve` and the process group it leads (cargo lambda watch and the
/// functions with it), killed when this is dropped, even when an assertion failed.
pub struct Runner {
    child: Child,
    /// A watchdog holding the read end of a pipe whose write end is this process's: when this
    /// process ends however it ends (a runner kept for the whole binary is never dropped), the
    /// watchdog reads end-of-file and kills the runner's group.
    watchdog: Child,
    pub base: String,
    /// The functions' invoke port: a function can be invoked directly with an event of the
    /// test's making, as `cargo lambda invoke` does.
    pub invoke_port: u16,
    log: PathBuf,
}

impl Runner {
    /// Starts a runner on a fresh table, logging to `target/tmp/system-tests/<name>.log`, and waits
    /// until its gateway answers.
    pub fn start(name: &str) -> Runner {
        Runner::start_with(name, &[])
    }

    /// As `start`, with `env` added to (or overriding) what the runner inherits.
    pub fn start_with(name: &str, env: &[(&str, String)]) -> Runner {
        emulators_answer();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("system-tests");
        std::fs::create_dir_all(&dir).expect("the log directory can be created");
        let log = dir.join(format!("{}.log", name.replace("::", "-")));
        let mut tries = 0;
        loop {
            tries += 1;
            let mut runner = Runner::spawn(&log, env);
            match runner.wait_until_ready() {
                Ok(()) => return runner,
                // moto's `/moto-api/data.json`, which the runner reads at start to skip what
                // other runners sent, fails now and then while another runner changes moto's
                // state (it serializes objects that are being changed): start again.
                Err(e) if tries < 3 && e.contains("cannot read moto's records") => {
                    eprintln!("the runner could not start, starting again: {e}");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn spawn(log: &Path, env: &[(&str, String)]) -> Runner {
        let (api_port, invoke_port) = (free_port(), free_port());
        let table = format!("sys-{}", ulid::Ulid::new().to_string().to_lowercase());
        let out = File::create(log).expect("the runner's log can be created");
        let mut command = Command::new(runner_binary());
        command
            .args(["serve", "--table", &table, "--no-reload"])
            .args(["--api-port", &api_port.to_string()])
            .args(["--invoke-port", &invoke_port.to_string()])
            .env("LOCAL_JWT_SECRET", SECRET)
            .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
            .env("WARM_TRANSFER_TIMEOUT_SECONDS", WINDOW_SECONDS.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("the log file handle clones"))
            .stderr(out)
            .process_group(0);
        let child = command.spawn().expect("the runner binary starts");
        let watchdog = watchdog(child.id());
        Runner {
            child,
            watchdog,
            base: format!("http://127.0.0.1:{api_port}"),
            invoke_port,
            log: log.to_owned(),
        }
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        // The runner creates the table, queues and bus, then starts the functions' server.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let answer = http::send(
                &self.base,
                "GET",
                "/_local/clock",
                &[],
                "",
                Duration::from_secs(5),
            );
            if let Ok((200, _)) = answer {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().expect("the runner can be waited on") {
                return Err(format!(
                    "the runner exited before answering ({status}):\n{}",
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the runner did not answer within 180 s:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the functions logged (the runner copies each line as `[function#instance] ...`),
    /// as CloudWatch Logs would hold it deployed.
    pub fn function_log_lines(&self) -> Vec<String> {
        File::open(&self.log)
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| l.starts_with('['))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many API requests the gateway has answered, from its log (`/_local` ones left out).
    pub fn api_requests(&self) -> usize {
        File::open(&self.log)
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| l.contains("gateway: request") && !l.contains("path=\"/_local"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// The log's path and its last lines.
    pub fn log_tail(&self) -> String {
        self.log_tail_with("")
    }

    /// The log's path and its last lines that contain `needle`.
    pub fn log_tail_with(&self, needle: &str) -> String {
        let lines: Vec<String> = File::open(&self.log)
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| l.contains(needle))
                    .collect()
            })
            .unwrap_or_default();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("{} (last lines):\n{tail}", self.log.display())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals the group this runner leads; no memory is
        // touched.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
        if std::thread::panicking() {
            eprintln!("the runner's log: {}", self.log_tail());
        }
    }
}

/// A watchdog holding the read end of a pipe whose write end is this process's: when this
/// process ends however it ends, it reads end-of-file and kills the group `leader` leads.
pub(super) fn watchdog(leader: u32) -> Child {
    Command::new("sh")
        .args(["-c", "read _; kill -9 -$0", &leader.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group: a Ctrl-C to the tests must leave it to see them end.
        .process_group(0)
        .spawn()
        .expect("sh starts")
}

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// Checked once per test binary: both emulators answer where `make test` said they would.
fn emulators_answer() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        for var in ["DYNAMODB_ENDPOINT", "MOTO_ENDPOINT"] {
            let url = std::env::var(var).unwrap_or_else(|_| {
                panic!(
                    "{var} is not set: these tests need the emulators. Run `make test`, or \
                     `infra/local/stack.sh start && eval \"$(infra/local/stack.sh env)\"`"
                )
            });
            assert!(
                http::reachable(&url),
                "{var}={url} does not answer: start the emulators (`make test` does)"
            );
        }
    });
}

/// `local-runner` beside this test binary's directory (`<target>/<profile>/deps/`), so
/// `CARGO_TARGET_DIR` and the profile are honoured; built by `make test`. A missing or stale
/// binary fails every test with the command that builds it.
fn runner_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target>/<profile>/deps");
        let binary = profile_dir.join("local-runner");
        let build = "cargo build --locked -p local-runner (`make test` builds it)";
        let built = std::fs::metadata(&binary)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| panic!("{} is missing: run {build}", binary.display()));
        // Cargo's dep-info beside the binary lists the sources it was built from.
        let sources = std::fs::read_to_string(binary.with_extension("d")).unwrap_or_default();
        let inputs = sources.split_once(": ").map_or("", |(_, inputs)| inputs);
        for source in inputs.split_whitespace().map(Path::new) {
            if std::fs::metadata(source)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > built)
            {
                panic!(
                    "{} is older than {}: run {build}",
                    binary.display(),
                    source.display()
                );
            }
        }
        binary
    })
}
