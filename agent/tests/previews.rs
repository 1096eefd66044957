//! Plan previews end to end: a pushed `plan/topic` branch yields
//! `prod/plans/plan-topic.md` on the status branch with the exact create/update/delete
//! counts and no write to fakepve; an invalid branch previews its errors; deleting the
//! branch removes its preview.

#[macro_use]
mod support;

use pve_gitops::apply::ApplyOptions;
use pve_gitops::daemon::changes::Unknown;
use pve_gitops::daemon::sources::Git;
use pve_gitops::daemon::{Daemon, DaemonOptions};
use pve_gitops::source::{Source, SourceConfig};
use std::time::Duration;
use support::fakepve::FakePve;
use support::git::{git, GitRemote};

fn manifests(replicas: u32, memory: &str) -> String {
    support::manifests::web_set(replicas, 701, "[pve1]", memory)
}

/// Commit `text` on a new local branch and push it as `branch`; back on `main` after.
fn push_branch(remote: &GitRemote, branch: &str, text: &str) {
    git(&remote.work, &["checkout", "-q", "-B", "topic", "main"]);
    remote.write("clusters/prod/web.yaml", text);
    remote.commit(&format!("change for {branch}"));
    remote.push(branch);
    git(&remote.work, &["checkout", "-q", "main"]);
}

fn status_files(remote: &GitRemote) -> Vec<String> {
    git(
        &remote.bare,
        &["ls-tree", "-r", "--name-only", "pve-gitops/status"],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[tokio::test]
async fn a_plan_branch_is_previewed_without_writes_and_its_deletion_removes_it() {
    let pve = fake!(with_template);
    let remote = GitRemote::new();
    remote.write("clusters/prod/web.yaml", manifests(2, "1G"));
    remote.commit("two web servers");
    remote.push("main");

    let mut config = SourceConfig::new(remote.url(), "main");
    config.cache_root = remote.scratch(".").join("cache");
    let mut daemon = Daemon::new(
        pve.client(),
        Box::new(Git::new(
            Source::open(config).unwrap(),
            "clusters/prod",
            "pve-gitops/status",
            Duration::ZERO,
        )),
        Box::new(Unknown),
        DaemonOptions {
            cluster: "prod".into(),
            node: "pve1".into(),
            decryptor: None,
            interval: Duration::from_secs(3600),
            resync: Duration::from_secs(3600),
            passes: None,
            state_dir: None,
            policy: pve_gitops::plan::PolicyOverrides::default(),
            apply: ApplyOptions::default(),
            clock: Default::default(),
        },
    );
    daemon.tick().await.unwrap();
    daemon.tick().await.unwrap();
    assert!(pve.control.vm(702).await.is_some());

    // Scale to 4 and give every VM 2G: 2 to create, the 2 existing to update. A branch
    // outside the pattern is not previewed.
    push_branch(&remote, "plan/topic", &manifests(4, "2G"));
    push_branch(&remote, "feature/other", &manifests(9, "2G"));
    pve.control.reset_counters().await;
    daemon.tick().await.unwrap();
    assert_eq!(
        pve.control.counters().await.writes,
        0,
        "a preview never writes"
    );
    assert!(pve.control.vm(703).await.is_none());
    assert_eq!(
        status_files(&remote),
        [
            "prod/STATUS.md",
            "prod/inventory.yaml",
            "prod/plans/plan-topic.md",
            "prod/status.yaml"
        ]
    );
    let head = remote.remote_head("plan/topic").unwrap();
    let preview = git(
        &remote.bare,
        &["show", "pve-gitops/status:prod/plans/plan-topic.md"],
    );
    assert!(
        preview.starts_with(&format!(
            "# Plan preview: `plan/topic`\n\nRevision `{head}`, planned against the live cluster."
        )),
        "{preview}"
    );
    assert!(
        preview.contains("**2 to create, 2 to update, 0 to delete**"),
        "{preview}"
    );
    assert!(
        preview.contains("+ web-3: create 703 on pve1 (clone of 9000)"),
        "{preview}"
    );
    assert!(
        preview.contains("~ web-1: memory: 1024 -> 2048"),
        "{preview}"
    );

    // An unchanged branch and cluster: no new status commit.
    let commits = git(&remote.bare, &["rev-list", "--count", "pve-gitops/status"]);
    daemon.tick().await.unwrap();
    assert_eq!(
        git(&remote.bare, &["rev-list", "--count", "pve-gitops/status"]),
        commits
    );

    // An invalid branch previews its errors with the location.
    push_branch(
        &remote,
        "plan/broken",
        "apiVersion: pve-gitops/v1alpha1\nkind: Nope\n",
    );
    daemon.tick().await.unwrap();
    let broken = git(
        &remote.bare,
        &["show", "pve-gitops/status:prod/plans/plan-broken.md"],
    );
    assert!(
        broken.contains("**The manifests are invalid** ("),
        "{broken}"
    );
    assert!(broken.contains("web.yaml:2:7: unknown-kind"), "{broken}");

    // Deleting a branch removes its preview.
    git(
        &remote.work,
        &["push", "-q", "origin", "--delete", "plan/topic"],
    );
    daemon.tick().await.unwrap();
    assert!(
        !status_files(&remote).contains(&"prod/plans/plan-topic.md".to_string()),
        "{:?}",
        status_files(&remote)
    );
    assert!(status_files(&remote).contains(&"prod/plans/plan-broken.md".to_string()));
    assert!(pve.control.vm(703).await.is_none());
}
