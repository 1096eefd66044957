//! `pve-gitops run` as systemd runs it, against fakepve: the notification protocol on a
//! fake `NOTIFY_SOCKET` (READY=1, STATUS=, watchdog pings that stop when a pass hangs and
//! resume when it moves again), `/metrics` scraped and parsed after a real pass, the
//! journald detection, and the structured fields events carry.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::control::eventually;
use support::fakepve::{FakePve, Options};

fn manifests(replicas: u32) -> String {
    support::manifests::web_set(replicas, 601, "[pve1, pve2]", "1G")
}

/// A manifests directory with `replicas` VMs and the API token, in a temp dir.
fn workspace(pve: &FakePve, replicas: u32) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("web.yaml"), manifests(replicas)).unwrap();
    let token = dir.path().join("token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    (dir, repo, token)
}

/// `pve-gitops run` on `repo` against `pve`, one agent without election.
fn agent(pve: &FakePve, dir: &Path, repo: &Path, token: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pve-gitops"));
    cmd.arg("run")
        .arg(repo)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--no-lease", "--node", "pve1"])
        .args(["--api-url", &pve.base_url()])
        .arg("--token-file")
        .arg(token)
        .arg("--ca-file")
        .arg(&pve.info.ca_file)
        .arg("--vmlist")
        .arg(dir.join("no-vmlist"))
        .env("NO_COLOR", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::piped());
    cmd
}

/// The child's stderr, line by line.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line of `rx` that satisfies `pred`, within 60 s.
fn next_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line for {what}: {e}"),
        }
    }
}

/// Kills the agent when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One datagram the agent sent to the notify socket, and when it arrived.
struct Note {
    at: Instant,
    text: String,
}

/// Binds a notify socket in `dir` and forwards each datagram.
fn notify_socket(dir: &Path) -> (PathBuf, mpsc::Receiver<Note>) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            let note = Note {
                at: Instant::now(),
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            if tx.send(note).is_err() {
                break;
            }
        }
    });
    (path, rx)
}

/// The next datagram with a line satisfying `pred`, within `within`.
fn next_note(rx: &mpsc::Receiver<Note>, within: Duration, pred: impl Fn(&str) -> bool) -> Note {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(note) if note.text.lines().any(&pred) => return note,
            Ok(_) => {}
            Err(e) => panic!("no such notification within {within:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn notifies_systemd_and_the_watchdog_follows_the_loop() {
    let pve = fake!(with_template);
    let (dir, repo, token) = workspace(&pve, 2);
    let (socket, notes) = notify_socket(dir.path());
    let watchdog = Duration::from_secs(1);
    let mut cmd = agent(&pve, dir.path(), &repo, &token);
    // Short passes back to back, so one is always about to start when the hang is set.
    cmd.args(["--interval", "200ms", "--metrics-listen", "off"])
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string());
    let mut child = cmd.spawn().expect("binary runs");
    let _log = stderr_lines(&mut child);
    let _running = Running(child);

    // READY=1 once the first fetch of the manifests returned, with a status saying so.
    let ready = next_note(&notes, Duration::from_secs(60), |l| l == "READY=1");
    assert!(
        ready
            .text
            .lines()
            .any(|l| l.starts_with("STATUS=fetched dir:")),
        "{}",
        ready.text
    );
    // After the first pass: what it did, in one line.
    let status = next_note(&notes, Duration::from_secs(60), |l| {
        l.starts_with("STATUS=leader, applied ")
    });
    let line = status
        .text
        .lines()
        .find(|l| l.starts_with("STATUS="))
        .unwrap();
    assert!(
        line.ends_with(", 2 VMs, 2 changed"),
        "the first pass creates both VMs: {line}"
    );
    // Pings keep coming, at about half the watchdog period.
    let first = next_note(&notes, Duration::from_secs(10), |l| l == "WATCHDOG=1");
    let mut pings = 1;
    while pings < 4 {
        next_note(&notes, Duration::from_secs(10), |l| l == "WATCHDOG=1");
        pings += 1;
    }
    assert!(
        first.at.elapsed() >= Duration::from_millis(1000),
        "pings are paced, not a flood"
    );

    // A pass hangs on an API call that never returns: the pings stop.
    pve.control.hang("GET", "/cluster/resources").await;
    eventually(
        "a pass waiting on the hung request",
        Duration::from_secs(30),
        || async { (pve.control.hung().await > 0).then_some(()) },
    )
    .await;
    let hung_at = Instant::now();
    // Allowed: pings until the pass has gone a whole watchdog period without progress
    // (plus one timer tick). Then silence, watched for three more periods.
    let quiet_from = hung_at + watchdog + watchdog / 2 + Duration::from_millis(250);
    let watch_until = quiet_from + 3 * watchdog;
    let mut late = Vec::new();
    loop {
        let left = watch_until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match notes.recv_timeout(left) {
            Ok(note) if note.text.lines().any(|l| l == "WATCHDOG=1") && note.at > quiet_from => {
                late.push(note.at - hung_at)
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(e) => panic!("notify socket: {e}"),
        }
    }
    assert!(
        late.is_empty(),
        "pinged while the pass hung, at {late:?} after it hung"
    );
    assert_eq!(pve.control.hung().await, 1, "still the same hung request");

    // The request answers: the loop moves again and so do the pings.
    pve.control.release_hangs().await;
    next_note(&notes, Duration::from_secs(10), |l| l == "WATCHDOG=1");
}

/// A plain HTTP/1.0 GET on loopback: status line, headers and body.
fn http_get(addr: &str, path: &str) -> (String, BTreeMap<String, String>, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// Samples of a scrape by metric name and labels (`k=v,...` sorted), as numbers.
fn samples(body: &str) -> BTreeMap<(String, String), f64> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition text");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert((s.metric, labels.join(",")), value);
    }
    out
}

#[tokio::test]
async fn metrics_after_a_real_pass() {
    let pve = fake!(with_template);
    // One API error to count: the first guest listing answers 503 (a GET: retried).
    pve.control
        .fail(
            json!({"method": "GET", "path": "/cluster/resources", "status": 503,
                     "message": "try again", "times": 1}),
        )
        .await;
    pve.control.reset_counters().await;
    let (dir, repo, token) = workspace(&pve, 3);
    let mut cmd = agent(&pve, dir.path(), &repo, &token);
    // One pass: nothing may be in flight when the test compares counts.
    cmd.args(["--interval", "1h", "--metrics-listen", "127.0.0.1:0"]);
    let mut child = cmd.spawn().expect("binary runs");
    let log = stderr_lines(&mut child);
    let _running = Running(child);

    let listening = next_line(&log, "the metrics listener", |l| {
        l.contains("metrics listening on http://")
    });
    let addr = listening
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("address in the log line")
        .to_string();
    next_line(&log, "the first pass", |l| {
        l.contains("reconciled") && l.contains("changed=3")
    });

    let (status, headers, body) = http_get(&addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers["content-type"].starts_with("application/openmetrics-text"),
        "{headers:?}"
    );
    let s = samples(&body);
    let get = |name: &str, labels: &str| -> f64 {
        *s.get(&(name.to_string(), labels.to_string()))
            .unwrap_or_else(|| panic!("{name}{{{labels}}} missing in\n{body}"))
    };

    // Three VMs declared, three created: one `create` action each.
    assert_eq!(
        get("pve_gitops_actions_total", "kind=create,result=ok"),
        3.0
    );
    assert!(!s
        .keys()
        .any(|(n, l)| n == "pve_gitops_actions_total" && !l.ends_with("result=ok")));
    assert_eq!(get("pve_gitops_plan_actions", ""), 3.0);
    assert_eq!(
        get("pve_gitops_leader", ""),
        1.0,
        "--no-lease applies: it leads"
    );
    assert_eq!(
        get(
            "pve_gitops_reconcile_duration_seconds_count",
            "outcome=reconciled"
        ),
        1.0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = get("pve_gitops_last_success_timestamp_seconds", "");
    assert!(now - last < 120.0 && last <= now + 1.0, "{last} vs {now}");
    assert_eq!(get("pve_gitops_git_fetch_errors_total", ""), 0.0);
    assert_eq!(
        get("pve_gitops_api_request_errors_total", "kind=api,method=GET"),
        1.0
    );
    // Every request fakepve saw was measured once, by method.
    let seen = pve.control.counters().await;
    let measured: f64 = s
        .iter()
        .filter(|((n, _), _)| n == "pve_gitops_api_request_duration_seconds_count")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(measured, seen.total as f64, "{:?}", seen.by_endpoint);
    assert_eq!(
        get(
            "pve_gitops_api_request_duration_seconds_count",
            "method=POST"
        ),
        seen.by_endpoint
            .iter()
            .filter(|(k, _)| k.starts_with("POST "))
            .map(|(_, v)| *v as f64)
            .sum::<f64>()
    );

    let (status, _, _) = http_get(&addr, "/");
    assert!(status.contains(" 404 "), "{status}");
}

/// A bound-to-fail `run` (no token file) with stderr in a file: what it logged first.
fn logging_of_run(journal_stream: impl FnOnce(&std::fs::File) -> String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    let stream = journal_stream(&file);
    let status = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .args(["run", "/nonexistent", "--no-lease", "--node", "pve1"])
        .arg("--token-file")
        .arg(dir.path().join("no-token"))
        .env("JOURNAL_STREAM", stream)
        .stderr(file)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn journald_is_chosen_only_when_stderr_is_the_journal_stream() {
    if Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("journald runs here: its entries cannot be read back by this test; skipped");
        return;
    }
    use std::os::fd::AsFd;
    // stderr is the stream systemd names: the agent goes for journald, which is not
    // running on this machine, and says it falls back to stderr.
    let matching = logging_of_run(|f| {
        let (dev, ino) = pve_gitops::telemetry::journal::fstat(f.as_fd()).unwrap();
        format!("{dev}:{ino}")
    });
    assert!(matching.contains("journald is not reachable"), "{matching}");
    // A stream that is not stderr (e.g. inherited, then redirected): plain stderr.
    let other = logging_of_run(|_| "1:1".into());
    assert!(!other.contains("journald"), "{other}");
    assert!(other.contains("cannot read the API token"), "{other}");
}

/// Events with the fields of their spans, as tracing-journald sees them (upper-cased
/// there); only what these tests look for.
#[derive(Default, Clone)]
struct Captured(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S> tracing_subscriber::Layer<S> for Captured
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields(BTreeMap::new());
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let span = ctx.span(id).unwrap();
        let mut ext = span.extensions_mut();
        if let Some(fields) = ext.get_mut::<Fields>() {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut all = BTreeMap::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    all.extend(f.0.clone());
                }
            }
        }
        let mut own = Fields(BTreeMap::new());
        event.record(&mut own);
        all.extend(own.0);
        self.0.lock().unwrap().push(all);
    }
}

#[tokio::test]
async fn events_carry_cluster_commit_resource_action_and_upid() {
    use tracing_subscriber::layer::SubscriberExt;
    let pve = fake!(with_template);
    let (dir, repo, _) = workspace(&pve, 1);
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let options = pve_gitops::daemon::DaemonOptions {
        cluster: "lab".into(),
        node: "pve1".into(),
        decryptor: None,
        interval: Duration::from_secs(3600),
        resync: Duration::from_secs(3600),
        passes: Some(1),
        state_dir: None,
        policy: pve_gitops::plan::PolicyOverrides::default(),
        apply: pve_gitops::apply::ApplyOptions::default(),
        clock: Default::default(),
    };
    let daemon = pve_gitops::daemon::Daemon::new(
        pve.client(),
        Box::new(pve_gitops::daemon::sources::Directory(repo.clone())),
        Box::new(pve_gitops::daemon::changes::Unknown),
        options,
    );
    let (_tx, wake) = tokio::sync::mpsc::unbounded_channel();
    pve_gitops::daemon::run(daemon, wake, std::future::pending()).await;

    let events = captured.0.lock().unwrap().clone();
    let revision = pve_gitops::manifests::fingerprint(&repo).unwrap();
    let create = events
        .iter()
        .find(|e| {
            e.get("action").map(String::as_str) == Some("create")
                && e.get("message").map(String::as_str) == Some("applied")
        })
        .unwrap_or_else(|| panic!("no `applied` event for the create in {events:#?}"));
    assert_eq!(create["resource"], "web-1");
    assert_eq!(create["cluster"], "lab");
    assert_eq!(create["commit"], revision);
    let tasks: Vec<&BTreeMap<String, String>> =
        events.iter().filter(|e| e.contains_key("upid")).collect();
    // The clone (PVE names the task after the template) and the start of web-1.
    for task in [":qmclone:9000:", ":qmstart:601:"] {
        assert!(
            tasks.iter().any(|e| e["upid"].contains(task)
                && e["resource"] == "web-1"
                && e["action"] == "create"
                && e["cluster"] == "lab"),
            "{task} in {tasks:#?}"
        );
    }
    let summary = events
        .iter()
        .find(|e| e.get("message").map(String::as_str) == Some("reconciled"))
        .expect("the pass's summary");
    assert_eq!(summary["cluster"], "lab");
    assert_eq!(summary["commit"], revision);
    drop(dir);
}

/// A running `pve-gitops run --repo url` (with `extra` flags) against `pve`, past its
/// first pass (one VM created): the agent, its log, and its `/metrics` address.
fn git_agent(
    pve: &FakePve,
    url: &str,
    scratch: &Path,
    extra: &[&std::ffi::OsStr],
) -> (Running, mpsc::Receiver<String>, String) {
    let token = scratch.join("token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .args(["run", "--repo", url])
        .arg("--cache")
        .arg(scratch.join("cache"))
        .arg("--state-dir")
        .arg(scratch.join("state"))
        .args(["--no-lease", "--node", "pve1", "--api-url", &pve.base_url()])
        .arg("--token-file")
        .arg(&token)
        .arg("--ca-file")
        .arg(&pve.info.ca_file)
        .arg("--vmlist")
        .arg(scratch.join("no-vmlist"))
        .args(["--interval", "200ms", "--git-interval", "0s"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(extra)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let log = stderr_lines(&mut child);
    let running = Running(child);
    let listening = next_line(&log, "the metrics listener", |l| {
        l.contains("metrics listening on http://")
    });
    let addr = listening
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_string();
    next_line(&log, "the first pass", |l| {
        l.contains("reconciled") && l.contains("changed=1")
    });
    (running, log, addr)
}

/// `pve_gitops_git_fetch_errors_total` of the agent serving `/metrics` on `addr`.
fn fetch_errors(addr: &str) -> f64 {
    let (_, _, body) = http_get(addr, "/metrics");
    samples(&body)[&(
        "pve_gitops_git_fetch_errors_total".to_string(),
        String::new(),
    )]
}

/// Wait (60 s at most) until the agent on `addr` has counted `n` failed fetches.
fn until_fetch_errors(addr: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while fetch_errors(addr) < n {
        assert!(Instant::now() < deadline, "fetch errors not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The template on `pve`, and a remote whose `main` declares one VM of it.
async fn one_vm_remote(pve: &FakePve) -> support::git::GitRemote {
    pve.control.create_template(9000, "pve1", "local-lvm").await;
    let remote = support::git::GitRemote::new();
    remote.write("web.yaml", manifests(1));
    remote.commit("one VM");
    remote.push("main");
    remote
}

#[tokio::test]
async fn git_fetch_errors_are_counted() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let remote = one_vm_remote(&pve).await;
    let (_running, log, addr) = git_agent(&pve, &remote.url(), &remote.scratch("agent"), &[]);
    assert_eq!(fetch_errors(&addr), 0.0);

    // The remote goes away: every poll fails, the last good head is kept, each failure
    // counted.
    let moved = remote.bare.with_extension("moved");
    std::fs::rename(&remote.bare, &moved).unwrap();
    next_line(&log, "a failed fetch", |l| l.contains("keeping"));
    until_fetch_errors(&addr, 2.0);
    std::fs::rename(&moved, &remote.bare).unwrap();
}

/// A remote that accepts connections and then never answers (over SSH here, through a
/// relay that goes silent) costs each poll `--git-timeout`, not the agent's loop: the
/// polls fail and are counted while the cluster stays on the last head, and the push
/// made meanwhile is applied once the remote answers again. Without the bound, the first
/// hung fetch would block the loop for good.
#[tokio::test]
async fn a_hung_git_remote_times_out_and_the_loop_goes_on() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let remote = one_vm_remote(&pve).await;
    let Some(sshd) = support::sshd::Sshd::start(&remote.scratch("ssh")) else {
        return;
    };
    let relay = support::relay::Relay::start(sshd.port);
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        sshd.user,
        relay.port,
        remote.bare.display()
    );
    let pin = support::git::fingerprint(&sshd.host_key);
    let (_running, log, addr) = git_agent(
        &pve,
        &url,
        &remote.scratch("agent"),
        &[
            "--deploy-key".as_ref(),
            sshd.client_key.as_os_str(),
            "--host-key".as_ref(),
            pin.as_ref(),
            "--git-timeout".as_ref(),
            "1s".as_ref(),
        ],
    );
    assert_eq!(fetch_errors(&addr), 0.0);

    relay.hang();
    let failed = next_line(&log, "a fetch that timed out", |l| l.contains("keeping"));
    assert!(failed.contains("no answer within 1s"), "{failed}");
    until_fetch_errors(&addr, 2.0);

    remote.write("web.yaml", manifests(2));
    remote.commit("two VMs");
    remote.push("main");
    relay.resume();
    next_line(&log, "the pass after the remote is back", |l| {
        l.contains("reconciled") && l.contains("changed=1")
    });
    assert!(pve.control.vm(601).await.is_some());
    assert!(
        pve.control.vm(602).await.is_some(),
        "the push made while hung"
    );
}
