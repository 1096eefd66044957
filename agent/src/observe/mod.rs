//! Observing the cluster: the actual state of the VMs the plan may touch, with as few API
//! calls as possible.
//!
//! One `GET /cluster/resources?type=vm` lists every guest with node, status, template flag
//! and tags. Only candidates — guests carrying the ownership tag, or whose vmid or name a
//! manifest declares — cost more: one `GET .../pending` each, which carries the current
//! config, the changes waiting for the next start and the digest in one answer (qemu-server
//! builds it from the same parsed config file as `GET .../config`). So a pass over an
//! unchanged cluster reads once per owned VM plus the listing. Everything else in the
//! cluster is never read.

use crate::apply::Templates;
use crate::plan::actual::ActualVm;
use crate::pve::{de, PendingEntry, PveClient, PveError, ResourceType};
use pve_gitops_schema::ids::OWNER_TAG;
use pve_gitops_schema::DesiredState;
use std::collections::{BTreeMap, BTreeSet};

pub mod listing;

/// What one observation found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The candidate VMs (templates excluded: they are sources, not targets).
    pub vms: Vec<ActualVm>,
    /// Where the cluster's templates are, for clones.
    pub templates: Templates,
    /// Every vmid in use in the cluster (guests and templates), to allocate new ones.
    pub used_vmids: BTreeSet<u32>,
    /// The fingerprint ([`listing`]) of the guest listing this observation started from.
    pub listing: u64,
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
    let (listing, fingerprint) = listing::fetch(client).await?;
    out.listing = fingerprint;
    // Templates that exist already, by name (an `External` template cloned by name, like
    // seed 003's `ubuntu-2204-cloudinit`).
    let mut cluster_templates: BTreeMap<String, Vec<u32>> = BTreeMap::new();
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
            if let Some(name) = &r.name {
                cluster_templates
                    .entry(name.clone())
                    .or_default()
                    .push(vmid as u32);
            }
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
        let (node, entries) = match client.vm_pending(&node, vmid).await {
            Ok(e) => (node, e),
            Err(PveError::NotFound(_)) => match relocate(client, vmid).await? {
                Some(found) => found,
                None => continue,
            },
            Err(e) => return Err(e),
        };
        let (config, pending, digest) = split_pending(entries);
        out.vms.push(ActualVm {
            vmid,
            name,
            node,
            running: r.status.as_deref() == Some("running"),
            template: false,
            tags,
            digest,
            config,
            pending,
        });
    }
    // A name two templates share is ambiguous: left out, so pre-flight reports it missing
    // rather than cloning the wrong one. A `Template` manifest's name wins.
    for (name, vmids) in cluster_templates {
        if let [vmid] = vmids[..] {
            out.templates.by_name.entry(name).or_insert(vmid);
        }
    }
    Ok(out)
}

/// Where VM `vmid` is now, with its config; `None` when it no longer exists.
async fn relocate(
    client: &PveClient,
    vmid: u32,
) -> Result<Option<(String, Vec<PendingEntry>)>, PveError> {
    let now = client.cluster_resources(Some(ResourceType::Vm)).await?;
    let Some(node) = now
        .into_iter()
        .find(|r| r.vmid == Some(u64::from(vmid)))
        .and_then(|r| r.node)
    else {
        return Ok(None);
    };
    match client.vm_pending(&node, vmid).await {
        Ok(e) => Ok(Some((node, e))),
        Err(PveError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Current config, pending changes and digest from `GET .../pending`. The digest is a key
/// like the others there; a fake that leaves it out gives `None` (writes without the
/// optimistic-concurrency check).
fn split_pending(
    entries: Vec<PendingEntry>,
) -> (BTreeMap<String, String>, Pending, Option<String>) {
    let (mut config, mut pending, mut digest) = (BTreeMap::new(), BTreeMap::new(), None);
    for e in entries {
        if e.key == "digest" {
            digest = e.value.as_ref().and_then(de::value_text);
            continue;
        }
        if e.is_pending() {
            let value = if e.delete {
                None
            } else {
                e.pending.as_ref().map(value_text)
            };
            pending.insert(e.key.clone(), value);
        }
        // As `VmConfig::text` reads `GET .../config`: scalars as text, anything else skipped.
        if let Some(v) = e.value.as_ref().and_then(de::value_text) {
            config.insert(e.key, v);
        }
    }
    (config, pending, digest)
}

/// Keys whose value changes at the next start, and to what (`None`: removed).
type Pending = BTreeMap<String, Option<String>>;

/// A pending value as text, as PVE would show it in the config.
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(json: &str) -> Vec<PendingEntry> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn pending_answer_splits_into_config_changes_and_digest() {
        // The shape qemu-server's config_with_pending_array gives: current values, pending
        // ones beside them, keys only pending, deletions, and the file digest as a key.
        let (config, pending, digest) = split_pending(entries(
            r#"[{"key":"cores","value":2,"pending":"4"},
                {"key":"memory","value":"2048"},
                {"key":"agent","value":"1","delete":1},
                {"key":"balloon","pending":"1024"},
                {"key":"digest","value":"0123abcd"}]"#,
        ));
        let config: Vec<(&str, &str)> = config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(config, [("agent", "1"), ("cores", "2"), ("memory", "2048")]);
        let pending: Vec<(&str, Option<&str>)> = pending
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            pending,
            [
                ("agent", None),
                ("balloon", Some("1024")),
                ("cores", Some("4"))
            ]
        );
        assert_eq!(digest.as_deref(), Some("0123abcd"));
    }

    #[test]
    fn no_digest_key_means_no_digest() {
        let (config, pending, digest) = split_pending(entries(r#"[{"key":"cores","value":"2"}]"#));
        assert_eq!(config["cores"], "2");
        assert!(pending.is_empty());
        assert_eq!(digest, None);
    }
}
