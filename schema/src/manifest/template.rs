//! `Template`: a VM template built from a cloud image (what `packer` or a manual
//! `qm importdisk` + `qm template` does), so clones have something to start from.

use super::common::ExtraValue;
use super::vm::{Bios, Cpu, Memory, Nic};
use crate::ids::{DiskSlot, Name, NodeName, StorageId, Tag, Vmid};
use crate::units::DiskSize;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateSpec {
    pub vmid: Vmid,
    pub node: NodeName,
    /// The cloud image the boot disk is imported from.
    pub image: ImageSource,
    /// Storage of the imported boot disk.
    pub storage: StorageId,
    /// Slot of the boot disk; default `scsi0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_slot: Option<DiskSlot>,
    /// Grow the imported disk to this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<DiskSize>,
    /// Storage of the cloud-init drive; default: `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init_storage: Option<StorageId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<Nic>,
    /// QEMU guest agent; default on (cloud images ship it or install it on first boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<bool>,
    /// Serial console (`serial0: socket`, `vga: serial0`), which cloud images expect.
    /// Default on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_console: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bios: Option<Bios>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_config: BTreeMap<String, ExtraValue>,
}

/// Where a cloud image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSource {
    /// A `StorageDownload` resource (content `import` or `iso`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Name>,
    /// An existing volume, e.g. `local:import/debian-12-genericcloud-amd64.qcow2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}
