//! Planning one VM, and the whole set of VMs in waves.

use super::actual::ActualVm;
use super::compare::{diff, Change};
use super::pveconfig::{desired_config, Compare, DesiredConfig};
use super::rollout::{dependencies, rollout, waves, Rollout};
use pve_gitops_schema::desired::{DesiredState, DesiredVm};
use pve_gitops_schema::manifest::vm::CloneSource;
use pve_gitops_schema::manifest::PowerState;
use pve_gitops_schema::units::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Whether the agent may reboot a VM to apply changes PVE left pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebootPolicy {
    #[default]
    Never,
    Allowed,
}

/// What the operator allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Delete owned VMs that are no longer declared (off by default: an emptied repository
    /// must not empty a cluster).
    pub prune: bool,
    pub reboot: RebootPolicy,
    /// The revision's secrets were decrypted (an identity is configured): write-once secret
    /// values are planned and set from them. Otherwise each is reported as not applied.
    pub secrets_decrypted: bool,
}

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
    Delete {
        vmid: u32,
        node: String,
        name: String,
    },
}

/// Something the plan reports instead of doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// An owned VM that is no longer declared, kept because pruning is off or it is protected.
    Orphan {
        vmid: u32,
        name: String,
        protected: bool,
    },
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
    let name = vm.name.to_string();
    let want_running = vm.spec.power_state.unwrap_or_default() == PowerState::Running;
    let Some(a) = actual else {
        // Report what the create cannot set; apply leaves out values it does not have.
        let _ = without_secrets(
            &name,
            &config,
            diff(&config, &BTreeMap::new()),
            policy,
            findings,
        );
        return vec![Action::Create {
            disks: vm
                .spec
                .disks
                .iter()
                .map(|d| (d.slot.to_string(), d.size.bytes()))
                .collect(),
            name,
            vmid: vm.vmid.map(|v| v.get()),
            node: vm.node.to_string(),
            clone: vm.spec.clone.clone(),
            config,
            start: want_running,
        }];
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
    let mut out = Vec::new();
    let mut node = a.node.clone();
    if a.node != vm.node.as_str() {
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
            out.push(Action::Resize {
                vmid: a.vmid,
                node: node.clone(),
                disk: slot,
                to: want,
            });
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
    let changes: Vec<Change> = without_secrets(
        &name,
        &config,
        diff(&config, &a.effective_config()),
        policy,
        findings,
    )
    .into_iter()
    .filter(|c| !refused.contains(&c.key))
    .collect();
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
    match (want_running, a.running) {
        (true, false) => out.push(Action::Start { vmid: a.vmid, node }),
        (false, true) => out.push(Action::Stop { vmid: a.vmid, node }),
        (true, true) if !a.pending.is_empty() => {
            let keys: Vec<String> = a.pending.keys().cloned().collect();
            match policy.reboot {
                RebootPolicy::Allowed => out.push(Action::Reboot {
                    vmid: a.vmid,
                    node,
                    pending: keys,
                }),
                RebootPolicy::Never => findings.push(Finding::PendingReboot { name, keys }),
            }
        }
        _ => {}
    }
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
    let mut deletes = BTreeMap::new();
    for a in actual
        .iter()
        .filter(|a| a.owned() && !a.template && !matched.contains(&a.vmid))
    {
        if let Some(lock) = a.lock() {
            plan.findings.push(Finding::Locked {
                name: a.name.clone(),
                vmid: a.vmid,
                lock: lock.to_string(),
            });
        } else if policy.prune && !a.protected() {
            let mut steps = Vec::new();
            if a.running {
                steps.push(Action::Stop {
                    vmid: a.vmid,
                    node: a.node.clone(),
                });
            }
            steps.push(Action::Delete {
                vmid: a.vmid,
                node: a.node.clone(),
                name: a.name.clone(),
            });
            deletes.insert(a.name.clone(), steps);
        } else {
            plan.findings.push(Finding::Orphan {
                vmid: a.vmid,
                name: a.name.clone(),
                protected: a.protected(),
            });
        }
    }
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
