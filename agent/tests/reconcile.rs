//! Observe → plan → apply against fakepve, asserting the simulator's state: a cluster
//! converges from empty, a second pass writes nothing, scaling creates exactly the new
//! members, a memory change and a disk grow apply, a shrink is refused before any write.

#[macro_use]
mod support;

use pve_gitops::apply::{apply, ApplyOptions, Report};
use pve_gitops::observe::observe;
use pve_gitops::plan::{plan, Finding, Plan, Policy, RebootPolicy};
use pve_gitops::pve::PveClient;
use pve_gitops_schema::{load, Repository};
use support::control::Control;
use support::fakepve::FakePve;
use support::manifests::EXTERNAL;

fn manifests(replicas: u32, memory: &str, disk: &str) -> Repository {
    let text = format!(
        "{EXTERNAL}---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: mgr }}
spec:
  replicas: 1
  vmidStart: 401
  nodes: [pve1]
  template: {{ clone: {{ template: 9000 }}, memory: 2G, cpu: {{ cores: 2 }} }}
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: app, labels: {{ role: app }} }}
spec:
  replicas: {replicas}
  vmidStart: 501
  nodes: [pve1, pve2, pve3]
  dependsOn: [VirtualMachineSet/mgr]
  template:
    clone: {{ template: 9000 }}
    cpu: {{ cores: 4 }}
    memory: {memory}
    tagsFromLabels: [role]
    disks: [ {{ slot: scsi0, storage: local-lvm, size: {disk} }} ]
    network: [ {{ bridge: vmbr0, vlan: 14 }} ]
    cloudInit:
      ipConfig: [ {{ ipv4: {{ cidr: 192.168.1.0/24, offset: 110 }}, gateway: 192.168.1.1 }} ]
"
    );
    let mut repo = Repository::new();
    repo.add("m.yaml", text);
    repo
}

async fn pass(client: &PveClient, repo: &Repository, policy: &Policy) -> (Plan, Report) {
    let desired = load(repo).unwrap_or_else(|e| panic!("{e}"));
    let observed = observe(client, &desired).await.expect("observe");
    let p = plan(&desired, &observed.vms, policy);
    let report = apply(client, &p, &observed.templates, &ApplyOptions::default()).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (p, report)
}

async fn config(control: &Control, vmid: u32) -> serde_json::Value {
    control
        .vm(vmid)
        .await
        .unwrap_or_else(|| panic!("VM {vmid} exists"))
}

#[tokio::test]
async fn converges_then_stays_quiet_then_follows_changes() {
    let pve = fake!(with_template);
    let control = &pve.control;
    let client = pve.client();
    let policy = Policy::default();

    // From empty: four VMs, on their nodes, configured and running.
    let (_, report) = pass(&client, &manifests(3, "8G", "32G"), &policy).await;
    assert_eq!(report.done.len(), 4, "{report:?}");
    // Template 9000's disk is on local-lvm, which only pve1 sees: members for the other
    // nodes are cloned on pve1 and migrated while still stopped (PVE refuses a clone to
    // another node from local storage).
    assert_eq!(
        report.done["app-2"][..2],
        ["create 502".to_string(), "migrate to pve2".to_string()]
    );
    assert!(!report.done["app-1"]
        .iter()
        .any(|d| d.starts_with("migrate")));
    let app2 = config(control, 502).await;
    assert_eq!(app2["node"], "pve2", "{app2}");
    assert_eq!(app2["status"], "running", "{app2}");
    let c = &app2["config"];
    assert_eq!(support::control::text(&c["memory"]), "8192");
    assert_eq!(support::control::text(&c["cores"]), "4");
    assert_eq!(
        support::control::text(&c["ipconfig0"]),
        "ip=192.168.1.111/24,gw=192.168.1.1"
    );
    assert!(
        support::control::text(&c["net0"]).contains("bridge=vmbr0,tag=14"),
        "{c}"
    );
    assert!(
        support::control::text(&c["scsi0"]).contains("size=32G"),
        "{c}"
    );
    assert_eq!(support::control::text(&c["tags"]), "pve-gitops;role-app");

    // Nothing changed: the second pass makes no write at all.
    control.reset_counters().await;
    let (p, _) = pass(&client, &manifests(3, "8G", "32G"), &policy).await;
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(control.counters().await.writes, 0);

    // Scale 3 -> 5: exactly two new VMs.
    let (_, report) = pass(&client, &manifests(5, "8G", "32G"), &policy).await;
    assert_eq!(report.done.keys().collect::<Vec<_>>(), ["app-4", "app-5"]);
    assert_eq!(config(control, 505).await["node"], "pve2");

    // 5 -> 3 without pruning: nothing deleted, two orphans reported.
    let (p, report) = pass(&client, &manifests(3, "8G", "32G"), &policy).await;
    assert!(report.done.is_empty());
    assert_eq!(
        p.findings
            .iter()
            .filter(|f| matches!(f, Finding::Orphan { .. }))
            .count(),
        2
    );
    assert!(control.vm(504).await.is_some());

    // A disk grow applies live; a memory change on a running VM waits in PVE's pending
    // config: reported under reboot=never, applied by a reboot under reboot=allowed.
    pass(&client, &manifests(3, "16G", "40G"), &policy).await;
    let c = config(control, 501).await["config"].clone();
    assert!(
        support::control::text(&c["scsi0"]).contains("size=40G"),
        "{c}"
    );
    assert_eq!(support::control::text(&c["memory"]), "8192");
    let (p, _) = pass(&client, &manifests(3, "16G", "40G"), &policy).await;
    assert!(p.is_empty(), "{p:?}");
    let pending: Vec<&str> = p
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::PendingReboot { name, keys } if keys.iter().any(|k| k == "memory") => {
                Some(name.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(pending, ["app-1", "app-2", "app-3"]);
    let allowed = Policy {
        reboot: RebootPolicy::Allowed,
        ..Policy::default()
    };
    let (_, report) = pass(&client, &manifests(3, "16G", "40G"), &allowed).await;
    assert_eq!(report.done["app-1"], ["reboot"]);
    assert_eq!(
        support::control::text(&config(control, 501).await["config"]["memory"]),
        "16384"
    );
    control.reset_counters().await;
    let (p, _) = pass(&client, &manifests(3, "16G", "20G"), &policy).await;
    assert!(p
        .findings
        .iter()
        .any(|f| matches!(f, Finding::ShrinkRefused { .. })));
    assert_eq!(control.counters().await.writes, 0);

    // With pruning (of disks too, and 2 of 5 under the delete guard's share), exactly the
    // two orphans go.
    pass(
        &client,
        &manifests(3, "16G", "40G"),
        &Policy {
            prune: true,
            prune_disks: true,
            max_delete_share: 50,
            ..Policy::default()
        },
    )
    .await;
    assert!(control.vm(504).await.is_none());
    assert!(control.vm(505).await.is_none());
    assert!(control.vm(503).await.is_some());
}
