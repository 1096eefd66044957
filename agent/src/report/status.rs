//! `status.yaml`: what the agent last did to one cluster, machine-readable.
//!
//! Its content depends only on the cluster and the revision, never on the clock, so an
//! unchanged cluster renders byte-identical files and the status branch gets no commit.

use crate::apply::Report;
use crate::plan::actual::ActualVm;
use crate::plan::rollout::first_static_ip;
use crate::plan::{Action, Finding, Plan};
use pve_gitops_schema::desired::DesiredState;
use pve_gitops_schema::manifest::PowerState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The document, as committed to `<cluster>/status.yaml` on the status branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `pve-gitops/v1alpha1`.
    pub api_version: String,
    /// `ClusterStatus`.
    pub kind: String,
    pub cluster: String,
    /// The manifests commit the resources below were last reconciled against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// What the last pass that applied something did.
    #[serde(default)]
    pub counts: Counts,
    #[serde(default)]
    pub resources: Vec<ResourceStatus>,
    /// A newer revision that was refused (invalid manifests); nothing of it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Rejected>,
    /// The agent that wrote this status, when leader election runs. No `since`: the
    /// document changes only when leadership does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<Leader>,
    /// A newer, valid revision whose changes wait for a sync window to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Differences made behind the agent's back, as the last pass found them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftEntry>,
    /// Why the last pass deleted nothing it would have pruned (`maxDeleteShare`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_refused: Option<String>,
}

/// Changes held back by the cluster's sync windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub revision: String,
    /// Guests the held-back plan would change.
    pub changes: usize,
    /// When the next window opens (RFC 3339), if one is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_open: Option<String>,
}

/// One drifted field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftEntry {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// `memory`, `net0.tag`, `powerState`, `vm` (the VM is missing)...
    pub field: String,
    pub desired: String,
    pub actual: String,
    /// `healed` (set back this pass) or `reported` (left as found).
    pub action: String,
}

/// Which agent leads, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub node: String,
    pub term: u64,
}

impl From<crate::lease::LeaderIdentity> for Leader {
    fn from(id: crate::lease::LeaderIdentity) -> Self {
        Leader {
            node: id.node,
            term: id.term,
        }
    }
}

/// Changes made by one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub failed: usize,
}

/// A refused revision and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub revision: String,
    /// One line per problem, `path:line:col: kind: message`.
    pub errors: Vec<String>,
}

/// One managed resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The first static address declared for it (guest-agent addresses come later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Power state: `running`, `stopped`, or `absent`.
    pub state: String,
    pub sync: Sync,
    /// Why, for anything but `in-sync` and `changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Labels, for grouping (inventory, dashboards).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Where a resource stands against its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sync {
    /// As declared; nothing was done.
    InSync,
    /// Changed by this pass and now as declared.
    Changed,
    /// A change failed; `message` says which and why.
    Failed,
    /// Not attempted: a dependency failed or was not ready.
    Skipped,
    /// As declared, but some values wait for a reboot the policy does not allow.
    PendingReboot,
    /// Left alone: something the agent may not do (not owned, locked, shrink, wrong node).
    Blocked,
    /// Owned, no longer declared, kept (pruning off or protected).
    Orphan,
    /// Changed behind the agent's back and left so (drift mode `report`).
    Drift,
}

impl Sync {
    pub fn as_str(self) -> &'static str {
        match self {
            Sync::InSync => "in-sync",
            Sync::Changed => "changed",
            Sync::Failed => "failed",
            Sync::Skipped => "skipped",
            Sync::PendingReboot => "pending-reboot",
            Sync::Blocked => "blocked",
            Sync::Orphan => "orphan",
            Sync::Drift => "drift",
        }
    }
}

/// What one full pass saw and did, the input of a status.
pub struct PassFacts<'a> {
    pub desired: &'a DesiredState,
    /// The candidate VMs as observed before the pass.
    pub actual: &'a [ActualVm],
    pub plan: &'a Plan,
    pub report: &'a Report,
}

/// The status after a pass that applied `revision` (or found nothing to do).
pub fn after_pass(cluster: &str, revision: &str, facts: &PassFacts<'_>) -> ClusterStatus {
    let mut resources: Vec<ResourceStatus> = facts
        .desired
        .vms
        .iter()
        .map(|vm| {
            let name = vm.name.to_string();
            let actual = facts.actual.iter().find(|a| match vm.vmid {
                Some(id) => a.vmid == id.get(),
                None => a.name == name,
            });
            let vmid = vm
                .vmid
                .map(|v| v.get())
                .or(actual.map(|a| a.vmid))
                .or_else(|| created_vmid(facts.plan, &name));
            let (sync, message) = sync_of(&name, facts);
            let running = vm.spec.power_state.unwrap_or_default() == PowerState::Running;
            let exists = actual.is_some() || facts.report.done.contains_key(&name);
            // Gone, and nothing planned to bring it back: deleted behind the agent's back
            // (drift reported or ignored), not a VM still to be created.
            let planned = facts.plan.waves.iter().any(|w| w.contains_key(&name));
            let state = match (exists, sync) {
                (false, Sync::Drift) => "missing",
                (false, Sync::InSync) if !planned => "missing",
                (false, _) => "absent",
                (true, Sync::Failed | Sync::Skipped | Sync::Blocked) => match actual {
                    Some(a) if a.running => "running",
                    Some(_) => "stopped",
                    None => "unknown",
                },
                (true, _) if running => "running",
                (true, _) => "stopped",
            };
            let ip = first_static_ip(vm).map(|ip| ip.to_string());
            ResourceStatus {
                kind: "VirtualMachine".into(),
                name,
                vmid,
                node: Some(vm.node.to_string()),
                ip,
                state: state.into(),
                sync,
                message,
                labels: vm.labels.clone(),
            }
        })
        .collect();
    for f in &facts.plan.findings {
        if let Finding::Orphan { vmid, name, kept } = f {
            resources.push(ResourceStatus {
                kind: "VirtualMachine".into(),
                name: name.clone(),
                vmid: Some(*vmid),
                node: facts
                    .actual
                    .iter()
                    .find(|a| a.vmid == *vmid)
                    .map(|a| a.node.clone()),
                ip: None,
                state: "kept".into(),
                sync: Sync::Orphan,
                message: Some(format!("no longer declared; {}", kept.describe())),
                labels: BTreeMap::new(),
            });
        }
    }
    resources.extend(super::objects::resources(facts.desired, facts.report));
    resources.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    ClusterStatus {
        api_version: "pve-gitops/v1alpha1".into(),
        kind: "ClusterStatus".into(),
        cluster: cluster.into(),
        applied_revision: Some(revision.into()),
        counts: counts(facts.plan, facts.report),
        resources,
        rejected: None,
        leader: None,
        waiting: None,
        drift: drift_entries(facts),
        prune_refused: facts.plan.findings.iter().find_map(|f| match f {
            Finding::PruneRefused {
                would_delete,
                owned,
                max_share,
            } => Some(format!(
                "pruning would delete {would_delete} of {owned} owned guests, more than maxDeleteShare {max_share}%: nothing was deleted"
            )),
            _ => None,
        }),
    }
}

/// The drift the plan found; a heal that failed is reported, not healed.
fn drift_entries(facts: &PassFacts<'_>) -> Vec<DriftEntry> {
    let mut out: Vec<DriftEntry> = facts
        .plan
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Drift(d) => Some(d),
            _ => None,
        })
        .map(|d| {
            let healed = d.healed && !facts.report.failed.contains_key(&d.name);
            DriftEntry {
                kind: "VirtualMachine".into(),
                name: d.name.clone(),
                vmid: d.vmid,
                field: d.field.clone(),
                desired: d.desired.clone(),
                actual: d.actual.clone(),
                action: if healed { "healed" } else { "reported" }.into(),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.field).cmp(&(&b.name, &b.field)));
    out
}

/// The VMs `status` saw existing (also the ones it reported missing: still drift, not
/// new), so the next pass can tell a VM deleted behind the agent's back.
pub fn existing(status: &ClusterStatus) -> std::collections::BTreeSet<String> {
    status
        .resources
        .iter()
        .filter(|r| r.kind == "VirtualMachine" && r.sync != Sync::Orphan)
        .filter(|r| matches!(r.state.as_str(), "running" | "stopped" | "missing"))
        .map(|r| r.name.clone())
        .collect()
}

/// The previous status with a refused revision noted; resources stay as last applied.
pub fn after_rejection(
    previous: Option<ClusterStatus>,
    cluster: &str,
    revision: &str,
    errors: Vec<String>,
) -> ClusterStatus {
    let mut s = previous.unwrap_or_else(|| empty(cluster));
    s.rejected = Some(Rejected {
        revision: revision.into(),
        errors,
    });
    s
}

/// The previous status with `waiting` noted: a valid revision held back by the sync
/// windows. Resources stay as last applied; a rejection noted before is superseded.
pub fn while_waiting(
    previous: Option<ClusterStatus>,
    cluster: &str,
    waiting: Waiting,
) -> ClusterStatus {
    let mut s = previous.unwrap_or_else(|| empty(cluster));
    s.rejected = None;
    s.waiting = Some(waiting);
    s
}

/// A status with nothing applied yet.
fn empty(cluster: &str) -> ClusterStatus {
    ClusterStatus {
        api_version: "pve-gitops/v1alpha1".into(),
        kind: "ClusterStatus".into(),
        cluster: cluster.into(),
        applied_revision: None,
        counts: Counts::default(),
        resources: Vec::new(),
        rejected: None,
        leader: None,
        waiting: None,
        drift: Vec::new(),
        prune_refused: None,
    }
}

fn created_vmid(plan: &Plan, name: &str) -> Option<u32> {
    plan.waves.iter().find_map(|w| {
        w.get(name)?.iter().find_map(|a| match a {
            Action::Create { vmid, .. } => *vmid,
            _ => None,
        })
    })
}

fn sync_of(name: &str, facts: &PassFacts<'_>) -> (Sync, Option<String>) {
    if let Some(e) = facts.report.failed.get(name) {
        return (Sync::Failed, Some(e.clone()));
    }
    if let Some(why) = facts.report.skipped.get(name) {
        return (Sync::Skipped, Some(why.clone()));
    }
    let blocked = facts.plan.findings.iter().find_map(|f| match f {
        Finding::NotOwned { name: n, vmid } if n == name => Some(format!(
            "VM {vmid} exists but is not managed by pve-gitops (set adopt: true)"
        )),
        Finding::Locked { name: n, lock, .. } if n == name => {
            Some(format!("locked by PVE ({lock}); retried next pass"))
        }
        Finding::ShrinkRefused { name: n, disk, .. } if n == name => Some(format!(
            "{disk} is larger than declared; disks are never shrunk"
        )),
        Finding::WrongNode {
            name: n, actual, ..
        } if n == name => Some(format!("runs on {actual}; a running VM is not migrated")),
        Finding::RebuildRefused { name: n, .. } if n == name => {
            Some("rebuild token changed but the VM is protected; not rebuilt".into())
        }
        _ => None,
    });
    if let Some(m) = blocked {
        return (Sync::Blocked, Some(m));
    }
    if facts.report.done.contains_key(name) {
        return (Sync::Changed, None);
    }
    let reported: Vec<&str> = facts
        .plan
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Drift(d) if d.name == name && !d.healed => Some(d.field.as_str()),
            _ => None,
        })
        .collect();
    if !reported.is_empty() {
        return (
            Sync::Drift,
            Some(format!(
                "changed outside pve-gitops: {} (see drift.md)",
                reported.join(", ")
            )),
        );
    }
    let pending = facts.plan.findings.iter().find_map(|f| match f {
        Finding::PendingReboot { name: n, keys } if n == name => Some(keys.join(", ")),
        _ => None,
    });
    match pending {
        Some(keys) => (
            Sync::PendingReboot,
            Some(format!("{keys} applied at the next reboot")),
        ),
        None => (Sync::InSync, None),
    }
}

/// Created, updated and deleted count VMs whose actions all succeeded.
fn counts(plan: &Plan, report: &Report) -> Counts {
    let mut c = Counts {
        failed: report.failed.len(),
        ..Counts::default()
    };
    for wave in &plan.waves {
        for (name, actions) in wave {
            if !report.done.contains_key(name) || report.failed.contains_key(name) {
                continue;
            }
            if actions.iter().any(|a| matches!(a, Action::Create { .. })) {
                c.created += 1;
            } else if actions
                .iter()
                .any(|a| matches!(a, Action::Delete { .. } | Action::Retire { .. }))
            {
                c.deleted += 1;
            } else {
                c.updated += 1;
            }
        }
    }
    super::objects::count(report, &mut c);
    c
}
