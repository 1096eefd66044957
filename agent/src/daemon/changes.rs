//! Whether the cluster changed since the last pass, without asking the API.
//!
//! On a Proxmox node, pmxcfs keeps `/etc/pve/.vmlist`: every guest with its node, type and
//! a version that changes whenever the guest's config file is written. If the file is
//! byte-for-byte what it was at the last settled pass, no guest was added, removed, moved
//! or reconfigured since. Power state is not in it; one `/cluster/resources` call covers
//! that (see [`super::Daemon`]).

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

/// A source of "has the cluster's configuration changed" fingerprints.
pub trait ClusterChanges: Send + Sync {
    /// A value that changes whenever a guest config changes; `None` when unknown (then
    /// every pass observes the cluster in full).
    fn fingerprint(&self) -> Option<u64>;
}

/// pmxcfs's guest list (`/etc/pve/.vmlist` on a node; any file in tests).
#[derive(Debug, Clone)]
pub struct VmList(pub PathBuf);

impl ClusterChanges for VmList {
    fn fingerprint(&self) -> Option<u64> {
        let bytes = std::fs::read(&self.0).ok()?;
        let mut h = std::hash::DefaultHasher::new();
        bytes.hash(&mut h);
        Some(h.finish())
    }
}

/// No change source: every pass is a full one.
#[derive(Debug, Clone, Copy)]
pub struct Unknown;

impl ClusterChanges for Unknown {
    fn fingerprint(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmlist_fingerprint_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".vmlist");
        let list = VmList(path.clone());
        assert_eq!(list.fingerprint(), None);
        std::fs::write(&path, r#"{"version": 1, "ids": {}}"#).unwrap();
        let a = list.fingerprint().expect("readable");
        assert_eq!(list.fingerprint(), Some(a));
        std::fs::write(&path, r#"{"version": 2, "ids": {}}"#).unwrap();
        assert_ne!(list.fingerprint(), Some(a));
    }
}
