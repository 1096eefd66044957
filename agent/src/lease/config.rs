//! Where the lock lives and how the lease paces itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings of one node's lease. [`LeaseConfig::new`] gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// This node's PVE name; pmxcfs itself tells lock holders apart by node.
    pub node: String,
    /// The lock directory, directly below pmxcfs's `priv/lock/`.
    pub lock_path: PathBuf,
    /// Where the leader writes its [`super::LeaderIdentity`]; `None` keeps terms local.
    pub record_path: Option<PathBuf>,
    /// How often the leader renews (`utime(0, now)`).
    pub renew_interval: Duration,
    /// How often a follower looks at the lock.
    pub poll_interval: Duration,
    /// pmxcfs's lock lifetime: a lock not renewed for this long may be taken over.
    /// Hard-coded to 120 s in pmxcfs; shorter only against the test emulation.
    pub lifetime: Duration,
    /// The leader stops writing this long after its last good renewal. Must stay well
    /// below `lifetime` so the old leader is quiet before another node can acquire.
    pub fence_margin: Duration,
}

impl LeaseConfig {
    /// The lock directory on a Proxmox VE node.
    pub const LOCK_PATH: &'static str = "/etc/pve/priv/lock/pve-gitops";
    /// The leader record, beside the cluster-wide config.
    pub const RECORD_PATH: &'static str = "/etc/pve/pve-gitops/leader.json";

    /// Production settings for `node`: the HA manager's timing (renew every 10 s,
    /// self-fence 60 s after the last renewal, pmxcfs's 120 s lifetime).
    pub fn new(node: impl Into<String>) -> Self {
        LeaseConfig {
            node: node.into(),
            lock_path: PathBuf::from(Self::LOCK_PATH),
            record_path: Some(PathBuf::from(Self::RECORD_PATH)),
            renew_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            lifetime: Duration::from_secs(120),
            fence_margin: Duration::from_secs(60),
        }
    }

    /// The production paths re-rooted from `/etc/pve` to `root` (an emulation's mount).
    pub fn under_root(node: impl Into<String>, root: &Path) -> Self {
        LeaseConfig {
            lock_path: root.join("priv/lock/pve-gitops"),
            record_path: Some(root.join("pve-gitops/leader.json")),
            ..LeaseConfig::new(node)
        }
    }

    /// Checks the orderings the safety argument rests on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: String| Err(ConfigError(why));
        if self.node.is_empty() {
            return bad("the node name is empty".into());
        }
        if self.lock_path.parent().is_none() {
            return bad(format!(
                "lock path {} has no parent directory",
                self.lock_path.display()
            ));
        }
        if self.renew_interval.is_zero() || self.poll_interval.is_zero() {
            return bad("renew and poll intervals must be positive".into());
        }
        if self.renew_interval >= self.fence_margin {
            return bad(format!(
                "renew interval {:?} must be shorter than the self-fence margin {:?}",
                self.renew_interval, self.fence_margin
            ));
        }
        if self.fence_margin >= self.lifetime {
            return bad(format!(
                "self-fence margin {:?} must be shorter than the lock lifetime {:?}, \
                 or an old leader could still write after another node took the lock",
                self.fence_margin, self.lifetime
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lease settings: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_settings_are_valid() {
        LeaseConfig::new("pve1").validate().unwrap();
    }

    #[test]
    fn orderings_are_enforced() {
        type Edit = fn(&mut LeaseConfig);
        let cases: &[(&str, Edit, &str)] = &[
            ("empty node", |c| c.node.clear(), "node name is empty"),
            (
                "margin not below lifetime",
                |c| c.fence_margin = c.lifetime,
                "must be shorter than the lock lifetime",
            ),
            (
                "renewal slower than margin",
                |c| c.renew_interval = Duration::from_secs(60),
                "must be shorter than the self-fence margin",
            ),
            (
                "zero poll",
                |c| c.poll_interval = Duration::ZERO,
                "must be positive",
            ),
            (
                "lock at filesystem root",
                |c| c.lock_path = "/".into(),
                "has no parent",
            ),
        ];
        for (name, edit, expected) in cases {
            let mut config = LeaseConfig::new("pve1");
            edit(&mut config);
            let err = config.validate().expect_err(name).to_string();
            assert!(err.contains(expected), "{name}: {err}");
        }
    }

    #[test]
    fn under_root_moves_both_paths() {
        let c = LeaseConfig::under_root("pve2", Path::new("/tmp/emu/pve2"));
        assert_eq!(c.lock_path, Path::new("/tmp/emu/pve2/priv/lock/pve-gitops"));
        assert_eq!(
            c.record_path.as_deref(),
            Some(Path::new("/tmp/emu/pve2/pve-gitops/leader.json"))
        );
    }
}
