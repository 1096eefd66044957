//! `inventory.yaml`: an Ansible YAML inventory of the managed VMs, grouped by labels, so
//! configuration management picks up what the agent created (seed 000's and 004's Ansible
//! steps).

use super::status::ClusterStatus;
use pve_gitops_schema::manifest::misc::InventorySpec;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;

/// Hosts with an address become `all.hosts` (with `ansible_host`); each value of a
/// grouping label (the `Inventory` manifest's `groupBy`, else every label) becomes a group
/// of that name.
pub fn ansible(s: &ClusterStatus, spec: Option<&InventorySpec>) -> String {
    let mut hosts = Mapping::new();
    let mut groups: BTreeMap<String, Mapping> = BTreeMap::new();
    for r in s.resources.iter().filter(|r| r.state != "kept") {
        let mut vars = Mapping::new();
        if let Some(ip) = &r.ip {
            vars.insert("ansible_host".into(), ip.clone().into());
        }
        if let Some(v) = r.vmid {
            vars.insert("pve_vmid".into(), v.into());
        }
        if let Some(n) = &r.node {
            vars.insert("pve_node".into(), n.clone().into());
        }
        hosts.insert(r.name.clone().into(), Value::Mapping(vars));
        for (key, value) in &r.labels {
            let wanted = spec.is_none_or(|s| s.group_by.is_empty() || s.group_by.contains(key));
            if wanted {
                groups
                    .entry(group_name(value))
                    .or_default()
                    .insert(r.name.clone().into(), Value::Mapping(Mapping::new()));
            }
        }
    }
    let mut all = Mapping::new();
    all.insert("hosts".into(), Value::Mapping(hosts));
    if let Some(vars) = spec.map(|s| &s.vars).filter(|v| !v.is_empty()) {
        let vars: Mapping = vars
            .iter()
            .map(|(k, v)| (k.clone().into(), v.clone().into()))
            .collect();
        all.insert("vars".into(), Value::Mapping(vars));
    }
    if !groups.is_empty() {
        let children: Mapping = groups
            .into_iter()
            .map(|(g, members)| {
                let mut m = Mapping::new();
                m.insert("hosts".into(), Value::Mapping(members));
                (g.into(), Value::Mapping(m))
            })
            .collect();
        all.insert("children".into(), Value::Mapping(children));
    }
    let mut doc = Mapping::new();
    doc.insert("all".into(), Value::Mapping(all));
    serde_yaml::to_string(&doc).expect("inventory serializes")
}

/// Ansible group names are identifiers: other characters become `_`.
fn group_name(value: &str) -> String {
    let mut g: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if g.starts_with(|c: char| c.is_ascii_digit()) || g.is_empty() {
        g.insert(0, '_');
    }
    g
}
