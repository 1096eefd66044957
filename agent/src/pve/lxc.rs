//! Container (LXC) endpoints: only what the agent reads so far.

use super::client::PveClient;
use super::config::VmConfig;
use super::error::PveError;
use super::form::{segment, Params};

impl PveClient {
    /// `GET /nodes/{node}/lxc/{vmid}/config`: a container's config and digest, in the same
    /// open-map shape as a VM's (`net0: name=eth0,bridge=vmbr0,ip=192.0.2.5/24`).
    pub async fn get_ct_config(&self, node: &str, vmid: u32) -> Result<VmConfig, PveError> {
        let path = format!("/nodes/{}/lxc/{vmid}/config", segment(node));
        self.get(&path, &Params::new()).await
    }
}
