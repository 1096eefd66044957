//! SDN against the API: read what PVE has staged and running, stage the planned writes,
//! then one `PUT /cluster/sdn` and a wait for its task.
//!
//! Results go into the pass's [`Report`] under `SdnZone/<name>`, `SdnVnet/<name>` and
//! `SdnSubnet/<name>`. A resource whose parent failed is skipped; when the apply itself
//! fails, every resource it was to complete is failed with the apply's error.

use super::{ApplyOptions, Report};
use crate::plan::sdn::{
    dhcp_range, ActualSdn, ActualSdnObject, SdnOp, SdnPlan, SdnStep, SdnTarget, SdnValues,
};
use crate::pve::sdn::{SdnCollection, SdnPendingEntry};
use crate::pve::{Params, PveClient, PveError};
use pve_gitops_schema::DesiredState;
use serde_json::Value;
use std::collections::BTreeSet;

/// Read the zones and vnets, and the subnets of the declared vnets PVE has. Nothing is
/// read when the manifests declare no SDN object.
pub async fn observe(client: &PveClient, desired: &DesiredState) -> Result<ActualSdn, PveError> {
    let mut out = ActualSdn::default();
    if desired.sdn_zones.is_empty()
        && desired.sdn_vnets.is_empty()
        && desired.sdn_subnets.is_empty()
    {
        return Ok(out);
    }
    let zones = SdnCollection::Zones;
    out.zones = read(client, &zones, None).await?;
    let vnets = SdnCollection::Vnets;
    out.vnets = read(client, &vnets, Some("zone")).await?;
    for v in &desired.sdn_vnets {
        let staged = out
            .vnets
            .iter()
            .any(|a| a.id == v.name.as_str() && a.config.is_some());
        if staged {
            let subnets = SdnCollection::Subnets {
                vnet: v.name.to_string(),
            };
            out.subnets
                .extend(read(client, &subnets, Some("vnet")).await?);
        }
    }
    Ok(out)
}

async fn read(
    client: &PveClient,
    collection: &SdnCollection,
    parent_key: Option<&str>,
) -> Result<Vec<ActualSdnObject>, PveError> {
    Ok(client
        .sdn_pending(collection)
        .await?
        .into_iter()
        .filter_map(|e| staged(collection, parent_key, e))
        .collect())
}

/// An entry of a `pending=1` read as the staged object: running values with the pending
/// ones over them; a `deleted` object has no config.
pub fn staged(
    collection: &SdnCollection,
    parent_key: Option<&str>,
    e: SdnPendingEntry,
) -> Option<ActualSdnObject> {
    let id = e.id(collection)?.to_string();
    let mut config = SdnValues::new();
    for (k, v) in &e.values {
        if k == collection.id_key() || k == "digest" {
            continue;
        }
        if let Some(text) = value_text(k, v) {
            config.insert(k.clone(), text);
        }
    }
    let running_parent = parent_key.and_then(|p| config.get(p).cloned());
    for (k, v) in e.pending.iter().flatten() {
        if v.as_str() == Some("deleted") {
            config.remove(k);
        } else if let Some(text) = value_text(k, v) {
            config.insert(k.clone(), text);
        }
    }
    let deleted = e.state.as_deref() == Some("deleted");
    let parent = parent_key
        .and_then(|p| config.get(p).cloned())
        .or(running_parent);
    Some(ActualSdnObject {
        id,
        config: (!deleted).then_some(config),
        parent,
        pending: e.state.is_some(),
    })
}

/// A value as the planner compares it (see [`SdnValues`]).
fn value_text(key: &str, v: &Value) -> Option<String> {
    let sorted = |items: Vec<String>, sep: &str| {
        let mut items = items;
        items.sort();
        items.join(sep)
    };
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if key == "dhcp-range" => Some(range_text(s)),
        Value::String(s) if matches!(key, "nodes" | "peers" | "exitnodes") => Some(sorted(
            s.split([',', ';', ' '])
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
            ",",
        )),
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if key == "dhcp-range" => Some(sorted(
            items
                .iter()
                .filter_map(|i| match i {
                    Value::Object(o) => Some(dhcp_range(
                        o.get("start-address").and_then(Value::as_str)?,
                        o.get("end-address").and_then(Value::as_str)?,
                    )),
                    Value::String(s) => Some(range_text(s)),
                    _ => None,
                })
                .collect(),
            ";",
        )),
        Value::Array(items) => Some(sorted(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect(),
            ",",
        )),
        Value::Object(_) => None,
    }
}

/// `start-address=a,end-address=b` in a canonical order.
fn range_text(s: &str) -> String {
    let get = |key: &str| {
        s.split(',')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    dhcp_range(&get("start-address"), &get("end-address"))
}

fn collection(target: &SdnTarget) -> SdnCollection {
    match target {
        SdnTarget::Zone => SdnCollection::Zones,
        SdnTarget::Vnet => SdnCollection::Vnets,
        SdnTarget::Subnet { vnet } => SdnCollection::Subnets { vnet: vnet.clone() },
    }
}

/// Options as request parameters (`dhcp-range` repeated once per range).
fn params(values: &SdnValues) -> Params {
    let mut p = Params::new();
    for (k, v) in values {
        if k == "dhcp-range" {
            p.push_list(k, v.split(';').filter(|r| !r.is_empty()));
        } else {
            p.push(k.as_str(), v.as_str());
        }
    }
    p
}

/// One staged write; returns what the report says was done.
async fn run_step(client: &PveClient, step: &SdnStep) -> Result<String, PveError> {
    let c = collection(&step.target);
    match &step.op {
        SdnOp::Create(values) => {
            let mut p = params(values);
            if !values.contains_key(c.id_key()) {
                p.push(c.id_key(), step.id.as_str());
            }
            client.sdn_create(&c, &p).await?;
            Ok(format!("create {}", step.id))
        }
        SdnOp::Update { set, delete } => {
            let mut p = params(set);
            if !delete.is_empty() {
                p.push("delete", delete.join(","));
            }
            client.sdn_update(&c, &step.id, &p).await?;
            let keys: Vec<&str> = set
                .keys()
                .map(String::as_str)
                .chain(delete.iter().map(String::as_str))
                .collect();
            Ok(format!("update {}", keys.join(", ")))
        }
        SdnOp::Delete => {
            client.sdn_delete(&c, &step.id).await?;
            Ok(format!("delete {}", step.id))
        }
    }
}

/// Stage the plan's writes, then apply once. Returns the declared vnets that are not
/// ready (a resource they need failed or was skipped): VMs attached to them wait.
pub async fn execute(
    client: &PveClient,
    plan: &SdnPlan,
    options: &ApplyOptions,
    report: &mut Report,
) -> BTreeSet<String> {
    let mut staged_ok = BTreeSet::new();
    for step in &plan.steps {
        let blocked = step
            .after
            .as_ref()
            .filter(|a| report.failed.contains_key(*a) || report.skipped.contains_key(*a));
        if let Some(a) = blocked {
            report
                .skipped
                .insert(step.resource.clone(), format!("depends on {a} (not ready)"));
            continue;
        }
        if !super::may_write(options) {
            report.skipped.insert(
                step.resource.clone(),
                super::ApplyError::NotLeader.to_string(),
            );
            continue;
        }
        match run_step(client, step).await {
            Ok(done) => {
                report
                    .done
                    .entry(step.resource.clone())
                    .or_default()
                    .push(done);
                staged_ok.insert(step.resource.clone());
            }
            Err(e) => {
                report.failed.insert(step.resource.clone(), e.to_string());
            }
        }
    }
    let to_apply: BTreeSet<String> = staged_ok.into_iter().chain(plan.pending.clone()).collect();
    if plan.apply && !to_apply.is_empty() && super::may_write(options) {
        let outcome = match client.sdn_apply().await {
            Ok(upid) => client
                .wait_task(&upid, options.task_timeout)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        for r in &to_apply {
            match &outcome {
                Ok(()) => report
                    .done
                    .entry(r.clone())
                    .or_default()
                    .push("applied".into()),
                Err(e) => {
                    report
                        .failed
                        .insert(r.clone(), format!("staged, but the SDN apply failed: {e}"));
                }
            }
        }
    }
    plan.vnet_needs
        .iter()
        .filter(|(_, needs)| {
            needs
                .iter()
                .any(|r| report.failed.contains_key(r) || report.skipped.contains_key(r))
        })
        .map(|(vnet, _)| vnet.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> SdnPendingEntry {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn pending_views_become_staged_objects() {
        let subnets = SdnCollection::Subnets {
            vnet: "ecomanet".into(),
        };
        // A new subnet: only type and vnet at the top, the values in `pending` (raw
        // dhcp-range strings, as pve-network leaves them there).
        let new = staged(
            &subnets,
            Some("vnet"),
            entry(
                r#"{"state":"new","vnet":"ecomanet","type":"subnet","subnet":"ecoma-10.41.1.0-24",
                    "pending":{"gateway":"10.41.1.1","snat":1,
                               "dhcp-range":["start-address=10.41.1.100,end-address=10.41.1.200"]}}"#,
            ),
        )
        .unwrap();
        let c = new.config.as_ref().unwrap();
        assert_eq!(new.id, "ecoma-10.41.1.0-24");
        assert_eq!(c["snat"], "1");
        assert_eq!(
            c["dhcp-range"],
            "start-address=10.41.1.100,end-address=10.41.1.200"
        );
        assert!(new.pending);
        assert_eq!(new.parent.as_deref(), Some("ecomanet"));
        // Applied, then changed: running values with the change and a deletion over them.
        let changed = staged(
            &subnets,
            Some("vnet"),
            entry(
                r#"{"state":"changed","vnet":"ecomanet","subnet":"ecoma-10.41.1.0-24","gateway":"10.41.1.1",
                    "snat":1,"dhcp-range":[{"start-address":"10.41.1.100","end-address":"10.41.1.200"}],
                    "pending":{"snat":"deleted","gateway":"10.41.1.254"}}"#,
            ),
        )
        .unwrap();
        let c = changed.config.as_ref().unwrap();
        assert_eq!(c["gateway"], "10.41.1.254");
        assert!(!c.contains_key("snat"));
        assert_eq!(
            c["dhcp-range"],
            "start-address=10.41.1.100,end-address=10.41.1.200"
        );
        let deleted = staged(
            &SdnCollection::Zones,
            None,
            entry(r#"{"state":"deleted","zone":"old","type":"simple"}"#),
        )
        .unwrap();
        assert!(deleted.config.is_none() && deleted.pending);
        let same = staged(
            &SdnCollection::Zones,
            None,
            entry(r#"{"zone":"z","type":"simple","nodes":"pve2,pve1"}"#),
        )
        .unwrap();
        assert!(!same.pending);
        assert_eq!(same.config.unwrap()["nodes"], "pve1,pve2");
    }
}
