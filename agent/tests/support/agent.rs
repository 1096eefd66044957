//! `pve-gitops run` as a child process, its log collected for assertions.
//!
//! The agent runs as one node without leader election (`--no-lease --node pve1`) and
//! with the test's own state directory, so agents of parallel tests do not collide.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// A running agent; killed on drop.
pub struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Lines before this one were consumed by [`Agent::wait_for`].
    cursor: usize,
}

impl Agent {
    /// `pve-gitops run --no-lease --node pve1 --state-dir <state>/state --vmlist <none>`
    /// followed by `args`.
    pub fn run(state: &Path, args: &[OsString]) -> Agent {
        Self::run_logging(state, args, "pve_gitops=info")
    }

    /// [`Agent::run`] with `RUST_LOG=<filter>`.
    pub fn run_logging(state: &Path, args: &[OsString], filter: &str) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
            .arg("run")
            .args(["--no-lease", "--node", "pve1"])
            .arg("--state-dir")
            .arg(state.join("state"))
            .arg("--vmlist")
            .arg(state.join("no-vmlist"))
            .args(args)
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("the agent binary runs");
        let log = collect_stderr(&mut child);
        Agent {
            child,
            log,
            cursor: 0,
        }
    }

    /// The next line (after those already waited for) matching `pred`; panics with the
    /// whole log after a minute, or when the agent exits first.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(i) = (self.cursor..log.len()).find(|&i| pred(&log[i])) {
                    self.cursor = i + 1;
                    return log[i].clone();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread drain what is left.
                std::thread::sleep(Duration::from_millis(100));
                panic!("the agent exited ({status}) before {what}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no log line for {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Whether the agent is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `OsString` arguments from anything printable or path-like.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        [$(std::ffi::OsString::from($a)),*]
    };
}

/// Collects `child`'s stderr (piped) line by line on a thread, for a test to search while
/// the child runs.
pub fn collect_stderr(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    log
}
