//! Sync windows end to end: a valid revision pushed outside the cluster's windows is
//! planned but not applied (fakepve sees no write, the status says what waits and until
//! when), and is applied by the first pass after the window opens. Time is a simulated
//! clock the test moves; the daemon is driven pass by pass.

#[macro_use]
mod support;

use chrono::{DateTime, Utc};
use pve_gitops::apply::ApplyOptions;
use pve_gitops::daemon::changes::Unknown;
use pve_gitops::daemon::sources::Directory;
use pve_gitops::daemon::{Daemon, DaemonOptions, Outcome};
use pve_gitops::windows::Clock;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fakepve::{FakePve, Options};

const POLICY: &str = "apiVersion: pve-gitops/v1alpha1
kind: ClusterPolicy
metadata: { name: test }
spec:
  syncWindows:
    # Weeknights 22:00-02:00 UTC.
    - { kind: allow, schedule: \"0 0 22 * * Mon-Fri\", duration: 4h }
";

fn vms(replicas: u32) -> String {
    support::manifests::web_set(replicas, 701, "[pve1, pve2]", "1G")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A clock the test sets.
fn simulated(start: &str) -> (Clock, Arc<Mutex<DateTime<Utc>>>) {
    let now = Arc::new(Mutex::new(at(start)));
    let shared = now.clone();
    (Clock::from_fn(move || *shared.lock().unwrap()), now)
}

fn daemon(pve: &FakePve, repo: &std::path::Path, clock: Clock) -> Daemon {
    Daemon::new(
        pve.client(),
        Box::new(Directory(repo.to_path_buf())),
        Box::new(Unknown),
        DaemonOptions {
            cluster: "test".into(),
            node: "pve1".into(),
            decryptor: None,
            interval: Duration::from_secs(15),
            resync: Duration::from_secs(3600),
            passes: None,
            state_dir: None,
            policy: pve_gitops::plan::PolicyOverrides::default(),
            apply: ApplyOptions::default(),
            clock,
        },
    )
}

#[tokio::test]
async fn a_change_outside_the_window_waits_and_applies_when_it_opens() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let control = &pve.control;
    control.create_template(9000, "pve1", "local-lvm").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("policy.yaml"), POLICY).unwrap();
    std::fs::write(repo.join("web.yaml"), vms(2)).unwrap();
    // Wednesday noon: outside the window.
    let (clock, now) = simulated("2026-11-25T12:00:00Z");
    let mut d = daemon(&pve, &repo, clock);

    control.reset_counters().await;
    let Outcome::Waiting { plan, status, .. } = d.tick().await.unwrap() else {
        panic!("expected the change to wait for the window");
    };
    assert_eq!(plan.waves.iter().map(|w| w.len()).sum::<usize>(), 2);
    let waiting = status.waiting.as_ref().expect("status notes the wait");
    assert_eq!(waiting.changes, 2);
    assert_eq!(waiting.next_open.as_deref(), Some("2026-11-25T22:00:00Z"));
    let md = pve_gitops::report::files(&status, None);
    let status_md = &md["STATUS.md"];
    assert!(
        status_md.contains("waits for a sync window**: 2 guests to change; the next window opens at 2026-11-25T22:00:00Z"),
        "{status_md}"
    );
    assert_eq!(
        pve_gitops::report::commit_message(&status, "pve1")
            .lines()
            .next()
            .unwrap(),
        "wait ".to_string()
            + &waiting.revision.chars().take(7).collect::<String>()
            + ": 2 guests to change when the sync window opens at 2026-11-25T22:00:00Z"
    );
    assert_eq!(control.counters().await.writes, 0, "nothing applied");
    assert!(control.vm(701).await.is_none());

    // Still closed a minute before; open at 22:00.
    *now.lock().unwrap() = at("2026-11-25T21:59:00Z");
    assert!(matches!(d.tick().await.unwrap(), Outcome::Waiting { .. }));
    assert_eq!(control.counters().await.writes, 0);
    *now.lock().unwrap() = at("2026-11-25T22:00:00Z");
    let Outcome::Reconciled { report, status, .. } = d.tick().await.unwrap() else {
        panic!("expected the pass in the window to apply");
    };
    assert_eq!(report.done.len(), 2, "{report:?}");
    assert!(status.waiting.is_none());
    assert!(control.vm(701).await.is_some() && control.vm(702).await.is_some());

    // Out of the window again, a converged cluster is simply in sync: no waiting.
    *now.lock().unwrap() = at("2026-11-26T12:00:00Z");
    let o = d.tick().await.unwrap();
    assert!(matches!(o, Outcome::Reconciled { .. }), "{o:?}");
}

#[tokio::test]
async fn the_override_annotation_applies_outside_the_window_until_it_expires() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let control = &pve.control;
    control.create_template(9000, "pve1", "local-lvm").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let overridden = POLICY.replace(
        "metadata: { name: test }",
        "metadata:\n  name: test\n  annotations: { pve-gitops/override-windows-until: \"2026-11-25T13:00:00Z\" }",
    );
    std::fs::write(repo.join("policy.yaml"), &overridden).unwrap();
    std::fs::write(repo.join("web.yaml"), vms(1)).unwrap();
    let (clock, now) = simulated("2026-11-25T12:00:00Z");
    let mut d = daemon(&pve, &repo, clock);
    let Outcome::Reconciled { report, .. } = d.tick().await.unwrap() else {
        panic!("the override lets the change through");
    };
    assert_eq!(report.done.len(), 1);

    // After the override expires, the next change waits again.
    *now.lock().unwrap() = at("2026-11-25T13:00:00Z");
    std::fs::write(repo.join("web.yaml"), vms(2)).unwrap();
    assert!(matches!(d.tick().await.unwrap(), Outcome::Waiting { .. }));
    assert!(control.vm(702).await.is_none());
}
