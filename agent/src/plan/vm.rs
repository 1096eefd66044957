//! Planning one VM, and the whole set of VMs in waves.

use super::actual::ActualVm;
use super::compare::{diff, Change};
use super::drift::{ignored, shown, unignored, Drift, EXISTENCE};
use super::marker::{self, Marker};
pub use super::policy::{Policy, RebootPolicy, ORPHAN_TAG};
use super::prune::prune;
use super::pveconfig::{desired_config, Compare, DesiredConfig};
use super::rollout::{dependencies, rollout, waves, Rollout};
use pve_gitops_schema::desired::{DesiredState, DesiredVm};
use pve_gitops_schema::manifest::policy::DriftMode;
use pve_gitops_schema::manifest::vm::CloneSource;
use pve_gitops_schema::manifest::PowerState;
use pve_gitops_schema::units::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// One step against the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create (clone or from scratch), configure, grow cloned disks to `disks` (slot,
    /// bytes); `start` when it should run.
    Create {
        disks: Vec<(String, u64)>,
        name: String,
        vmid: Option<u32>,
        node: String,
        clone: Option<CloneSource>,
        config: DesiredConfig,
        start: bool,
        /// The description with the VM's record ([`marker`]), written last: a create
        /// that fails half-way is not recorded as converged.
        record: String,
    },
    Configure {
        vmid: u32,
        node: String,
        changes: Vec<Change>,
        digest: Option<String>,
    },
    /// Grow a disk to `to` bytes.
    Resize {
        vmid: u32,
        node: String,
        disk: String,
        to: u64,
    },
    /// Move a stopped VM to the node it is declared on (offline: its local disks move too).
    Migrate {
        vmid: u32,
        from: String,
        to: String,
    },
    Start {
        vmid: u32,
        node: String,
    },
    Stop {
        vmid: u32,
        node: String,
    },
    Reboot {
        vmid: u32,
        node: String,
        pending: Vec<String>,
    },
    /// Destroy the VM with its disks (`destroy-unreferenced-disks=1&purge=1`).
    Delete {
        vmid: u32,
        node: String,
        name: String,
    },
    /// Prune a VM but keep its disks: tag it [`ORPHAN_TAG`] (the ownership tag stays, so
    /// it is neither foreign nor pruned again) and clear its record (after a `Stop`).
    Retire {
        vmid: u32,
        node: String,
        changes: Vec<Change>,
        digest: Option<String>,
    },
}

impl Action {
    /// The node the action's tasks run on: where the VM is, or for a migration the node
    /// it leaves (PVE runs the migration task there).
    pub fn node(&self) -> &str {
        match self {
            Action::Create { node, .. }
            | Action::Configure { node, .. }
            | Action::Resize { node, .. }
            | Action::Start { node, .. }
            | Action::Stop { node, .. }
            | Action::Reboot { node, .. }
            | Action::Delete { node, .. }
            | Action::Retire { node, .. } => node,
            Action::Migrate { from, .. } => from,
        }
    }
}

/// Something the plan reports instead of doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// An owned VM that is no longer declared, kept (and why).
    Orphan { vmid: u32, name: String, kept: Kept },
    /// A field of a converged VM differs from what was applied (or the VM is gone).
    Drift(Drift),
    /// The pass would prune more than `max_share` % of the owned guests: none is pruned.
    PruneRefused {
        would_delete: usize,
        owned: usize,
        max_share: u8,
    },
    /// The `rebuild` token changed but the VM is protected: it is not destroyed.
    RebuildRefused { name: String, vmid: u32 },
    /// Changes PVE will apply at the next reboot, which the policy does not allow.
    PendingReboot { name: String, keys: Vec<String> },
    /// A VM with the declared name or vmid exists but is not ours (`adopt: true` takes it).
    NotOwned { name: String, vmid: u32 },
    /// A disk is larger than declared: shrinking loses data, so it is refused.
    ShrinkRefused {
        name: String,
        disk: String,
        actual: u64,
        desired: u64,
    },
    /// A config value that comes from a secret, with no identity configured to decrypt it;
    /// the rest of the VM is applied, this key is not.
    SecretNotApplied { name: String, key: String },
    /// The VM runs on another node than declared; a running VM is not migrated.
    WrongNode {
        name: String,
        desired: String,
        actual: String,
    },
    /// PVE holds a lock on the VM (a clone, backup or migration is running): it is left
    /// alone this pass and planned again on the next.
    Locked {
        name: String,
        vmid: u32,
        lock: String,
    },
}

/// Why an owned VM that is no longer declared is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kept {
    /// Pruning is off (for the cluster, or the VM said `prune: false`).
    PruneOff,
    /// PVE's protection flag is set.
    Protected,
    /// Pruned earlier without its disks: stopped and tagged [`ORPHAN_TAG`].
    Retired,
    /// The pass's deletions were refused by `maxDeleteShare`.
    Guard,
}

impl Kept {
    pub fn describe(self) -> &'static str {
        match self {
            Kept::PruneOff => "pruning is off",
            Kept::Protected => "protected",
            Kept::Retired => "pruned: stopped and tagged pve-gitops-orphan, disks kept",
            Kept::Guard => "deletions refused: more than maxDeleteShare of the owned guests",
        }
    }
}

/// The plan for one VM, and the wave it belongs to (all of wave n before any of n + 1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Per wave, per VM name, the actions in order.
    pub waves: Vec<BTreeMap<String, Vec<Action>>>,
    /// How each VM with actions is rolled out: what it waits for, its health gate.
    pub rollout: BTreeMap<String, Rollout>,
    pub findings: Vec<Finding>,
}

impl Plan {
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.waves.iter().flat_map(|w| w.values().flatten())
    }

    pub fn is_empty(&self) -> bool {
        self.actions().next().is_none()
    }
}

/// Size in bytes of a disk value `rbd:vm-1-disk-0,size=30G`.
pub fn disk_size(value: &str) -> Option<u64> {
    let size = value.split(',').find_map(|o| o.strip_prefix("size="))?;
    Bytes::parse_with_default(size, 1 << 30).ok().map(|b| b.0)
}

/// Without decrypted secrets, drop changes to secret-valued keys, reporting each instead
/// of proposing it on every pass.
fn without_secrets(
    name: &str,
    config: &DesiredConfig,
    changes: Vec<Change>,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) -> Vec<Change> {
    if policy.secrets_decrypted {
        return changes;
    }
    changes
        .into_iter()
        .filter(|c| {
            let unavailable = config
                .get(&c.key)
                .is_some_and(|v| v.compare == Compare::WriteOnce && v.text.is_empty());
            if unavailable {
                findings.push(Finding::SecretNotApplied {
                    name: name.to_string(),
                    key: c.key.clone(),
                });
            }
            !unavailable
        })
        .collect()
}

/// Plan one declared VM against its actual counterpart (`None`: it does not exist yet).
///
/// A VM whose record ([`marker`]) says it was converged to the declaration it has now is
/// checked for drift, handled by its drift mode; any other is converged as a whole and
/// its record rewritten.
pub fn plan_vm(
    vm: &DesiredVm,
    actual: Option<&ActualVm>,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) -> Vec<Action> {
    plan_vm_config(vm, desired_config(vm, |_| None), actual, policy, findings)
}

/// [`plan_vm`] for a VM whose PVE config is already worked out (see
/// [`super::pveconfig::resolved_config`]).
pub fn plan_vm_config(
    vm: &DesiredVm,
    config: DesiredConfig,
    actual: Option<&ActualVm>,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) -> Vec<Action> {
    let fingerprint = marker::fingerprint(vm, &config);
    let name = vm.name.to_string();
    let (mode, ignore) = policy.drift_for(vm);
    let want_running = vm.spec.power_state.unwrap_or_default() == PowerState::Running;
    let Some(a) = actual else {
        if policy.existed.contains(&name) && !ignored(&ignore, EXISTENCE) {
            // Deleted behind the agent's back.
            if mode != DriftMode::Ignore {
                findings.push(Finding::Drift(Drift {
                    name: name.clone(),
                    vmid: vm.vmid.map(|v| v.get()),
                    field: EXISTENCE.into(),
                    desired: "present".into(),
                    actual: "missing".into(),
                    healed: mode == DriftMode::Heal,
                }));
            }
            if mode != DriftMode::Heal {
                return Vec::new();
            }
        }
        return vec![create(vm, config, &fingerprint, None, policy, findings)];
    };
    if !a.owned() && !vm.spec.adopt {
        findings.push(Finding::NotOwned { name, vmid: a.vmid });
        return Vec::new();
    }
    if let Some(lock) = a.lock() {
        findings.push(Finding::Locked {
            name,
            vmid: a.vmid,
            lock: lock.to_string(),
        });
        return Vec::new();
    }
    let description = a.config.get("description").map_or("", String::as_str);
    let recorded = Marker::parse(description);
    let mut rebuild = vm.spec.rebuild.clone();
    if let (Some(token), Some(m)) = (&vm.spec.rebuild, &recorded) {
        // Without a record (a VM adopted or made before records), the token is noted only.
        if m.rebuild.as_ref() != Some(token) {
            if !a.protected() {
                return rebuild_vm(vm, a, config, &fingerprint, policy, findings);
            }
            findings.push(Finding::RebuildRefused {
                name: name.clone(),
                vmid: a.vmid,
            });
            rebuild = m.rebuild.clone();
        }
    }
    let converged = recorded
        .as_ref()
        .and_then(|m| m.applied.as_deref())
        .is_some_and(|f| f == fingerprint);
    // Drift is what differs on a converged VM; its mode decides what to do with it.
    let mut drift: Vec<Drift> = Vec::new();
    let mut keep = |field: &str, desired: String, actual: String| -> bool {
        if !converged {
            return true;
        }
        if ignored(&ignore, field) || mode == DriftMode::Ignore {
            return false;
        }
        drift.push(Drift {
            name: name.clone(),
            vmid: Some(a.vmid),
            field: field.to_string(),
            desired,
            actual,
            healed: mode == DriftMode::Heal,
        });
        mode == DriftMode::Heal
    };
    let mut out = Vec::new();
    let mut node = a.node.clone();
    if a.node != vm.node.as_str() && keep("node", vm.node.to_string(), a.node.clone()) {
        if a.running {
            // Live migration is the operator's call (it moves memory and local disks).
            findings.push(Finding::WrongNode {
                name: name.clone(),
                desired: vm.node.to_string(),
                actual: a.node.clone(),
            });
        } else {
            out.push(Action::Migrate {
                vmid: a.vmid,
                from: a.node.clone(),
                to: vm.node.to_string(),
            });
            node = vm.node.to_string();
        }
    }
    // Disks: sizes first (grow only), then options via the config diff below.
    let mut refused = BTreeSet::new();
    for d in &vm.spec.disks {
        let slot = d.slot.to_string();
        let Some(have) = a.config.get(&slot).and_then(|v| disk_size(v)) else {
            continue;
        };
        let want = d.size.bytes();
        if want > have {
            let show = |b| Bytes(b).to_string();
            if keep(&format!("{slot}.size"), show(want), show(have)) {
                out.push(Action::Resize {
                    vmid: a.vmid,
                    node: node.clone(),
                    disk: slot,
                    to: want,
                });
            }
        } else if want < have {
            refused.insert(slot.clone());
            findings.push(Finding::ShrinkRefused {
                name: name.clone(),
                disk: slot,
                actual: have,
                desired: want,
            });
        }
    }
    // The description is compared without the record; the record is written below.
    let mut have = a.effective_config();
    let user = marker::user_text(description);
    if user.is_empty() {
        have.remove("description");
    } else {
        have.insert("description".into(), user.clone());
    }
    let changes = without_secrets(&name, &config, diff(&config, &have), policy, findings);
    let changes = if converged {
        unignored(changes, &config, &have, &ignore)
    } else {
        changes
    };
    let mut changes: Vec<Change> = changes
        .into_iter()
        .filter(|c| !refused.contains(&c.key))
        .filter(|c| {
            let desired = config.get(&c.key).map(|v| v.text.as_str());
            keep(
                &c.key,
                shown(&c.key, desired),
                shown(&c.key, c.from.as_deref()),
            )
        })
        .collect();
    let power = |running: bool| if running { "running" } else { "stopped" }.to_string();
    let mut after = Vec::new();
    match (want_running, a.running) {
        (true, false) if keep("powerState", power(true), power(false)) => {
            after.push(Action::Start {
                vmid: a.vmid,
                node: node.clone(),
            })
        }
        (false, true) if keep("powerState", power(false), power(true)) => {
            after.push(Action::Stop {
                vmid: a.vmid,
                node: node.clone(),
            })
        }
        (true, true) if !a.pending.is_empty() => {
            let keys: Vec<String> = a.pending.keys().cloned().collect();
            match policy.reboot {
                RebootPolicy::Allowed => after.push(Action::Reboot {
                    vmid: a.vmid,
                    node: node.clone(),
                    pending: keys,
                }),
                RebootPolicy::Never => findings.push(Finding::PendingReboot {
                    name: name.clone(),
                    keys,
                }),
            }
        }
        _ => {}
    }
    // The record: rewritten when the declaration (or the VM's rebuild token or prune
    // setting) changed, unless something declared was refused (a shrink, a running VM
    // on the wrong node): that VM is not converged, and is planned again next pass.
    let refused_any = !refused.is_empty()
        || findings
            .iter()
            .any(|f| matches!(f, Finding::WrongNode { name: n, .. } if *n == name));
    let record = Marker {
        applied: Some(fingerprint),
        rebuild,
        prune: vm.spec.prune,
    };
    let write_record = (converged || !refused_any) && recorded.as_ref() != Some(&record);
    let written = if write_record {
        &record
    } else {
        &recorded.clone().unwrap_or_default()
    };
    let text = vm.spec.description.clone().unwrap_or(user);
    let described = Change {
        key: "description".into(),
        from: Some(description.to_string()),
        to: marker::compose(&text, written),
    };
    // A declared description that changed keeps the record line.
    if let Some(c) = changes.iter_mut().find(|c| c.key == "description") {
        c.to = described.to.clone();
    }
    let others = !out.is_empty() || !after.is_empty();
    let mut trailing = None;
    if write_record {
        if others {
            // Written last, so a step that fails leaves the VM unrecorded and retried.
            changes.retain(|c| c.key != "description");
            trailing = Some(Action::Configure {
                vmid: a.vmid,
                node: node.clone(),
                changes: vec![described],
                digest: None,
            });
        } else if !changes.iter().any(|c| c.key == "description") {
            changes.push(described);
        }
    }
    if !changes.is_empty() {
        // Before the grows, after a migration.
        let at = usize::from(matches!(out.first(), Some(Action::Migrate { .. })));
        out.insert(
            at,
            Action::Configure {
                vmid: a.vmid,
                node: node.clone(),
                changes,
                digest: a.digest.clone(),
            },
        );
    }
    out.extend(after);
    out.extend(trailing);
    findings.extend(drift.into_iter().map(Finding::Drift));
    out
}

/// Create `vm` (with `vmid` when it replaces a VM), its record in its description.
fn create(
    vm: &DesiredVm,
    config: DesiredConfig,
    fingerprint: &str,
    vmid: Option<u32>,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) -> Action {
    let name = vm.name.to_string();
    // Report what the create cannot set; apply leaves out values it does not have.
    let _ = without_secrets(
        &name,
        &config,
        diff(&config, &BTreeMap::new()),
        policy,
        findings,
    );
    let record = Marker {
        applied: Some(fingerprint.to_string()),
        rebuild: vm.spec.rebuild.clone(),
        prune: vm.spec.prune,
    };
    let user = vm.spec.description.as_deref().unwrap_or_default();
    Action::Create {
        record: marker::compose(user, &record),
        disks: vm
            .spec
            .disks
            .iter()
            .map(|d| (d.slot.to_string(), d.size.bytes()))
            .collect(),
        name,
        vmid: vm.vmid.map(|v| v.get()).or(vmid),
        node: vm.node.to_string(),
        clone: vm.spec.clone.clone(),
        config,
        start: vm.spec.power_state.unwrap_or_default() == PowerState::Running,
    }
}

/// Destroy `a` and create `vm` again under the same vmid (its `rebuild` token changed).
fn rebuild_vm(
    vm: &DesiredVm,
    a: &ActualVm,
    config: DesiredConfig,
    fingerprint: &str,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) -> Vec<Action> {
    let mut out = Vec::new();
    if a.running {
        out.push(Action::Stop {
            vmid: a.vmid,
            node: a.node.clone(),
        });
    }
    out.push(Action::Delete {
        vmid: a.vmid,
        node: a.node.clone(),
        name: a.name.clone(),
    });
    out.push(create(
        vm,
        config,
        fingerprint,
        Some(a.vmid),
        policy,
        findings,
    ));
    out
}

/// Plan every VM: declared ones against what exists (matched by vmid, else by name), owned
/// ones no longer declared pruned or reported, in waves that respect `dependsOn`.
pub fn plan(desired: &DesiredState, actual: &[ActualVm], policy: &Policy) -> Plan {
    let mut plan = Plan::default();
    let mut matched = BTreeSet::new();
    let mut per_vm: BTreeMap<String, Vec<Action>> = BTreeMap::new();
    for vm in &desired.vms {
        let found = actual
            .iter()
            .filter(|a| !a.template)
            .find(|a| match vm.vmid {
                Some(id) => a.vmid == id.get(),
                None => a.name == vm.name.as_str(),
            });
        if let Some(a) = found {
            matched.insert(a.vmid);
        }
        let config = super::pveconfig::resolved_config(vm, desired);
        per_vm.insert(
            vm.name.to_string(),
            plan_vm_config(vm, config, found, policy, &mut plan.findings),
        );
    }
    let deletes = prune(actual, &matched, policy, &mut plan.findings);
    let deps = dependencies(desired);
    for vm in &desired.vms {
        let name = vm.name.as_str();
        if per_vm.get(name).is_none_or(Vec::is_empty) {
            continue;
        }
        let after = deps[name].iter().map(|d| d.to_string()).collect();
        plan.rollout.insert(name.to_string(), rollout(vm, after));
    }
    for (i, names) in waves(desired).into_iter().enumerate() {
        let wave: BTreeMap<String, Vec<Action>> = names
            .into_iter()
            .filter_map(|n| per_vm.remove(&n).map(|a| (n, a)))
            .filter(|(_, a)| !a.is_empty())
            .collect();
        if plan.waves.len() <= i {
            plan.waves.push(BTreeMap::new());
        }
        plan.waves[i].extend(wave);
    }
    if !deletes.is_empty() {
        // Deletions go last: nothing declared depends on them, and creates come first.
        plan.waves.push(deletes);
    }
    plan.waves.retain(|w| !w.is_empty());
    plan
}
