//! QEMU guest agent endpoints: liveness, the guest's IP addresses, commands and files.
//!
//! Used to wait until a cloned VM has booted (cloud-init done), to read its addresses
//! for the inventory, and to fetch outputs such as a kubeconfig. They answer
//! "QEMU guest agent is not running" (HTTP 500, [`PveError::Api`]) until the guest's
//! agent is up, which callers treat as "not yet".

use serde::Deserialize;
use serde_json::Value;

use super::client::PveClient;
use super::de;
use super::error::PveError;
use super::form::{segment, Params};
use super::retry::Idempotency;

fn agent_path(node: &str, vmid: u32, command: &str) -> String {
    format!("/nodes/{}/qemu/{vmid}/agent/{command}", segment(node))
}

/// `GET .../agent/exec-status`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AgentExecStatus {
    #[serde(default, deserialize_with = "de::flag")]
    pub exited: bool,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub exitcode: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub signal: Option<i64>,
    #[serde(default, rename = "out-data")]
    pub out_data: Option<String>,
    #[serde(default, rename = "err-data")]
    pub err_data: Option<String>,
    #[serde(default, rename = "out-truncated", deserialize_with = "de::flag")]
    pub out_truncated: bool,
    #[serde(default, rename = "err-truncated", deserialize_with = "de::flag")]
    pub err_truncated: bool,
}

/// `GET .../agent/file-read`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AgentFile {
    pub content: String,
    #[serde(default, deserialize_with = "de::flag")]
    pub truncated: bool,
}

/// One interface of `network-get-interfaces`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct GuestInterface {
    pub name: String,
    #[serde(default, rename = "hardware-address")]
    pub hardware_address: Option<String>,
    #[serde(default, rename = "ip-addresses")]
    pub ip_addresses: Vec<GuestIpAddress>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct GuestIpAddress {
    #[serde(rename = "ip-address")]
    pub ip_address: String,
    /// `ipv4` or `ipv6`.
    #[serde(rename = "ip-address-type")]
    pub ip_address_type: String,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub prefix: Option<u64>,
}

#[derive(Deserialize)]
struct AgentResult<T> {
    result: T,
}

#[derive(Deserialize)]
struct ExecStarted {
    #[serde(deserialize_with = "de::u64_any")]
    pid: u64,
}

impl PveClient {
    /// Succeeds once the guest agent answers.
    pub async fn agent_ping(&self, node: &str, vmid: u32) -> Result<(), PveError> {
        let _: Value = self
            .post(
                &agent_path(node, vmid, "ping"),
                &Params::new(),
                Idempotency::Idempotent,
            )
            .await?;
        Ok(())
    }

    /// Start `argv` in the guest; returns the guest pid for [`Self::agent_exec_status`].
    pub async fn agent_exec(
        &self,
        node: &str,
        vmid: u32,
        argv: &[&str],
        input_data: Option<&str>,
    ) -> Result<u64, PveError> {
        let mut p = Params::new();
        p.push_list("command", argv.iter().copied());
        let p = p.with_opt("input-data", input_data);
        let started: ExecStarted = self
            .post(
                &agent_path(node, vmid, "exec"),
                &p,
                Idempotency::NotIdempotent,
            )
            .await?;
        Ok(started.pid)
    }

    pub async fn agent_exec_status(
        &self,
        node: &str,
        vmid: u32,
        pid: u64,
    ) -> Result<AgentExecStatus, PveError> {
        self.get(
            &agent_path(node, vmid, "exec-status"),
            &Params::new().with("pid", pid),
        )
        .await
    }

    /// Read a file of the guest (PVE caps the size; see `truncated`).
    pub async fn agent_file_read(
        &self,
        node: &str,
        vmid: u32,
        file: &str,
    ) -> Result<AgentFile, PveError> {
        self.get(
            &agent_path(node, vmid, "file-read"),
            &Params::new().with("file", file),
        )
        .await
    }

    pub async fn agent_network_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Vec<GuestInterface>, PveError> {
        let r: AgentResult<Vec<GuestInterface>> = self
            .get(
                &agent_path(node, vmid, "network-get-interfaces"),
                &Params::new(),
            )
            .await?;
        Ok(r.result)
    }
}
