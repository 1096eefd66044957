//! Observation against fakepve: the right VMs are read, with the calls counted, and the
//! plan made from what was observed is what the cluster's state calls for.

#[macro_use]
mod support;

use pve_gitops::observe::observe;
use pve_gitops::plan::pveconfig::desired_config;
use pve_gitops::plan::{marker, plan, Action, Finding, Kept, Policy};
use pve_gitops_schema::manifest::policy::DriftMode;
use pve_gitops_schema::{load, Repository};
use serde_json::json;
use support::fakepve::{FakePve, Options};

const MANIFESTS: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: { name: app }
spec:
  replicas: 2
  vmidStart: 501
  nodes: [pve1, pve2]
  template:
    clone: { template: 9000 }
    cpu: { cores: 2 }
    memory: 4G
    network: [ { bridge: vmbr0, vlan: 14 } ]
";

#[tokio::test]
async fn only_candidates_are_read_and_the_plan_follows_the_cluster() {
    let pve = fake!(Options::default());
    let control = &pve.control;
    control.create_template(9000, "pve1", "local-lvm").await;
    // app-1 converged, running; app-2 absent; an owned leftover; a VM nobody declared.
    let converged = json!({
        "name": "app-1", "cores": 2, "memory": 4096, "tags": "pve-gitops",
        "net0": "virtio=BC:24:11:AA:00:01,bridge=vmbr0,tag=14",
        "scsi0": "local-lvm:vm-501-disk-0,size=2G",
    });
    control.create_vm(json!({"vmid": 501, "name": "app-1", "node": "pve1", "status": "running", "config": converged})).await;
    control.create_vm(json!({"vmid": 599, "name": "old", "node": "pve2", "config": {"tags": "pve-gitops", "memory": 1024}})).await;
    control
        .create_vm(
            json!({"vmid": 700, "name": "hand-made", "node": "pve3", "config": {"memory": 1024}}),
        )
        .await;

    let mut repo = Repository::new();
    repo.add("m.yaml", MANIFESTS);
    let desired = load(&repo).unwrap_or_else(|e| panic!("{e}"));
    // app-1's record: the pass that converged it wrote it.
    let app1 = desired.vm("app-1").unwrap();
    let record = marker::Marker {
        applied: Some(marker::fingerprint(app1, &desired_config(app1, |_| None))),
        ..marker::Marker::default()
    };
    control
        .update_vm(
            501,
            json!({"config": {"description": marker::compose("", &record)}}),
        )
        .await;
    let client = pve.client();
    control.reset_counters().await;
    let actual = observe(&client, &desired).await.expect("observe").vms;

    let seen: Vec<(u32, &str, bool)> = actual
        .iter()
        .map(|a| (a.vmid, a.name.as_str(), a.running))
        .collect();
    assert_eq!(seen, [(501, "app-1", true), (599, "old", false)]);
    assert_eq!(
        actual[0].config["net0"],
        "virtio=BC:24:11:AA:00:01,bridge=vmbr0,tag=14"
    );
    // The digest of the config file, for the optimistic-concurrency check of writes.
    let digest = control.vm(501).await.unwrap()["digest"].clone();
    assert_eq!(actual[0].digest.as_deref(), digest.as_str());
    // One listing and one read per candidate (`/pending`: current config, pending changes
    // and digest at once); nothing else.
    let c = control.counters().await;
    assert_eq!(c.total, 3, "{:?}", c.by_endpoint);
    assert_eq!(c.path("GET", "/nodes/pve1/qemu/501/pending"), 1);
    assert_eq!(c.path("GET", "/nodes/pve2/qemu/599/pending"), 1);
    assert_eq!(c.path("GET", "/nodes/pve3/qemu/700/config"), 0);
    assert_eq!(c.path("GET", "/nodes/pve3/qemu/700/pending"), 0);

    let p = plan(&desired, &actual, &Policy::default());
    let actions: Vec<&Action> = p.actions().collect();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(
        matches!(actions[0], Action::Create { name, vmid: Some(502), node, .. } if name == "app-2" && node == "pve2")
    );
    assert_eq!(
        p.findings,
        [Finding::Orphan {
            vmid: 599,
            name: "old".into(),
            kept: Kept::PruneOff
        }]
    );

    // A change behind the agent's back shows up as exactly that change (healed here).
    control
        .update_vm(501, json!({"config": {"memory": 2048}}))
        .await;
    let actual = observe(&client, &desired).await.expect("observe").vms;
    let heal = Policy {
        drift: DriftMode::Heal,
        ..Policy::default()
    };
    let p = plan(&desired, &actual, &heal);
    let configure: Vec<String> = p
        .actions()
        .filter_map(|a| match a {
            Action::Configure {
                vmid: 501, changes, ..
            } => Some(
                changes
                    .iter()
                    .map(|c| format!("{}: {:?} -> {}", c.key, c.from, c.to))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(configure, ["memory: Some(\"2048\") -> 4096"]);
}
