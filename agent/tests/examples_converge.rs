//! Example systems converged from an empty 3-node fakepve through the same
//! `pass::prepare` / `pass::execute` as `apply --once`, the resulting objects asserted
//! kind by kind, and a second pass that writes nothing (no POST, PUT or DELETE).
//! (Example 003 runs through the daemon and git in `outputs.rs`; 004 in `kinds.rs` and
//! `cluster_objects.rs`.)

#[macro_use]
mod support;

use pve_gitops::apply::{ApplyOptions, Report};
use pve_gitops::pass::{execute, prepare};
use pve_gitops::plan::Policy;
use pve_gitops::pve::PveClient;
use pve_gitops::revision::{load, Revision};
use serde_json::{json, Value};
use std::path::Path;
use support::control::text;
use support::fakepve::{FakePve, Options};

fn revision(name: &str) -> Revision {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let repo = pve_gitops::manifests::read_dir(&dir).expect("example readable");
    load(&repo, None).unwrap_or_else(|e| panic!("{}", e.join("\n")))
}

async fn pass(client: &PveClient, rev: &Revision, options: &ApplyOptions) -> Report {
    let prepared = prepare(client, &rev.desired, &Policy::default())
        .await
        .expect("prepare");
    if let Err(p) = &prepared.preflight {
        panic!("pre-flight: {p:?}");
    }
    execute(client, &prepared, options).await
}

/// Converge, then check a second pass does and writes nothing.
async fn converge(pve: &FakePve, rev: &Revision, options: &ApplyOptions) -> Report {
    let client = pve.client();
    let report = pass(&client, rev, options).await;
    assert!(
        report.failed.is_empty() && report.skipped.is_empty(),
        "{report:#?}"
    );
    pve.control.reset_counters().await;
    let again = pass(&client, rev, options).await;
    assert!(
        again.done.is_empty() && again.failed.is_empty() && again.skipped.is_empty(),
        "{again:#?}"
    );
    let c = pve.control.counters().await;
    assert_eq!(c.writes, 0, "second pass wrote: {:?}", c.by_path);
    report
}

fn config(vm: &Value, key: &str) -> String {
    text(&vm["config"][key])
}

/// Seed 002: the manager cluster (401-403) then the apps cluster (404-406), cloned in
/// full from template 400 on pve1 onto local ZFS on pve1..3 round-robin, VLAN 14, static
/// addresses .100-.102 and .110-.112, each health-gated (guest agent, cloud-init) before its dependents.
#[tokio::test]
async fn example_002_converges_from_empty_and_then_writes_nothing() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    pve.control
        .post(
            "/storages",
            json!({ "local-vm-zfs": { "type": "zfspool", "pool": "rpool/vm", "content": "images,rootdir" } }),
        )
        .await;
    pve.control
        .post(
            "/capacity",
            json!({ "nodes": { "maxcpu": 32, "maxmem": 128u64 << 30, "mem": 0 },
                    "storages": { "local-vm-zfs": 4u64 << 40 } }),
        )
        .await;
    pve.control
        .create_template(400, "pve1", "local-vm-zfs")
        .await;
    pve.control.guest_agents(json!({})).await;
    let rev = revision("002-rancher");
    let report = converge(&pve, &rev, &ApplyOptions::default()).await;

    let nodes = ["pve1", "pve2", "pve3"];
    for (i, vmid) in (401..=406).enumerate() {
        let vm = pve.control.vm(vmid).await.expect("created");
        let (set, n, offset) = if i < 3 {
            ("rancher-manager", i + 1, 100)
        } else {
            ("nprd-apps", i - 2, 110)
        };
        let name = format!("{set}-{n}");
        assert_eq!(vm["name"], name.as_str());
        assert_eq!(vm["node"], nodes[(n - 1) % 3], "{name}");
        assert_eq!(vm["status"], "running", "{name}");
        assert_eq!(report.done[&name].last().unwrap(), "ready", "{name}");
        assert!(
            config(&vm, "scsi0").starts_with(&format!("local-vm-zfs:vm-{vmid}-disk-")),
            "{name}: {}",
            vm["config"]
        );
        assert!(config(&vm, "scsi0").contains("size=20G"));
        assert!(config(&vm, "net0").contains("bridge=vmbr0"));
        assert!(config(&vm, "net0").contains("tag=14"));
        assert_eq!(
            config(&vm, "ipconfig0"),
            format!("ip=192.168.1.{}/24,gw=192.168.1.1", offset + n - 1)
        );
        assert_eq!(config(&vm, "agent"), "1");
        assert_eq!(config(&vm, "cores"), "4");
        assert!(config(&vm, "tags").split(';').any(|t| t == "pve-gitops"));
    }
    // The apps cluster started only after every manager passed its gate.
    let requests = pve.control.requests(100_000).await;
    let position = |vmid: u32| {
        requests
            .iter()
            .position(|(m, p, _)| m == "POST" && p.ends_with(&format!("/qemu/{vmid}/status/start")))
            .unwrap_or_else(|| panic!("{vmid} started"))
    };
    let last_manager = (401..=403).map(position).max().unwrap();
    let first_app = (404..=406).map(position).min().unwrap();
    assert!(last_manager < first_app, "{last_manager} < {first_app}");
}
