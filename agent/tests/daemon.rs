//! The daemon loop against fakepve: passes driven one by one (idle passes cost one API
//! call while pmxcfs's guest list and the manifests are unchanged; anything behind the
//! agent's back or a new revision makes a full pass; an invalid revision applies nothing
//! and the loop goes on), and `pve-gitops run` as a process (converges, follows an edit of
//! the manifests, stops cleanly on SIGTERM).

#[macro_use]
mod support;

use pve_gitops::apply::ApplyOptions;
use pve_gitops::daemon::changes::VmList;
use pve_gitops::daemon::sources::Directory;
use pve_gitops::daemon::{Daemon, DaemonOptions, Outcome};
use pve_gitops::plan::PolicyOverrides;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::control::text;
use support::fakepve::FakePve;

fn manifests(replicas: u32) -> String {
    support::manifests::web_set(replicas, 601, "[pve1, pve2]", "1G")
}

fn options(interval: Duration) -> DaemonOptions {
    DaemonOptions {
        cluster: "test".into(),
        node: "pve1".into(),
        decryptor: None,
        interval,
        resync: Duration::from_secs(3600),
        passes: None,
        state_dir: None,
        // Heal: these tests restart a VM stopped behind the agent's back.
        policy: PolicyOverrides {
            drift: Some(pve_gitops_schema::manifest::policy::DriftMode::Heal),
            ..PolicyOverrides::default()
        },
        apply: ApplyOptions::default(),
        clock: Default::default(),
    }
}

/// Changed, failed: from a full pass.
fn counts(o: &Outcome) -> (usize, usize) {
    match o {
        Outcome::Reconciled { report, .. } => (report.done.len(), report.failed.len()),
        other => panic!("expected a full pass, got {other:?}"),
    }
}

#[tokio::test]
async fn idle_passes_cost_one_call_and_changes_wake_full_passes() {
    let pve = fake!(with_template);
    let control = &pve.control;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("web.yaml"), manifests(2)).unwrap();
    let vmlist = dir.path().join(".vmlist");
    std::fs::write(&vmlist, r#"{"version": 1}"#).unwrap();
    let mut d = Daemon::new(
        pve.client(),
        Box::new(Directory(repo.clone())),
        Box::new(VmList(vmlist.clone())),
        options(Duration::from_secs(15)),
    );

    let first = d.tick().await.unwrap();
    assert_eq!(counts(&first), (2, 0));
    let Outcome::Reconciled { status, .. } = &first else {
        unreachable!()
    };
    let syncs: Vec<(&str, &str)> = status
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.sync.as_str()))
        .collect();
    assert_eq!(syncs, [("web-1", "changed"), ("web-2", "changed")]);
    // The first pass changed things: the next one is a full pass, finding nothing to do.
    assert_eq!(counts(&d.tick().await.unwrap()), (0, 0));
    control.reset_counters().await;
    for _ in 0..3 {
        assert!(matches!(d.tick().await.unwrap(), Outcome::Unchanged));
    }
    let c = control.counters().await;
    assert_eq!((c.total, c.writes), (3, 0), "{:?}", c.by_endpoint);

    // A guest config written behind the agent's back bumps pmxcfs's list: full pass.
    std::fs::write(&vmlist, r#"{"version": 2}"#).unwrap();
    control.reset_counters().await;
    assert_eq!(counts(&d.tick().await.unwrap()), (0, 0));
    assert!(control.counters().await.total > 1);

    // A VM stopped behind the agent's back changes the guest listing: started again.
    assert!(matches!(d.tick().await.unwrap(), Outcome::Unchanged));
    control
        .update_vm(602, json!({"status": "stopped", "qmpstatus": "stopped"}))
        .await;
    let o = d.tick().await.unwrap();
    assert_eq!(counts(&o), (1, 0));
    assert_eq!(text(&control.vm(602).await.unwrap()["status"]), "running");

    // An invalid revision: reported with its location, nothing written, next pass fine.
    let _ = d.tick().await.unwrap();
    std::fs::write(repo.join("web.yaml"), manifests(3).replace("1G", "1GB")).unwrap();
    control.reset_counters().await;
    match d.tick().await.unwrap() {
        Outcome::Invalid { errors, status, .. } => {
            assert!(errors.contains("web.yaml:13:50: invalid-value"), "{errors}");
            let rejected = status.rejected.as_ref().expect("rejection noted");
            assert!(rejected.errors[0].starts_with("web.yaml:13:50"));
            assert_eq!(status.resources.len(), 2, "the last applied state stays");
        }
        other => panic!("expected an invalid revision, got {other:?}"),
    }
    assert_eq!(control.counters().await.total, 0);
    std::fs::write(repo.join("web.yaml"), manifests(3)).unwrap();
    assert_eq!(counts(&d.tick().await.unwrap()), (1, 0));
    assert!(control.vm(603).await.is_some());

    // A plan the cluster cannot take (its template is missing) fails pre-flight: nothing
    // is written, the status says why, and the daemon carries on.
    std::fs::write(
        repo.join("web.yaml"),
        manifests(4)
            .replace("template: 9000 }", "template: 9999 }")
            .replace("templates: [9000]", "templates: [9999]"),
    )
    .unwrap();
    control.reset_counters().await;
    match d.tick().await.unwrap() {
        Outcome::Refused { status, .. } => {
            let errors = &status.rejected.as_ref().expect("refusal noted").errors;
            assert!(
                errors.iter().all(|e| e.starts_with("pre-flight: ")),
                "{errors:?}"
            );
            assert!(errors.iter().any(|e| e.contains("9999")), "{errors:?}");
        }
        other => panic!("expected a pre-flight refusal, got {other:?}"),
    }
    assert_eq!(control.counters().await.writes, 0);
    assert!(control.vm(604).await.is_none());
}

/// A line of the daemon's log, or the end of it.
fn next_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line for {what}: {e}"),
        }
    }
}

fn token_file(pve: &FakePve, dir: &Path) -> std::path::PathBuf {
    let token = dir.join("token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    token
}

#[tokio::test]
async fn run_converges_follows_edits_and_stops_on_sigterm() {
    let pve = fake!(with_template);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("web.yaml"), manifests(1)).unwrap();
    let token = token_file(&pve, dir.path());
    // A long interval: the edit below must be noticed by the file watcher, not the timer.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .arg("run")
        .arg(&repo)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        // One agent, no pmxcfs: no leader election (tests/failover.rs covers it).
        .args(["--no-lease", "--node", "pve1"])
        .args(["--api-url", &pve.base_url()])
        .arg("--token-file")
        .arg(&token)
        .arg("--ca-file")
        .arg(&pve.info.ca_file)
        .args(["--interval", "1h", "--vmlist"])
        .arg(dir.path().join("no-vmlist"))
        .env("RUST_LOG", "pve_gitops=debug")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    next_line(&rx, "first pass", |l| {
        l.contains("reconciled") && l.contains("changed=1")
    });
    assert_eq!(
        text(&pve.control.vm(601).await.unwrap()["status"]),
        "running"
    );
    std::fs::write(repo.join("web.yaml"), manifests(2)).unwrap();
    next_line(&rx, "the pass after the edit", |l| {
        l.contains("reconciled") && l.contains("changed=1")
    });
    assert!(pve.control.vm(602).await.is_some());

    nix_kill(child.id(), "TERM");
    next_line(&rx, "shutdown", |l| l.contains("stopping"));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Send a signal with kill(1): the test needs no signal crate for one call.
fn nix_kill(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}
