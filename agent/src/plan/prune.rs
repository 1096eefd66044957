//! Pruning: owned VMs that are no longer declared, deleted (or stopped and tagged) only as
//! the policy allows, never when protected, and never more than `maxDeleteShare` % of
//! the owned guests in one pass.

use super::actual::ActualVm;
use super::compare::Change;
use super::marker::{self, Marker};
use super::policy::{Policy, ORPHAN_TAG};
use super::vm::{Action, Finding, Kept};
use std::collections::{BTreeMap, BTreeSet};

/// The prune steps per VM name for the owned VMs not in `matched` (the declared ones);
/// what is kept is reported in `findings`, each with why.
pub fn prune(
    actual: &[ActualVm],
    matched: &BTreeSet<u32>,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) -> BTreeMap<String, Vec<Action>> {
    let mut deletes = BTreeMap::new();
    let mut kept = Vec::new();
    let owned: Vec<&ActualVm> = actual.iter().filter(|a| a.owned() && !a.template).collect();
    for a in owned.iter().filter(|a| !matched.contains(&a.vmid)) {
        if let Some(lock) = a.lock() {
            findings.push(Finding::Locked {
                name: a.name.clone(),
                vmid: a.vmid,
                lock: lock.to_string(),
            });
            continue;
        }
        match prune_steps(a, policy) {
            Ok(steps) => {
                deletes.insert(a.name.clone(), (a.vmid, steps));
            }
            Err(why) => kept.push((a.vmid, a.name.clone(), why)),
        }
    }
    // An emptied or mis-merged repository must not wipe the cluster: past the share,
    // the pass prunes nothing (the rest of the plan is applied).
    let share = usize::from(policy.max_delete_share);
    if deletes.len() * 100 > share * owned.len() {
        findings.push(Finding::PruneRefused {
            would_delete: deletes.len(),
            owned: owned.len(),
            max_share: policy.max_delete_share,
        });
        for (name, (vmid, _)) in std::mem::take(&mut deletes) {
            kept.push((vmid, name, Kept::Guard));
        }
    }
    kept.sort();
    for (vmid, name, kept) in kept {
        findings.push(Finding::Orphan { vmid, name, kept });
    }
    deletes.into_iter().map(|(n, (_, s))| (n, s)).collect()
}

/// How one owned VM that is no longer declared is pruned, or why it is kept.
fn prune_steps(a: &ActualVm, policy: &Policy) -> Result<Vec<Action>, Kept> {
    let description = a.config.get("description").map_or("", String::as_str);
    let recorded = Marker::parse(description);
    if a.protected() {
        return Err(Kept::Protected);
    }
    if policy.never_prune
        || !recorded
            .as_ref()
            .and_then(|m| m.prune)
            .unwrap_or(policy.prune)
    {
        return Err(Kept::PruneOff);
    }
    let retired = a.tags.contains(ORPHAN_TAG);
    if retired && !policy.prune_disks {
        return Err(Kept::Retired);
    }
    let mut steps = Vec::new();
    if a.running {
        steps.push(Action::Stop {
            vmid: a.vmid,
            node: a.node.clone(),
        });
    }
    if policy.prune_disks {
        steps.push(Action::Delete {
            vmid: a.vmid,
            node: a.node.clone(),
            name: a.name.clone(),
        });
    } else {
        let mut tags: BTreeSet<&str> = a.tags.iter().map(String::as_str).collect();
        tags.insert(ORPHAN_TAG);
        let tags: Vec<&str> = tags.into_iter().collect();
        let record = Marker {
            applied: None,
            ..recorded.unwrap_or_default()
        };
        steps.push(Action::Retire {
            vmid: a.vmid,
            node: a.node.clone(),
            changes: vec![
                Change {
                    key: "tags".into(),
                    from: a.config.get("tags").cloned(),
                    to: tags.join(";"),
                },
                Change {
                    key: "description".into(),
                    from: Some(description.to_string()),
                    to: marker::compose(&marker::user_text(description), &record),
                },
            ],
            digest: a.digest.clone(),
        });
    }
    Ok(steps)
}
