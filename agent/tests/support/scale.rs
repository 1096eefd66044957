//! The scale scenario of issue 4's benchmark: one `VirtualMachineSet` of N VMs converged on
//! an empty fakepve, then what the unchanged cluster costs. `make bench`
//! (`agent/benches/converge.rs`) runs it at 10, 100 and 500 VMs and prints figures;
//! `agent/tests/scale.rs` runs it at 20 so CI guards the call-count targets.
//!
//! Every step returns fakepve's request counters for exactly that step (the counters are
//! reset before it; the control endpoint that reads them is not counted).

use std::time::{Duration, Instant};

use pve_gitops::apply::{ApplyOptions, Report};
use pve_gitops::daemon::changes::VmList;
use pve_gitops::daemon::sources::Directory;
use pve_gitops::daemon::{Daemon, DaemonOptions, Outcome};
use pve_gitops::plan::{Plan, Policy, PolicyOverrides};
use serde_json::json;

use super::control::Counters;
use super::fakepve::FakePve;
use super::pass::{pass, repo};

/// The template every member is cloned from: on pve1, its disk on the shared RBD storage
/// [`STORAGE`], so clones to the other nodes are what a real cluster allows, and so
/// fakepve's Ceph slowness ([`slow_tasks`]) applies to every clone and start.
pub const TEMPLATE: u32 = 9000;
pub const STORAGE: &str = "ceph-pool";
/// Member i gets vmid `VMID_START + i` (room for 500 and more).
pub const VMID_START: u32 = 10000;

/// Issue 4: "a drift check of an unchanged cluster makes zero writes and at most one read
/// per owned VM plus a constant". The constant: the guest listing
/// (`/cluster/resources`), with room for two more cluster-wide reads (nodes, storage).
pub const DRIFT_READS_CONSTANT: u64 = 3;
/// Issue 10: "≤ 6 requests per VM" to converge from empty. The constant: the pass's
/// cluster-wide reads (the guests for the plan, everything for pre-flight, whose
/// storages apply reuses) and the template's config (for cross-node clones).
pub const CONVERGE_CONSTANT: u64 = 3;
/// Issue 4: "when neither the git revision nor the cluster changed since the last pass,
/// at most 2 calls".
pub const IDLE_CALLS_MAX: u64 = 2;

/// The nodes the members are spread over, one after the other.
pub const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];

/// The manifests: `n` members over [`NODES`], each a full clone of [`TEMPLATE`] with 2
/// cores, 2 GiB, a static IPv4 by cloud-init (10.20.0.10 + i) and running.
pub fn manifests(n: u32) -> String {
    format!(
        "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: {{ name: cluster }}
spec: {{ templates: [{TEMPLATE}], bridges: [vmbr0] }}
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: node }}
spec:
  replicas: {n}
  vmidStart: {VMID_START}
  nodes: [{}]
  template:
    clone: {{ template: {TEMPLATE} }}
    cpu: {{ cores: 2 }}
    memory: 2Gi
    powerState: running
    network: [ {{ bridge: vmbr0 }} ]
    cloudInit:
      user: ops
      ipConfig: [ {{ ipv4: {{ cidr: 10.20.0.0/16, offset: 10 }}, gateway: 10.20.0.1 }} ]
",
        NODES.join(", ")
    )
}

/// The address member `i` (0-based) gets, as PVE's `ipconfig0` says it.
pub fn ipconfig(i: u32) -> String {
    let host = 10 + i;
    format!("ip=10.20.{}.{}/16,gw=10.20.0.1", host / 256, host % 256)
}

/// Give an empty fake the RBD storage and the template.
pub async fn prepare(pve: &FakePve) {
    pve.control.ceph(json!({ "add_storage": STORAGE })).await;
    pve.control.create_template(TEMPLATE, "pve1", STORAGE).await;
}

/// Make every clone and start take `secs` simulated seconds (fakepve's Ceph "slow OSDs":
/// RBD-backed clone, create and start pay it), i.e. `secs * time_scale` real seconds.
pub async fn slow_tasks(pve: &FakePve, secs: f64) {
    pve.control.ceph(json!({ "slow": secs })).await;
}

/// What converging took.
pub struct Converged {
    pub wall: Duration,
    pub calls: Counters,
    pub plan: Plan,
    pub report: Report,
}

/// One full pass (observe, plan, allocate vmids, apply) over the `n`-VM manifests, at
/// `parallelism`, timed from the first API call to the last.
pub async fn converge(pve: &FakePve, n: u32, parallelism: usize) -> Converged {
    let client = pve.client();
    let repo = repo(&manifests(n));
    pve.control.reset_counters().await;
    let start = Instant::now();
    let (plan, report) = pass(
        &client,
        &repo,
        &Policy::default(),
        &ApplyOptions::parallel(parallelism),
    )
    .await;
    let wall = start.elapsed();
    let calls = pve.control.counters().await;
    Converged {
        wall,
        calls,
        plan,
        report,
    }
}

/// The drift check: a second full pass over the same manifests on the unchanged cluster.
/// Panics if that pass finds anything to do (the converge did not converge).
pub async fn drift_check(pve: &FakePve, n: u32) -> Counters {
    let client = pve.client();
    pve.control.reset_counters().await;
    let (plan, report) = pass(
        &client,
        &repo(&manifests(n)),
        &Policy::default(),
        &ApplyOptions::default(),
    )
    .await;
    let calls = pve.control.counters().await;
    assert!(
        plan.is_empty() && report.done.is_empty() && report.failed.is_empty(),
        "the pass after converging {n} VMs still had work: {}{report:?}",
        pve_gitops::reconcile::describe(&plan)
    );
    calls
}

/// The daemon's idle pass: a [`Daemon`] whose manifests and pmxcfs guest list (a file
/// that does not change) are as they were at its last pass, which found nothing to do.
pub async fn idle_pass(pve: &FakePve, n: u32) -> Counters {
    let dir = tempfile::tempdir().expect("temporary directory");
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir(&manifests_dir).expect("manifests directory");
    std::fs::write(manifests_dir.join("set.yaml"), manifests(n)).expect("write manifests");
    let vmlist = dir.path().join(".vmlist");
    std::fs::write(&vmlist, r#"{"version": 1}"#).expect("write .vmlist");
    let mut daemon = Daemon::new(
        pve.client(),
        Box::new(Directory(manifests_dir)),
        Box::new(VmList(vmlist)),
        DaemonOptions {
            cluster: "bench".into(),
            node: "pve1".into(),
            decryptor: None,
            interval: Duration::from_secs(3600),
            resync: Duration::from_secs(3600),
            passes: None,
            state_dir: None,
            policy: PolicyOverrides::default(),
            apply: ApplyOptions::default(),
            clock: Default::default(),
        },
    );
    match daemon.tick().await.expect("the daemon's first pass") {
        Outcome::Reconciled { plan, .. } if plan.is_empty() => {}
        other => panic!("the daemon's first pass over a converged cluster: {other:?}"),
    }
    pve.control.reset_counters().await;
    let outcome = daemon.tick().await.expect("the daemon's idle pass");
    let calls = pve.control.counters().await;
    assert!(
        matches!(outcome, Outcome::Unchanged),
        "expected an idle pass, got {outcome:?}"
    );
    calls
}

/// Whether a drift check met issue 4's target for `owned` VMs.
pub fn drift_target_met(calls: &Counters, owned: u64) -> bool {
    calls.writes == 0 && calls.reads <= owned + DRIFT_READS_CONSTANT
}

/// Whether an idle pass met issue 4's target.
pub fn idle_target_met(calls: &Counters) -> bool {
    calls.writes == 0 && calls.total <= IDLE_CALLS_MAX
}
