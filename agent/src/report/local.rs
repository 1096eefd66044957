//! The last status kept on the node (`/var/lib/pve-gitops/<cluster>.status.yaml`), for
//! `pve-gitops status`: what the agent on this node last did, readable without git.

use super::status::ClusterStatus;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Where the daemon keeps state by default (systemd's `StateDirectory=pve-gitops`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pve-gitops";

fn file(dir: &Path, cluster: &str) -> PathBuf {
    dir.join(format!("{cluster}.status.yaml"))
}

/// Write `status` atomically (a reader never sees half a file).
pub fn save(dir: &Path, status: &ClusterStatus) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = file(dir, &status.cluster);
    let tmp = target.with_extension("yaml.tmp");
    std::fs::write(&tmp, serde_yaml::to_string(status)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("replacing {}", target.display()))?;
    Ok(())
}

/// Every status kept in `dir`, by cluster name.
pub fn load_all(dir: &Path) -> Result<Vec<ClusterStatus>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".status.yaml") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            out.push(
                serde_yaml::from_str(&text)
                    .with_context(|| format!("{} is not a status file", path.display()))?,
            );
        }
    }
    out.sort_by(|a: &ClusterStatus, b| a.cluster.cmp(&b.cluster));
    Ok(out)
}
