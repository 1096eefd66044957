//! Pre-flight against fakepve: `apply --once` refuses a plan the cluster cannot take
//! (a missing template, an offline node, a node without the memory, a storage without the
//! space, an IP another guest holds) with zero writes and a message naming what is missing; a plan that fits passes
//! and converges. `gather` reads no more than it needs.

#[macro_use]
mod support;

use pve_gitops::apply::allocate_vmids;
use pve_gitops::observe::observe;
use pve_gitops::plan::{plan, Policy};
use pve_gitops::preflight::{check, gather};
use serde_json::json;
use std::path::Path;
use std::process::Output;
use support::control::text;
use support::fakepve::{FakePve, Options};
use support::manifests::EXTERNAL;
use support::pass::repo;

/// One VM `k3s` (vmid 300) cloned from 9000 on `node`, with `memory` and a static IP.
fn manifest(node: &str, memory: &str, ip: &str) -> String {
    format!(
        "{EXTERNAL}---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: {{ name: k3s }}
spec:
  vmid: 300
  node: {node}
  clone: {{ template: 9000 }}
  cpu: {{ cores: 2 }}
  memory: {memory}
  network: [ {{ bridge: vmbr0 }} ]
  cloudInit:
    ipConfig: [ {{ ipv4: {ip}/24, gateway: 192.168.1.1 }} ]
"
    )
}

/// `pve-gitops apply --once` on a directory holding `manifest`.
fn apply_once(pve: &FakePve, manifest: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vm.yaml"), manifest).unwrap();
    let token = dir.path().join(".token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    run(pve, dir.path(), &token)
}

fn run(pve: &FakePve, dir: &Path, token: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .args(["apply", "--once"])
        .arg(dir)
        .args(["--api-url", &pve.base_url()])
        .args(["--token-file", token.to_str().unwrap()])
        .args(["--ca-file", pve.info.ca_file.to_str().unwrap()])
        .output()
        .expect("binary runs")
}

/// `apply --once` must fail with exactly `problem` and write nothing at all.
async fn refused(pve: &FakePve, manifest: &str, problem: &str) {
    pve.control.reset_counters().await;
    let out = apply_once(pve, manifest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "pre-flight failed, nothing was applied:\n  {problem}\n"
        )),
        "{stderr}"
    );
    assert!(stdout.contains("+ k3s: create 300 on"), "{stdout}");
    let counters = pve.control.counters().await;
    assert_eq!(counters.writes, 0, "{:?}", counters.by_endpoint);
    assert!(pve.control.vm(300).await.is_none());
}

#[tokio::test]
async fn a_missing_template_applies_nothing() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    refused(
        &pve,
        &manifest("pve2", "2G", "192.168.1.60"),
        "k3s: template 9000 to clone from is not in the cluster",
    )
    .await;
}

#[tokio::test]
async fn an_offline_node_applies_nothing() {
    let pve = fake!(with_template);
    pve.control.set_node_online("pve2", false).await;
    refused(
        &pve,
        &manifest("pve2", "2G", "192.168.1.60"),
        "node pve2 is offline (needed by k3s)",
    )
    .await;
}

#[tokio::test]
async fn a_node_without_the_memory_applies_nothing() {
    let pve = fake!(with_template);
    // fakepve's nodes have 8 GiB, 2 GiB of it used.
    refused(
        &pve,
        &manifest("pve2", "7G", "192.168.1.60"),
        "node pve2: not enough memory for k3s: needs 7 GiB, 6 GiB free of 8 GiB",
    )
    .await;
}

#[tokio::test]
async fn a_storage_without_the_space_applies_nothing() {
    // local-lvm is 100 GiB; the template's 2 GiB disk is on it.
    let pve = fake!(with_template);
    let m = manifest("pve2", "2G", "192.168.1.60").replace(
        "  network:",
        "  disks: [ { slot: scsi0, storage: local-lvm, size: 120G } ]\n  network:",
    );
    refused(
        &pve,
        &m,
        "storage local-lvm on node pve2: not enough space for k3s: needs 120 GiB, 98 GiB free",
    )
    .await;
}

/// A VM nobody manages, holding 192.168.1.50.
async fn legacy(pve: &FakePve) {
    pve.control
        .create_vm(json!({
            "vmid": 120, "name": "legacy", "node": "pve3", "status": "running",
            "config": { "memory": 1024, "cores": 1,
                        "ipconfig0": "ip=192.168.1.50/24,gw=192.168.1.1" },
        }))
        .await;
}

#[tokio::test]
async fn an_ip_another_guest_holds_applies_nothing() {
    let pve = fake!(with_template);
    legacy(&pve).await;
    refused(
        &pve,
        &manifest("pve2", "2G", "192.168.1.50"),
        "k3s: IP 192.168.1.50 (ipconfig0) is already configured on VM 120 (legacy, ipconfig0)",
    )
    .await;
    pve.control
        .create_ct(json!({
            "vmid": 200, "name": "dns", "node": "pve1", "status": "running",
            "config": { "net0": "name=eth0,bridge=vmbr0,ip=192.168.1.53/24,gw=192.168.1.1" },
        }))
        .await;
    refused(
        &pve,
        &manifest("pve2", "2G", "192.168.1.53"),
        "k3s: IP 192.168.1.53 (ipconfig0) is already configured on container 200 (dns, net0)",
    )
    .await;
}

#[tokio::test]
async fn a_plan_that_fits_passes_and_converges() {
    let pve = fake!(with_template);
    legacy(&pve).await;
    let m = manifest("pve2", "4G", "192.168.1.60");
    pve.control.reset_counters().await;
    let out = apply_once(&pve, &m);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vm = pve.control.vm(300).await.expect("created");
    assert_eq!(vm["node"], "pve2");
    assert_eq!(vm["status"], "running");
    assert_eq!(text(&vm["config"]["memory"]), "4096");
    assert_eq!(
        text(&vm["config"]["ipconfig0"]),
        "ip=192.168.1.60/24,gw=192.168.1.1"
    );
    // The pre-flight read the other guest's config for its IP (nothing else reads it).
    let c = pve.control.counters().await;
    assert_eq!(c.path("GET", "/nodes/pve3/qemu/120/config"), 1);

    // Converged: the next pass plans nothing, and the pre-flight costs no call at all
    // (one `/cluster/resources`: observe's).
    pve.control.reset_counters().await;
    let out = apply_once(&pve, &m);
    assert_eq!(out.status.code(), Some(0));
    let c = pve.control.counters().await;
    assert_eq!(c.writes, 0, "{:?}", c.by_endpoint);
    assert_eq!(
        c.endpoint("GET /cluster/resources"),
        1,
        "{:?}",
        c.by_endpoint
    );
    assert_eq!(c.path("GET", "/nodes/pve3/qemu/120/config"), 0);
}

/// `gather` reads one unfiltered `/cluster/resources`, and the configs of other guests
/// only when the plan gives a VM an address it does not have yet.
#[tokio::test]
async fn gather_reads_guest_configs_only_for_new_addresses() {
    let pve = fake!(with_template);
    legacy(&pve).await;
    let client = pve.client();
    let without_ip = manifest("pve2", "2G", "192.168.1.60").replace(
        "  cloudInit:\n    ipConfig: [ { ipv4: 192.168.1.60/24, gateway: 192.168.1.1 } ]\n",
        "",
    );
    for (text, config_reads) in [(without_ip, 0), (manifest("pve2", "2G", "192.168.1.60"), 1)] {
        let desired = pve_gitops_schema::load(&repo(&text)).unwrap_or_else(|e| panic!("{e}"));
        let observed = observe(&client, &desired).await.expect("observe");
        let mut p = plan(&desired, &observed.vms, &Policy::default());
        allocate_vmids(&mut p, &observed.used_vmids);
        pve.control.reset_counters().await;
        let facts = gather(&client, &p, &observed).await.expect("gather");
        let c = pve.control.counters().await;
        assert_eq!(
            c.endpoint("GET /cluster/resources"),
            1,
            "{:?}",
            c.by_endpoint
        );
        assert_eq!(
            c.endpoint("GET /nodes/{node}/qemu/{vmid}/config"),
            config_reads,
            "{:?}",
            c.by_endpoint
        );
        assert_eq!(c.total, 1 + config_reads);
        assert_eq!(check(&p, &facts), Ok(()));
        assert_eq!(facts.nodes.len(), 3);
        assert!(facts.guests[&9000].template);
    }
}
