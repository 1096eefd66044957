//! The planner's rules, each against a hand-made actual state.

use super::actual::ActualVm;
use super::marker::{self, Marker};
use super::pveconfig::desired_config;
use super::vm::{plan, Action, Finding, Kept, Policy, RebootPolicy};
use pve_gitops_schema::{load, DesiredState, Repository};
use std::collections::{BTreeMap, BTreeSet};

fn desired(replicas: u32, memory: &str, disk: &str) -> DesiredState {
    let text = format!(
        "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: {{ name: x }}
spec: {{ templates: [9000], bridges: [vmbr0] }}
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: mgr }}
spec:
  replicas: 1
  vmidStart: 401
  nodes: [pve1]
  template: {{ clone: {{ template: 9000 }}, memory: 4G }}
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: app }}
spec:
  replicas: {replicas}
  vmidStart: 501
  nodes: [pve1, pve2]
  dependsOn: [VirtualMachineSet/mgr]
  template:
    clone: {{ template: 9000 }}
    memory: {memory}
    disks: [ {{ slot: scsi0, storage: rbd, size: {disk} }} ]
"
    );
    let mut repo = Repository::new();
    repo.add("m.yaml", text);
    load(&repo).unwrap_or_else(|e| panic!("{e}"))
}

/// An owned, running VM exactly as declared.
fn existing(vmid: u32, name: &str, node: &str, memory: &str, disk: Option<&str>) -> ActualVm {
    let mut config: BTreeMap<String, String> =
        [("name", name), ("memory", memory), ("tags", "pve-gitops")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    if let Some(d) = disk {
        config.insert("scsi0".into(), format!("rbd:vm-{vmid}-disk-0,size={d}"));
    }
    ActualVm {
        vmid,
        name: name.into(),
        node: node.into(),
        running: true,
        template: false,
        tags: BTreeSet::from(["pve-gitops".to_string()]),
        config,
        pending: BTreeMap::new(),
        digest: Some("d1".into()),
    }
}

/// `vms` recorded as converged to `d` (the record a pass that converged them wrote).
pub(super) fn recorded(mut vms: Vec<ActualVm>, d: &DesiredState) -> Vec<ActualVm> {
    for a in &mut vms {
        if let Some(vm) = d.vm(&a.name) {
            let record = Marker {
                applied: Some(marker::fingerprint(vm, &desired_config(vm, |_| None))),
                ..Marker::default()
            };
            a.config
                .insert("description".into(), marker::compose("", &record));
        }
    }
    vms
}

/// `n` app members and the manager, converged to `desired(n, "8G", "32G")`.
fn cluster(n: u32) -> Vec<ActualVm> {
    recorded(unrecorded(n), &desired(n, "8G", "32G"))
}

fn unrecorded(n: u32) -> Vec<ActualVm> {
    let mut v = vec![existing(401, "mgr-1", "pve1", "4096", None)];
    for i in 0..n {
        let node = if i % 2 == 0 { "pve1" } else { "pve2" };
        v.push(existing(
            501 + i,
            &format!("app-{}", i + 1),
            node,
            "8192",
            Some("32G"),
        ));
    }
    v
}

fn kinds(p: &super::vm::Plan) -> Vec<String> {
    p.actions()
        .map(|a| match a {
            Action::Create { name, .. } => format!("create {name}"),
            Action::Configure { vmid, changes, .. } => {
                format!(
                    "configure {vmid} {}",
                    changes
                        .iter()
                        .map(|c| c.key.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
            Action::Resize { vmid, disk, to, .. } => format!("resize {vmid} {disk} {}G", to >> 30),
            Action::Migrate { vmid, to, .. } => format!("migrate {vmid} {to}"),
            Action::Start { vmid, .. } => format!("start {vmid}"),
            Action::Stop { vmid, .. } => format!("stop {vmid}"),
            Action::Reboot { vmid, .. } => format!("reboot {vmid}"),
            Action::Delete { vmid, .. } => format!("delete {vmid}"),
            Action::Retire { vmid, .. } => format!("retire {vmid}"),
        })
        .collect()
}

#[test]
fn empty_cluster_creates_everything_in_dependency_waves() {
    let p = plan(&desired(3, "8G", "32G"), &[], &Policy::default());
    assert_eq!(p.waves.len(), 2);
    assert_eq!(p.waves[0].keys().collect::<Vec<_>>(), ["mgr-1"]);
    assert_eq!(
        p.waves[1].keys().collect::<Vec<_>>(),
        ["app-1", "app-2", "app-3"]
    );
    assert!(
        matches!(&p.waves[1]["app-2"][0], Action::Create { vmid: Some(502), node, start: true, .. } if node == "pve2")
    );
}

#[test]
fn a_converged_cluster_plans_nothing() {
    let p = plan(&desired(3, "8G", "32G"), &cluster(3), &Policy::default());
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert!(p.findings.is_empty());
}

#[test]
fn scaling_up_creates_exactly_the_new_members() {
    let p = plan(&desired(5, "8G", "32G"), &cluster(3), &Policy::default());
    assert_eq!(kinds(&p), ["create app-4", "create app-5"]);
}

#[test]
fn scaling_down_reports_orphans_unless_pruning() {
    let d = desired(3, "8G", "32G");
    let p = plan(&d, &cluster(5), &Policy::default());
    assert!(p.is_empty());
    let orphans: Vec<u32> = p
        .findings
        .iter()
        .filter_map(|f| {
            if let Finding::Orphan { vmid, .. } = f {
                Some(*vmid)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(orphans, [504, 505]);
    let p = plan(
        &d,
        &cluster(5),
        &Policy {
            prune: true,
            prune_disks: true,
            max_delete_share: 50,
            ..Policy::default()
        },
    );
    assert_eq!(
        kinds(&p),
        ["stop 504", "delete 504", "stop 505", "delete 505"]
    );
    // Without `disks`, stopped and tagged instead; the tag and the record say so.
    let p = plan(
        &d,
        &cluster(5),
        &Policy {
            prune: true,
            max_delete_share: 50,
            ..Policy::default()
        },
    );
    assert_eq!(
        kinds(&p),
        ["stop 504", "retire 504", "stop 505", "retire 505"]
    );
    let Action::Retire { changes, .. } = &p.waves.last().unwrap()["app-4"][1] else {
        panic!("{:?}", kinds(&p));
    };
    assert_eq!(changes[0].to, "pve-gitops;pve-gitops-orphan");
    assert_eq!(changes[1].to, "pve-gitops:");
}

/// Two of six owned guests is 33 %: past the default 30 % the pass deletes nothing, and
/// says so; the rest of the plan still applies.
#[test]
fn the_delete_guard_refuses_a_pass_that_prunes_too_much() {
    let policy = Policy {
        prune: true,
        prune_disks: true,
        ..Policy::default()
    };
    let p = plan(&desired(3, "16G", "32G"), &cluster(5), &policy);
    assert_eq!(
        kinds(&p),
        [
            "configure 501 memory,description",
            "configure 502 memory,description",
            "configure 503 memory,description"
        ]
    );
    assert!(p.findings.contains(&Finding::PruneRefused {
        would_delete: 2,
        owned: 6,
        max_share: 30
    }));
    assert!(p.findings.contains(&Finding::Orphan {
        vmid: 505,
        name: "app-5".into(),
        kept: Kept::Guard
    }));
    // An emptied repository: nothing at all.
    let p = plan(&DesiredState::default(), &cluster(5), &policy);
    assert!(p.is_empty(), "{:?}", kinds(&p));
    // One of six (16 %) passes.
    let p = plan(&desired(4, "8G", "32G"), &cluster(5), &policy);
    assert_eq!(kinds(&p), ["stop 505", "delete 505"]);
}

/// Add `prune=yes|no` to `a`'s record, as its manifest's own `prune` left it.
fn own_prune(a: &mut ActualVm, prune: bool) {
    let d = a.config["description"].clone();
    a.config.insert(
        "description".into(),
        format!("{d} prune={}", if prune { "yes" } else { "no" }),
    );
}

/// A VM's own `prune` is recorded in it and wins over the cluster's, also once its
/// manifest is gone; an already retired VM is left alone until disks may go.
#[test]
fn recorded_prune_settings_and_retired_vms() {
    let mut actual = cluster(5);
    own_prune(&mut actual[4], false); // app-4: never pruned
    own_prune(&mut actual[5], true); // app-5: pruned though the cluster does not prune
    let p = plan(
        &desired(3, "8G", "32G"),
        &actual,
        &Policy {
            max_delete_share: 100,
            ..Policy::default()
        },
    );
    assert_eq!(kinds(&p), ["stop 505", "retire 505"]);
    let mut retired = cluster(4);
    retired[4].tags.insert(crate::plan::ORPHAN_TAG.into());
    retired[4].running = false;
    let policy = Policy {
        prune: true,
        max_delete_share: 100,
        ..Policy::default()
    };
    let p = plan(&desired(3, "8G", "32G"), &retired, &policy);
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert!(p.findings.contains(&Finding::Orphan {
        vmid: 504,
        name: "app-4".into(),
        kept: Kept::Retired
    }));
    let p = plan(
        &desired(3, "8G", "32G"),
        &retired,
        &Policy {
            prune_disks: true,
            ..policy
        },
    );
    assert_eq!(kinds(&p), ["delete 504"]);
}

/// `--no-prune` (or `prune: false` in the config file) deletes nothing, whatever a VM's
/// own `prune` says; `--prune` turns the cluster's pruning on, and a VM's own
/// `prune: false` still keeps that VM, as a per-object opt-out does in Flux and Argo CD.
#[test]
fn the_command_line_prune_flags_against_a_vms_own_setting() {
    use super::PolicyOverrides;
    let mut actual = cluster(5);
    own_prune(&mut actual[4], false); // app-4
    own_prune(&mut actual[5], true); // app-5
    let under = |prune| Policy {
        max_delete_share: 100,
        ..Policy::effective(
            None,
            &PolicyOverrides {
                prune,
                ..PolicyOverrides::default()
            },
        )
    };
    let d = desired(3, "8G", "32G");
    let p = plan(&d, &actual, &under(Some(false)));
    assert!(p.is_empty(), "{:?}", kinds(&p));
    for (vmid, name) in [(504, "app-4"), (505, "app-5")] {
        assert!(
            p.findings.contains(&Finding::Orphan {
                vmid,
                name: name.into(),
                kept: Kept::PruneOff
            }),
            "{:?}",
            p.findings
        );
    }
    let p = plan(&d, &actual, &under(Some(true)));
    assert_eq!(kinds(&p), ["stop 505", "retire 505"]);
    let p = plan(&d, &actual, &under(None));
    assert_eq!(kinds(&p), ["stop 505", "retire 505"]);
}

#[test]
fn protected_and_foreign_vms_are_never_deleted() {
    let mut actual = cluster(4);
    actual[4].config.insert("protection".into(), "1".into());
    let mut foreign = existing(900, "hand-made", "pve1", "1024", None);
    foreign.tags.clear();
    actual.push(foreign);
    let p = plan(
        &desired(3, "8G", "32G"),
        &actual,
        &Policy {
            prune: true,
            ..Policy::default()
        },
    );
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert_eq!(
        p.findings,
        [Finding::Orphan {
            vmid: 504,
            name: "app-4".into(),
            kept: Kept::Protected
        }]
    );
}

#[test]
fn a_vm_we_do_not_own_is_not_touched() {
    let mut actual = cluster(3);
    actual[1].tags.clear();
    actual[1].config.remove("description");
    actual[1].config.insert("memory".into(), "1024".into());
    let p = plan(&desired(3, "8G", "32G"), &actual, &Policy::default());
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert_eq!(
        p.findings,
        [Finding::NotOwned {
            name: "app-1".into(),
            vmid: 501
        }]
    );
}

#[test]
fn memory_change_and_disk_grow_apply_a_shrink_is_refused() {
    let p = plan(&desired(1, "16G", "40G"), &cluster(1), &Policy::default());
    // The record is written last, after every step of the change succeeded.
    assert_eq!(
        kinds(&p),
        [
            "configure 501 memory",
            "resize 501 scsi0 40G",
            "configure 501 description"
        ]
    );
    let p = plan(&desired(1, "8G", "16G"), &cluster(1), &Policy::default());
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert!(matches!(&p.findings[0], Finding::ShrinkRefused { disk, .. } if disk == "scsi0"));
}

#[test]
fn pending_changes_wait_for_a_reboot_the_policy_allows() {
    let mut actual = cluster(1);
    actual[1].pending.insert("cores".into(), Some("8".into()));
    let p = plan(&desired(1, "8G", "32G"), &actual, &Policy::default());
    assert!(p.is_empty());
    assert_eq!(
        p.findings,
        [Finding::PendingReboot {
            name: "app-1".into(),
            keys: vec!["cores".into()]
        }]
    );
    let p = plan(
        &desired(1, "8G", "32G"),
        &actual,
        &Policy {
            reboot: RebootPolicy::Allowed,
            ..Policy::default()
        },
    );
    assert_eq!(kinds(&p), ["reboot 501"]);
}

/// A converged VM stopped behind the agent's back is drift: reported (the default), started
/// under `heal`, left alone under `ignore`. One not yet converged is simply started.
#[test]
fn a_stopped_vm_is_drift() {
    use pve_gitops_schema::manifest::policy::DriftMode;
    let mut actual = cluster(1);
    actual[1].running = false;
    let d = desired(1, "8G", "32G");
    let p = plan(&d, &actual, &Policy::default());
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert_eq!(
        p.findings,
        [Finding::Drift(crate::plan::Drift {
            name: "app-1".into(),
            vmid: Some(501),
            field: "powerState".into(),
            desired: "running".into(),
            actual: "stopped".into(),
            healed: false
        })]
    );
    let heal = Policy {
        drift: DriftMode::Heal,
        ..Policy::default()
    };
    let p = plan(&d, &actual, &heal);
    assert_eq!(kinds(&p), ["start 501"]);
    assert!(matches!(&p.findings[..], [Finding::Drift(d)] if d.healed));
    let ignore = Policy {
        drift: DriftMode::Ignore,
        ..Policy::default()
    };
    let p = plan(&d, &actual, &ignore);
    assert!(p.is_empty() && p.findings.is_empty());
    let mut fresh = cluster(1);
    fresh[1].running = false;
    fresh[1].config.remove("description");
    let p = plan(&d, &fresh, &Policy::default());
    assert_eq!(kinds(&p), ["start 501", "configure 501 description"]);
    assert!(p.findings.is_empty());
}

#[test]
fn a_secret_this_build_cannot_decrypt_is_reported_not_planned() {
    let mut repo = Repository::new();
    repo.add(
        "pw.age",
        "-----BEGIN AGE ENCRYPTED FILE-----\nx\n-----END AGE ENCRYPTED FILE-----\n",
    );
    repo.add(
        "m.yaml",
        "apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: web }
spec: { vmid: 300, node: pve1, memory: 2G, cloudInit: { password: { file: pw.age } } }
",
    );
    let d = load(&repo).unwrap_or_else(|e| panic!("{e}"));
    let mut vm = existing(300, "web", "pve1", "2048", None);
    vm.config.insert("tags".into(), "pve-gitops".into());
    let p = plan(&d, &[vm], &Policy::default());
    // Only the record is written: the VM is converged as far as it can be.
    assert_eq!(kinds(&p), ["configure 300 description"]);
    assert_eq!(
        p.findings,
        [Finding::SecretNotApplied {
            name: "web".into(),
            key: "cipassword".into()
        }]
    );
}

/// A VM PVE holds a lock on (a clone or backup under way) gets no action, pruned or not;
/// it is reported and planned again next pass.
#[test]
fn locked_vms_are_left_alone_and_reported() {
    let mut actual = cluster(3);
    actual[1].config.insert("memory".into(), "1024".into());
    actual[1].config.insert("lock".into(), "backup".into());
    actual[3].config.insert("lock".into(), "clone".into());
    let p = plan(
        &desired(2, "8G", "32G"),
        &actual,
        &Policy {
            prune: true,
            ..Policy::default()
        },
    );
    assert!(p.is_empty(), "{:?}", kinds(&p));
    let locked: Vec<(u32, &str)> = p
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Locked { vmid, lock, .. } => Some((*vmid, lock.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(locked, [(501, "backup"), (503, "clone")]);
}

/// Rollout facts: direct dependencies by name, the set's maxParallel, and a gate only
/// where `waitFor` asks for one (its TCP check on the first static address).
#[test]
fn rollout_carries_dependencies_limits_and_gates() {
    let text = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: db }
spec:
  vmid: 400
  node: pve1
  clone: { template: 9000 }
  waitFor: { tcpPort: 5432 }
  cloudInit: { ipConfig: [ { ipv4: { cidr: 10.0.0.0/24, offset: 5 } } ] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: { name: app }
spec:
  replicas: 2
  vmidStart: 501
  nodes: [pve1]
  maxParallel: 1
  dependsOn: [VirtualMachine/db]
  template: { clone: { template: 9000 } }
";
    let mut repo = Repository::new();
    repo.add("m.yaml", text.to_string());
    let d = load(&repo).unwrap_or_else(|e| panic!("{e}"));
    let p = plan(&d, &[], &Policy::default());
    let db = &p.rollout["db"];
    assert!(db.after.is_empty());
    let gate = db.gate.as_ref().expect("gate");
    assert_eq!(gate.tcp, Some(("10.0.0.5".parse().unwrap(), 5432)));
    assert!(!gate.guest_agent && !gate.cloud_init);
    let app = &p.rollout["app-2"];
    assert_eq!(app.after, BTreeSet::from(["db".to_string()]));
    assert_eq!(app.set_limit, Some(("app".to_string(), 1)));
    assert_eq!(app.gate, None);
}

/// A stopped VM on another node than declared is migrated there first, and changed on
/// its new node; a running one is only reported (live migration is the operator's call).
/// (Healing drift here; a manifest change to `node` plans the same.)
#[test]
fn stopped_vms_on_the_wrong_node_are_migrated_running_ones_reported() {
    let mut actual = cluster(2);
    actual[1].node = "pve3".into(); // app-1, declared on pve1
    actual[1].running = false;
    actual[1].config.insert("memory".into(), "1024".into());
    actual[2].node = "pve3".into(); // app-2, declared on pve2, running
                                    // Done behind the agent's back: drift, healed here.
    let heal = Policy {
        drift: pve_gitops_schema::manifest::policy::DriftMode::Heal,
        ..Policy::default()
    };
    let p = plan(&desired(2, "8G", "32G"), &actual, &heal);
    assert_eq!(
        kinds(&p),
        ["migrate 501 pve1", "configure 501 memory", "start 501"]
    );
    match &p.waves.last().unwrap()["app-1"][1] {
        Action::Configure { node, .. } => assert_eq!(node, "pve1"),
        other => panic!("{other:?}"),
    }
    assert!(p.findings.iter().any(
        |f| matches!(f, Finding::WrongNode { name, actual, .. } if name == "app-2" && actual == "pve3")
    ));
}
