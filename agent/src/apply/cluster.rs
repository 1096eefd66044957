//! The cluster objects around the VMs: SDN, pools and firewalls, in the order the VMs need
//! them.
//!
//! Before the VMs: SDN zones, vnets and subnets with their one apply (VMs attach to vnets),
//! the cluster firewall (groups, IP sets and aliases that guest rules name), and pools.
//! After the VMs: pool membership and each guest's firewall, which need the guests to
//! exist. A VM whose vnet is not ready (its zone, itself or a subnet failed, or the SDN
//! apply did) is skipped, with the reason, and so are the VMs that depend on it.

use super::{ApplyOptions, Report};
use crate::plan::actual::ActualVm;
use crate::plan::pool::{plan_members, plan_pools, ActualPool, PoolStep, PoolWants};
use crate::plan::sdn::{plan_sdn, SdnPlan};
use crate::plan::{Action, Plan, Policy};
use crate::pve::{PveClient, PveError};
use pve_gitops_schema::DesiredState;
use std::collections::{BTreeMap, BTreeSet};

/// What a declared VM brings to the cluster objects' plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFacts {
    pub name: String,
    pub vmid: Option<u32>,
    pub node: String,
    pub bridges: BTreeSet<String>,
}

/// The cluster objects' part of a pass: observed and planned before its first write.
#[derive(Debug, Clone, Default)]
pub struct ClusterPlan {
    pub sdn: SdnPlan,
    pub pools: Vec<ActualPool>,
    pub pool_steps: Vec<PoolStep>,
    pub pool_wants: PoolWants,
    pub guests: Vec<GuestFacts>,
}

impl ClusterPlan {
    /// Nothing to write before the VMs (membership and guest firewalls are planned after).
    pub fn is_empty(&self) -> bool {
        self.sdn.is_empty() && self.pool_steps.is_empty()
    }
}

/// Observe and plan the cluster objects `desired` declares.
pub async fn prepare(
    client: &PveClient,
    desired: &DesiredState,
    policy: &Policy,
) -> Result<ClusterPlan, PveError> {
    let sdn = super::sdn::observe(client, desired).await?;
    let pools = super::pool::observe(client, desired).await?;
    Ok(ClusterPlan {
        sdn: plan_sdn(desired, &sdn, policy.prune),
        pool_steps: plan_pools(desired, &pools),
        pools,
        pool_wants: PoolWants::of(desired),
        guests: desired
            .vms
            .iter()
            .map(|v| GuestFacts {
                name: v.name.to_string(),
                vmid: v.vmid.map(|id| id.get()),
                node: v.node.to_string(),
                bridges: v
                    .spec
                    .network
                    .iter()
                    .map(|n| n.bridge.to_string())
                    .collect(),
            })
            .collect(),
    })
}

/// Everything that must exist before the VMs. Returns the report so far, with the VMs of
/// `plan` whose prerequisites are not ready listed as skipped.
pub async fn before_vms(
    client: &PveClient,
    cluster: &ClusterPlan,
    plan: &Plan,
    options: &ApplyOptions,
) -> Report {
    let mut report = Report::default();
    let not_ready = super::sdn::execute(client, &cluster.sdn, options, &mut report).await;
    super::pool::execute(client, &cluster.pool_steps, options, &mut report).await;
    let planned: BTreeSet<&str> = plan
        .waves
        .iter()
        .flat_map(|w| w.keys().map(String::as_str))
        .collect();
    for g in &cluster.guests {
        let Some(vnet) = g.bridges.iter().find(|b| not_ready.contains(*b)) else {
            continue;
        };
        if planned.contains(g.name.as_str()) {
            report.skipped.insert(
                g.name.clone(),
                format!("needs SdnVnet/{vnet}, which is not ready"),
            );
        }
    }
    report
}

/// What needs the VMs to exist: pool membership (and guest firewalls).
pub async fn after_vms(
    client: &PveClient,
    cluster: &ClusterPlan,
    plan: &Plan,
    observed: &[ActualVm],
    options: &ApplyOptions,
    report: &mut Report,
) {
    let vmids = existing_vmids(cluster, plan, observed, report);
    let members = plan_members(&cluster.pool_wants, &cluster.pools, &vmids);
    super::pool::execute(client, &members, options, report).await;
}

/// Declared VM name → vmid, for the VMs that exist now: observed before the pass, or
/// created by it without failing.
fn existing_vmids(
    cluster: &ClusterPlan,
    plan: &Plan,
    observed: &[ActualVm],
    report: &Report,
) -> BTreeMap<String, u32> {
    let created: BTreeMap<&str, u32> = plan
        .waves
        .iter()
        .flat_map(|w| w.iter())
        .filter_map(|(name, actions)| {
            actions.iter().find_map(|a| match a {
                Action::Create { vmid: Some(v), .. } => Some((name.as_str(), *v)),
                _ => None,
            })
        })
        .collect();
    cluster
        .guests
        .iter()
        .filter_map(|g| {
            let seen = observed
                .iter()
                .find(|a| match g.vmid {
                    Some(id) => a.vmid == id,
                    None => a.name == g.name,
                })
                .map(|a| a.vmid);
            let made = created.get(g.name.as_str()).copied().filter(|_| {
                report
                    .done
                    .get(&g.name)
                    .is_some_and(|d| d.iter().any(|s| s.starts_with("create")))
            });
            seen.or(made).map(|v| (g.name.clone(), v))
        })
        .collect()
}
