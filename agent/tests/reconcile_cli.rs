//! `pve-gitops plan` and `apply --once` as an operator runs them, against fakepve.

#[macro_use]
mod support;

use std::process::{Command, Output};
use support::fakepve::{FakePve, Options};

const VM: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: k3s }
spec:
  vmid: 300
  node: pve2
  clone: { template: 9000 }
  cpu: { cores: 2 }
  memory: 4G
  network: [ { bridge: vmbr0 } ]
";

fn run(pve: &FakePve, dir: &std::path::Path, token: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .args(args)
        .arg(dir)
        .args([
            "--api-url",
            &pve.base_url(),
            "--token-file",
            token.to_str().unwrap(),
        ])
        .args(["--ca-file", pve.info.ca_file.to_str().unwrap()])
        .output()
        .expect("binary runs")
}

/// Give `pve` template 9000 on pve1; a directory for the manifests, with the API token
/// in it (`.token`: the loader skips dotfiles).
async fn prepare(pve: &FakePve) -> (tempfile::TempDir, std::path::PathBuf) {
    pve.control.create_template(9000, "pve1", "local-lvm").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join(".token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    (dir, token)
}

#[tokio::test]
async fn plan_then_apply_then_nothing_to_do() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let (dir, token) = prepare(&pve).await;
    std::fs::write(dir.path().join("vm.yaml"), VM).unwrap();

    let out = run(&pve, dir.path(), &token, &["plan"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("+ k3s: create 300 on pve2 (clone of 9000)"),
        "{stdout}"
    );
    assert!(pve.control.vm(300).await.is_none(), "plan must not write");

    let out = run(&pve, dir.path(), &token, &["apply", "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 changed, 0 failed, 0 skipped"),
        "{stdout}"
    );
    let vm = pve.control.vm(300).await.expect("created");
    assert_eq!(
        (vm["node"].as_str(), vm["status"].as_str()),
        (Some("pve2"), Some("running"))
    );

    let out = run(&pve, dir.path(), &token, &["plan"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no changes"));
}

/// A window that never opens in this century: `apply --once` holds the change back (exit
/// 2, no write), `--now` applies it.
#[tokio::test]
async fn apply_outside_the_sync_windows_waits_unless_now() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let (dir, token) = prepare(&pve).await;
    std::fs::write(dir.path().join("vm.yaml"), VM).unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "apiVersion: pve-gitops/v1alpha1
kind: ClusterPolicy
metadata: { name: x }
spec:
  syncWindows: [ { kind: allow, schedule: \"0 0 0 1 1 * 2099\", duration: 1h } ]
",
    )
    .unwrap();

    pve.control.reset_counters().await;
    let out = run(&pve, dir.path(), &token, &["apply", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("outside the sync windows, nothing was applied; `--now` applies anyway"),
        "{stderr}"
    );
    assert_eq!(pve.control.counters().await.writes, 0);

    let out = run(&pve, dir.path(), &token, &["apply", "--once", "--now"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pve.control.vm(300).await.is_some());
}

/// A VM that declared `prune: true` is pruned by its own setting once its manifest is
/// gone, but not under `--no-prune`: that flag deletes nothing, whatever the manifests
/// (or the record they left in the VM) say.
#[tokio::test]
async fn no_prune_keeps_a_vm_that_asked_to_be_pruned() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let (dir, token) = prepare(&pve).await;
    let external = VM.split("---").next().unwrap();
    std::fs::write(dir.path().join("vm.yaml"), format!("{VM}  prune: true\n")).unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "apiVersion: pve-gitops/v1alpha1
kind: ClusterPolicy
metadata: { name: x }
spec: { prune: { maxDeleteShare: 100 } }
",
    )
    .unwrap();
    let apply = |args: &[&str]| {
        let out = run(&pve, dir.path(), &token, args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{said}");
        said
    };
    apply(&["apply", "--once"]);
    assert_eq!(
        pve.control.vm(300).await.expect("created")["status"],
        "running"
    );

    std::fs::write(dir.path().join("vm.yaml"), external).unwrap();
    pve.control.reset_counters().await;
    let said = apply(&["apply", "--once", "--no-prune"]);
    assert_eq!(pve.control.counters().await.writes, 0, "{said}");
    let vm = pve.control.vm(300).await.expect("kept");
    assert_eq!(vm["status"], "running", "{said}");

    let said = apply(&["apply", "--once"]);
    let vm = pve.control.vm(300).await.expect("retired, not destroyed");
    assert_eq!(vm["status"], "stopped", "{said}");
    let tags = support::control::text(&vm["config"]["tags"]);
    assert!(tags.contains("pve-gitops-orphan"), "{tags}: {said}");
}
