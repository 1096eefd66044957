//! Container (LXC) endpoints: read, create, configure, power, destroy.

use super::client::PveClient;
use super::config::VmConfig;
use super::error::PveError;
use super::form::{segment, Params};
use super::retry::Idempotency;
use super::upid::Upid;
use serde_json::Value;

fn ct_path(node: &str, vmid: u32, tail: &str) -> String {
    format!("/nodes/{}/lxc/{vmid}{tail}", segment(node))
}

impl PveClient {
    /// `GET /nodes/{node}/lxc/{vmid}/config`: a container's config and digest, in the same
    /// open-map shape as a VM's (`net0: name=eth0,bridge=vmbr0,ip=192.0.2.5/24`).
    pub async fn get_ct_config(&self, node: &str, vmid: u32) -> Result<VmConfig, PveError> {
        self.get(&ct_path(node, vmid, "/config"), &Params::new())
            .await
    }

    /// `POST /nodes/{node}/lxc`: create a container from `ostemplate` with the options in
    /// `params` (`rootfs`, `net0`, `password`...). Not retried: a lost answer may still
    /// have created it, so callers look before asking again.
    pub async fn create_ct(
        &self,
        node: &str,
        vmid: u32,
        params: &Params,
    ) -> Result<Upid, PveError> {
        let mut p = Params::new().with("vmid", vmid);
        p.extend(params);
        self.post(
            &format!("/nodes/{}/lxc", segment(node)),
            &p,
            Idempotency::NotIdempotent,
        )
        .await
    }

    /// `PUT .../config` (synchronous), with the config digest for optimistic concurrency.
    pub async fn set_ct_config(
        &self,
        node: &str,
        vmid: u32,
        changes: &Params,
        digest: Option<&str>,
    ) -> Result<(), PveError> {
        let p = changes.clone().with_opt("digest", digest);
        let _: Value = self
            .put(&ct_path(node, vmid, "/config"), &p, Idempotency::Idempotent)
            .await?;
        Ok(())
    }

    /// `PUT .../resize`: grow a mount point (`rootfs`, `mp0`) to `size` (`16G`).
    pub async fn resize_ct_disk(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size: &str,
    ) -> Result<Option<Upid>, PveError> {
        let p = Params::new().with("disk", disk).with("size", size);
        self.put(&ct_path(node, vmid, "/resize"), &p, Idempotency::Idempotent)
            .await
    }

    /// `POST .../status/{start|stop|shutdown}`.
    pub async fn ct_power(&self, node: &str, vmid: u32, action: &str) -> Result<Upid, PveError> {
        self.post(
            &ct_path(node, vmid, &format!("/status/{action}")),
            &Params::new(),
            Idempotency::NotIdempotent,
        )
        .await
    }

    /// Destroy a stopped container and everything that refers to it (`purge`).
    pub async fn delete_ct(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        let p = Params::new()
            .with("purge", true)
            .with("destroy-unreferenced-disks", true);
        self.delete(&ct_path(node, vmid, ""), &p).await
    }
}
