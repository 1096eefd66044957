//! `Snippet` files: cloud-init data rendered per VM, written into the snippet storage's
//! directory (`<path>/snippets/<file>`) and referenced by the VM's `cicustom`.
//!
//! PVE's API cannot upload snippets, so they are plain file writes, and who writes which
//! file follows from where the storage is:
//!
//! * shared storage (CephFS, NFS, a `dir` marked shared): one copy serves every node; the
//!   leader writes it;
//! * node-local storage: each node needs its own copy for the VMs it hosts, and no node can
//!   write another's disk. So *every* agent, leader or not, writes the files of the VMs
//!   declared on its own node ([`write_own`]). This is a local file write, not an API
//!   write: it needs no lease, and followers keep their node's files current while the
//!   leader applies. The leader then checks through the API (`GET .../content`, name and
//!   size) that a file is in place on the VM's node before it creates or starts the VM,
//!   and skips the VM with the reason until that node's agent has written it.
//!
//! A file is written only when its bytes differ (atomically: a temporary file, then a
//! rename). A changed snippet is rewritten on the nodes that hold VMs using it and changes
//! nothing else: cloud-init reads it at the next boot of a new instance, so running VMs
//! take it when they are rebuilt. The rendered content holds decrypted secrets (that is
//! where they belong); it never goes to logs, reports or status — those name the file.

use super::view::ClusterView;
use pve_gitops_schema::desired::DesiredState;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One rendered file and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnippetTarget {
    pub snippet: String,
    pub vm: String,
    /// `local:snippets/pve-gitops-cpl01-storage-tiers.yaml`
    pub volume: String,
    pub storage: String,
    /// The file name below `snippets/`.
    pub file: String,
    /// The storage's directory, when storage.cfg gives one.
    pub dir: Option<String>,
    /// The node whose disk holds the file; `None` for shared storage (one copy).
    pub node: Option<String>,
    /// The VM's node (where the file must be visible).
    pub vm_node: String,
    /// The snippet references secrets: its content comes from the decrypted revision.
    pub secret: bool,
}

/// Every file the revision's VMs need.
pub fn plan(desired: &DesiredState, view: &ClusterView) -> Vec<SnippetTarget> {
    let mut out = Vec::new();
    for f in &desired.snippet_files {
        let Some(sn) = desired.snippets.iter().find(|s| s.name == f.snippet) else {
            continue;
        };
        let Some(vm) = desired.vm(f.vm.as_str()) else {
            continue;
        };
        let storage = sn.spec.storage.to_string();
        let facts = view.storages.get(&storage);
        let file = f
            .volume
            .split_once(":snippets/")
            .map_or(f.volume.as_str(), |(_, n)| n)
            .to_string();
        out.push(SnippetTarget {
            snippet: f.snippet.to_string(),
            vm: f.vm.to_string(),
            volume: f.volume.clone(),
            storage,
            file,
            dir: facts.and_then(|s| s.path.clone()),
            node: (!facts.is_some_and(|s| s.shared)).then(|| vm.node.to_string()),
            vm_node: vm.node.to_string(),
            secret: !sn.spec.secrets.is_empty(),
        });
    }
    out
}

/// Where `target` lives on this machine: `root` stands for `/` (tests give every
/// simulated node its own).
pub fn local_path(target: &SnippetTarget, root: Option<&Path>) -> Option<PathBuf> {
    let dir = target.dir.as_deref()?;
    let base = match root {
        Some(r) => r.join(dir.trim_start_matches('/')),
        None => PathBuf::from(dir),
    };
    Some(base.join("snippets").join(&target.file))
}

/// The bytes of a target's file: the decrypted render when the snippet has secrets,
/// else the desired state's own render (no placeholders in it).
pub fn content<'a>(
    target: &SnippetTarget,
    desired: &'a DesiredState,
    secrets: &'a crate::revision::Secrets,
) -> Option<&'a [u8]> {
    if target.secret {
        return secrets.snippet(&target.volume);
    }
    desired
        .snippet_files
        .iter()
        .find(|f| f.volume == target.volume)
        .map(|f| f.content.as_bytes())
}

/// What writing one file did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Unchanged,
    Written,
}

/// Write `bytes` to `path` unless it holds them already. Files with secrets are 0600.
pub fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<Written> {
    if std::fs::read(path).is_ok_and(|have| have == bytes) {
        return Ok(Written::Unchanged);
    }
    let dir = path.parent().expect("a snippet path has a directory");
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .expect("a snippet path has a file name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.pve-gitops-tmp"));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(Written::Written)
}

/// The outcome of writing this node's files, per snippet name: steps done, or the error.
pub type WriteReport = BTreeMap<String, Result<Vec<String>, String>>;

/// Write the files this agent is responsible for: those on node-local storage for VMs on
/// `node`, and — when `leader` — those on shared storage.
pub fn write_own(
    targets: &[SnippetTarget],
    desired: &DesiredState,
    secrets: &crate::revision::Secrets,
    node: Option<&str>,
    root: Option<&Path>,
    leader: bool,
) -> WriteReport {
    let mut out: WriteReport = BTreeMap::new();
    for t in targets {
        let mine = match &t.node {
            None => leader,
            Some(n) => Some(n.as_str()) == node,
        };
        if !mine {
            continue;
        }
        let entry = out
            .entry(t.snippet.clone())
            .or_insert_with(|| Ok(Vec::new()));
        let where_ = t.node.as_deref().unwrap_or("shared storage");
        let result = match (local_path(t, root), content(t, desired, secrets)) {
            (None, _) => Err(format!("storage {} has no directory (`path`)", t.storage)),
            (_, None) => Err(format!(
                "{} needs decrypted secrets and no identity is configured",
                t.file
            )),
            (Some(path), Some(bytes)) => write_file(&path, bytes, t.secret)
                .map_err(|e| format!("writing {}: {e}", path.display())),
        };
        match (result, entry) {
            (Ok(Written::Written), Ok(done)) => done.push(format!("write {} on {where_}", t.file)),
            (Ok(Written::Unchanged), _) => {}
            (Err(e), entry) => *entry = Err(e),
            (Ok(_), Err(_)) => {}
        }
    }
    out.retain(|_, r| r.as_ref().map_or(true, |d| !d.is_empty()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(dir: &str, node: Option<&str>) -> SnippetTarget {
        SnippetTarget {
            snippet: "s".into(),
            vm: "vm1".into(),
            volume: "local:snippets/pve-gitops-vm1-s.yaml".into(),
            storage: "local".into(),
            file: "pve-gitops-vm1-s.yaml".into(),
            dir: Some(dir.into()),
            node: node.map(Into::into),
            vm_node: "pve1".into(),
            secret: true,
        }
    }

    #[test]
    fn paths_go_below_the_root() {
        let t = target("/var/lib/vz", Some("pve1"));
        assert_eq!(
            local_path(&t, None).unwrap(),
            Path::new("/var/lib/vz/snippets/pve-gitops-vm1-s.yaml")
        );
        assert_eq!(
            local_path(&t, Some(Path::new("/tmp/n1"))).unwrap(),
            Path::new("/tmp/n1/var/lib/vz/snippets/pve-gitops-vm1-s.yaml")
        );
    }

    #[test]
    fn writes_only_changed_bytes_with_secret_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snippets/a.yaml");
        assert_eq!(write_file(&path, b"one", true).unwrap(), Written::Written);
        assert_eq!(write_file(&path, b"one", true).unwrap(), Written::Unchanged);
        assert_eq!(write_file(&path, b"two", true).unwrap(), Written::Written);
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
