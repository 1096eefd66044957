//! Pre-flight: before the first write of an apply pass, check that the cluster can take
//! what the plan adds — the templates creates clone from exist, the target nodes are
//! online and have room (memory, vCPUs, storage), and no static IP the plan declares is
//! configured on another guest. A failed pre-flight applies nothing and says exactly what
//! is missing.
//!
//! * [`gather`] reads the facts with as few calls as possible: none for an empty plan
//!   (a drift check of an unchanged cluster costs nothing extra), one unfiltered
//!   `/cluster/resources` (nodes, storages and guests at once), and the configs of the
//!   other guests only when the plan gives some VM an address it does not have yet.
//! * [`check`] is the pure rule set over the plan and those facts, tested table-driven.

mod check;
mod facts;
mod problem;
#[cfg(test)]
mod tests;

pub use check::{check, declares_new_ips};
pub use facts::{
    addresses, config_ips, is_ip_key, ClusterFacts, GuestFacts, GuestKind, NodeFacts, StorageFacts,
};
pub use problem::{human, PreflightProblem};

use crate::observe::Observed;
use crate::plan::Plan;
use crate::pve::{PveClient, PveError};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The facts [`check`] needs for `plan`. `observed` is the observation the plan was made
/// from: its template names, and the configs it already read (not read again).
pub async fn gather(
    client: &PveClient,
    plan: &Plan,
    observed: &Observed,
) -> Result<ClusterFacts, PveError> {
    if plan.is_empty() {
        return Ok(ClusterFacts::default());
    }
    let mut facts = ClusterFacts::from_resources(&client.cluster_resources(None).await?);
    facts.template_names = observed.templates.by_name.clone();
    if declares_new_ips(plan) {
        read_ips(client, &mut facts, observed).await?;
    }
    Ok(facts)
}

/// Fill in the static addresses of every guest that is not a template. Configs observe
/// already read are reused; the others are read in parallel (the client bounds how many
/// requests are in flight). Guests on offline nodes cannot be read and are left out; a
/// guest deleted since the listing holds no address.
async fn read_ips(
    client: &PveClient,
    facts: &mut ClusterFacts,
    observed: &Observed,
) -> Result<(), PveError> {
    let known: BTreeMap<u32, &BTreeMap<String, String>> =
        observed.vms.iter().map(|v| (v.vmid, &v.config)).collect();
    let mut reads = tokio::task::JoinSet::new();
    for (vmid, g) in facts.guests.iter_mut().filter(|(_, g)| !g.template) {
        if let Some(config) = known.get(vmid) {
            g.ips = config_ips(g.kind, config.iter());
            continue;
        }
        if !facts.nodes.get(&g.node).is_some_and(|n| n.online) {
            continue;
        }
        let (client, vmid, kind, node) = (client.clone(), *vmid, g.kind, g.node.clone());
        reads.spawn(async move {
            let config = match kind {
                GuestKind::Vm => client.get_vm_config(&node, vmid).await,
                GuestKind::Container => client.get_ct_config(&node, vmid).await,
            };
            (vmid, kind, config)
        });
    }
    let mut found: BTreeMap<u32, Vec<(String, IpAddr)>> = BTreeMap::new();
    while let Some(joined) = reads.join_next().await {
        let (vmid, kind, config) = joined.expect("config read panicked");
        let config = match config {
            Ok(c) => c,
            Err(PveError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let text: BTreeMap<String, String> = config
            .values()
            .keys()
            .filter(|k| is_ip_key(kind, k))
            .filter_map(|k| config.text(k).map(|v| (k.clone(), v)))
            .collect();
        found.insert(vmid, config_ips(kind, text.iter()));
    }
    for (vmid, ips) in found {
        if let Some(g) = facts.guests.get_mut(&vmid) {
            g.ips = ips;
        }
    }
    Ok(())
}
