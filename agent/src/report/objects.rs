//! Status rows of the cluster objects that are not guests (SDN, firewalls, pools), from
//! the declarations and the pass's report (keys `Kind/name`).

use super::status::{Counts, ResourceStatus, Sync};
use crate::apply::Report;
use pve_gitops_schema::desired::DesiredState;
use std::collections::{BTreeMap, BTreeSet};

/// The report keys of the objects `desired` declares.
fn declared(desired: &DesiredState) -> BTreeSet<String> {
    let names = |kind: &str, it: &mut dyn Iterator<Item = String>| {
        it.map(|n| format!("{kind}/{n}")).collect::<Vec<_>>()
    };
    let mut out = BTreeSet::new();
    out.extend(names(
        "SdnZone",
        &mut desired.sdn_zones.iter().map(|o| o.name.to_string()),
    ));
    out.extend(names(
        "SdnVnet",
        &mut desired.sdn_vnets.iter().map(|o| o.name.to_string()),
    ));
    out.extend(names(
        "SdnSubnet",
        &mut desired.sdn_subnets.iter().map(|o| o.name.to_string()),
    ));
    out.extend(names(
        "Firewall",
        &mut desired.firewalls.iter().map(|o| o.name.to_string()),
    ));
    out.extend(names(
        "Pool",
        &mut desired.pools.iter().map(|o| o.name.to_string()),
    ));
    out
}

/// Whether a report key names one of these objects (not a guest).
fn is_object(key: &str) -> bool {
    ["SdnZone/", "SdnVnet/", "SdnSubnet/", "Firewall/", "Pool/"]
        .iter()
        .any(|p| key.starts_with(p))
}

/// One row per declared object, and per undeclared one the pass deleted.
pub fn resources(desired: &DesiredState, report: &Report) -> Vec<ResourceStatus> {
    let mut keys = declared(desired);
    keys.extend(report.done.keys().filter(|k| is_object(k)).cloned());
    keys.into_iter()
        .filter_map(|key| {
            let (kind, name) = key.split_once('/')?;
            let deleted = report
                .done
                .get(&key)
                .is_some_and(|d| d.iter().any(|s| s.starts_with("delete ")))
                && !declared(desired).contains(&key);
            let (sync, message) = if let Some(e) = report.failed.get(&key) {
                (Sync::Failed, Some(e.clone()))
            } else if let Some(why) = report.skipped.get(&key) {
                (Sync::Skipped, Some(why.clone()))
            } else if report.done.contains_key(&key) {
                (Sync::Changed, None)
            } else {
                (Sync::InSync, None)
            };
            Some(ResourceStatus {
                kind: kind.to_string(),
                name: name.to_string(),
                vmid: None,
                node: None,
                ip: None,
                state: if deleted { "deleted" } else { "present" }.into(),
                sync,
                message,
                labels: BTreeMap::new(),
            })
        })
        .collect()
}

/// Add the objects this pass changed to `counts` (failures are already counted).
pub fn count(report: &Report, counts: &mut Counts) {
    for (key, done) in &report.done {
        if !is_object(key) || report.failed.contains_key(key) {
            continue;
        }
        if done.iter().any(|d| d.starts_with("create")) {
            counts.created += 1;
        } else if done
            .iter()
            .all(|d| d.starts_with("delete ") || d == "applied")
        {
            counts.deleted += 1;
        } else {
            counts.updated += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pve_gitops_schema::{load, Repository};

    #[test]
    fn declared_objects_get_rows_with_their_outcome() {
        let mut repo = Repository::new();
        repo.add(
            "m.yaml",
            "apiVersion: pve-gitops/v1alpha1
kind: Pool
metadata: { name: web }
spec: {}
---
apiVersion: pve-gitops/v1alpha1
kind: SdnZone
metadata: { name: z }
spec: { type: simple }
",
        );
        let desired = load(&repo).unwrap_or_else(|e| panic!("{e}"));
        let mut report = Report::default();
        report.done.insert(
            "SdnZone/z".into(),
            vec!["create z".into(), "applied".into()],
        );
        report.done.insert(
            "SdnVnet/old".into(),
            vec!["delete old".into(), "applied".into()],
        );
        report.failed.insert("Pool/web".into(), "no quorum".into());
        report.done.insert("vm1".into(), vec!["create 100".into()]);
        let rows = resources(&desired, &report);
        let view: Vec<(&str, &str, &str, Sync)> = rows
            .iter()
            .map(|r| (r.kind.as_str(), r.name.as_str(), r.state.as_str(), r.sync))
            .collect();
        assert_eq!(
            view,
            [
                ("Pool", "web", "present", Sync::Failed),
                ("SdnVnet", "old", "deleted", Sync::Changed),
                ("SdnZone", "z", "present", Sync::Changed),
            ]
        );
        let mut c = Counts::default();
        count(&report, &mut c);
        assert_eq!((c.created, c.deleted, c.updated), (1, 1, 0));
    }
}
