//! A fakepve for one test: `tests/fakepve/harness.py` as a child process.
//!
//! [`FakePve::start`] makes the venv once per test process (`tests/fakepve/setup-venv.sh`,
//! idempotent), starts the harness, reads the one JSON line it prints (with a deadline)
//! and returns a handle with the API address, the CA, the token and a [`Control`]
//! client for the harness's control endpoint. Dropping the handle kills the process.
//!
//! Only a missing `python3` makes tests skip (loudly); any other failure to set up or
//! start is a test failure, so CI cannot pass by running nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pve_gitops::pve::{ApiToken, ClientOptions, PveClient, TlsTrust};
use serde::Deserialize;

use super::control::Control;

const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// How to start the fake cluster.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: Vec<String>,
    /// Real seconds per simulated PVE second (0: tasks end before the request returns).
    pub time_scale: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: vec!["pve1".into(), "pve2".into(), "pve3".into()],
            time_scale: 0.01,
        }
    }
}

/// What the harness printed when it was ready.
#[derive(Clone, Debug, Deserialize)]
pub struct HarnessInfo {
    pub api_port: u16,
    pub control_port: u16,
    /// The self-signed certificate the API serves: the CA to trust.
    pub ca_file: PathBuf,
    /// An unrelated certificate, for tests that a wrong CA is refused.
    pub other_ca_file: PathBuf,
    /// SHA-256 of the served certificate, `AB:CD:...`.
    pub fingerprint: String,
    pub token_id: String,
    pub token_secret: String,
    pub nodes: Vec<String>,
}

/// A running harness. Killed on drop.
pub struct FakePve {
    pub info: HarnessInfo,
    pub control: Control,
    child: Child,
    workdir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the agent crate lives in the workspace")
        .to_path_buf()
}

/// The venv's python, made once per process; `None` if there is no python3 at all.
fn venv_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<Option<PathBuf>, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        match Command::new("python3").arg("--version").output() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("running python3: {e}")),
            Ok(_) => {}
        }
        let script = repo_root().join("tests/fakepve/setup-venv.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let python = stdout.lines().last().unwrap_or("").trim();
        if python.is_empty() {
            return Err(format!("{} printed no python path", script.display()));
        }
        Ok(Some(PathBuf::from(python)))
    });
    match found {
        Ok(python) => python.clone(),
        Err(e) => panic!("cannot set up the fakepve venv: {e}"),
    }
}

impl FakePve {
    /// The cluster most tests converge against: tasks that end as they start (time
    /// scale 0) and template 9000 on pve1's `local-lvm`; `None` as [`FakePve::start`].
    pub async fn with_template() -> Option<FakePve> {
        let pve = FakePve::start(Options {
            time_scale: 0.0,
            ..Options::default()
        })?;
        pve.control.create_template(9000, "pve1", "local-lvm").await;
        Some(pve)
    }

    /// Start a fake cluster, or `None` (after a loud message) if python3 is missing.
    pub fn start(options: Options) -> Option<FakePve> {
        let Some(python) = venv_python() else {
            // Straight to stderr, past the test harness's output capture: a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! SKIPPED: python3 not found; the fakepve tests need Python >= 3.10 \
                 (Debian: apt-get install python3 python3-venv) !!!\n"
            );
            return None;
        };
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let workdir = std::env::temp_dir().join(format!(
            "pve-gitops-fakepve-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&workdir).expect("create the harness workdir");
        let mut cmd = Command::new(python);
        cmd.arg(repo_root().join("tests/fakepve/harness.py"))
            .arg("--nodes")
            .args(&options.nodes)
            .arg("--time-scale")
            .arg(options.time_scale.to_string())
            .arg("--workdir")
            .arg(&workdir)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the fakepve harness");

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < 256 * 1024 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the harness never blocks on a full pipe.
            for _ in lines {}
        });

        let fail = |child: &mut Child, why: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            let log = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let _ = std::fs::remove_dir_all(&workdir);
            panic!("fakepve harness did not start: {why}\n--- harness stderr ---\n{log}");
        };
        let line = match rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(e))) => fail(&mut child, format!("reading its stdout: {e}")),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                fail(&mut child, "it exited before it was ready".into())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => fail(
                &mut child,
                format!("no ready line within {STARTUP_DEADLINE:?}"),
            ),
        };
        let info: HarnessInfo = match serde_json::from_str(&line) {
            Ok(info) => info,
            Err(e) => fail(&mut child, format!("bad ready line {line:?}: {e}")),
        };
        let control = Control::new(info.control_port);
        Some(FakePve {
            info,
            control,
            child,
            workdir,
            stderr,
        })
    }

    /// `https://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.info.api_port)
    }

    pub fn token(&self) -> ApiToken {
        ApiToken::new(&self.info.token_id, &self.info.token_secret).expect("harness token")
    }

    /// Client options for this fake: its URL, token and CA, fast task polling.
    pub fn client_options(&self) -> ClientOptions {
        let mut o = ClientOptions::new(self.token());
        o.base_url = self.base_url();
        o.tls = TlsTrust::CaFile(self.info.ca_file.clone());
        o.connect_timeout = Duration::from_secs(5);
        o.request_timeout = Duration::from_secs(30);
        o.task_poll.first_interval = Duration::from_millis(10);
        o.task_poll.max_interval = Duration::from_millis(200);
        o.retry.base_delay = Duration::from_millis(20);
        o.retry.max_delay = Duration::from_millis(200);
        o
    }

    pub fn client(&self) -> PveClient {
        PveClient::new(self.client_options()).expect("build the PVE client")
    }

    /// What the harness wrote on stderr so far (for assertion messages).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}
