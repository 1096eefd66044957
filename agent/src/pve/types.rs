//! Typed answers of the read endpoints the agent observes the cluster with.
//!
//! Only fields the agent has a use for are typed; PVE adds fields between releases and
//! serde ignores the ones it does not know. Numbers and flags go through [`super::de`]
//! because PVE is not strict about their JSON types.

use serde::Deserialize;
use serde_json::Value;

use super::de;

/// One entry of `GET /cluster/resources` (here mostly `type=vm`: VMs and containers).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ClusterResource {
    /// `qemu/100`, `lxc/101`, `node/pve1`, `storage/pve1/local`, ...
    pub id: String,
    /// `qemu`, `lxc`, `node`, `storage`, `pool`, `sdn`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub vmid: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de::flag")]
    pub template: bool,
    /// `;`-separated, as PVE stores them.
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub lock: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub hastate: Option<String>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpu: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub maxcpu: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub mem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Bytes used: of a storage (`type=storage`), or a node's root filesystem.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub disk: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    /// Storage entries: the storage id (the entry's `node` says which node's view).
    #[serde(default)]
    pub storage: Option<String>,
    /// Storage entries: every node sees the same content (Ceph, NFS, ...).
    #[serde(default, deserialize_with = "de::flag")]
    pub shared: bool,
}

impl ClusterResource {
    /// The tags, split the way PVE splits them (`;`, `,` or spaces).
    pub fn tag_list(&self) -> Vec<&str> {
        split_tags(self.tags.as_deref().unwrap_or(""))
    }
}

pub(crate) fn split_tags(tags: &str) -> Vec<&str> {
    tags.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .collect()
}

/// One entry of `GET /nodes`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub node: String,
    /// `online`, `offline` or `unknown`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpu: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxcpu: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub mem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub disk: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxdisk: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    #[serde(default)]
    pub ssl_fingerprint: Option<String>,
}

impl NodeInfo {
    pub fn is_online(&self) -> bool {
        self.status.as_deref() == Some("online")
    }
}

/// `GET /nodes/{node}/status`: what placement and pre-flight checks need.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct NodeStatus {
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpu: Option<f64>,
    #[serde(default)]
    pub cpuinfo: Option<CpuInfo>,
    #[serde(default)]
    pub memory: Option<MemoryUsage>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    #[serde(default)]
    pub pveversion: Option<String>,
    #[serde(default)]
    pub loadavg: Vec<Value>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CpuInfo {
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub cpus: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub cores: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub sockets: Option<u64>,
    #[serde(default)]
    pub model: Option<String>,
}

/// Bytes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct MemoryUsage {
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub total: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub used: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub free: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub available: Option<u64>,
}

/// `GET /nodes/{node}/qemu/{vmid}/status/current`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct VmStatus {
    #[serde(deserialize_with = "de::u64_any")]
    pub vmid: u64,
    #[serde(default)]
    pub name: Option<String>,
    /// `running` or `stopped`.
    pub status: String,
    /// The QEMU state: `running`, `paused`, `prelaunch`, ...
    #[serde(default)]
    pub qmpstatus: Option<String>,
    #[serde(default)]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "de::flag")]
    pub template: bool,
    /// The guest agent is enabled in the config (not that it answers).
    #[serde(default, deserialize_with = "de::flag")]
    pub agent: bool,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpus: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub mem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub pid: Option<u64>,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub ha: Option<Value>,
}

impl VmStatus {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// One entry of `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct StorageContent {
    /// `local:iso/debian.iso`, `local-lvm:vm-100-disk-0`.
    pub volid: String,
    /// `iso`, `images`, `vztmpl`, `backup`, `snippets`, `import`, `rootdir`.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub size: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub vmid: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub ctime: Option<u64>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// `GET /pools` entries (with `members` when asked for one pool).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Pool {
    pub poolid: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub members: Vec<PoolMember>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PoolMember {
    pub id: String,
    /// `qemu`, `lxc` or `storage`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub vmid: Option<u64>,
    #[serde(default)]
    pub storage: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_from_fakepve_shape() {
        let r: ClusterResource = serde_json::from_str(
            r#"{"id":"qemu/100","type":"qemu","node":"pve1","name":"a","vmid":100,
                "status":"stopped","template":0,"maxmem":536870912,"cpu":0,"tags":"b;a"}"#,
        )
        .unwrap();
        assert_eq!(r.vmid, Some(100));
        assert!(!r.template);
        assert_eq!(r.tag_list(), ["b", "a"]);
    }

    #[test]
    fn storage_resource_from_fakepve_shape() {
        let r: ClusterResource = serde_json::from_str(
            r#"{"id":"storage/pve1/rbd","type":"storage","node":"pve1","storage":"rbd",
                "status":"available","plugintype":"rbd","content":"images","shared":1,
                "disk":1073741824,"maxdisk":107374182400}"#,
        )
        .unwrap();
        assert_eq!(r.storage.as_deref(), Some("rbd"));
        assert!(r.shared);
        assert_eq!((r.disk, r.maxdisk), (Some(1 << 30), Some(100 << 30)));
    }
}
