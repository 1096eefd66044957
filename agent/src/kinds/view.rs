//! What the cluster has of the resources these kinds manage: nodes, storages (shared or
//! not, their directory), downloaded volumes, the guests at declared template vmids, and
//! containers. Read only when the revision declares one of these kinds, with one unfiltered
//! `/cluster/resources` plus a content listing per (node, storage) a download targets, a
//! `GET /storage/{id}` per snippet storage and a config read per template and container.

use crate::plan::actual::CREATED_NOTE;
use crate::pve::{ClusterResource, PveClient, PveError};
use pve_gitops_schema::ids::OWNER_TAG;
use pve_gitops_schema::DesiredState;
use std::collections::{BTreeMap, BTreeSet};

/// A storage as the plans need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageView {
    /// Every node sees the same files.
    pub shared: bool,
    /// Nodes where the storage is enabled.
    pub nodes: BTreeSet<String>,
    /// Its directory (file storages), from storage.cfg; read for snippet storages only.
    pub path: Option<String>,
}

/// The guest at a declared template's vmid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAtVmid {
    pub node: String,
    pub name: String,
    pub template: bool,
    /// Ours: the ownership tag, or the note of a create the agent did not finish.
    pub owned: bool,
    pub protected: bool,
    pub lock: Option<String>,
    /// The definition hash the agent wrote into the description when it built it.
    pub definition: Option<String>,
    /// `qemu` or `lxc`.
    pub kind: String,
}

/// A container that is owned or declared (by vmid or hostname).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualCt {
    pub vmid: u32,
    pub name: String,
    pub node: String,
    pub running: bool,
    pub owned: bool,
    pub config: BTreeMap<String, String>,
    pub digest: Option<String>,
}

/// The observation the kinds are planned from.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Node → online.
    pub nodes: BTreeMap<String, bool>,
    pub storages: BTreeMap<String, StorageView>,
    /// (node, storage) → volid → size, for the storages downloads go to.
    pub volumes: BTreeMap<(String, String), BTreeMap<String, u64>>,
    /// Declared template vmid → what is there.
    pub at_template_vmids: BTreeMap<u32, GuestAtVmid>,
    pub containers: Vec<ActualCt>,
    /// Every vmid in use, to give containers without one the next free id.
    pub used_vmids: BTreeSet<u32>,
}

/// The line a built template's description carries: how it was built, hashed.
pub const DEFINITION_PREFIX: &str = "pve-gitops-definition: ";

/// Whether the revision declares anything this module manages.
pub fn declares_kinds(desired: &DesiredState) -> bool {
    !(desired.storage_downloads.is_empty()
        && desired.templates.is_empty()
        && desired.snippets.is_empty()
        && desired.containers.is_empty())
}

/// Read the [`ClusterView`] for `desired` (empty when it declares none of these kinds).
pub async fn observe(client: &PveClient, desired: &DesiredState) -> Result<ClusterView, PveError> {
    let mut view = ClusterView::default();
    if !declares_kinds(desired) {
        return Ok(view);
    }
    let resources = client.cluster_resources(None).await?;
    fill_from_resources(&mut view, &resources);
    for s in &desired.snippets {
        let id = s.spec.storage.to_string();
        let config = client.storage_config(&id).await?;
        let entry = view.storages.entry(id).or_default();
        entry.path = config.path.clone();
        entry.shared |= config.is_shared();
    }
    let mut listings: BTreeSet<(String, String, String)> = BTreeSet::new();
    for d in &desired.storage_downloads {
        let storage = d.spec.storage.to_string();
        let content = super::download::content_name(d.spec.content).to_string();
        for node in super::download::target_nodes(&d.spec, &view) {
            listings.insert((node, storage.clone(), content.clone()));
        }
    }
    for (node, storage, content) in listings {
        if !view.nodes.get(&node).copied().unwrap_or(false) {
            continue;
        }
        let found = client
            .storage_content(&node, &storage, Some(&content))
            .await?;
        view.volumes
            .entry((node, storage))
            .or_default()
            .extend(found.into_iter().map(|c| (c.volid, c.size.unwrap_or(0))));
    }
    let template_vmids: BTreeSet<u32> = desired
        .templates
        .iter()
        .map(|t| t.spec.vmid.get())
        .collect();
    let ct_names: BTreeSet<String> = desired
        .containers
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    let ct_vmids: BTreeSet<u32> = desired
        .containers
        .iter()
        .filter_map(|c| c.spec.vmid.map(|v| v.get()))
        .collect();
    for r in resources
        .iter()
        .filter(|r| r.kind == "qemu" || r.kind == "lxc")
    {
        let (Some(vmid), Some(node)) = (r.vmid.map(|v| v as u32), r.node.clone()) else {
            continue;
        };
        let name = r.name.clone().unwrap_or_default();
        let tagged = r.tag_list().contains(&OWNER_TAG);
        if template_vmids.contains(&vmid) {
            let config = match r.kind.as_str() {
                "qemu" => client.get_vm_config(&node, vmid).await?,
                _ => client.get_ct_config(&node, vmid).await?,
            };
            let description = config.text("description").unwrap_or_default();
            view.at_template_vmids.insert(
                vmid,
                GuestAtVmid {
                    node: node.clone(),
                    name: name.clone(),
                    template: r.template,
                    owned: tagged || description.lines().any(|l| l.trim() == CREATED_NOTE),
                    protected: config.text("protection").as_deref() == Some("1"),
                    lock: config.lock(),
                    definition: description
                        .lines()
                        .find_map(|l| l.trim().strip_prefix(DEFINITION_PREFIX))
                        .map(str::to_string),
                    kind: r.kind.clone(),
                },
            );
        }
        if r.kind == "lxc" && (tagged || ct_vmids.contains(&vmid) || ct_names.contains(&name)) {
            let config = client.get_ct_config(&node, vmid).await?;
            let digest = config.digest().map(str::to_string);
            let values: BTreeMap<String, String> = config
                .values()
                .keys()
                .filter_map(|k| config.text(k).map(|v| (k.clone(), v)))
                .collect();
            let owned = tagged
                || values
                    .get("description")
                    .is_some_and(|d| d.lines().any(|l| l.trim() == CREATED_NOTE));
            view.containers.push(ActualCt {
                vmid,
                name,
                node,
                running: r.status.as_deref() == Some("running"),
                owned,
                config: values,
                digest,
            });
        }
    }
    Ok(view)
}

/// Nodes, storages and used vmids from one unfiltered resources listing.
fn fill_from_resources(view: &mut ClusterView, resources: &[ClusterResource]) {
    for r in resources {
        match r.kind.as_str() {
            "node" => {
                if let Some(n) = &r.node {
                    view.nodes
                        .insert(n.clone(), r.status.as_deref() == Some("online"));
                }
            }
            "storage" => {
                if let (Some(s), Some(n)) = (&r.storage, &r.node) {
                    let entry = view.storages.entry(s.clone()).or_default();
                    entry.shared |= r.shared;
                    entry.nodes.insert(n.clone());
                }
            }
            "qemu" | "lxc" => {
                if let Some(v) = r.vmid {
                    view.used_vmids.insert(v as u32);
                }
            }
            _ => {}
        }
    }
}
