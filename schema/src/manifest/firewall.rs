//! `Firewall`: the cluster firewall (options, security groups, IP sets, aliases, rules) or one
//! guest's options and rules.
//!
//! By default the agent owns only the rules it created (marked in their comment), so rules an
//! operator added by hand survive; `ownership: full` makes the manifest the whole table.

use super::common::ResourceRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FirewallSpec {
    /// The guest(s) this applies to (`VirtualMachine/x`, `VirtualMachineSet/y`,
    /// `Container/z`); omitted: the cluster firewall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ResourceRef>,
    #[serde(default)]
    pub ownership: Ownership,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<FirewallOptions>,
    /// Cluster only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Alias>,
    /// Cluster only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipsets: Vec<IpSet>,
    /// Cluster only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroup>,
    /// Rules in order: the first listed is evaluated first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Only rules/groups/sets the agent created (comment marker) are managed.
    #[default]
    Marked,
    /// The manifest is the whole table: anything else is removed.
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FirewallOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_in: Option<Policy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_out: Option<Policy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level_in: Option<LogLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level_out: Option<LogLevel>,
    /// Cluster only: ebtables rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebtables: Option<bool>,
    /// Guest only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<bool>,
    /// Guest only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndp: Option<bool>,
    /// Guest only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radv: Option<bool>,
    /// Guest only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macfilter: Option<bool>,
    /// Guest only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfilter: Option<bool>,
}

impl FirewallOptions {
    /// Names of the guest-only options that are set (invalid on the cluster firewall).
    pub fn guest_only_set(&self) -> Vec<&'static str> {
        [
            ("dhcp", self.dhcp.is_some()),
            ("ndp", self.ndp.is_some()),
            ("radv", self.radv.is_some()),
            ("macfilter", self.macfilter.is_some()),
            ("ipfilter", self.ipfilter.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Policy {
    Accept,
    Drop,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Emerg,
    Alert,
    Crit,
    Err,
    Warning,
    Notice,
    Info,
    Debug,
    Nolog,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Alias {
    pub name: String,
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpSet {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub entries: Vec<IpSetEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpSetEntry {
    /// An address, a CIDR, or an alias name.
    pub cidr: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nomatch: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// `in`, `out`, or `group` (insert a security group: `action` names it).
    pub direction: Direction,
    /// `ACCEPT`, `DROP`, `REJECT`, or a security group name for `direction: group`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "macro")]
    pub macro_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// Address, CIDR, alias, or `+ipset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<String>,
    /// Interface (`net0`) for guest rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogLevel>,
    /// Enabled unless set to false (PVE itself defaults new rules to disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
    Group,
}
