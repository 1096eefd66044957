//! `ClusterPolicy`: what the agent may do to this cluster, and when. At most one per
//! cluster directory; without one every field has its default, which is the cautious
//! choice (report drift, never prune, never reboot, apply at any time).
//!
//! ```yaml
//! apiVersion: pve-gitops/v1alpha1
//! kind: ClusterPolicy
//! metadata: { name: prod }
//! spec:
//!   drift: { mode: heal, ignoreFields: [net0.macaddr] }
//!   prune: { enabled: true, maxDeleteShare: 30 }
//!   reboot: allowed
//!   syncWindows:
//!     - { kind: allow, schedule: "0 0 22 * * Mon-Fri", duration: 4h }
//!     - { kind: allow, schedule: "0 0 3 * * *", duration: 1h, applies: [reboot] }
//!   planPreviews: { branches: ["plan/*"] }
//! ```

use crate::units::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `metadata.annotations` key that suspends the sync windows until an instant (RFC 3339,
/// UTC, e.g. `2026-11-26T06:00:00Z`): an emergency change outside the windows still goes
/// through git, and the override expires by itself.
pub const OVERRIDE_WINDOWS_UNTIL: &str = "pve-gitops/override-windows-until";

/// The policy of one cluster.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterPolicySpec {
    /// Cluster default for drift handling; a resource's own `drift` overrides it.
    #[serde(default)]
    pub drift: DriftPolicy,
    #[serde(default)]
    pub prune: PrunePolicy,
    /// Whether the agent may reboot a guest to apply changes PVE left pending.
    #[serde(default)]
    pub reboot: RebootMode,
    /// When changes may be applied. Empty: always. Otherwise a change is applied only
    /// inside an `allow` window and outside every `deny` window (Argo CD's rule); outside,
    /// the plan is reported as pending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_windows: Vec<SyncWindow>,
    #[serde(default)]
    pub plan_previews: PlanPreviews,
}

/// What to do when a managed object no longer matches what was applied.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriftPolicy {
    #[serde(default)]
    pub mode: DriftMode,
    /// Config paths never compared, e.g. `net0.macaddr`, `cipassword`, `description`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    /// Neither reported nor corrected.
    Ignore,
    /// Reported on the status branch, left as it is.
    #[default]
    Report,
    /// Reported and corrected back to the manifests.
    Heal,
}

/// Deleting what is no longer declared.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrunePolicy {
    /// Delete owned guests that are no longer declared. Off by default: an emptied
    /// repository must not empty a cluster.
    #[serde(default)]
    pub enabled: bool,
    /// Also destroy the disks of a pruned guest. Without it the guest is stopped and
    /// tagged `pve-gitops-orphan` instead of destroyed.
    #[serde(default)]
    pub disks: bool,
    /// Refuse an apply that would delete more than this percentage of the owned guests.
    #[serde(default = "default_max_delete_share")]
    pub max_delete_share: u8,
}

fn default_max_delete_share() -> u8 {
    30
}

impl Default for PrunePolicy {
    fn default() -> Self {
        PrunePolicy {
            enabled: false,
            disks: false,
            max_delete_share: default_max_delete_share(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RebootMode {
    #[default]
    Never,
    Allowed,
}

/// A recurring window, as in Argo CD: it opens at each time `schedule` fires and stays
/// open for `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncWindow {
    pub kind: WindowKind,
    /// A cron expression with seconds (`sec min hour day-of-month month day-of-week`), in
    /// UTC, e.g. `0 0 22 * * Mon-Fri`.
    pub schedule: String,
    pub duration: Duration,
    /// What the window governs. Default: applies.
    #[serde(default = "default_applies")]
    pub applies: Vec<WindowScope>,
}

fn default_applies() -> Vec<WindowScope> {
    vec![WindowScope::Apply]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    Allow,
    Deny,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum WindowScope {
    /// Any write to the cluster.
    Apply,
    /// Reboots that apply pending changes.
    Reboot,
}

/// Plans computed for branches other than the one applied, and committed to the status
/// branch as `plans/<branch>.md` without applying anything.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanPreviews {
    /// Branch name patterns; `*` matches any run of characters except `/`.
    #[serde(default = "default_preview_branches")]
    pub branches: Vec<String>,
}

fn default_preview_branches() -> Vec<String> {
    vec!["plan/*".to_string()]
}

impl Default for PlanPreviews {
    fn default() -> Self {
        PlanPreviews {
            branches: default_preview_branches(),
        }
    }
}
