//! Apply under faults and with rollout rules, against fakepve: injected 500s, a held config
//! lock and slow tasks end in convergence on a later pass without a duplicate VM; health
//! gates hold dependents back and a failed gate skips exactly its dependents; `maxParallel`
//! bounds how many members of a set change at once.

#[macro_use]
mod support;

use pve_gitops::apply::ApplyOptions;
use pve_gitops::plan::{Finding, Policy};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::control::{text, Control};
use support::fakepve::{FakePve, Options};
use support::pass::{pass, repo};

const HEADER: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
";

fn app_set(replicas: u32, memory: &str, extra: &str) -> String {
    format!(
        "{HEADER}---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: app }}
spec:
  replicas: {replicas}
  vmidStart: 501
  nodes: [pve1, pve2]
{extra}  template:
    clone: {{ template: 9000 }}
    memory: {memory}
    powerState: stopped
    cloudInit:
      ipConfig: [ {{ ipv4: {{ cidr: 10.0.0.0/24, offset: 10 }}, gateway: 10.0.0.1 }} ]
"
    )
}

/// A fake whose simulated second is 10 ms.
macro_rules! fast_clock_fake {
    () => {
        fake!(Options {
            time_scale: 0.01,
            ..Options::default()
        })
    };
}

/// Template 9000 on an RBD storage whose clones, creates and starts each take `secs`
/// PVE seconds longer, so tasks take real time.
async fn slow_ceph_template(control: &Control, secs: f64) {
    control.ceph(json!({"add_storage": "ceph-vm"})).await;
    control.create_template(9000, "pve1", "ceph-vm").await;
    control.ceph(json!({ "slow": secs })).await;
}

/// The non-template guests: vmid → name.
async fn guests(control: &Control) -> BTreeMap<u64, String> {
    control.state().await["guests"]
        .as_array()
        .expect("guests")
        .iter()
        .filter(|g| g["template"] != Value::Bool(true))
        .map(|g| (g["vmid"].as_u64().unwrap(), text(&g["name"])))
        .collect()
}

fn expected(names: &[(u64, &str)]) -> BTreeMap<u64, String> {
    names.iter().map(|(v, n)| (*v, n.to_string())).collect()
}

#[tokio::test]
async fn injected_errors_end_in_convergence_without_duplicates() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let control = &pve.control;
    control.create_template(9000, "pve1", "local-lvm").await;
    let client = pve.client();
    let (policy, options) = (Policy::default(), ApplyOptions::default());
    let m = repo(&app_set(4, "2G", ""));

    // One clone answers 500 before doing anything; one VM's first configure answers 500
    // after its clone succeeded, leaving it without the ownership tag.
    for (method, path) in [
        ("POST", "/nodes/{node}/qemu/{vmid}/clone"),
        ("PUT", "/nodes/{node}/qemu/{vmid}/config"),
    ] {
        control
            .fail(json!({"method": method, "path": path, "status": 500, "message": "injected", "times": 1}))
            .await;
    }
    let (_, report) = pass(&client, &m, &policy, &options).await;
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert!(report.failed.values().all(|e| e.contains("injected")));
    assert_eq!(
        report.done.len(),
        3,
        "the half-made VM reports its clone: {report:?}"
    );

    // The next pass finishes the half-made VM (its creation note marks it as ours) and
    // creates the one whose clone failed; nothing is created twice.
    let (_, report) = pass(&client, &m, &policy, &options).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.done.len(), 2, "{report:?}");
    assert_eq!(
        guests(control).await,
        expected(&[
            (501, "app-1"),
            (502, "app-2"),
            (503, "app-3"),
            (504, "app-4")
        ])
    );
    for vmid in 501..=504 {
        let c = &control.vm(vmid).await.expect("VM")["config"];
        assert_eq!(text(&c["tags"]), "pve-gitops", "{vmid}: {c}");
        assert_eq!(text(&c["memory"]), "2048", "{vmid}: {c}");
    }
    control.reset_counters().await;
    let (p, _) = pass(&client, &m, &policy, &options).await;
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(control.counters().await.writes, 0);

    // A config lock another task holds makes one VM fail (after the client's retries);
    // the others change; once the lock is gone the next pass converges.
    control.hold_config_lock(502, None).await;
    let m = repo(&app_set(4, "3G", ""));
    let (_, report) = pass(&client, &m, &policy, &options).await;
    assert_eq!(report.failed.keys().collect::<Vec<_>>(), ["app-2"]);
    assert!(report.failed["app-2"].contains("lock"), "{report:?}");
    assert_eq!(report.done.len(), 3);
    control.release_config_lock(502).await;
    let (_, report) = pass(&client, &m, &policy, &options).await;
    assert_eq!(report.done.keys().collect::<Vec<_>>(), ["app-2"]);
    assert_eq!(
        text(&control.vm(502).await.unwrap()["config"]["memory"]),
        "3072"
    );
}

#[tokio::test]
async fn slow_tasks_are_waited_for_on_later_passes() {
    let pve = fast_clock_fake!();
    let control = &pve.control;
    // Each RBD-backed clone takes 100 PVE seconds (1 s here); the agent waits 0.2 s.
    slow_ceph_template(control, 100.0).await;
    let client = pve.client();
    let options = ApplyOptions {
        task_timeout: Duration::from_millis(200),
        ..ApplyOptions::default()
    };
    let m = repo(&app_set(3, "2G", ""));
    let (_, report) = pass(&client, &m, &Policy::default(), &options).await;
    assert_eq!(report.failed.len(), 3, "{report:?}");
    assert!(
        report.failed.values().all(|e| e.contains("still running")),
        "{report:?}"
    );

    // While the clones run, passes leave the locked VMs alone; then they converge.
    let mut saw_locked = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (p, report) = pass(&client, &m, &Policy::default(), &options).await;
        saw_locked |= p
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Locked { lock, .. } if lock == "clone"));
        if report.failed.is_empty() && p.is_empty() && p.findings.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged: {p:?} {report:?}"
        );
    }
    assert!(saw_locked, "a pass ran while a clone was under way");
    assert_eq!(
        guests(control).await,
        expected(&[(501, "app-1"), (502, "app-2"), (503, "app-3")])
    );
    for vmid in 501..=503 {
        let c = &control.vm(vmid).await.expect("VM")["config"];
        assert_eq!(text(&c["memory"]), "2048", "{vmid}: {c}");
    }
}

const GATED: &str = "---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: DB }
spec:
  vmid: VMID
  node: pve1
  clone: { template: 9000 }
  agent: true
  waitFor: { guestAgent: true, cloudInit: true, timeout: 5s }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: { name: SET }
spec:
  replicas: 2
  vmidStart: SETSTART
  nodes: [pve2]
  dependsOn: [VirtualMachine/DB]
  template: { clone: { template: 9000 } }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: LONE }
spec: { vmid: LONEID, node: pve3, clone: { template: 9000 } }
";

fn gated(db: &str, vmid: u32, set: &str, set_start: u32, lone: &str, lone_id: u32) -> String {
    GATED
        .replace("SETSTART", &set_start.to_string())
        .replace("LONEID", &lone_id.to_string())
        .replace("VMID", &vmid.to_string())
        .replace("DB", db)
        .replace("SET", set)
        .replace("LONE", lone)
}

#[tokio::test]
async fn health_gates_hold_dependents_and_a_failed_gate_skips_only_them() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let control = &pve.control;
    control.create_template(9000, "pve1", "local-lvm").await;
    control.guest_agents(json!({})).await;
    let client = pve.client();
    let (policy, options) = (Policy::default(), ApplyOptions::default());

    let first = gated("db", 401, "app", 411, "lone", 421);
    let (_, report) = pass(
        &client,
        &repo(&format!("{HEADER}{first}")),
        &policy,
        &options,
    )
    .await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.done["db"].last().unwrap(), "ready");
    let asked: Vec<Value> = control.vm(401).await.unwrap()["agent_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(asked.contains(&json!("ping")), "{asked:?}");
    assert!(asked.contains(&json!("exec")), "{asked:?}");
    assert!(control.vm(412).await.is_some());

    // A second database whose cloud-init fails: its set is skipped, the unrelated VM is
    // created, and the first group is untouched.
    control
        .guest_agents(json!({"exec": {"cloud-init status --wait": {"exitcode": 1, "err-data": "module failed\n"}}}))
        .await;
    let second = gated("db2", 402, "app2", 431, "lone2", 441);
    let both = format!("{HEADER}{first}{second}");
    let (_, report) = pass(&client, &repo(&both), &policy, &options).await;
    assert_eq!(report.failed.keys().collect::<Vec<_>>(), ["db2"]);
    assert!(
        report.failed["db2"].contains("cloud-init failed (exit code 1): module failed"),
        "{report:?}"
    );
    assert_eq!(
        report.skipped.keys().collect::<Vec<_>>(),
        ["app2-1", "app2-2"]
    );
    assert!(report.skipped["app2-1"].contains("depends on db2"));
    assert_eq!(report.done.keys().collect::<Vec<_>>(), ["db2", "lone2"]);
    assert!(control.vm(431).await.is_none());
    assert!(control.vm(441).await.is_some());

    // Without a guest agent the gate times out with the reason.
    control.guest_agents(Value::Null).await;
    let third = gated("db3", 403, "app3", 451, "lone3", 461).replace("timeout: 5s", "timeout: 1s");
    let (_, report) = pass(
        &client,
        &repo(&format!("{HEADER}{third}")),
        &policy,
        &options,
    )
    .await;
    assert!(
        report.failed["db3"].contains("guest agent did not answer within 1s"),
        "{report:?}"
    );
    assert!(report.skipped.contains_key("app3-1"));
}

/// Converge six members over two nodes (the set's spec lines `extra`) on an empty `pve`,
/// every clone slow, with `options`; the most clones that ran at once.
async fn peak_clones(pve: &FakePve, extra: &str, options: &ApplyOptions) -> u64 {
    let control = &pve.control;
    slow_ceph_template(control, 30.0).await;
    let client = pve.client();
    control.reset_counters().await;
    let m = repo(&app_set(6, "2G", extra));
    let (_, report) = pass(&client, &m, &Policy::default(), options).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.done.len(), 6);
    control.counters().await.peak_tasks["qmclone"]
}

#[tokio::test]
async fn max_parallel_bounds_how_many_members_change_at_once() {
    let pve = fast_clock_fake!();
    let peak = peak_clones(&pve, "  maxParallel: 2\n", &ApplyOptions::parallel(6)).await;
    assert_eq!(peak, 2);
}

/// Unless the agent is told, it changes as many VMs at once per node as the datacenter's
/// `max_workers` lets PVE's own bulk actions run: 1 here, so 2 over two nodes.
#[tokio::test]
async fn the_datacenter_max_workers_bounds_vms_at_once_per_node() {
    let pve = fast_clock_fake!();
    pve.control.datacenter(json!({ "max_workers": 1 })).await;
    let client = pve.client();
    assert_eq!(client.max_workers().await.unwrap(), Some(1));
    slow_ceph_template(&pve.control, 30.0).await;
    let desired = pve_gitops_schema::load(&repo(&app_set(6, "2G", ""))).unwrap();
    let prepared = pve_gitops::pass::prepare(&client, &desired, &Policy::default())
        .await
        .unwrap();
    pve.control.reset_counters().await;
    let report = pve_gitops::pass::execute(&client, &prepared, &ApplyOptions::default()).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.done.len(), 6);
    let counters = pve.control.counters().await;
    assert_eq!(counters.peak_tasks["qmclone"], 2);
    assert_eq!(
        counters.by_endpoint["GET /cluster/options"], 1,
        "read once per apply"
    );
}

/// With 2 VMs at once per node and no cluster-wide bound, the two nodes each run two
/// (4 clones at once, not 6 and not 2); a cluster-wide bound of 3 caps that again.
#[tokio::test]
async fn per_node_bounds_vms_at_once_on_each_node_and_parallelism_the_whole_cluster() {
    for (parallelism, expected_peak) in [(None, 4), (Some(3), 3)] {
        let options = ApplyOptions {
            parallelism,
            per_node: Some(2),
            ..ApplyOptions::default()
        };
        let pve = fast_clock_fake!();
        let peak = peak_clones(&pve, "", &options).await;
        assert_eq!(
            peak, expected_peak,
            "parallelism {parallelism:?}, 2 per node"
        );
    }
}
