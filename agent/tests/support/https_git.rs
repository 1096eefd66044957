//! A git server over HTTPS for one test: `tests/git/https_git.py`, which runs
//! `git http-backend` behind a loopback TLS listener with a certificate from a test CA
//! it makes, and answers only requests carrying the token (basic auth password or
//! bearer).
//!
//! Only a missing `python3` makes [`HttpsGit::start`] return `None` (the test skips,
//! loudly); any other failure to start is a test failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A running server; killed on drop.
pub struct HttpsGit {
    pub port: u16,
    /// The CA that issued the server's certificate.
    pub ca_file: PathBuf,
    /// A CA that did not.
    pub other_ca_file: PathBuf,
    child: Child,
    log: Arc<Mutex<String>>,
}

#[derive(serde::Deserialize)]
struct Ready {
    port: u16,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
}

impl HttpsGit {
    /// Serve the repositories under `root`, accepting the token in `token_file`;
    /// certificates go to `dir`.
    pub fn start(root: &Path, token_file: &Path, dir: &Path) -> Option<HttpsGit> {
        match Command::new("python3").arg("--version").output() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("\n*** SKIPPING HTTPS GIT TEST: python3 is not installed ***\n");
                return None;
            }
            _ => {}
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/git/https_git.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--root")
            .arg(root)
            .arg("--token-file")
            .arg(token_file)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3 https_git.py");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(STARTUP_DEADLINE).unwrap_or_default();
        let ready: Ready = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "https_git.py did not start ({e}): {line:?}\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Some(HttpsGit {
            port: ready.port,
            ca_file: ready.ca_file,
            other_ca_file: ready.other_ca_file,
            child,
            log,
        })
    }

    /// `https://127.0.0.1:<port>/<path relative to the root>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.port)
    }

    /// The request log so far: `METHOD path status user=…` per request.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for HttpsGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
