//! A moto server of a test's own, for a test that freezes it: `kill -STOP` on its process, as a
//! stalled or unreachable AWS endpoint looks to the functions (connections open, no answer),
//! then `kill -CONT`. The other tests keep the one `make test` started.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;
use super::runner::{free_port, watchdog};

pub struct Moto {
    child: Child,
    watchdog: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` from the project's virtualenv (`make test` installs it) on a free
    /// port and waits until it answers.
    pub fn start() -> Moto {
        let binary = moto_server();
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, which the watchdog kills if the tests end without dropping this.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto {
            watchdog: watchdog(child.id()),
            child,
            endpoint,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http::reachable(&moto.endpoint) {
            assert!(
                Instant::now() < deadline,
                "moto at {} did not answer within 60 s",
                moto.endpoint
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The variables that point a runner (and through it the functions) at this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        [
            "MOTO_ENDPOINT",
            "AWS_ENDPOINT_URL_SQS",
            "AWS_ENDPOINT_URL_SNS",
            "AWS_ENDPOINT_URL_SESV2",
            "AWS_ENDPOINT_URL_SES",
            "AWS_ENDPOINT_URL_EVENTBRIDGE",
            "AWS_ENDPOINT_URL_SCHEDULER",
        ]
        .into_iter()
        .map(|var| (var, self.endpoint.clone()))
        .collect()
    }

    /// Stops the process: requests reach its socket and wait.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets it go on, answering what waited.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with a negative pid signals the group this child leads; no memory is
        // touched.
        let rc = unsafe { libc::kill(-(self.child.id() as i32), signal) };
        assert_eq!(rc, 0, "signal {signal} to moto");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SAFETY: as in `signal`.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

/// `moto_server` on `PATH` (`make test` puts the virtualenv there) or in the virtualenv.
fn moto_server() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("moto_server"))
        .chain([PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.local/venv/bin/moto_server"
        ))])
        .find(|p| p.is_file())
        .expect("moto_server is installed: run `make test` (or infra/local/stack.sh install)")
}
