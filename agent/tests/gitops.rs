//! The repository as the whole interface: manifests pushed to a bare repository are
//! applied on fakepve, and the status comes back as commits on `pve-gitops/status` with
//! the right message, trailers and files; an invalid revision applies nothing and puts
//! `errors.md` on the branch, removed again once fixed; an unchanged cluster adds no commit.

#[macro_use]
mod support;

use pve_gitops::apply::ApplyOptions;
use pve_gitops::daemon::changes::Unknown;
use pve_gitops::daemon::sources::Git;
use pve_gitops::daemon::{Daemon, DaemonOptions, Outcome};
use pve_gitops::plan::Policy;
use pve_gitops::source::{Source, SourceConfig};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::fakepve::{FakePve, Options};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Ops", "-c", "user.email=ops@example.org"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn manifests(replicas: u32, memory: &str) -> String {
    format!(
        "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: {{ name: x }}
spec: {{ templates: [9000], bridges: [vmbr0] }}
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: web, labels: {{ role: web }} }}
spec:
  replicas: {replicas}
  vmidStart: 701
  nodes: [pve1]
  template: {{ clone: {{ template: 9000 }}, memory: {memory} }}
"
    )
}

/// Commit `text` as `clusters/prod/web.yaml` in the work clone and push it; the commit id.
fn push(work: &Path, text: &str, message: &str) -> String {
    std::fs::create_dir_all(work.join("clusters/prod")).unwrap();
    std::fs::write(work.join("clusters/prod/web.yaml"), text).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", message]);
    git(work, &["push", "-q", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"]).trim().to_string()
}

fn status_commits(remote: &Path) -> Vec<String> {
    git(remote, &["log", "--format=%H", "pve-gitops/status"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn pushes_are_applied_and_status_comes_back_as_commits() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    pve.control.create_template(9000, "pve1", "local-lvm").await;
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.git");
    let work = dir.path().join("work");
    git(
        dir.path(),
        &["init", "-q", "--bare", remote.to_str().unwrap()],
    );
    git(
        dir.path(),
        &["clone", "-q", remote.to_str().unwrap(), "work"],
    );
    let first = push(&work, &manifests(2, "1G"), "two web servers");

    let mut config = SourceConfig::new(format!("file://{}", remote.display()), "main");
    config.cache_root = dir.path().join("cache");
    let source = Source::open(config).unwrap();
    let mut daemon = Daemon::new(
        pve.client(),
        Box::new(Git::new(source, "clusters/prod", "pve-gitops/status")),
        Box::new(Unknown),
        DaemonOptions {
            cluster: "prod".into(),
            node: "pve1".into(),
            decryptor: None,
            interval: Duration::from_secs(3600),
            resync: Duration::from_secs(3600),
            passes: None,
            policy: Policy::default(),
            apply: ApplyOptions::default(),
        },
    );

    // Applied, and reported with message, trailers and the table.
    assert!(matches!(
        daemon.tick().await.unwrap(),
        Outcome::Reconciled { .. }
    ));
    assert!(pve.control.vm(702).await.is_some());
    let message = git(&remote, &["log", "-1", "--format=%B", "pve-gitops/status"]);
    assert_eq!(
        message.trim_end(),
        format!(
            "apply {}: 2 created, 0 updated, 0 deleted, 0 failed\n\nApplied-Commit: {first}\nCluster: prod\nNode: pve1",
            &first[..7]
        )
    );
    let table = git(&remote, &["show", "pve-gitops/status:prod/STATUS.md"]);
    assert!(
        table.contains("| VirtualMachine/web-2 | pve1 | 702 |  | running | changed |  |"),
        "{table}"
    );
    let files = git(
        &remote,
        &["ls-tree", "-r", "--name-only", "pve-gitops/status"],
    );
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["prod/STATUS.md", "prod/inventory.yaml", "prod/status.yaml"]
    );
    assert_eq!(
        git(&remote, &["rev-parse", "main"]).trim(),
        first,
        "the applied branch is never written"
    );

    // The next pass finds nothing to do: the table says in-sync, in one more commit; the
    // one after changes nothing and commits nothing.
    daemon.tick().await.unwrap();
    daemon.tick().await.unwrap();
    assert_eq!(status_commits(&remote).len(), 2);

    // An invalid revision: nothing applied, errors.md with the location.
    let bad = push(&work, &manifests(3, "1GB"), "typo");
    pve.control.reset_counters().await;
    assert!(matches!(
        daemon.tick().await.unwrap(),
        Outcome::Invalid { .. }
    ));
    assert_eq!(pve.control.counters().await.writes, 0);
    let message = git(&remote, &["log", "-1", "--format=%s", "pve-gitops/status"]);
    assert_eq!(message.trim(), format!("reject {}: 1 error", &bad[..7]));
    let errors = git(&remote, &["show", "pve-gitops/status:prod/errors.md"]);
    assert!(
        errors.contains("web.yaml:13:") && errors.contains("invalid-value"),
        "{errors}"
    );

    // Fixed: applied, errors.md gone.
    push(&work, &manifests(3, "1G"), "three web servers");
    daemon.tick().await.unwrap();
    assert!(pve.control.vm(703).await.is_some());
    let files = git(
        &remote,
        &["ls-tree", "-r", "--name-only", "pve-gitops/status"],
    );
    assert!(!files.contains("errors.md"), "{files}");
}
