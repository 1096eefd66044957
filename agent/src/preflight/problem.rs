//! What a failed pre-flight reports: one problem per missing thing, each naming the node,
//! resource, amounts and guests an operator needs to fix it.

use super::facts::GuestKind;
use std::fmt;
use std::net::IpAddr;

/// One reason the plan cannot be applied as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreflightProblem {
    /// A create clones from a template the cluster does not have.
    MissingTemplate {
        vm: String,
        /// `9000`, or `ubuntu (9000)` for a template named by its manifest.
        template: String,
    },
    /// A create clones from a vmid that is a VM or container, not a template.
    NotATemplate { vm: String, vmid: u32, name: String },
    /// Creates, starts or migrations target a node the cluster does not have.
    UnknownNode {
        node: String,
        needed_by: Vec<String>,
    },
    /// Creates, starts or migrations (or a clone's source template) need a node that is offline.
    NodeOffline {
        node: String,
        needed_by: Vec<String>,
    },
    /// A VM has more vCPUs than its node has CPU threads: PVE refuses to start it.
    TooManyCpus {
        vm: String,
        node: String,
        vcpus: u64,
        node_cpus: u64,
    },
    /// The VMs the plan starts on a node need more memory than the node has free.
    NotEnoughMemory {
        node: String,
        needed: u64,
        free: u64,
        total: u64,
        vms: Vec<String>,
    },
    /// New disks go to a storage that is not available on their node.
    StorageUnavailable {
        node: String,
        storage: String,
        needed_by: Vec<String>,
    },
    /// New disks need more space than the storage has free. `node` is `None` for a
    /// shared storage (one pool for every node).
    NotEnoughSpace {
        storage: String,
        node: Option<String>,
        needed: u64,
        free: u64,
        vms: Vec<String>,
    },
    /// A declared static IP is already configured on another guest.
    IpInUse {
        vm: String,
        key: String,
        ip: IpAddr,
        holder_kind: GuestKind,
        holder_vmid: u32,
        holder_name: String,
        holder_key: String,
    },
    /// Two or more planned VMs declare the same static IP.
    DuplicateIp { ip: IpAddr, vms: Vec<String> },
}

/// A size as an operator reads it: `6 GiB`, `7.5 GiB`, `512 MiB`.
pub fn human(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        if bytes % GIB == 0 {
            format!("{} GiB", bytes / GIB)
        } else {
            format!("{:.1} GiB", bytes as f64 / GIB as f64)
        }
    } else if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

fn list(names: &[String]) -> String {
    names.join(", ")
}

impl fmt::Display for PreflightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingTemplate { vm, template } => {
                write!(f, "{vm}: template {template} to clone from is not in the cluster")
            }
            Self::NotATemplate { vm, vmid, name } => write!(
                f,
                "{vm}: clone source {vmid} ({name}) is not a template"
            ),
            Self::UnknownNode { node, needed_by } => write!(
                f,
                "node {node} is not in the cluster (needed by {})",
                list(needed_by)
            ),
            Self::NodeOffline { node, needed_by } => {
                write!(f, "node {node} is offline (needed by {})", list(needed_by))
            }
            Self::TooManyCpus {
                vm,
                node,
                vcpus,
                node_cpus,
            } => write!(
                f,
                "{vm}: {vcpus} vCPUs, but node {node} has {node_cpus} CPUs (PVE does not start a VM with more)"
            ),
            Self::NotEnoughMemory {
                node,
                needed,
                free,
                total,
                vms,
            } => write!(
                f,
                "node {node}: not enough memory for {}: needs {}, {} free of {}",
                list(vms),
                human(*needed),
                human(*free),
                human(*total)
            ),
            Self::StorageUnavailable {
                node,
                storage,
                needed_by,
            } => write!(
                f,
                "storage {storage} is not available on node {node} (needed by {})",
                list(needed_by)
            ),
            Self::NotEnoughSpace {
                storage,
                node,
                needed,
                free,
                vms,
            } => {
                let place = match node {
                    Some(n) => format!("on node {n}"),
                    None => "(shared)".to_string(),
                };
                write!(
                    f,
                    "storage {storage} {place}: not enough space for {}: needs {}, {} free",
                    list(vms),
                    human(*needed),
                    human(*free)
                )
            }
            Self::IpInUse {
                vm,
                key,
                ip,
                holder_kind,
                holder_vmid,
                holder_name,
                holder_key,
            } => {
                let kind = match holder_kind {
                    GuestKind::Vm => "VM",
                    GuestKind::Container => "container",
                };
                write!(
                    f,
                    "{vm}: IP {ip} ({key}) is already configured on {kind} {holder_vmid} ({holder_name}, {holder_key})"
                )
            }
            Self::DuplicateIp { ip, vms } => {
                write!(f, "IP {ip} is declared for more than one VM: {}", list(vms))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_an_operator_writes_them() {
        assert_eq!(human(6 << 30), "6 GiB");
        assert_eq!(human((15 << 30) / 2), "7.5 GiB");
        assert_eq!(human(512 << 20), "512 MiB");
        assert_eq!(human(0), "0 MiB");
    }
}
