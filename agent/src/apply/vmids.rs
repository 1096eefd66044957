//! vmids for creates that declare none, allocated before anything runs.

use crate::plan::{Action, Plan};
use pve_gitops_schema::ids::VMID_MIN;
use std::collections::BTreeSet;

/// Give every create without a vmid a free one, before anything runs: parallel creates
/// asking `/cluster/nextid` would all get the same answer. Free means not used in the
/// cluster and not declared by another create of this plan.
pub fn allocate_vmids(plan: &mut Plan, used: &BTreeSet<u32>) {
    let mut taken: BTreeSet<u32> = used.clone();
    taken.extend(plan.actions().filter_map(|a| match a {
        Action::Create { vmid: Some(v), .. } => Some(*v),
        _ => None,
    }));
    let mut next = VMID_MIN;
    for wave in &mut plan.waves {
        for action in wave.values_mut().flatten() {
            if let Action::Create {
                vmid: vmid @ None, ..
            } = action
            {
                while taken.contains(&next) {
                    next += 1;
                }
                *vmid = Some(next);
                taken.insert(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::pveconfig::DesiredConfig;
    use std::collections::BTreeMap;

    fn create(name: &str, vmid: Option<u32>) -> Vec<Action> {
        vec![Action::Create {
            disks: Vec::new(),
            name: name.into(),
            vmid,
            node: "pve1".into(),
            clone: None,
            config: DesiredConfig::new(),
            start: false,
            record: String::new(),
        }]
    }

    /// Parallel creates must not race for one `/cluster/nextid`: each gets its own free id,
    /// skipping ids in use and ids other creates declare.
    #[test]
    fn allocation_skips_used_and_declared_vmids() {
        let mut plan = Plan::default();
        plan.waves.push(BTreeMap::from([
            ("a".to_string(), create("a", None)),
            ("b".to_string(), create("b", Some(102))),
            ("c".to_string(), create("c", None)),
        ]));
        plan.waves
            .push(BTreeMap::from([("d".to_string(), create("d", None))]));
        allocate_vmids(&mut plan, &BTreeSet::from([100, 103]));
        let ids: Vec<Option<u32>> = plan
            .actions()
            .map(|a| match a {
                Action::Create { vmid, .. } => *vmid,
                _ => None,
            })
            .collect();
        assert_eq!(ids, [Some(101), Some(102), Some(104), Some(105)]);
    }
}
