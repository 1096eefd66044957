//! Pieces every kind shares: the document envelope, metadata, references between resources.

use crate::ids::Name;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The only API version this build reads.
pub const API_VERSION: &str = "pve-gitops/v1alpha1";

/// Every kind of resource a manifest can declare.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Kind {
    VirtualMachine,
    VirtualMachineSet,
    Template,
    Container,
    StorageDownload,
    Snippet,
    SdnZone,
    SdnVnet,
    SdnSubnet,
    Firewall,
    Pool,
    External,
    Inventory,
    Blueprint,
    BlueprintInstance,
    ClusterPolicy,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::VirtualMachine,
        Kind::VirtualMachineSet,
        Kind::Template,
        Kind::Container,
        Kind::StorageDownload,
        Kind::Snippet,
        Kind::SdnZone,
        Kind::SdnVnet,
        Kind::SdnSubnet,
        Kind::Firewall,
        Kind::Pool,
        Kind::External,
        Kind::Inventory,
        Kind::Blueprint,
        Kind::BlueprintInstance,
        Kind::ClusterPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualMachine => "VirtualMachine",
            Kind::VirtualMachineSet => "VirtualMachineSet",
            Kind::Template => "Template",
            Kind::Container => "Container",
            Kind::StorageDownload => "StorageDownload",
            Kind::Snippet => "Snippet",
            Kind::SdnZone => "SdnZone",
            Kind::SdnVnet => "SdnVnet",
            Kind::SdnSubnet => "SdnSubnet",
            Kind::Firewall => "Firewall",
            Kind::Pool => "Pool",
            Kind::External => "External",
            Kind::Inventory => "Inventory",
            Kind::Blueprint => "Blueprint",
            Kind::BlueprintInstance => "BlueprintInstance",
            Kind::ClusterPolicy => "ClusterPolicy",
        }
    }

    /// Guests share one namespace: their names become PVE VM names and hostnames.
    pub fn is_guest(self) -> bool {
        matches!(
            self,
            Kind::VirtualMachine | Kind::VirtualMachineSet | Kind::Template | Kind::Container
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind `{s}`"))
    }
}

/// `metadata` of a document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: Name,
    /// Free-form labels: selected keys become PVE tags (`tagsFromLabels`), inventory groups.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A reference to another resource, written `Kind/name` (as in `dependsOn`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRef {
    pub kind: Kind,
    pub name: Name,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl FromStr for ResourceRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, name) = s.split_once('/').ok_or_else(|| {
            format!("`{s}` is not a reference: write Kind/name, e.g. VirtualMachineSet/workers")
        })?;
        Ok(ResourceRef {
            kind: kind.parse()?,
            name: name.parse()?,
        })
    }
}

impl<'de> Deserialize<'de> for ResourceRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl Serialize for ResourceRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for ResourceRef {
    fn schema_name() -> Cow<'static, str> {
        "ResourceRef".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^[A-Za-z]+/[a-z0-9-]+$", "description": "Kind/name" })
    }
}

/// Declared power state of a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    #[default]
    Running,
    Stopped,
}

/// A value of `extraConfig`: passed to PVE as-is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExtraValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

/// Nodes a resource applies to: `all`, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSelector {
    All,
    List(Vec<crate::ids::NodeName>),
}

impl<'de> Deserialize<'de> for NodeSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            List(Vec<crate::ids::NodeName>),
        }
        match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected `all` or a list of node names"))?
        {
            Raw::Text(t) if t == "all" => Ok(NodeSelector::All),
            Raw::Text(t) => Err(de::Error::custom(format!(
                "`{t}`: expected `all` or a list of node names"
            ))),
            Raw::List(l) => Ok(NodeSelector::List(l)),
        }
    }
}

impl Serialize for NodeSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NodeSelector::All => s.serialize_str("all"),
            NodeSelector::List(l) => l.serialize(s),
        }
    }
}

impl JsonSchema for NodeSelector {
    fn schema_name() -> Cow<'static, str> {
        "NodeSelector".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "anyOf": [ { "const": "all" }, { "type": "array", "items": { "type": "string" } } ] })
    }
}
