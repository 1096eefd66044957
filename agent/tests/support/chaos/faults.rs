//! The faults the soak injects, each for a while: PVE's own errors (500s, lock
//! timeouts, tasks that fail, slow tasks), a node offline, lost quorum (PVE's and
//! pmxcfs's), dropped and hung connections, and the git remote gone. Leader kills are
//! the soak's own steps (they need the cluster of agents, not the fake).

use super::Rng;
use crate::support::agents::Cluster;
use crate::support::control::Control;
use serde_json::json;
use std::path::Path;

/// Write endpoints an apply uses (fakepve `fail` paths: schema templates).
const WRITES: [(&str, &str); 6] = [
    ("POST", "/nodes/{node}/qemu/{vmid}/clone"),
    ("POST", "/nodes/{node}/qemu/{vmid}/config"),
    ("PUT", "/nodes/{node}/qemu/{vmid}/config"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop"),
    ("DELETE", "/nodes/{node}/qemu/{vmid}"),
];

/// Requests that may hang: reads every pass makes, writes and task polls.
const HANGS: [(&str, &str); 5] = [
    ("GET", "/cluster/resources"),
    ("GET", "/nodes/{node}/qemu/{vmid}/pending"),
    ("POST", "/nodes/{node}/qemu/{vmid}/config"),
    ("POST", "/nodes/{node}/qemu/{vmid}/clone"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"),
];

#[derive(Clone, Debug)]
pub enum Fault {
    /// HTTP 500 with a plain message, the next `times` matching requests.
    Error500 {
        method: &'static str,
        path: &'static str,
        times: u32,
    },
    /// A named error of fakepve's catalogue (`config_lock_timeout`, or a task that
    /// ends with `TASK ERROR`: `start_failed`, `failed_remove_config_file`).
    Named {
        method: &'static str,
        path: &'static str,
        error: &'static str,
        times: u32,
    },
    /// RBD-backed clones and starts take this many PVE seconds longer.
    SlowTasks(f64),
    NodeOffline(&'static str),
    /// Every PVE write answers `cluster not ready - no quorum?`.
    PveQuorumLost,
    /// One node's pmxcfs without quorum: its lease cannot renew.
    PmxcfsQuorumLost(&'static str),
    /// This share of connections is closed before an answer (fakepve's own random
    /// choice, seeded).
    Drops(f64, u64),
    /// Matching requests wait unanswered until the fault ends.
    Hang {
        method: &'static str,
        path: &'static str,
    },
    /// The bare repository is gone (renamed): fetches and status pushes fail.
    GitOutage,
    /// PVE holds a lock on a VM (a backup runs): writes to it fail until it ends.
    VmLock(u32),
}

impl Fault {
    pub fn random(rng: &mut Rng) -> Fault {
        let node = |rng: &mut Rng| *rng.pick(&crate::support::agents::NODES);
        match rng.below(10) {
            0 | 1 => {
                let (method, path) = *rng.pick(&WRITES);
                Fault::Error500 {
                    method,
                    path,
                    times: rng.between(1, 4) as u32,
                }
            }
            2 => {
                let (method, path) = *rng.pick(&WRITES[..3]);
                Fault::Named {
                    method,
                    path,
                    error: "config_lock_timeout",
                    times: rng.between(1, 3) as u32,
                }
            }
            3 => {
                let (method, path, error) = *rng.pick(&[
                    (
                        "POST",
                        "/nodes/{node}/qemu/{vmid}/status/start",
                        "start_failed",
                    ),
                    (
                        "POST",
                        "/nodes/{node}/qemu/{vmid}/status/start",
                        "qemu_exited_code",
                    ),
                    (
                        "DELETE",
                        "/nodes/{node}/qemu/{vmid}",
                        "failed_remove_config_file",
                    ),
                ]);
                Fault::Named {
                    method,
                    path,
                    error,
                    times: rng.between(1, 2) as u32,
                }
            }
            4 => Fault::SlowTasks(rng.between(20, 150) as f64),
            5 => Fault::NodeOffline(node(rng)),
            6 => Fault::PveQuorumLost,
            7 => Fault::PmxcfsQuorumLost(node(rng)),
            8 => {
                if rng.chance(50) {
                    Fault::Drops(rng.between(5, 25) as f64 / 100.0, rng.next() >> 12)
                } else {
                    let (method, path) = *rng.pick(&HANGS);
                    Fault::Hang { method, path }
                }
            }
            _ => Fault::GitOutage,
        }
    }

    /// Two faults that undo each other's switch cannot run at once.
    pub fn conflicts(&self, other: &Fault) -> bool {
        use Fault::*;
        matches!(
            (self, other),
            (
                Error500 { .. } | Named { .. },
                Error500 { .. } | Named { .. }
            ) | (SlowTasks(_), SlowTasks(_))
                | (PveQuorumLost, PveQuorumLost)
                | (Drops(..), Drops(..))
                | (Hang { .. }, Hang { .. })
                | (GitOutage, GitOutage)
        ) || matches!((self, other), (VmLock(a), VmLock(b)) if a == b)
            || matches!((self, other), (NodeOffline(a), NodeOffline(b)) if a == b)
            || matches!((self, other), (PmxcfsQuorumLost(a), PmxcfsQuorumLost(b)) if a == b)
    }

    pub async fn inject(&self, control: &Control, cluster: &Cluster, remote: &Path) {
        match self {
            Fault::Error500 {
                method,
                path,
                times,
            } => {
                control
                    .fail(json!({"method": method, "path": path, "status": 500,
                        "message": "chaos: internal error", "times": times}))
                    .await
            }
            Fault::Named {
                method,
                path,
                error,
                times,
            } => {
                control
                    .fail(json!({"method": method, "path": path, "error": error, "times": times}))
                    .await
            }
            Fault::SlowTasks(secs) => {
                control.ceph(json!({ "slow": secs })).await;
            }
            Fault::NodeOffline(node) => control.set_node_online(node, false).await,
            Fault::PveQuorumLost => control.set_quorum(false).await,
            Fault::PmxcfsQuorumLost(node) => cluster.emu.set_quorate(node, false),
            Fault::Drops(rate, seed) => {
                control
                    .network(json!({ "drop_rate": rate, "seed": seed }))
                    .await;
            }
            Fault::Hang { method, path } => control.hang(method, path).await,
            Fault::GitOutage => std::fs::rename(remote, down(remote)).unwrap(),
            Fault::VmLock(vmid) => {
                control.update_vm(*vmid, json!({ "lock": "backup" })).await;
            }
        }
    }

    pub async fn clear(&self, control: &Control, cluster: &Cluster, remote: &Path) {
        match self {
            Fault::Error500 { .. } | Fault::Named { .. } => control.clear_failures().await,
            Fault::SlowTasks(_) => {
                control.ceph(json!({ "slow": 0.0 })).await;
            }
            Fault::NodeOffline(node) => control.set_node_online(node, true).await,
            Fault::PveQuorumLost => control.set_quorum(true).await,
            Fault::PmxcfsQuorumLost(node) => cluster.emu.set_quorate(node, true),
            Fault::Drops(..) => {
                control.network(json!({ "drop_rate": 0.0 })).await;
            }
            Fault::Hang { .. } => control.release_hangs().await,
            Fault::GitOutage => std::fs::rename(down(remote), remote).unwrap(),
            Fault::VmLock(vmid) => {
                // The VM may be gone (pruned, or destroyed behind the agent's back).
                if control.vm(*vmid).await.is_some() {
                    control.update_vm(*vmid, json!({ "lock": null })).await;
                }
            }
        }
    }
}

/// Where the bare repository waits out an outage.
pub fn down(remote: &Path) -> std::path::PathBuf {
    remote.with_extension("git.down")
}
