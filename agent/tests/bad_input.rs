//! The bad-input corpus, end to end: one `pve-gitops run` follows a bare repository whose
//! good revision it applied on fakepve, and each broken repository state of
//! `tests/corpus/bad/` is pushed on top of it in turn. For every one the status branch
//! must reject that revision with an `errors.md` naming what `expect` says (a
//! `file:line:`, a resource, a path), fakepve must see no write, the daemon must keep
//! running and the status must stay at the good revision. No secret plaintext may show in
//! any `errors.md`, status file or log line.
//!
//! A case is a directory: `files/` is laid over the good cluster directory
//! (`clusters/prod`), `setup` (optional) lists what cannot be a plain file in the source
//! tree, one directive a line (paths relative to the cluster directory):
//!
//! | directive | effect |
//! |---|---|
//! | `delete PATH` | remove a file or directory |
//! | `symlink PATH TARGET` | a symbolic link |
//! | `copy PATH DATA` | a file of `tests/data/` (the SOPS vectors stay with their licences) |
//! | `write PATH TEXT` | a one-line text file |
//! | `fill PATH BYTES` | a text file of that size (valid YAML comments) |
//! | `garbage PATH BYTES` | pseudo-random bytes, not UTF-8 |
//! | `tamper PATH OFFSET` | flip the bits of one byte |
//! | `truncate PATH BYTES` | cut the file |
//!
//! `expect` lists, one a line, text the `errors.md` of the rejection must contain.
//! `BAD_INPUT_CASES=name,name` runs only those cases (debugging).

#[macro_use]
mod support;

use pve_gitops::report::status::ClusterStatus;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::control::text;
use support::fakepve::{FakePve, Options};
use support::git::{git, GitRemote};

const CLUSTER_DIR: &str = "clusters/prod";
/// Secret plaintext of the good revision and of every encrypted file a case brings in
/// (`tests/data/age/README.md`, `tests/data/sops/humphd-sops-age/secret.json`).
const PLAINTEXTS: [&str; 5] = [
    "canary-web-5e1f",
    "this is a secret",
    "gotta match go",
    "s3cret-1",
    "hunter2-plain",
];
/// What `/etc/passwd` starts with: a path that escapes must never be read.
const OUTSIDE: &str = "root:x:0:0";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Lay the good cluster directory into the work tree, replacing whatever a case left.
fn write_good(work: &Path) {
    let clusters = work.join("clusters");
    if clusters.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(&clusters).unwrap();
    }
    let dir = work.join(CLUSTER_DIR);
    copy_tree(&corpus().join("base"), &dir);
    std::fs::copy(
        data("sops/humphd-sops-age/secret.enc.yaml"),
        dir.join("secrets/db.enc.yaml"),
    )
    .unwrap();
}

/// One broken state: the good directory with the case laid over it.
struct Case {
    name: String,
    dir: PathBuf,
    expect: Vec<String>,
}

fn cases() -> Vec<Case> {
    let only: Option<Vec<String>> = std::env::var("BAD_INPUT_CASES")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let mut out: Vec<Case> = std::fs::read_dir(corpus().join("bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let expect = std::fs::read_to_string(dir.join("expect"))
                .unwrap_or_else(|e| panic!("{name}/expect: {e}"))
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect::<Vec<_>>();
            assert!(!expect.is_empty(), "{name}/expect names nothing");
            Case { name, dir, expect }
        })
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

impl Case {
    fn apply(&self, work: &Path) {
        write_good(work);
        let dir = work.join(CLUSTER_DIR);
        if self.dir.join("files").is_dir() {
            copy_tree(&self.dir.join("files"), &dir);
        }
        let Ok(setup) = std::fs::read_to_string(self.dir.join("setup")) else {
            return;
        };
        for line in setup.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.splitn(3, ' ');
            let (op, path) = (words.next().unwrap(), words.next().unwrap());
            let arg = words.next().unwrap_or("");
            let p = lexical_join(&dir, path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            let bytes = || -> usize { arg.parse().unwrap() };
            match op {
                "delete" if p.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
                "delete" => std::fs::remove_file(&p).unwrap(),
                "symlink" => std::os::unix::fs::symlink(arg, &p).unwrap(),
                "copy" => {
                    std::fs::copy(data(arg), &p).unwrap();
                }
                "write" => std::fs::write(&p, format!("{arg}\n")).unwrap(),
                "fill" => {
                    let line = "# padding padding padding padding padding padding padding\n";
                    let text = line.repeat(bytes() / line.len() + 1);
                    std::fs::write(&p, &text.as_bytes()[..bytes()]).unwrap();
                }
                "garbage" => std::fs::write(&p, garbage(bytes())).unwrap(),
                "tamper" => {
                    let mut b = std::fs::read(&p).unwrap();
                    b[bytes()] ^= 0x55;
                    std::fs::write(&p, b).unwrap();
                }
                "truncate" => {
                    let b = std::fs::read(&p).unwrap();
                    std::fs::write(&p, &b[..bytes()]).unwrap();
                }
                other => panic!("{}: unknown setup directive {other}", self.name),
            }
        }
    }
}

/// `dir/rel` with `..` taken lexically (a link in `dir` is not followed).
fn lexical_join(dir: &Path, rel: &str) -> PathBuf {
    let mut p = dir.to_path_buf();
    for part in rel.split('/') {
        match part {
            ".." => {
                p.pop();
            }
            "." | "" => {}
            part => p.push(part),
        }
    }
    p
}

/// Bytes that are not UTF-8 (every 0xff byte is invalid), the same on every run.
fn garbage(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 7 == 0 {
                0xff
            } else {
                x as u8
            }
        })
        .collect()
}

/// The status branch's `status.yaml` and `errors.md` at its head, with the head.
struct Published {
    commit: String,
    status: ClusterStatus,
    errors: Option<String>,
    table: String,
}

fn published(remote: &GitRemote) -> Option<Published> {
    let commit = remote.remote_head("pve-gitops/status")?;
    let show = |file: &str| {
        let out = Command::new("git")
            .current_dir(&remote.bare)
            .args(["show", &format!("{commit}:prod/{file}")])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    };
    let status = serde_yaml::from_str(&show("status.yaml")?).expect("status.yaml parses");
    Some(Published {
        errors: show("errors.md"),
        table: show("STATUS.md").unwrap_or_default(),
        status,
        commit,
    })
}

/// Poll the status branch until `pred` holds, at most `deadline`; the daemon must live.
fn wait_published(
    remote: &GitRemote,
    agent: &mut Agent,
    what: &str,
    deadline: Duration,
    pred: impl Fn(&Published) -> bool,
) -> Result<Published, String> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(p) = published(remote).filter(&pred) {
            return Ok(p);
        }
        if let Some(status) = agent.child.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}) waiting for {what}:\n{}",
                agent.log()
            );
        }
        if Instant::now() >= end {
            return Err(format!(
                "timed out after {deadline:?} waiting for {what}; last status: {:?}\n--- daemon log (tail) ---\n{}",
                published(remote).map(|p| (p.status.applied_revision, p.status.rejected)),
                agent.log_tail(10)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon rejected `commit` as `case` expects, kept the good revision and wrote nothing.
async fn check_rejection(
    pve: &FakePve,
    remote: &GitRemote,
    agent: &mut Agent,
    case: &Case,
    commit: &str,
    good: &str,
) -> Result<(), String> {
    let p = wait_published(
        remote,
        agent,
        "the rejection",
        Duration::from_secs(20),
        |p| {
            p.status
                .rejected
                .as_ref()
                .is_some_and(|r| r.revision == commit)
        },
    )?;
    let errors = p.errors.as_deref().ok_or("no errors.md on the branch")?;
    let missing: Vec<&String> = case
        .expect
        .iter()
        .filter(|e| !errors.contains(e.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(format!("errors.md lacks {missing:?}:\n{errors}"));
    }
    let message = git(&remote.bare, &["log", "-1", "--format=%B", &p.commit]);
    if !message.starts_with(&format!("reject {}", &commit[..7])) {
        return Err(format!("status commit message: {message}"));
    }
    if p.status.applied_revision.as_deref() != Some(good) || p.status.resources.len() != 3 {
        return Err(format!("the good state did not stay: {:?}", p.status));
    }
    for text in [errors, &p.table, &serde_yaml::to_string(&p.status).unwrap()] {
        for secret in PLAINTEXTS.iter().chain([&OUTSIDE]) {
            if text.contains(secret) {
                return Err(format!("the status shows `{secret}`:\n{text}"));
            }
        }
    }
    let c = pve.control.counters().await;
    if c.writes != 0 {
        return Err(format!("fakepve saw writes: {:?}", c.by_endpoint));
    }
    Ok(())
}

/// `pve-gitops run` as a process, its stderr kept.
struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(pve: &FakePve, remote: &GitRemote) -> Agent {
    let scratch = remote.scratch(".");
    let token = scratch.join("token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    // The identity that opens the good revision's secrets; git keeps it 0644, the agent
    // wants 0600.
    let key = scratch.join("age.key");
    std::fs::copy(data("sops/humphd-sops-age/key.txt"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .arg("run")
        .arg("--repo")
        .arg(remote.url())
        .args(["--path", CLUSTER_DIR, "--node", "pve1", "--no-lease"])
        .arg("--state-dir")
        .arg(scratch.join("state"))
        .arg("--cache")
        .arg(scratch.join("cache"))
        .args(["--interval", "50ms"])
        .arg("--vmlist")
        .arg(scratch.join("no-vmlist"))
        .arg("--identity")
        .arg(&key)
        .args(["--api-url", &pve.base_url()])
        .arg("--token-file")
        .arg(&token)
        .arg("--ca-file")
        .arg(&pve.info.ca_file)
        .env("RUST_LOG", "pve_gitops=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the agent starts");
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Agent { child, log }
}

/// What a guest looks like to compare before and after: vmid → (node, status, config).
async fn guests(pve: &FakePve) -> BTreeMap<u64, String> {
    let state = pve.control.state().await;
    state["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["vmid"].as_u64().unwrap(),
                format!(
                    "{} {} {}",
                    text(&g["node"]),
                    text(&g["status"]),
                    g["config"]
                ),
            )
        })
        .collect()
}

fn assert_no_plaintext(what: &str, s: &str) {
    for p in PLAINTEXTS.iter().chain([&OUTSIDE]) {
        assert!(!s.contains(p), "{what} shows `{p}`:\n{s}");
    }
}

#[tokio::test]
async fn every_broken_revision_is_rejected_by_location_and_nothing_is_written() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    pve.control.create_template(9000, "pve1", "local-lvm").await;
    let remote = GitRemote::new();
    write_good(&remote.work);
    let good = remote.commit("good");
    remote.push("main");
    let mut agent = start_agent(&pve, &remote);

    // The good revision converges: three VMs, in sync, passwords set from both secrets.
    let settled = wait_published(
        &remote,
        &mut agent,
        "the good revision in sync",
        Duration::from_secs(60),
        |p| {
            p.status.applied_revision.as_deref() == Some(good.as_str())
                && p.status.resources.len() == 3
                && p.status
                    .resources
                    .iter()
                    .all(|r| r.sync.as_str() == "in-sync")
        },
    )
    .unwrap();
    assert!(settled.errors.is_none());
    for (vmid, password) in [(801, "canary-web-5e1f"), (820, "this is a secret")] {
        let vm = pve.control.vm(vmid).await.expect("created");
        assert_eq!(text(&vm["config"]["cipassword"]), password, "{vmid}");
    }
    let before = guests(&pve).await;
    pve.control.reset_counters().await;

    let cases = cases();
    let started = Instant::now();
    let mut failures = Vec::new();
    for case in &cases {
        case.apply(&remote.work);
        let commit = remote.commit(&format!("bad: {}", case.name));
        remote.push("main");
        if let Err(e) = check_rejection(&pve, &remote, &mut agent, case, &commit, &good).await {
            failures.push(format!("case {}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    println!(
        "{} broken revisions rejected in {:?}",
        cases.len(),
        started.elapsed()
    );
    assert!(
        std::env::var("BAD_INPUT_CASES").is_ok() || cases.len() >= 50,
        "the corpus has {} cases",
        cases.len()
    );

    // The good content again: applied, errors.md gone, the cluster as it was.
    write_good(&remote.work);
    let fixed = remote.commit("fixed");
    remote.push("main");
    let p = wait_published(
        &remote,
        &mut agent,
        "the fixed revision",
        Duration::from_secs(30),
        |p| p.status.applied_revision.as_deref() == Some(fixed.as_str()),
    )
    .unwrap();
    assert!(p.errors.is_none() && p.status.rejected.is_none());
    assert_eq!(pve.control.counters().await.writes, 0);
    assert_eq!(
        guests(&pve).await,
        before,
        "the cluster is as the good revision left it"
    );
    assert!(agent.child.try_wait().unwrap().is_none(), "the daemon runs");
    assert_no_plaintext("the daemon's log", &agent.log());
}
