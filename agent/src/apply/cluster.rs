//! The cluster objects around the VMs: SDN, pools and firewalls, in the order the VMs need
//! them.
//!
//! Before the VMs: SDN zones, vnets and subnets with their one apply (VMs attach to vnets),
//! the cluster firewall (groups, IP sets and aliases that guest rules name), and pools.
//! After the VMs: pool membership and each guest's firewall, which need the guests to
//! exist. A VM whose vnet is not ready (its zone, itself or a subnet failed, or the SDN
//! apply did) is skipped, with the reason, and so are the VMs that depend on it.

use super::firewall::Digests;
use super::{ApplyOptions, Report};
use crate::plan::actual::ActualVm;
use crate::plan::firewall::{plan_cluster_fw, FwStep};
use crate::plan::pool::{plan_members, plan_pools, ActualPool, PoolStep, PoolWants};
use crate::plan::sdn::{plan_sdn, SdnPlan};
use crate::plan::{Action, Plan, Policy};
use crate::pve::firewall::FwScope;
use crate::pve::{PveClient, PveError};
use pve_gitops_schema::desired::Named;
use pve_gitops_schema::manifest::firewall::FirewallSpec;
use pve_gitops_schema::manifest::Kind;
use pve_gitops_schema::DesiredState;
use std::collections::{BTreeMap, BTreeSet};

/// What a declared VM brings to the cluster objects' plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFacts {
    pub name: String,
    pub vmid: Option<u32>,
    pub node: String,
    pub bridges: BTreeSet<String>,
    /// The `VirtualMachineSet` it is a member of.
    pub set: Option<String>,
}

/// The cluster objects' part of a pass: observed and planned before its first write.
#[derive(Debug, Clone, Default)]
pub struct ClusterPlan {
    pub sdn: SdnPlan,
    pub pools: Vec<ActualPool>,
    pub pool_steps: Vec<PoolStep>,
    pub pool_wants: PoolWants,
    pub guests: Vec<GuestFacts>,
    /// Per cluster `Firewall` (report key), its writes.
    pub cluster_fw: Vec<(String, Vec<FwStep>)>,
    /// Digests of the cluster firewall's lists as observed.
    pub cluster_fw_digests: Digests,
    /// `Firewall`s of guests: read and planned after the VMs exist.
    pub guest_fw: Vec<Named<FirewallSpec>>,
}

impl ClusterPlan {
    /// Nothing to write before the VMs (membership and guest firewalls are planned after).
    pub fn is_empty(&self) -> bool {
        self.sdn.is_empty()
            && self.pool_steps.is_empty()
            && self.cluster_fw.iter().all(|(_, s)| s.is_empty())
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
    let (cluster_specs, guest_fw): (Vec<&Named<FirewallSpec>>, Vec<&Named<FirewallSpec>>) = desired
        .firewalls
        .iter()
        .partition(|f| f.spec.target.is_none());
    let mut cluster_fw_digests = Digests::new();
    let actual_fw =
        super::firewall::observe_cluster(client, &cluster_specs, &mut cluster_fw_digests).await?;
    let cluster_fw = cluster_specs
        .iter()
        .map(|f| {
            let (steps, ignored) = plan_cluster_fw(&f.spec, &actual_fw);
            if !ignored.is_empty() {
                tracing::warn!(firewall = %f.name, options = ?ignored, "options PVE has no place for on the cluster firewall are not set");
            }
            (format!("Firewall/{}", f.name), steps)
        })
        .collect();
    Ok(ClusterPlan {
        cluster_fw,
        cluster_fw_digests,
        guest_fw: guest_fw.into_iter().cloned().collect(),
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
                set: v.member_of.as_ref().map(|m| m.set.to_string()),
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
    let mut digests = cluster.cluster_fw_digests.clone();
    for (resource, steps) in &cluster.cluster_fw {
        let scope = FwScope::Cluster;
        super::firewall::execute(
            client,
            resource,
            &scope,
            steps,
            &mut digests,
            options,
            &mut report,
        )
        .await;
    }
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
    for fw in &cluster.guest_fw {
        guest_firewall(client, cluster, fw, &vmids, options, report).await;
    }
}

/// One guest `Firewall` on every guest it targets that exists and did not fail.
async fn guest_firewall(
    client: &PveClient,
    cluster: &ClusterPlan,
    fw: &Named<FirewallSpec>,
    vmids: &BTreeMap<String, u32>,
    options: &ApplyOptions,
    report: &mut Report,
) {
    let resource = format!("Firewall/{}", fw.name);
    let Some(target) = &fw.spec.target else {
        return;
    };
    let guests: Vec<&GuestFacts> = cluster
        .guests
        .iter()
        .filter(|g| match target.kind {
            Kind::VirtualMachine => g.name == target.name.as_str(),
            Kind::VirtualMachineSet => g.set.as_deref() == Some(target.name.as_str()),
            _ => false,
        })
        .collect();
    if guests.is_empty() {
        report.skipped.insert(
            resource,
            format!("{target}: only VM firewalls are applied for now"),
        );
        return;
    }
    for g in guests {
        let not_ready = report.failed.contains_key(&g.name) || report.skipped.contains_key(&g.name);
        let Some(&vmid) = vmids.get(&g.name).filter(|_| !not_ready) else {
            report
                .skipped
                .insert(resource.clone(), format!("VM {} is not ready", g.name));
            continue;
        };
        let scope = FwScope::Vm {
            node: g.node.clone(),
            vmid,
        };
        super::firewall::reconcile_guest(client, fw, scope, options, report).await;
        if report.failed.contains_key(&resource) {
            return;
        }
    }
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

/// The cluster objects' part of a plan as an operator reads it: one line per change or
/// finding (guest firewalls and membership are planned when the VMs exist).
pub fn describe(cluster: &ClusterPlan) -> String {
    use crate::plan::firewall::RuleStep;
    use crate::plan::sdn::{SdnFinding, SdnOp};
    let mut out = Vec::new();
    for s in &cluster.sdn.steps {
        out.push(match &s.op {
            SdnOp::Create(_) => format!("+ {}: create {}", s.resource, s.id),
            SdnOp::Update { set, delete } => {
                let keys: Vec<&str> = set
                    .keys()
                    .map(String::as_str)
                    .chain(delete.iter().map(String::as_str))
                    .collect();
                format!("~ {}: {}", s.resource, keys.join(", "))
            }
            SdnOp::Delete => format!("- {}: delete {}", s.resource, s.id),
        });
    }
    for r in &cluster.sdn.pending {
        out.push(format!("~ {r}: staged, not applied yet"));
    }
    if cluster.sdn.apply {
        out.push("~ SDN: apply (PUT /cluster/sdn)".into());
    }
    for f in &cluster.sdn.findings {
        out.push(match f {
            SdnFinding::ZoneTypeChange {
                resource,
                actual,
                desired,
            } => format!("! {resource}: is {actual}, declared {desired}: a zone's type cannot change in place"),
            SdnFinding::Orphan { resource } => {
                format!("! {resource}: not declared; kept (pruning is off)")
            }
        });
    }
    for (resource, steps) in &cluster.cluster_fw {
        let writes: usize = steps
            .iter()
            .map(|s| match s {
                FwStep::Rules { steps, .. } => steps
                    .iter()
                    .filter(|r| !matches!(r, RuleStep::Move { .. }))
                    .count(),
                _ => 1,
            })
            .sum();
        if writes > 0 {
            out.push(format!("~ {resource}: {writes} change(s)"));
        }
    }
    for s in &cluster.pool_steps {
        out.push(match s {
            PoolStep::Create { pool, .. } => format!("+ Pool/{pool}: create"),
            PoolStep::Comment { pool, comment } => format!("~ Pool/{pool}: comment {comment:?}"),
            PoolStep::Join { pool, vmids } | PoolStep::Leave { pool, vmids } => {
                format!("~ Pool/{pool}: members {vmids:?}")
            }
        });
    }
    out.into_iter().map(|l| l + "\n").collect()
}
