//! The desired state: what the manifests ask for once sets, blueprints and defaults are
//! expanded. This is the input of the planner and the output of `pve-gitops render`.
//!
//! Every guest is concrete here (its own name, node, addresses, tags); secrets are still
//! references, decrypted by the agent only when it applies them.

use crate::ids::{Name, NodeName, Tag, Vmid};
use crate::manifest::{
    container::ContainerSpec, firewall::FirewallSpec, misc::InventorySpec, misc::PoolSpec,
    policy::ClusterPolicySpec, sdn::SdnSubnetSpec, sdn::SdnVnetSpec, sdn::SdnZoneSpec,
    snippet::SnippetSpec, storage::StorageDownloadSpec, template::TemplateSpec, vm::VmSpec, Origin,
    ResourceRef,
};
use crate::source_map::YamlPath;
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything a revision declares, expanded and validated.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredState {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<DesiredVm>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<Named<TemplateSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<DesiredContainer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub storage_downloads: Vec<Named<StorageDownloadSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snippets: Vec<Named<SnippetSpec>>,
    /// Snippet files as they will be written, one per (snippet, VM) pair.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snippet_files: Vec<SnippetFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sdn_zones: Vec<Named<SdnZoneSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sdn_vnets: Vec<Named<SdnVnetSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sdn_subnets: Vec<Named<SdnSubnetSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub firewalls: Vec<Named<FirewallSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<Named<PoolSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inventories: Vec<Named<InventorySpec>>,
    /// The cluster's `ClusterPolicy`, if it declares one (defaults otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Named<ClusterPolicySpec>>,
}

/// A resource kept as declared, with its name and labels.
#[derive(Debug, Clone, Serialize)]
pub struct Named<T> {
    pub name: Name,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub spec: T,
    #[serde(skip)]
    pub origin: Origin,
}

/// Where in its manifest a guest's values are written, to locate errors found after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecSource {
    pub origin: Origin,
    /// `spec` for a VirtualMachine, `spec.template` for a set member.
    pub spec_path: YamlPath,
    /// `spec.overrides.<member>` when the member has overrides.
    pub override_path: Option<YamlPath>,
}

/// One concrete VM.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredVm {
    pub name: Name,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmid: Option<Vmid>,
    pub node: NodeName,
    /// The set this VM belongs to, and its index in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_of: Option<SetMember>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Final PVE tags, sorted, including the ownership tag.
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ResourceRef>,
    /// The rest of the spec (placement, tags and dependencies are hoisted above; addresses
    /// are resolved).
    pub spec: VmSpec,
    #[serde(skip)]
    pub source: SpecSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetMember {
    pub set: Name,
    pub index: usize,
    /// The set's `maxParallel`: at most this many members are changed at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

/// One concrete container.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredContainer {
    pub name: Name,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<Tag>,
    pub spec: ContainerSpec,
    #[serde(skip)]
    pub origin: Origin,
}

/// A rendered snippet file for one VM.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnippetFile {
    pub snippet: Name,
    pub vm: Name,
    /// Volume id the VM's `cicustom` points at, e.g. `cephfs:snippets/pve-gitops-worker01-consul.yaml`.
    pub volume: String,
    /// The content with secrets shown as `<secret:...>` placeholders (the agent renders the
    /// real file with decrypted values).
    pub content: String,
}

impl DesiredState {
    pub fn vm(&self, name: &str) -> Option<&DesiredVm> {
        self.vms.iter().find(|v| v.name.as_str() == name)
    }
}
