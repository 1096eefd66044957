//! Planning resource pools: declared pools exist with their comment (before the VMs), and
//! declared VMs are members of the pool they name (after the VMs exist).
//!
//! Membership is managed only for guests the manifests declare: a declared VM joins the
//! pool it names (moved out of another pool if needed) and leaves a declared pool it no
//! longer names. Guests the manifests do not declare are never added or removed, and the
//! agent never deletes a pool (a pool no longer declared is left with whatever is in it).

use pve_gitops_schema::desired::DesiredState;
use std::collections::{BTreeMap, BTreeSet};

/// A pool as PVE has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualPool {
    pub id: String,
    pub comment: Option<String>,
    /// Guest vmids in it.
    pub members: BTreeSet<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolStep {
    Create {
        pool: String,
        comment: Option<String>,
    },
    Comment {
        pool: String,
        comment: String,
    },
    /// Add guests (moving them from the pool they are in).
    Join {
        pool: String,
        vmids: Vec<u32>,
    },
    Leave {
        pool: String,
        vmids: Vec<u32>,
    },
}

impl PoolStep {
    pub fn pool(&self) -> &str {
        match self {
            PoolStep::Create { pool, .. }
            | PoolStep::Comment { pool, .. }
            | PoolStep::Join { pool, .. }
            | PoolStep::Leave { pool, .. } => pool,
        }
    }
}

/// Pools to create or update before the VMs.
pub fn plan_pools(desired: &DesiredState, actual: &[ActualPool]) -> Vec<PoolStep> {
    let mut out = Vec::new();
    for p in &desired.pools {
        let id = p.name.to_string();
        let comment = p.spec.comment.clone();
        match actual.iter().find(|a| a.id == id) {
            None => out.push(PoolStep::Create { pool: id, comment }),
            Some(a) => {
                if let Some(c) = comment.filter(|c| a.comment.as_ref() != Some(c)) {
                    out.push(PoolStep::Comment {
                        pool: id,
                        comment: c,
                    });
                }
            }
        }
    }
    out
}

/// What membership the manifests ask for: the declared pools, and the pool each declared
/// VM names (kept from the desired state so membership can be planned after the VMs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolWants {
    pub declared: BTreeSet<String>,
    /// VM name → the pool it names.
    pub members: BTreeMap<String, Option<String>>,
}

impl PoolWants {
    pub fn of(desired: &DesiredState) -> Self {
        PoolWants {
            declared: desired.pools.iter().map(|p| p.name.to_string()).collect(),
            members: desired
                .vms
                .iter()
                .map(|v| {
                    (
                        v.name.to_string(),
                        v.spec.pool.as_ref().map(|p| p.to_string()),
                    )
                })
                .collect(),
        }
    }
}

/// Membership changes once the VMs exist. `vmids` maps declared VM names to their vmids
/// (declared, allocated or observed); VMs without one (not created) are left out.
pub fn plan_members(
    wants: &PoolWants,
    actual: &[ActualPool],
    vmids: &BTreeMap<String, u32>,
) -> Vec<PoolStep> {
    let mut join: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut leave: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (name, want) in &wants.members {
        let Some(&vmid) = vmids.get(name) else {
            continue;
        };
        let want = want.as_deref();
        let now = actual.iter().find(|a| a.members.contains(&vmid));
        if let Some(pool) = want.filter(|w| now.is_none_or(|n| n.id != *w)) {
            join.entry(pool.to_string()).or_default().push(vmid);
        } else if let Some(n) = now.filter(|n| want.is_none() && wants.declared.contains(&n.id)) {
            leave.entry(n.id.clone()).or_default().push(vmid);
        }
    }
    let leaves = leave
        .into_iter()
        .map(|(pool, vmids)| PoolStep::Leave { pool, vmids });
    let joins = join
        .into_iter()
        .map(|(pool, vmids)| PoolStep::Join { pool, vmids });
    leaves.chain(joins).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pve_gitops_schema::{load, Repository};

    const POOLS: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
---
apiVersion: pve-gitops/v1alpha1
kind: Pool
metadata: { name: web }
spec: { comment: web servers }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: a }
spec: { vmid: 101, node: pve1, pool: web, clone: { template: 9000 } }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: b }
spec: { vmid: 102, node: pve1, clone: { template: 9000 } }
";

    fn desired() -> DesiredState {
        let mut repo = Repository::new();
        repo.add("m.yaml", POOLS);
        load(&repo).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pool(id: &str, comment: Option<&str>, members: &[u32]) -> ActualPool {
        ActualPool {
            id: id.into(),
            comment: comment.map(str::to_string),
            members: members.iter().copied().collect(),
        }
    }

    fn ids() -> BTreeMap<String, u32> {
        BTreeMap::from([("a".to_string(), 101), ("b".to_string(), 102)])
    }

    #[test]
    fn pools_are_created_and_commented() {
        let d = desired();
        assert_eq!(
            plan_pools(&d, &[]),
            [PoolStep::Create {
                pool: "web".into(),
                comment: Some("web servers".into())
            }]
        );
        assert_eq!(
            plan_pools(&d, &[pool("web", Some("old"), &[])]),
            [PoolStep::Comment {
                pool: "web".into(),
                comment: "web servers".into()
            }]
        );
        assert!(plan_pools(&d, &[pool("web", Some("web servers"), &[])]).is_empty());
    }

    #[test]
    fn membership_table() {
        let d = desired();
        let cases: &[(&str, Vec<ActualPool>, Vec<PoolStep>)] = &[
            (
                "a joins its pool",
                vec![pool("web", None, &[])],
                vec![PoolStep::Join {
                    pool: "web".into(),
                    vmids: vec![101],
                }],
            ),
            (
                "already a member: nothing",
                vec![pool("web", None, &[101, 7])],
                vec![],
            ),
            (
                "a is moved from another pool",
                vec![pool("web", None, &[]), pool("other", None, &[101])],
                vec![PoolStep::Join {
                    pool: "web".into(),
                    vmids: vec![101],
                }],
            ),
            (
                "b names no pool: it leaves the declared pool, a foreign guest stays",
                vec![pool("web", None, &[101, 102, 7])],
                vec![PoolStep::Leave {
                    pool: "web".into(),
                    vmids: vec![102],
                }],
            ),
            (
                "b in an undeclared pool is left there",
                vec![pool("web", None, &[101]), pool("theirs", None, &[102])],
                vec![],
            ),
        ];
        for (what, actual, want) in cases {
            assert_eq!(
                &plan_members(&PoolWants::of(&d), actual, &ids()),
                want,
                "{what}"
            );
        }
        // A VM not created (no vmid) is left out.
        assert!(plan_members(
            &PoolWants::of(&d),
            &[pool("web", None, &[])],
            &BTreeMap::new()
        )
        .is_empty());
    }
}
