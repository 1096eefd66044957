//! The spec of a virtual machine: used by `VirtualMachine`, as the member template of a
//! `VirtualMachineSet`, and (in part) by `Template`.

use super::common::{ExtraValue, PowerState, ResourceRef};
use super::policy::DriftMode;
use crate::ids::{Bridge, DiskSlot, Name, NodeName, PoolId, StorageId, Tag, VlanTag, Vmid};
use crate::net::{Ipv4Assignment, Ipv6Assignment};
use crate::secret::SecretRef;
use crate::units::{DiskSize, Duration, MemorySize};
use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A virtual machine as the user declares it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmSpec {
    /// Fixed vmid. Omit to let the agent take the next free one (it then tracks the VM by
    /// name and the `pve-gitops` tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<Vmid>,
    /// Node the VM runs on. In a set, `spec.nodes` fills this round-robin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Clone from a template; omit to create the VM from scratch with `disks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<CloneSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Disks. With `clone`, a listed slot that the template has is resized (grow only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    /// A CD/DVD drive with an ISO (e.g. a Talos or installer image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdrom: Option<CdRom>,
    /// Network interfaces, `net0`, `net1`... in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<Nic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInit>,
    /// QEMU guest agent (`agent: 1`); needed for IP reporting and health gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<bool>,
    /// Start when the node boots (`onboot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_on_boot: Option<bool>,
    /// Declared power state; the agent starts or stops the VM to reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolId>,
    /// PVE tags, in addition to the `pve-gitops` ownership tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Label keys (from `metadata.labels`) turned into tags `<last key segment>-<value>`,
    /// e.g. `topology.ecoma.io/provider: proxmox` becomes `provider-proxmox`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags_from_labels: Vec<String>,
    /// PCI passthrough devices (`hostpci0`...), e.g. a GPU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostpci: Vec<HostPci>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bios: Option<Bios>,
    /// Machine type, e.g. `q35` (needed for PCIe passthrough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// PVE's protection flag: the VM cannot be removed, and the agent never deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<bool>,
    /// Take over an existing VM with this vmid/name instead of refusing to touch it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// Change this token to destroy and recreate the VM (Terraform's `taint`). The token
    /// applied is recorded in the VM, so the rebuild happens once per change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<String>,
    /// Drift handling for this VM: its `mode` overrides the `ClusterPolicy`'s, its
    /// `ignoreFields` add to the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<ResourceDrift>,
    /// Whether this VM may be deleted once it is no longer declared, over the
    /// `ClusterPolicy`'s `prune.enabled`. Recorded in the VM, so it still counts after the
    /// manifest is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// Health gate: what must be true before dependents start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,
    /// Values published on the status branch once the VM is up (IPs, files from the guest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, Output>,
    /// Resources that must be applied (and healthy) before this one: `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ResourceRef>,
    /// Any `qm` option the schema lacks, passed through as-is (`numa: 1`, `vga: serial0`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_config: BTreeMap<String, ExtraValue>,
}

/// The template a VM is cloned from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloneSource {
    /// A `Template` resource by name, or a vmid (a template declared in `External`).
    pub template: TemplateRef,
    /// Full clone (independent disks) or linked clone. Default: full.
    #[serde(default = "yes")]
    pub full: bool,
    /// Target storage for a full clone's disks; default: the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageId>,
}

fn yes() -> bool {
    true
}

/// A template named in the manifests, or an existing one by vmid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TemplateRef {
    Vmid(Vmid),
    Name(Name),
}

impl<'de> Deserialize<'de> for TemplateRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected a template name or vmid"))?
        {
            Raw::Int(n) => Vmid::new(n)
                .map(TemplateRef::Vmid)
                .map_err(de::Error::custom),
            Raw::Text(t) => t.parse().map(TemplateRef::Name).map_err(de::Error::custom),
        }
    }
}

impl std::fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateRef::Vmid(v) => v.fmt(f),
            TemplateRef::Name(n) => n.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cpu {
    pub cores: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<u32>,
    /// CPU model, e.g. `host` or `x86-64-v2-AES`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa: Option<bool>,
}

/// A CD/DVD drive holding an ISO.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CdRom {
    /// Drive slot; default `ide2`, as PVE's GUI does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<DiskSlot>,
    /// A `StorageDownload` with content `iso`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Name>,
    /// An existing ISO volume, e.g. `local:iso/debian-12.iso`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

impl CdRom {
    pub const DEFAULT_SLOT: &'static str = "ide2";

    pub fn slot(&self) -> &str {
        self.slot
            .as_ref()
            .map_or(Self::DEFAULT_SLOT, |s| s.as_str())
    }
}

/// Memory: a size (`8G`, `8192`) or `{ size, balloon }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    pub size: MemorySize,
    /// Minimum memory for the balloon driver; `0` disables ballooning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balloon: Option<MemorySize>,
}

impl JsonSchema for Memory {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Memory".into()
    }
    fn json_schema(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let size = gen.subschema_for::<MemorySize>();
        schemars::json_schema!({
            "description": "Memory: a size (8G, 8192 MiB) or { size, balloon }.",
            "anyOf": [
                size,
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["size"],
                    "properties": { "size": size, "balloon": size }
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detailed {
            size: MemorySize,
            #[serde(default)]
            balloon: Option<MemorySize>,
        }
        let v = serde_yaml::Value::deserialize(d)?;
        if v.is_mapping() {
            let m: Detailed = serde_yaml::from_value(v).map_err(de::Error::custom)?;
            Ok(Memory {
                size: m.size,
                balloon: m.balloon,
            })
        } else {
            let size: MemorySize = serde_yaml::from_value(v).map_err(de::Error::custom)?;
            Ok(Memory {
                size,
                balloon: None,
            })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Disk {
    /// Bus and index: `scsi0`, `virtio1`, `sata0`, `ide0`.
    pub slot: DiskSlot,
    pub storage: StorageId,
    pub size: DiskSize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DiskFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<DiskCache>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iothread: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard: Option<bool>,
    /// Present the disk as an SSD to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssd: Option<bool>,
    /// Include in vzdump backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<bool>,
    /// Where the guest mounts this disk; rendered into cloud-init by snippets that use
    /// `vm.disks` (the agent itself never formats guest disks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<Mount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    /// Absolute mount point in the guest, e.g. `/var/storage/hot`; `swap` for a swap disk.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
    Vmdk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskCache {
    None,
    Writethrough,
    Writeback,
    Unsafe,
    Directsync,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Nic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<NicModel>,
    /// Host bridge (`vmbr0`) or SDN vnet.
    pub bridge: Bridge,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanTag>,
    /// Enable the PVE firewall on this interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<bool>,
    /// Fixed MAC address; omitted, PVE generates one and the agent keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    Virtio,
    E1000,
    Vmxnet3,
    Rtl8139,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudInit {
    /// Storage for the cloud-init drive, e.g. `cephfs` or `local-lvm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageId>,
    /// Slot of the cloud-init drive; default `ide2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive: Option<DiskSlot>,
    /// `ciuser`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `cipassword`, from a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Public SSH keys (`sshkeys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// Addressing per interface (`ipconfig0`, `ipconfig1`...), in `network` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_config: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// `cicustom` user data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<SnippetSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_data: Option<SnippetSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<SnippetSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<SnippetSource>,
    /// `ciupgrade`: upgrade packages on first boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<bool>,
}

impl CloudInit {
    /// The `cicustom` sources with their field names, in PVE's order.
    pub fn custom_data(&self) -> [(&'static str, Option<&SnippetSource>); 4] {
        [
            ("userData", self.user_data.as_ref()),
            ("vendorData", self.vendor_data.as_ref()),
            ("networkData", self.network_data.as_ref()),
            ("metaData", self.meta_data.as_ref()),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Assignment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Assignment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_domain: Option<String>,
}

/// Where cloud-init custom data comes from: a `Snippet` resource rendered for this VM, or an
/// existing volume (`cephfs:snippets/user.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SnippetSource {
    Snippet { snippet: Name },
    Volume { volume: String },
}

impl<'de> Deserialize<'de> for SnippetSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            snippet: Option<Name>,
            volume: Option<String>,
        }
        match Raw::deserialize(d)? {
            Raw {
                snippet: Some(snippet),
                volume: None,
            } => Ok(SnippetSource::Snippet { snippet }),
            Raw {
                snippet: None,
                volume: Some(volume),
            } if volume.contains(":snippets/") => Ok(SnippetSource::Volume { volume }),
            Raw {
                snippet: None,
                volume: Some(volume),
            } => Err(de::Error::custom(format!(
                "`{volume}` is not a snippet volume like `local:snippets/user.yaml`"
            ))),
            _ => Err(de::Error::custom(
                "expected { snippet: <Snippet name> } or { volume: <storage>:snippets/<file> }",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostPci {
    /// Raw PCI address, e.g. `0000:01:00` (all functions) or `0000:01:00.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// A cluster resource mapping name (Datacenter → Resource Mappings), preferred in clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// Pass through as PCIe (needs `machine: q35`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie: Option<bool>,
    /// Primary GPU (`x-vga=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_gpu: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rombar: Option<bool>,
    /// Mediated device type (vGPU), e.g. `nvidia-63`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdev: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bios {
    Seabios,
    Ovmf,
}

/// A health gate: the agent waits for these before starting dependents.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaitFor {
    /// The guest agent answers `ping`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest_agent: bool,
    /// `cloud-init status` reports done (run through the guest agent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cloud_init: bool,
    /// A TCP port on the VM's first static address accepts connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// One published value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Output {
    /// A fact about the VM: `ipv4`, `ipv6` (as reported by the guest agent), `vmid`, `node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<OutputValue>,
    /// A file read from the guest through the guest agent, e.g. `/etc/rancher/k3s/k3s.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_file: Option<String>,
    /// Commit the value only age-encrypted to the repository's recipients.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputValue {
    Ipv4,
    Ipv6,
    Vmid,
    Node,
}

/// A resource's own drift settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceDrift {
    /// `ignore`, `report` or `heal`; default: the `ClusterPolicy`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DriftMode>,
    /// Config paths never compared for drift, in addition to the cluster's: a `qm` key
    /// (`description`, `cipassword`), one option of it (`net0.tag`, `net0.macaddr`), or
    /// `powerState` / `node`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_fields: Vec<String>,
}

/// The longest `rebuild` token: it is recorded in the VM's description.
pub const MAX_REBUILD_TOKEN: usize = 64;

/// Whether `path` is a drift field path: `key` or `key.option`, each of lower-case
/// letters, digits, `_` and `-` (`powerState` is the one camel-case name).
pub fn is_field_path(path: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut parts = path.split('.');
    let (Some(key), option, None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    part(key) && option.is_none_or(part)
}
