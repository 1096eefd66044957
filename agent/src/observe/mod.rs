//! Observing the cluster: the actual state of the VMs the plan may touch, with as few API
//! calls as possible.
//!
//! One `GET /cluster/resources?type=vm` lists every guest with node, status, template flag
//! and tags. Only candidates — guests carrying the ownership tag, or whose vmid or name a
//! manifest declares — cost more: their config, and their pending changes when running.
//! Everything else in the cluster is never read.

use crate::apply::Templates;
use crate::plan::actual::ActualVm;
use crate::pve::{ClusterResource, PveClient, PveError, ResourceType};
use pve_gitops_schema::ids::OWNER_TAG;
use pve_gitops_schema::DesiredState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// What one observation found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The candidate VMs (templates excluded: they are sources, not targets).
    pub vms: Vec<ActualVm>,
    /// Where the cluster's templates are, for clones.
    pub templates: Templates,
    /// Every vmid in use in the cluster (guests and templates), to allocate new ones.
    pub used_vmids: BTreeSet<u32>,
    /// [`listing_fingerprint`] of the guest listing this observation started from.
    pub listing: u64,
}

/// A hash of what `/cluster/resources` says about the guests that a change would alter
/// (vmid, node, name, power state, tags, lock, sizes), leaving out what moves on its own
/// (CPU and memory use, uptime). Equal fingerprints: nothing visible in the listing changed.
pub fn listing_fingerprint(guests: &[ClusterResource]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    let mut rows: Vec<_> = guests
        .iter()
        .map(|r| {
            (
                r.vmid,
                &r.kind,
                &r.node,
                &r.name,
                &r.status,
                r.template,
                &r.tags,
                &r.lock,
                (r.maxmem, r.maxdisk, r.maxcpu.map(f64::to_bits)),
                &r.pool,
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows.hash(&mut h);
    h.finish()
}

/// Observe the candidate VMs and the templates.
pub async fn observe(client: &PveClient, desired: &DesiredState) -> Result<Observed, PveError> {
    let names: BTreeSet<&str> = desired.vms.iter().map(|v| v.name.as_str()).collect();
    let vmids: BTreeSet<u32> = desired
        .vms
        .iter()
        .filter_map(|v| v.vmid.map(|id| id.get()))
        .collect();
    let mut out = Observed::default();
    out.templates.by_name = desired
        .templates
        .iter()
        .map(|t| (t.name.to_string(), t.spec.vmid.get()))
        .collect();
    let listing = client.cluster_resources(Some(ResourceType::Vm)).await?;
    out.listing = listing_fingerprint(&listing);
    for r in listing {
        let (Some(vmid), Some(node)) = (r.vmid, r.node.clone()) else {
            continue;
        };
        out.used_vmids.insert(vmid as u32);
        if r.kind != "qemu" {
            continue;
        }
        if r.template {
            out.templates.nodes.insert(vmid as u32, node);
            continue;
        }
        let vmid = vmid as u32;
        let name = r.name.clone().unwrap_or_default();
        let tags: BTreeSet<String> = r.tag_list().into_iter().map(str::to_string).collect();
        if !(tags.contains(OWNER_TAG) || vmids.contains(&vmid) || names.contains(name.as_str())) {
            continue;
        }
        // A clone to another node or a migration may move the config between the listing
        // and this read: look the VM up again once; a VM gone meanwhile is not observed.
        let (node, config) = match client.get_vm_config(&node, vmid).await {
            Ok(c) => (node, c),
            Err(PveError::NotFound(_)) => match relocate(client, vmid).await? {
                Some(found) => found,
                None => continue,
            },
            Err(e) => return Err(e),
        };
        let running = r.status.as_deref() == Some("running");
        let pending = if running {
            client
                .vm_pending(&node, vmid)
                .await?
                .into_iter()
                .filter(|p| p.is_pending())
                .map(|p| {
                    let value = if p.delete {
                        None
                    } else {
                        p.pending.as_ref().map(value_text)
                    };
                    (p.key, value)
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        out.vms.push(ActualVm {
            vmid,
            name,
            node,
            running,
            template: false,
            tags,
            digest: config.digest().map(str::to_string),
            config: config
                .values()
                .keys()
                .filter_map(|k| config.text(k).map(|v| (k.clone(), v)))
                .collect(),
            pending,
        });
    }
    Ok(out)
}

/// Where VM `vmid` is now, with its config; `None` when it no longer exists.
async fn relocate(
    client: &PveClient,
    vmid: u32,
) -> Result<Option<(String, crate::pve::VmConfig)>, PveError> {
    let now = client.cluster_resources(Some(ResourceType::Vm)).await?;
    let Some(node) = now
        .into_iter()
        .find(|r| r.vmid == Some(u64::from(vmid)))
        .and_then(|r| r.node)
    else {
        return Ok(None);
    };
    match client.get_vm_config(&node, vmid).await {
        Ok(c) => Ok(Some((node, c))),
        Err(PveError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A pending value as text, as PVE would show it in the config.
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
