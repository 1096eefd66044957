//! `VirtualMachineSet`: N similar VMs from one template, like a Terraform `count`/`for_each`.

use super::common::ResourceRef;
use super::vm::VmSpec;
use crate::ids::{Name, NodeName, Vmid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most members one set may have. A slip of a few zeros in `replicas` would
/// otherwise make the agent expand (and plan to create) millions of VMs, stalling the
/// daemon; no Proxmox VE cluster runs more than a few thousand guests.
pub const MAX_REPLICAS: u32 = 10_000;

/// Default member name pattern: the set's name and the 1-based member number.
pub const DEFAULT_NAME_PATTERN: &str = "{{ set }}-{{ number }}";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualMachineSetSpec {
    /// Number of members, numbered 1..=replicas. Scaling is a one-line change.
    pub replicas: u32,
    /// Name of each member, a template with `set`, `index` (0-based) and `number` (1-based),
    /// and the filter `pad(width)`: `worker{{ number | pad(2) }}` gives worker01, worker02...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_pattern: Option<String>,
    /// vmid of the first member; member i gets `vmidStart + i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid_start: Option<Vmid>,
    /// Nodes to place members on, round-robin (member i on `nodes[i % len]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeName>,
    /// Members to leave out (removed from the cluster when pruning is on) while the others
    /// keep their names, vmids and addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Name>,
    /// At most this many members are created or changed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ResourceRef>,
    /// The spec every member starts from. Addresses written `{ cidr, offset }` get the
    /// member's index added to `offset`.
    #[schemars(with = "VmSpec")]
    pub template: serde_yaml::Value,
    /// Per-member changes, merged over the template (maps merge, lists and scalars replace,
    /// `null` removes), e.g. a GPU for one worker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, VmSpec>")]
    pub overrides: BTreeMap<Name, serde_yaml::Value>,
}
