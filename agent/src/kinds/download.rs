//! `StorageDownload`: PVE fetches an ISO, cloud image or container template into a storage
//! itself (`download-url`), verifying the declared checksum before the file appears.
//!
//! A volume already on the storage is never fetched again: the file name is the identity
//! (to take a new image, give it a new `fileName`). A node-local storage gets the file on
//! every target node; a shared one once, through the first online target node.

use super::view::ClusterView;
use crate::apply::ApplyOptions;
use crate::pve::{DownloadUrl, PveClient, PveError};
use pve_gitops_schema::desired::Named;
use pve_gitops_schema::manifest::storage::{DownloadContent, StorageDownloadSpec};
use pve_gitops_schema::manifest::NodeSelector;
use std::collections::BTreeMap;

/// One download to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadStep {
    pub name: String,
    pub node: String,
    pub storage: String,
    pub request: DownloadUrl,
}

/// The planned downloads, and per (download, node) whether the volume will be there when
/// the downloads are done unless one fails (`false`: the node cannot have it this pass).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadPlan {
    pub steps: Vec<DownloadStep>,
    /// Download name → why it is not possible at all this pass (an offline node...).
    pub problems: BTreeMap<String, String>,
}

/// PVE's content type name.
pub fn content_name(c: DownloadContent) -> &'static str {
    match c {
        DownloadContent::Iso => "iso",
        DownloadContent::Import => "import",
        DownloadContent::Vztmpl => "vztmpl",
    }
}

/// The volume id the file gets: `local:import/debian-12-genericcloud-amd64.qcow2`.
pub fn volid(spec: &StorageDownloadSpec) -> String {
    format!(
        "{}:{}/{}",
        spec.storage,
        content_name(spec.content),
        spec.file_name
    )
}

/// The nodes a download is for: the listed ones, or (`all`) every node the storage is
/// enabled on (every cluster node when the listing does not say).
pub fn target_nodes(spec: &StorageDownloadSpec, view: &ClusterView) -> Vec<String> {
    match &spec.nodes {
        NodeSelector::List(l) => l.iter().map(ToString::to_string).collect(),
        NodeSelector::All => {
            let storage = view.storages.get(spec.storage.as_str());
            match storage.filter(|s| !s.nodes.is_empty()) {
                Some(s) => s.nodes.iter().cloned().collect(),
                None => view.nodes.keys().cloned().collect(),
            }
        }
    }
}

/// Where the file is missing: the nodes to download to.
pub fn plan(downloads: &[Named<StorageDownloadSpec>], view: &ClusterView) -> DownloadPlan {
    let mut out = DownloadPlan::default();
    for d in downloads {
        let storage = d.spec.storage.to_string();
        let want = volid(&d.spec);
        let shared = view.storages.get(&storage).is_some_and(|s| s.shared);
        let has = |node: &str| {
            view.volumes
                .get(&(node.to_string(), storage.clone()))
                .is_some_and(|v| v.contains_key(&want))
        };
        let online = |node: &str| view.nodes.get(node).copied().unwrap_or(false);
        let targets = target_nodes(&d.spec, view);
        let nodes: Vec<String> = if shared {
            // One copy serves every node: present anywhere, or fetched through one node.
            if targets.iter().any(|n| online(n) && has(n)) {
                Vec::new()
            } else {
                targets
                    .iter()
                    .find(|n| online(n))
                    .cloned()
                    .into_iter()
                    .collect()
            }
        } else {
            targets.iter().filter(|n| !has(n)).cloned().collect()
        };
        let offline: Vec<&String> = targets.iter().filter(|n| !online(n)).collect();
        if !offline.is_empty() && (!shared || nodes.is_empty() && !targets.iter().any(|n| has(n))) {
            let names: Vec<&str> = offline.iter().map(|s| s.as_str()).collect();
            out.problems.insert(
                d.name.to_string(),
                format!("node {} is offline", names.join(", ")),
            );
        }
        for node in nodes.into_iter().filter(|n| online(n)) {
            out.steps.push(DownloadStep {
                name: d.name.to_string(),
                node,
                storage: storage.clone(),
                request: request(&d.spec),
            });
        }
    }
    out
}

fn request(spec: &StorageDownloadSpec) -> DownloadUrl {
    DownloadUrl {
        url: spec.url.clone(),
        content: content_name(spec.content).to_string(),
        filename: spec.file_name.clone(),
        checksum: spec.checksum.as_ref().map(|c| c.value.to_lowercase()),
        checksum_algorithm: spec
            .checksum
            .as_ref()
            .map(|c| format!("{:?}", c.algorithm).to_lowercase()),
        compression: spec.decompress.map(|c| format!("{c:?}").to_lowercase()),
        verify_certificates: spec.verify_certificates,
    }
}

/// Run one download to its end. A failed checksum fails the task: PVE removes the file.
pub async fn run(
    client: &PveClient,
    step: &DownloadStep,
    options: &ApplyOptions,
) -> Result<String, PveError> {
    let upid = client
        .download_url(&step.node, &step.storage, &step.request)
        .await?;
    client.wait_task(&upid, options.task_timeout).await?;
    Ok(format!(
        "download {} to {}",
        step.request.filename, step.node
    ))
}

#[cfg(test)]
mod tests {
    use super::super::view::StorageView;
    use super::*;

    fn spec(nodes: &str) -> Named<StorageDownloadSpec> {
        let yaml = format!(
            "storage: local\ncontent: iso\nurl: https://example.com/t.iso\nfileName: t.iso\n\
             checksum: {{ algorithm: sha256, value: ABCD }}\nnodes: {nodes}\n"
        );
        Named {
            name: "talos".parse().unwrap(),
            labels: Default::default(),
            annotations: Default::default(),
            spec: serde_yaml::from_str(&yaml).unwrap(),
            origin: pve_gitops_schema::manifest::Origin {
                file: "m.yaml".into(),
                doc: 0,
                instance: None,
            },
        }
    }

    fn view(shared: bool, has: &[&str], offline: &[&str]) -> ClusterView {
        let mut v = ClusterView::default();
        for n in ["pve1", "pve2", "pve3"] {
            v.nodes.insert(n.into(), !offline.contains(&n));
        }
        v.storages.insert(
            "local".into(),
            StorageView {
                shared,
                nodes: ["pve1", "pve2", "pve3"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                path: None,
            },
        );
        for n in has {
            v.volumes
                .entry((n.to_string(), "local".into()))
                .or_default()
                .insert("local:iso/t.iso".into(), 1);
        }
        v
    }

    fn nodes(p: &DownloadPlan) -> Vec<&str> {
        p.steps.iter().map(|s| s.node.as_str()).collect()
    }

    #[test]
    fn local_storage_gets_the_file_on_every_node_missing_it() {
        let p = plan(&[spec("all")], &view(false, &["pve2"], &[]));
        assert_eq!(nodes(&p), ["pve1", "pve3"]);
        let r = &p.steps[0].request;
        assert_eq!(r.checksum.as_deref(), Some("abcd"));
        assert_eq!(r.checksum_algorithm.as_deref(), Some("sha256"));
        assert_eq!(r.content, "iso");
        assert!(p.problems.is_empty());
    }

    #[test]
    fn present_everywhere_downloads_nothing() {
        let p = plan(&[spec("all")], &view(false, &["pve1", "pve2", "pve3"], &[]));
        assert!(p.steps.is_empty());
    }

    #[test]
    fn shared_storage_downloads_once() {
        let p = plan(&[spec("all")], &view(true, &[], &["pve1"]));
        assert_eq!(nodes(&p), ["pve2"]);
        assert!(p.problems.is_empty());
        let p = plan(&[spec("all")], &view(true, &["pve3"], &[]));
        assert!(p.steps.is_empty());
    }

    #[test]
    fn listed_nodes_only_and_offline_ones_reported() {
        let p = plan(&[spec("[pve1, pve3]")], &view(false, &[], &["pve3"]));
        assert_eq!(nodes(&p), ["pve1"]);
        assert_eq!(p.problems["talos"], "node pve3 is offline");
    }
}
