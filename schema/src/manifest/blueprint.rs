//! `Blueprint` and `BlueprintInstance`: one definition, many copies that differ in a few
//! parameters (seed 001's clusters 101-103, whose addresses, VLAN and vnet all derive from a
//! cluster id).
//!
//! A blueprint is a file of ordinary manifests with `{{ parameter }}` expressions in it. Each
//! instance renders the file with its values and the result is read like any other file, so
//! errors point at the blueprint's own lines. Only expressions are allowed (no `{% %}`
//! blocks): every rendered line is then the same line of the blueprint, and repetition is what
//! `VirtualMachineSet` is for.

use crate::ids::Name;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlueprintSpec {
    /// The template file (relative to this manifest). Name it `*.yaml.j2` so it is not read
    /// as a manifest itself.
    pub template_file: String,
    pub parameters: BTreeMap<String, Parameter>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Parameter {
    #[serde(rename = "type")]
    pub param_type: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Used when an instance gives no value; without a default the parameter is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<serde_yaml::Value>,
    /// Integer parameters only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Boolean,
    List,
    Map,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlueprintInstanceSpec {
    pub blueprint: Name,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub values: BTreeMap<String, serde_yaml::Value>,
}
