//! The manifest language: one Kubernetes-style document per resource.
//!
//! ```yaml
//! apiVersion: pve-gitops/v1alpha1
//! kind: VirtualMachine
//! metadata: { name: dns02 }
//! spec: { node: pve01, clone: { template: 9001 }, cpu: { cores: 2 }, memory: 2G }
//! ```

pub mod blueprint;
pub mod common;
pub mod container;
pub mod firewall;
pub mod misc;
pub mod policy;
pub mod sdn;
pub mod set;
pub mod snippet;
pub mod storage;
pub mod template;
pub mod vm;

pub use common::{ExtraValue, Kind, Metadata, NodeSelector, PowerState, ResourceRef, API_VERSION};

use crate::diag::Location;
use crate::ids::Name;
use crate::source_map::{SourceMap, YamlPath};
use std::collections::HashMap;

/// The spec of a document, by kind.
///
/// Variants differ in size (a VM spec is large); documents are parsed once per revision and
/// kept in one Vec, so boxing would add indirection for no measurable gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    VirtualMachine(vm::VmSpec),
    VirtualMachineSet(SetDocument),
    Template(template::TemplateSpec),
    Container(container::ContainerSpec),
    StorageDownload(storage::StorageDownloadSpec),
    Snippet(snippet::SnippetSpec),
    SdnZone(sdn::SdnZoneSpec),
    SdnVnet(sdn::SdnVnetSpec),
    SdnSubnet(sdn::SdnSubnetSpec),
    Firewall(firewall::FirewallSpec),
    Pool(misc::PoolSpec),
    External(misc::ExternalSpec),
    Inventory(misc::InventorySpec),
    Blueprint(blueprint::BlueprintSpec),
    BlueprintInstance(blueprint::BlueprintInstanceSpec),
    ClusterPolicy(policy::ClusterPolicySpec),
}

/// A set with its member template already checked against the VM schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SetDocument {
    pub spec: set::VirtualMachineSetSpec,
    pub template: vm::VmSpec,
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::VirtualMachine(_) => Kind::VirtualMachine,
            Spec::VirtualMachineSet(_) => Kind::VirtualMachineSet,
            Spec::Template(_) => Kind::Template,
            Spec::Container(_) => Kind::Container,
            Spec::StorageDownload(_) => Kind::StorageDownload,
            Spec::Snippet(_) => Kind::Snippet,
            Spec::SdnZone(_) => Kind::SdnZone,
            Spec::SdnVnet(_) => Kind::SdnVnet,
            Spec::SdnSubnet(_) => Kind::SdnSubnet,
            Spec::Firewall(_) => Kind::Firewall,
            Spec::Pool(_) => Kind::Pool,
            Spec::External(_) => Kind::External,
            Spec::Inventory(_) => Kind::Inventory,
            Spec::Blueprint(_) => Kind::Blueprint,
            Spec::BlueprintInstance(_) => Kind::BlueprintInstance,
            Spec::ClusterPolicy(_) => Kind::ClusterPolicy,
        }
    }
}

/// Where a document came from: enough to find any of its values again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// Repository-relative path of the file.
    pub file: String,
    /// Index of the document in the file (`---` separated).
    pub doc: usize,
    /// The `BlueprintInstance` that rendered this document, if any.
    pub instance: Option<Name>,
}

/// One parsed, schema-valid document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub metadata: Metadata,
    pub spec: Spec,
    pub origin: Origin,
}

impl Document {
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    pub fn name(&self) -> &Name {
        &self.metadata.name
    }

    pub fn reference(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind(),
            name: self.metadata.name.clone(),
        }
    }
}

/// Finds the position of any value of any parsed document.
#[derive(Debug, Default)]
pub struct Locator {
    maps: HashMap<(String, Option<Name>), SourceMap>,
}

impl Locator {
    pub fn insert(&mut self, file: &str, instance: Option<Name>, map: SourceMap) {
        self.maps.insert((file.to_string(), instance), map);
    }

    /// Position of the value at `path` of the document `origin` (or its nearest ancestor).
    pub fn value(&self, origin: &Origin, path: &YamlPath) -> Location {
        self.find(origin, path, false)
    }

    /// Position of the key at `path`.
    pub fn key(&self, origin: &Origin, path: &YamlPath) -> Location {
        self.find(origin, path, true)
    }

    /// Whether the document has a value at exactly `path` (no ancestor fallback).
    pub fn contains(&self, origin: &Origin, path: &YamlPath) -> bool {
        self.maps
            .get(&(origin.file.clone(), origin.instance.clone()))
            .is_some_and(|m| m.contains(origin.doc, path))
    }

    /// Shorthand: position of a dotted path (`spec.disks[0].size`).
    pub fn at(&self, origin: &Origin, path: &str) -> Location {
        self.value(origin, &YamlPath::parse(path))
    }

    fn find(&self, origin: &Origin, path: &YamlPath, key: bool) -> Location {
        let pos = self
            .maps
            .get(&(origin.file.clone(), origin.instance.clone()))
            .map(|m| {
                if key {
                    m.key_pos(origin.doc, path)
                } else {
                    m.value_pos(origin.doc, path)
                }
            });
        let mut loc = match pos {
            Some(p) => Location::new(&origin.file, p.line, p.column),
            None => Location::file_start(&origin.file),
        };
        loc.instance = origin.instance.as_ref().map(ToString::to_string);
        loc
    }
}
