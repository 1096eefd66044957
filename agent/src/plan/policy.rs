//! The policy a plan is made under: the cluster's `ClusterPolicy` from the manifests, with
//! the command line's explicit flags over it.
//!
//! Precedence, per setting: a flag given on the command line (`--prune`, `--no-prune`,
//! `--reboot`, `--drift`) > the resource's own field (`drift.mode`, `prune`) > the
//! `ClusterPolicy` > the defaults (report drift, never prune, never reboot). So an
//! operator can run `pve-gitops apply --once --no-prune` against any repository and be
//! sure nothing is deleted, whatever the manifests say.
//!
//! One exception, towards keeping: `--prune` turns pruning on over the `ClusterPolicy`,
//! but a VM whose own `prune` is false is still kept, as Flux's and Argo CD's
//! per-object opt-outs from pruning win over their sync's.

use pve_gitops_schema::desired::DesiredVm;
use pve_gitops_schema::manifest::policy::{ClusterPolicySpec, DriftMode, PrunePolicy, RebootMode};
use std::collections::BTreeSet;

/// Whether the agent may reboot a VM to apply changes PVE left pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebootPolicy {
    #[default]
    Never,
    Allowed,
}

/// What the operator allows, and what the plan needs to know besides the two states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Delete owned VMs that are no longer declared (off by default: an emptied repository
    /// must not empty a cluster). A VM's recorded `prune` overrides it, unless
    /// `never_prune`.
    pub prune: bool,
    /// `--no-prune` was given (or `prune: false` in the config file): nothing is
    /// deleted, whatever a VM's own `prune` says.
    pub never_prune: bool,
    /// A pruned VM is destroyed with its disks; otherwise it is stopped and tagged
    /// [`ORPHAN_TAG`], and its disks stay.
    pub prune_disks: bool,
    /// Refuse every deletion of a pass that would delete more than this percentage of
    /// the owned guests.
    pub max_delete_share: u8,
    pub reboot: RebootPolicy,
    /// What to do when a converged VM no longer matches what was applied.
    pub drift: DriftMode,
    /// `drift` came from the command line: it wins over the VMs' own modes too.
    pub drift_forced: bool,
    /// Field paths never compared for drift, for every VM.
    pub ignore_fields: Vec<String>,
    /// The revision's secrets were decrypted (an identity is configured): write-once secret
    /// values are planned and set from them. Otherwise each is reported as not applied.
    pub secrets_decrypted: bool,
    /// VMs an earlier pass saw existing (from the last status): one of them absent now was
    /// deleted behind the agent's back, which is drift, not a VM still to be created.
    pub existed: BTreeSet<String>,
}

/// The tag a pruned VM gets when its disks are kept.
pub const ORPHAN_TAG: &str = "pve-gitops-orphan";

impl Default for Policy {
    fn default() -> Self {
        Policy::effective(None, &PolicyOverrides::default())
    }
}

/// The command line's explicit choices; `None`: the manifests decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyOverrides {
    pub prune: Option<bool>,
    pub reboot: Option<RebootPolicy>,
    pub drift: Option<DriftMode>,
}

impl Policy {
    /// The policy of a cluster whose manifests declare `cluster` (`None`: no
    /// `ClusterPolicy`, every default), with `overrides` over it.
    pub fn effective(cluster: Option<&ClusterPolicySpec>, overrides: &PolicyOverrides) -> Policy {
        let default = ClusterPolicySpec::default();
        let c = cluster.unwrap_or(&default);
        let PrunePolicy {
            enabled,
            disks,
            max_delete_share,
        } = c.prune;
        Policy {
            prune: overrides.prune.unwrap_or(enabled),
            never_prune: overrides.prune == Some(false),
            prune_disks: disks,
            max_delete_share,
            reboot: overrides.reboot.unwrap_or(match c.reboot {
                RebootMode::Never => RebootPolicy::Never,
                RebootMode::Allowed => RebootPolicy::Allowed,
            }),
            drift: overrides.drift.unwrap_or(c.drift.mode),
            drift_forced: overrides.drift.is_some(),
            ignore_fields: c.drift.ignore_fields.clone(),
            secrets_decrypted: false,
            existed: BTreeSet::new(),
        }
    }

    /// The drift mode and ignored fields of one VM: its own mode over the cluster's (a
    /// command-line `--drift` over both), its ignored fields added to the cluster's.
    pub fn drift_for(&self, vm: &DesiredVm) -> (DriftMode, Vec<String>) {
        let own = vm.spec.drift.as_ref();
        let mode = match own.and_then(|d| d.mode) {
            Some(m) if !self.drift_forced => m,
            _ => self.drift,
        };
        let mut fields = self.ignore_fields.clone();
        fields.extend(
            own.into_iter()
                .flat_map(|d| d.ignore_fields.iter().cloned()),
        );
        (mode, fields)
    }
}
