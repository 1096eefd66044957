//! Small kinds: `Pool`, `External`, `Inventory`.

use super::vm::TemplateRef;
use crate::ids::{Bridge, NodeName, PoolId, StorageId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A resource pool. Guests join it with `pool: <name>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Things that exist in the cluster but are not managed by these manifests. References to
/// them validate; references to anything neither declared here nor managed are errors, which
/// catches typos before they reach the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalSpec {
    /// Existing VM templates (by vmid or name) that VMs clone from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateRef>,
    /// Host bridges (`vmbr0`); SDN vnets declared as `SdnVnet` need no entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<Bridge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolId>,
    /// Snippet volumes that already exist (`cephfs:snippets/base.yaml`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snippets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipsets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Cluster nodes. When listed, every node reference is checked against them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeName>,
    /// Storages. When listed, every storage reference is checked against them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storages: Vec<StorageId>,
}

/// An inventory of the managed guests, written to the status branch (e.g. for Ansible).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InventorySpec {
    pub format: InventoryFormat,
    /// Label keys whose values become groups (`role: cpl` → group `cpl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Variables of the `all` group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InventoryFormat {
    /// Ansible YAML inventory.
    Ansible,
}
