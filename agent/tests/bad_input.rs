//! The bad-input corpus, end to end: one `pve-gitops run` follows a bare repository whose
//! good revision it applied on fakepve, and each broken repository state of
//! `tests/corpus/bad/` is pushed on top of it in turn. For every one the status branch
//! must reject that revision with an `errors.md` naming what `expect` says (a
//! `file:line:`, a resource, a path), fakepve must see no write, the daemon must keep
//! running and the status must stay at the good revision. No secret plaintext may show in
//! any `errors.md`, status file or log line.
//!
//! How a case is written: `support/corpus.rs`. `BAD_INPUT_CASES=name,name` runs only
//! those cases (debugging).

#[macro_use]
mod support;

use pve_gitops::report::status::ClusterStatus;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::control::text;
use support::corpus::{age_identity, cases, write_good, Case, CLUSTER_DIR, OUTSIDE, PLAINTEXTS};
use support::fakepve::FakePve;
use support::git::{git, GitRemote};

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
    // The identity that opens the good revision's secrets.
    let key = age_identity(&scratch);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .arg("run")
        .arg("--repo")
        .arg(remote.url())
        .args(["--path", CLUSTER_DIR, "--node", "pve1", "--no-lease"])
        .arg("--state-dir")
        .arg(scratch.join("state"))
        .arg("--cache")
        .arg(scratch.join("cache"))
        .args(["--interval", "50ms", "--git-interval", "0s"])
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
    let log = support::agent::collect_stderr(&mut child);
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
    let pve = fake!(with_template);
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
