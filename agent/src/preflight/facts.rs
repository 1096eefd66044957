//! What the pre-flight knows about the cluster: nodes, storages and guests as one
//! `/cluster/resources` lists them, and the IP addresses configured on guests.

use crate::pve::ClusterResource;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// PVE's default `memory` of a VM that does not set one (MiB).
pub const DEFAULT_MEMORY_MIB: u64 = 512;

/// The cluster as the pre-flight checks see it. Plain data: tests build it by hand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFacts {
    pub nodes: BTreeMap<String, NodeFacts>,
    /// Per (node, storage id): a storage as that node sees it. A shared storage has one
    /// entry per node, all describing the same space.
    pub storages: BTreeMap<(String, String), StorageFacts>,
    /// Every guest (VMs, containers, templates) by vmid.
    pub guests: BTreeMap<u32, GuestFacts>,
    /// `Template` manifest names → vmid, as apply resolves `clone: { template: name }`.
    pub template_names: BTreeMap<String, u32>,
}

/// A node and its capacity (bytes; `maxcpu` is the number of CPU threads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub online: bool,
    pub mem: u64,
    pub maxmem: u64,
    pub maxcpu: u64,
}

impl NodeFacts {
    pub fn free_mem(&self) -> u64 {
        self.maxmem.saturating_sub(self.mem)
    }
}

/// A storage on one node (bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageFacts {
    /// PVE could activate it there (`status: available`).
    pub available: bool,
    pub shared: bool,
    pub used: u64,
    pub total: u64,
}

impl StorageFacts {
    pub fn free(&self) -> u64 {
        self.total.saturating_sub(self.used)
    }
}

/// `qemu` or `lxc`: how the guest is named in messages, and where its IPs are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    Vm,
    Container,
}

/// A guest of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestFacts {
    pub kind: GuestKind,
    pub name: String,
    pub node: String,
    pub template: bool,
    pub running: bool,
    /// Configured memory (bytes) and vCPUs, as `/cluster/resources` reports them.
    pub maxmem: u64,
    pub maxcpu: u64,
    /// Static addresses in its config, with the key that sets each (`ipconfig0`, `net1`).
    /// Filled only when the plan declares an address (reading configs costs a call each).
    pub ips: Vec<(String, IpAddr)>,
}

impl ClusterFacts {
    /// Storage id → shared, as apply needs it to tell whether a clone may go to another
    /// node; `None` when the cluster was not listed (an empty plan needs no facts).
    pub fn storages_shared(&self) -> Option<BTreeMap<String, bool>> {
        if self.nodes.is_empty() {
            return None;
        }
        Some(
            self.storages
                .iter()
                .map(|((_, id), s)| (id.clone(), s.shared))
                .collect(),
        )
    }

    /// Nodes, storages and guests from one unfiltered `GET /cluster/resources`.
    pub fn from_resources(resources: &[ClusterResource]) -> Self {
        let mut facts = ClusterFacts::default();
        for r in resources {
            let node = r.node.clone().unwrap_or_default();
            let online = r.status.as_deref() == Some("online");
            match r.kind.as_str() {
                "node" => {
                    facts.nodes.insert(
                        node,
                        NodeFacts {
                            online,
                            mem: r.mem.unwrap_or(0),
                            maxmem: r.maxmem.unwrap_or(0),
                            maxcpu: r.maxcpu.unwrap_or(0.0) as u64,
                        },
                    );
                }
                "storage" => {
                    let Some(id) = r.storage.clone() else {
                        continue;
                    };
                    facts.storages.insert(
                        (node, id),
                        StorageFacts {
                            available: r.status.as_deref() == Some("available"),
                            shared: r.shared,
                            used: r.disk.unwrap_or(0),
                            total: r.maxdisk.unwrap_or(0),
                        },
                    );
                }
                kind @ ("qemu" | "lxc") => {
                    let Some(vmid) = r.vmid.and_then(|v| u32::try_from(v).ok()) else {
                        continue;
                    };
                    facts.guests.insert(
                        vmid,
                        GuestFacts {
                            kind: if kind == "qemu" {
                                GuestKind::Vm
                            } else {
                                GuestKind::Container
                            },
                            name: r.name.clone().unwrap_or_default(),
                            node,
                            template: r.template,
                            running: r.status.as_deref() == Some("running"),
                            maxmem: r.maxmem.unwrap_or(0),
                            maxcpu: r.maxcpu.unwrap_or(0.0) as u64,
                            ips: Vec::new(),
                        },
                    );
                }
                _ => {}
            }
        }
        facts
    }
}

/// The static addresses of one `ipconfigN` or container `netN` value: `ip=` and `ip6=`
/// with an address (`dhcp`, `auto` and `manual` configure none).
pub fn addresses(value: &str) -> Vec<IpAddr> {
    value
        .split(',')
        .filter_map(|o| {
            o.trim()
                .strip_prefix("ip=")
                .or_else(|| o.trim().strip_prefix("ip6="))
        })
        .filter_map(|v| v.split('/').next()?.parse().ok())
        .collect()
}

/// The keys of a guest's config that configure its addresses: `ipconfigN` (cloud-init)
/// on a VM, `netN` on a container.
pub fn is_ip_key(kind: GuestKind, key: &str) -> bool {
    let prefix = match kind {
        GuestKind::Vm => "ipconfig",
        GuestKind::Container => "net",
    };
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The static addresses a guest config sets, with their keys, in key order.
pub fn config_ips<'a>(
    kind: GuestKind,
    config: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<(String, IpAddr)> {
    let mut seen = BTreeSet::new();
    config
        .into_iter()
        .filter(|(k, _)| is_ip_key(kind, k))
        .flat_map(|(k, v)| addresses(v).into_iter().map(move |ip| (k.clone(), ip)))
        .filter(|pair| seen.insert(pair.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_static_ips_only() {
        let a: IpAddr = "192.0.2.10".parse().unwrap();
        let b: IpAddr = "2001:db8::5".parse().unwrap();
        assert_eq!(addresses("ip=192.0.2.10/24,gw=192.0.2.1"), [a]);
        assert_eq!(addresses("ip=192.0.2.10/24,ip6=2001:db8::5/64"), [a, b]);
        assert!(addresses("ip=dhcp,ip6=auto").is_empty());
        assert_eq!(
            addresses("name=eth0,bridge=vmbr0,ip=192.0.2.10/24,gw=192.0.2.1"),
            [a]
        );
    }

    #[test]
    fn ip_keys_by_guest_kind() {
        assert!(is_ip_key(GuestKind::Vm, "ipconfig0"));
        assert!(is_ip_key(GuestKind::Vm, "ipconfig12"));
        assert!(!is_ip_key(GuestKind::Vm, "net0"));
        assert!(!is_ip_key(GuestKind::Vm, "ipconfig"));
        assert!(is_ip_key(GuestKind::Container, "net1"));
        assert!(!is_ip_key(GuestKind::Container, "nameserver"));
    }

    #[test]
    fn facts_from_one_unfiltered_resources_listing() {
        let resources: Vec<ClusterResource> = serde_json::from_str(
            r#"[
            {"id":"qemu/100","type":"qemu","node":"pve1","name":"db","vmid":100,"status":"running",
             "template":0,"maxmem":2147483648,"maxcpu":2},
            {"id":"qemu/9000","type":"qemu","node":"pve1","name":"tmpl","vmid":9000,"status":"stopped",
             "template":1,"maxmem":1073741824,"maxcpu":1},
            {"id":"lxc/200","type":"lxc","node":"pve2","name":"dns","vmid":200,"status":"stopped",
             "template":0,"maxmem":536870912,"maxcpu":1},
            {"id":"node/pve1","type":"node","node":"pve1","status":"online","mem":2147483648,
             "maxmem":8589934592,"maxcpu":4},
            {"id":"node/pve2","type":"node","node":"pve2","status":"offline"},
            {"id":"storage/pve1/rbd","type":"storage","node":"pve1","storage":"rbd",
             "status":"available","shared":1,"disk":0,"maxdisk":107374182400}
            ]"#,
        )
        .unwrap();
        let f = ClusterFacts::from_resources(&resources);
        assert_eq!(
            f.nodes["pve1"],
            NodeFacts {
                online: true,
                mem: 2 << 30,
                maxmem: 8 << 30,
                maxcpu: 4
            }
        );
        assert!(!f.nodes["pve2"].online);
        assert_eq!(f.nodes["pve2"].free_mem(), 0);
        let rbd = &f.storages[&("pve1".to_string(), "rbd".to_string())];
        assert!(rbd.available && rbd.shared);
        assert_eq!(rbd.free(), 100 << 30);
        assert!(f.guests[&9000].template);
        assert!(f.guests[&100].running);
        assert_eq!(f.guests[&200].kind, GuestKind::Container);
    }
}
