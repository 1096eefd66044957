//! QEMU guest endpoints: config, lifecycle, clone, create, resize, template, delete.
//!
//! Long operations return a [`Upid`]; the caller waits with
//! [`PveClient::wait_task`]. Creates (clone, create) are never retried on a
//! server error, because they may have happened: check whether the VMID exists before
//! trying again.

use serde_json::Value;

use super::client::PveClient;
use super::config::{PendingEntry, VmConfig};
use super::error::PveError;
use super::form::{segment, Params};
use super::retry::Idempotency;
use super::types::VmStatus;
use super::upid::Upid;

fn vm_path(node: &str, vmid: u32, tail: &str) -> String {
    format!("/nodes/{}/qemu/{vmid}{tail}", segment(node))
}

/// `POST /nodes/{node}/qemu/{vmid}/clone`. `None`/`false` fields are not sent, so PVE's
/// defaults apply (a template's clone is linked unless `full`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CloneOptions {
    pub newid: u32,
    pub name: Option<String>,
    /// Node the clone ends up on (the task still runs on the source node).
    pub target: Option<String>,
    pub full: Option<bool>,
    /// Target storage for a full clone.
    pub storage: Option<String>,
    pub format: Option<String>,
    pub pool: Option<String>,
    pub description: Option<String>,
    pub snapname: Option<String>,
}

impl CloneOptions {
    pub fn new(newid: u32) -> Self {
        CloneOptions {
            newid,
            ..Default::default()
        }
    }

    fn params(&self) -> Params {
        Params::new()
            .with("newid", self.newid)
            .with_opt("name", self.name.as_deref())
            .with_opt("target", self.target.as_deref())
            .with_opt("full", self.full)
            .with_opt("storage", self.storage.as_deref())
            .with_opt("format", self.format.as_deref())
            .with_opt("pool", self.pool.as_deref())
            .with_opt("description", self.description.as_deref())
            .with_opt("snapname", self.snapname.as_deref())
    }
}

/// How `shutdown_vm` behaves when the guest does not power off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownOptions {
    /// Seconds PVE waits for the guest (PVE's default applies when `None`).
    pub timeout: Option<u32>,
    /// Stop the VM hard when the timeout passes, instead of failing the task.
    pub force_stop: bool,
}

/// True if setting `key` to `value` allocates a new disk (`scsi1: local-lvm:32`): doing
/// that twice makes two disks, so such a write is not idempotent.
fn allocates_disk(key: &str, value: &str) -> bool {
    let drive = ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"]
        .iter()
        .any(|p| {
            key.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    if !drive {
        return false;
    }
    let volume = value.split(',').next().unwrap_or("");
    let size = volume.rsplit_once(':').map_or(volume, |(_, s)| s);
    !size.is_empty() && size.parse::<f64>().is_ok()
}

/// The form of a config write: changes, `delete=a,b`, and the digest.
fn config_params(changes: &Params, deletes: &[&str], digest: Option<&str>) -> Params {
    let mut p = changes.clone();
    if !deletes.is_empty() {
        p.push("delete", deletes.join(","));
    }
    p.with_opt("digest", digest)
}

/// A config write may be repeated if it carries a digest (a repeat after success fails
/// the digest check instead of applying twice) or allocates no disk.
fn config_idempotency(changes: &Params, digest: Option<&str>) -> Idempotency {
    if digest.is_some() || !changes.iter().any(|(k, v)| allocates_disk(k, v)) {
        Idempotency::Idempotent
    } else {
        Idempotency::NotIdempotent
    }
}

impl PveClient {
    /// The current config and its digest.
    pub async fn get_vm_config(&self, node: &str, vmid: u32) -> Result<VmConfig, PveError> {
        self.get(&vm_path(node, vmid, "/config"), &Params::new())
            .await
    }

    /// Per key: current value and the value after the next start.
    pub async fn vm_pending(&self, node: &str, vmid: u32) -> Result<Vec<PendingEntry>, PveError> {
        self.get(&vm_path(node, vmid, "/pending"), &Params::new())
            .await
    }

    pub async fn vm_status_current(&self, node: &str, vmid: u32) -> Result<VmStatus, PveError> {
        self.get(&vm_path(node, vmid, "/status/current"), &Params::new())
            .await
    }

    /// Synchronous config write (`PUT .../config`). With `digest`, PVE refuses the write
    /// ([`PveError::ChecksumMismatch`]) if the config changed since it was read.
    pub async fn set_vm_config(
        &self,
        node: &str,
        vmid: u32,
        changes: &Params,
        deletes: &[&str],
        digest: Option<&str>,
    ) -> Result<(), PveError> {
        let _: Value = self
            .put(
                &vm_path(node, vmid, "/config"),
                &config_params(changes, deletes, digest),
                config_idempotency(changes, digest),
            )
            .await?;
        Ok(())
    }

    /// Asynchronous config write (`POST .../config`): for changes that may take long
    /// (disk allocation, on a busy storage). PVE answers with a task, or with nothing
    /// when it had nothing to run in the background.
    pub async fn set_vm_config_async(
        &self,
        node: &str,
        vmid: u32,
        changes: &Params,
        deletes: &[&str],
        digest: Option<&str>,
    ) -> Result<Option<Upid>, PveError> {
        self.post(
            &vm_path(node, vmid, "/config"),
            &config_params(changes, deletes, digest),
            config_idempotency(changes, digest),
        )
        .await
    }

    /// Clone `vmid` (usually a template). The new VM carries `lock: clone` until the
    /// task ends.
    pub async fn clone_vm(
        &self,
        node: &str,
        vmid: u32,
        options: &CloneOptions,
    ) -> Result<Upid, PveError> {
        self.post(
            &vm_path(node, vmid, "/clone"),
            &options.params(),
            Idempotency::NotIdempotent,
        )
        .await
    }

    /// `POST /nodes/{node}/qemu` with `vmid` and any `qm create` options in `params`.
    pub async fn create_vm(
        &self,
        node: &str,
        vmid: u32,
        params: &Params,
    ) -> Result<Upid, PveError> {
        let mut p = Params::new().with("vmid", vmid);
        p.extend(params);
        self.post(
            &format!("/nodes/{}/qemu", segment(node)),
            &p,
            Idempotency::NotIdempotent,
        )
        .await
    }

    /// Grow a disk: `size` is absolute (`32G`) or relative (`+2G`). Disks only grow.
    /// PVE 8+ answers with a task; older ones with nothing.
    pub async fn resize_disk(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size: &str,
        digest: Option<&str>,
    ) -> Result<Option<Upid>, PveError> {
        let idempotency = if size.starts_with('+') && digest.is_none() {
            Idempotency::NotIdempotent
        } else {
            Idempotency::Idempotent
        };
        let p = Params::new()
            .with("disk", disk)
            .with("size", size)
            .with_opt("digest", digest);
        self.put(&vm_path(node, vmid, "/resize"), &p, idempotency)
            .await
    }

    /// `POST .../migrate`: move a VM to `target`. Offline (a stopped VM) moves its local
    /// disks along; `online` live-migrates a running one.
    pub async fn migrate_vm(
        &self,
        node: &str,
        vmid: u32,
        target: &str,
        online: bool,
    ) -> Result<Upid, PveError> {
        let p = Params::new()
            .with("target", target)
            .with_opt("online", online.then_some(true));
        self.post(
            &vm_path(node, vmid, "/migrate"),
            &p,
            Idempotency::NotIdempotent,
        )
        .await
    }

    async fn vm_action(
        &self,
        node: &str,
        vmid: u32,
        action: &str,
        p: &Params,
    ) -> Result<Upid, PveError> {
        self.post(
            &vm_path(node, vmid, &format!("/status/{action}")),
            p,
            Idempotency::NotIdempotent,
        )
        .await
    }

    pub async fn start_vm(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.vm_action(node, vmid, "start", &Params::new()).await
    }

    /// ACPI shutdown; see [`ShutdownOptions`].
    pub async fn shutdown_vm(
        &self,
        node: &str,
        vmid: u32,
        options: ShutdownOptions,
    ) -> Result<Upid, PveError> {
        let mut p = Params::new().with_opt("timeout", options.timeout);
        if options.force_stop {
            p.push("forceStop", true);
        }
        self.vm_action(node, vmid, "shutdown", &p).await
    }

    /// Hard stop (like pulling the power).
    pub async fn stop_vm(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.vm_action(node, vmid, "stop", &Params::new()).await
    }

    /// ACPI reboot; applies pending config changes.
    pub async fn reboot_vm(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.vm_action(node, vmid, "reboot", &Params::new()).await
    }

    /// Destroy a stopped VM. `purge` also removes it from backup jobs, HA and replication;
    /// `destroy_unreferenced_disks` also frees disks owned by the VMID but not in its config.
    pub async fn delete_vm(
        &self,
        node: &str,
        vmid: u32,
        purge: bool,
        destroy_unreferenced_disks: bool,
    ) -> Result<Upid, PveError> {
        let p = Params::new()
            .with("purge", purge)
            .with("destroy-unreferenced-disks", destroy_unreferenced_disks);
        self.delete(&vm_path(node, vmid, ""), &p).await
    }

    /// Make a stopped VM a template (its disks become read-only base volumes).
    pub async fn convert_to_template(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Option<Upid>, PveError> {
        self.post(
            &vm_path(node, vmid, "/template"),
            &Params::new(),
            Idempotency::NotIdempotent,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_allocation_is_detected() {
        assert!(allocates_disk("scsi1", "local-lvm:32"));
        assert!(allocates_disk("virtio0", "rbd:0.5,iothread=1"));
        assert!(allocates_disk("efidisk0", "local-lvm:1,efitype=4m"));
        assert!(!allocates_disk("scsi0", "local-lvm:vm-100-disk-0,size=32G"));
        assert!(!allocates_disk("ide2", "cephfs:cloudinit,media=cdrom"));
        assert!(!allocates_disk("net0", "virtio,bridge=vmbr0"));
        assert!(!allocates_disk("scsihw", "virtio-scsi-pci"));
    }

    #[test]
    fn config_write_form() {
        let changes = Params::new().with("cores", 4u32).with("onboot", true);
        let p = config_params(&changes, &["balloon", "tags"], Some("d1"));
        assert_eq!(
            p.encode(),
            "cores=4&onboot=1&delete=balloon%2Ctags&digest=d1"
        );
        let alloc = Params::new().with("scsi1", "local-lvm:8");
        assert_eq!(config_idempotency(&alloc, None), Idempotency::NotIdempotent);
        assert_eq!(
            config_idempotency(&alloc, Some("d")),
            Idempotency::Idempotent
        );
    }
}
