//! The seed examples converge from an empty cluster on fakepve, as their READMEs describe
//! the clusters: every declared VM on its node with its cores, memory, disks, network,
//! cloud-init, tags and power state; a second pass makes no write.

#[macro_use]
mod support;

use pve_gitops::apply::ApplyOptions;
use pve_gitops::plan::pveconfig::desired_config;
use pve_gitops::plan::Policy;
use pve_gitops::pve::{Idempotency, Params, PveClient};
use pve_gitops_schema::desired::DesiredVm;
use pve_gitops_schema::manifest::PowerState;
use pve_gitops_schema::{load, Repository};
use serde_json::{json, Value};
use std::path::Path;
use support::control::{text, Control};
use support::fakepve::{FakePve, Options};
use support::pass::pass;

fn example(name: &str) -> Repository {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    pve_gitops::manifests::read_dir(&dir).expect("example readable")
}

/// Keys whose value PVE fills in or rewrites (sizes and volume names of disks are checked
/// separately; a NIC keeps the MAC PVE generated; secrets are not applied yet).
fn compared(key: &str) -> bool {
    !matches!(key, "cipassword" | "sshkeys") && !key.starts_with("scsi") && !key.starts_with("net")
}

/// Every declared VM is in fakepve as declared; returns how many were checked.
async fn assert_converged(control: &Control, vms: &[DesiredVm]) -> usize {
    for vm in vms {
        let vmid = match vm.vmid {
            Some(v) => u64::from(v.get()),
            None => by_name(control, vm.name.as_str()).await,
        };
        let got = control
            .vm(vmid as u32)
            .await
            .unwrap_or_else(|| panic!("{} ({vmid}) exists", vm.name));
        let c = &got["config"];
        assert_eq!(got["node"], vm.node.as_str(), "{}: {got}", vm.name);
        assert_eq!(text(&c["name"]), vm.name.as_str());
        let want_running = vm.spec.power_state.unwrap_or_default() == PowerState::Running;
        assert_eq!(
            got["status"] == "running",
            want_running,
            "{}: {}",
            vm.name,
            got["status"]
        );
        for (key, value) in desired_config(vm, |_| None).iter() {
            if !compared(key) || value.text.is_empty() {
                continue;
            }
            assert_eq!(text(&c[key.as_str()]), value.text, "{} {key}: {c}", vm.name);
        }
        for d in &vm.spec.disks {
            let have = text(&c[d.slot.as_str()]);
            let size = pve_gitops_schema::units::Bytes(d.size.bytes()).pve();
            assert!(
                have.contains(&format!("size={size}")),
                "{} {}: {have}",
                vm.name,
                d.slot
            );
        }
        for (i, n) in vm.spec.network.iter().enumerate() {
            let have = text(&c[format!("net{i}").as_str()]);
            assert!(
                have.contains(&format!("bridge={}", n.bridge)),
                "{}: {have}",
                vm.name
            );
        }
    }
    vms.len()
}

/// The vmid of the one guest called `name`.
async fn by_name(control: &Control, name: &str) -> u64 {
    let state = control.state().await;
    let found: Vec<u64> = state["guests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] == name)
        .map(|g| g["vmid"].as_u64().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "one guest named {name}");
    found[0]
}

async fn converge_twice(pve: &FakePve, repo: &Repository) -> pve_gitops::apply::Report {
    let client = pve.client();
    let (_, report) = pass(&client, repo, &Policy::default(), &ApplyOptions::default()).await;
    assert!(report.failed.is_empty(), "{report:?}");
    pve.control.reset_counters().await;
    let (p, again) = pass(&client, repo, &Policy::default(), &ApplyOptions::default()).await;
    assert!(p.is_empty() && again.done.is_empty(), "{p:?}");
    assert_eq!(pve.control.counters().await.writes, 0);
    report
}

/// Seed 000: DNS, Consul/Nomad managers and workers cloned from three Packer templates on
/// Ceph RBD, across three nodes.
#[tokio::test]
async fn seed_000_hashicorp_cluster_converges() {
    let pve = fake!(Options {
        nodes: vec!["pve01".into(), "pve02".into(), "pve03".into()],
        time_scale: 0.0,
    });
    let control = &pve.control;
    for storage in ["rbd", "cephfs"] {
        control.ceph(json!({ "add_storage": storage })).await;
    }
    for vmid in [9001, 9002, 9003] {
        control.create_template(vmid, "pve01", "rbd").await;
    }
    let repo = example("000-hashicorp-cluster");
    let desired = load(&repo).unwrap_or_else(|e| panic!("{e}"));
    let report = converge_twice(&pve, &repo).await;
    assert_eq!(report.done.len(), desired.vms.len());
    assert!(assert_converged(control, &desired.vms).await >= 7);
}

/// Seed 002: Rancher manager cluster 401-403, then the apps cluster 404-406 once every
/// manager passed its health gate (guest agent, cloud-init). Template 400 is on ZFS only
/// pve1 sees, so members for pve2 and pve3 are cloned on pve1 and migrated.
#[tokio::test]
async fn seed_002_rancher_rolls_out_managers_first() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let control = &pve.control;
    let client = pve.client();
    add_zfs_storage(&client, "local-vm-zfs").await;
    control.create_template(400, "pve1", "local-vm-zfs").await;
    control.guest_agents(json!({})).await;

    let repo = example("002-rancher");
    let desired = load(&repo).unwrap_or_else(|e| panic!("{e}"));
    let report = converge_twice(&pve, &repo).await;
    assert_eq!(report.done.len(), 6, "{report:?}");
    assert_eq!(assert_converged(control, &desired.vms).await, 6);
    for (name, steps) in &report.done {
        assert_eq!(steps.last().map(String::as_str), Some("ready"), "{name}");
    }
    assert_eq!(
        report.done["rancher-manager-2"][..2],
        ["create 402".to_string(), "migrate to pve2".to_string()]
    );

    // Managers first: no apps clone was requested before the last request about a
    // manager (its health gate's guest-agent calls).
    let requests = control.requests(100_000).await;
    let about = |vmids: &[&str]| -> Vec<usize> {
        requests
            .iter()
            .enumerate()
            .filter(|(_, (method, path, body))| {
                // Writes and agent commands only: the second pass reads everything again.
                method != "GET"
                    && vmids.iter().any(|v| {
                        path.contains(&format!("/qemu/{v}/"))
                            || body.contains(&format!("newid={v}"))
                    })
            })
            .map(|(i, _)| i)
            .collect()
    };
    let managers = about(&["401", "402", "403"]);
    let apps = about(&["404", "405", "406"]);
    assert!(
        managers.iter().max() < apps.iter().min(),
        "managers {managers:?}, apps {apps:?}"
    );
    // The declared sshkeys reached cloud-init (PVE stores them URL-encoded).
    let c = &control.vm(405).await.unwrap()["config"];
    assert!(text(&c["sshkeys"]).contains("ssh-ed25519"), "{c}");
    assert_eq!(text(&c["ipconfig0"]), "ip=192.168.1.111/24,gw=192.168.1.1");
}

/// A ZFS pool storage every node has but none shares (`local-vm-zfs` in seed 002).
async fn add_zfs_storage(client: &PveClient, id: &str) {
    let _: Value = client
        .post(
            "/storage",
            &Params::new()
                .with("storage", id)
                .with("type", "zfspool")
                .with("pool", "rpool/vm")
                .with("content", "images,rootdir"),
            Idempotency::NotIdempotent,
        )
        .await
        .expect("storage created");
}

/// Seed 002 with a manager whose cloud-init fails: the apps wave is not started, and the
/// status (as committed to the status branch) says which manager failed and why each
/// app VM was skipped.
#[tokio::test]
async fn seed_002_a_failed_manager_gate_stops_the_apps_wave_and_the_status_says_why() {
    use pve_gitops::daemon::changes::Unknown;
    use pve_gitops::daemon::sources::Directory;
    use pve_gitops::daemon::{Daemon, DaemonOptions, Outcome};

    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let control = &pve.control;
    add_zfs_storage(&pve.client(), "local-vm-zfs").await;
    control.create_template(400, "pve1", "local-vm-zfs").await;
    // Nodes the size the seed's README assumes (two 8 GiB VMs per node).
    control
        .post(
            "/capacity",
            json!({"nodes": {"maxmem": 64u64 << 30, "mem": 4u64 << 30, "maxcpu": 32}}),
        )
        .await;
    control
        .guest_agents(json!({"exec": {"cloud-init status --wait": {"exitcode": 1, "err-data": "rke2 install failed\n"}}}))
        .await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/002-rancher");
    let mut daemon = Daemon::new(
        pve.client(),
        Box::new(Directory(dir)),
        Box::new(Unknown),
        DaemonOptions {
            cluster: "rancher".into(),
            node: "pve1".into(),
            decryptor: None,
            interval: std::time::Duration::from_secs(3600),
            resync: std::time::Duration::from_secs(3600),
            passes: None,
            state_dir: None,
            policy: pve_gitops::plan::PolicyOverrides::default(),
            apply: ApplyOptions::default(),
            clock: Default::default(),
        },
    );
    let (report, status) = match daemon.tick().await.unwrap() {
        Outcome::Reconciled { report, status, .. } => (report, status),
        other => panic!("expected a full pass, got {other:?}"),
    };
    assert_eq!(report.failed.len(), 3, "{report:?}");
    for vmid in [404, 405, 406] {
        assert!(control.vm(vmid).await.is_none(), "apps VM {vmid} created");
    }
    let files = pve_gitops::report::files(&status, None);
    let table = &files["STATUS.md"];
    assert!(
        table.contains("| VirtualMachine/rancher-manager-1 | pve1 | 401 |"),
        "{table}"
    );
    assert!(
        table.contains("| 192.168.1.100 | unknown | failed | health gate: cloud-init failed (exit code 1): rke2 install failed |"),
        "{table}"
    );
    assert!(
        table.contains("| VirtualMachine/nprd-apps-1 | pve1 | 404 | 192.168.1.110 | absent | skipped | depends on rancher-manager-1, rancher-manager-2, rancher-manager-3 (not ready) |"),
        "{table}"
    );
    assert_eq!(
        pve_gitops::report::commit_message(&status, "pve1")
            .lines()
            .next()
            .unwrap()
            .split_once(": ")
            .unwrap()
            .1,
        "0 created, 0 updated, 0 deleted, 3 failed"
    );
}
