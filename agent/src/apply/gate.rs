//! Health gates: after a VM's actions, wait until it is ready before its dependents start
//! (the guest agent answers, cloud-init has finished, a TCP port accepts connections).
//!
//! Polling backs off from half a second to five seconds: a booting guest takes tens of
//! seconds, and a gate polled every few seconds costs a handful of requests per VM.

use crate::plan::rollout::Gate;
use crate::pve::{PveClient, PveError};
use std::time::Duration;
use tokio::time::{sleep, timeout_at, Instant};

/// Why a VM did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("the guest agent did not answer within {0:?} (last error: {1})")]
    AgentTimeout(Duration, String),
    #[error("cloud-init did not finish within {0:?}")]
    CloudInitTimeout(Duration),
    /// `cloud-init status --wait` exited with an error: the guest's setup failed.
    #[error("cloud-init failed (exit code {code}): {output}")]
    CloudInitFailed { code: i64, output: String },
    #[error("{addr} did not accept TCP connections within {timeout:?}")]
    TcpTimeout {
        addr: std::net::SocketAddr,
        timeout: Duration,
    },
    #[error(transparent)]
    Pve(#[from] PveError),
}

/// Wait until `gate` passes for VM `vmid` on `node`, or its timeout ends.
pub async fn wait_ready(
    client: &PveClient,
    node: &str,
    vmid: u32,
    gate: &Gate,
    probes: Option<&std::collections::BTreeMap<std::net::SocketAddr, std::net::SocketAddr>>,
) -> Result<(), GateError> {
    let deadline = Instant::now() + gate.timeout;
    if gate.guest_agent || gate.cloud_init {
        agent_up(client, node, vmid, deadline, gate.timeout).await?;
    }
    if gate.cloud_init {
        cloud_init_done(client, node, vmid, deadline, gate.timeout).await?;
    }
    if let Some((ip, port)) = gate.tcp {
        let addr = std::net::SocketAddr::new(ip, port);
        // Without a map, the guest's address; with one, only what it maps the address to.
        let dial = match probes {
            None => Some(addr),
            Some(map) => map.get(&addr).copied(),
        };
        let mut backoff = Backoff::new();
        loop {
            let attempt = match dial {
                Some(dial) => timeout_at(deadline, tokio::net::TcpStream::connect(dial)).await,
                None => Ok(Err(std::io::ErrorKind::ConnectionRefused.into())),
            };
            // A probe that ended is progress for the watchdog (no API call marks it).
            crate::telemetry::liveness::mark();
            match attempt {
                Ok(Ok(_)) => break,
                Ok(Err(_)) if Instant::now() + backoff.peek() < deadline => backoff.wait().await,
                _ => {
                    return Err(GateError::TcpTimeout {
                        addr,
                        timeout: gate.timeout,
                    })
                }
            }
        }
    }
    Ok(())
}

async fn agent_up(
    client: &PveClient,
    node: &str,
    vmid: u32,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), GateError> {
    let mut backoff = Backoff::new();
    loop {
        match client.agent_ping(node, vmid).await {
            Ok(()) => return Ok(()),
            // "QEMU guest agent is not running" and agent timeouts are HTTP 500: not yet.
            Err(e @ (PveError::Api(_) | PveError::Transport { .. })) => {
                if Instant::now() + backoff.peek() >= deadline {
                    return Err(GateError::AgentTimeout(timeout, e.to_string()));
                }
                backoff.wait().await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Run `cloud-init status --wait` through the agent and wait for it to exit. Exit code 0
/// is done; 2 is done with recoverable errors (cloud-init 23.4+), reported as ready.
async fn cloud_init_done(
    client: &PveClient,
    node: &str,
    vmid: u32,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), GateError> {
    let pid = client
        .agent_exec(node, vmid, &["cloud-init", "status", "--wait"], None)
        .await?;
    let mut backoff = Backoff::new();
    loop {
        let status = client.agent_exec_status(node, vmid, pid).await?;
        if status.exited {
            return match status.exitcode.unwrap_or(-1) {
                0 | 2 => Ok(()),
                code => Err(GateError::CloudInitFailed {
                    code,
                    output: summary(&status.err_data, &status.out_data),
                }),
            };
        }
        if Instant::now() + backoff.peek() >= deadline {
            return Err(GateError::CloudInitTimeout(timeout));
        }
        backoff.wait().await;
    }
}

/// The first line of what the command printed (stderr first), bounded.
fn summary(err: &Option<String>, out: &Option<String>) -> String {
    let text = [err, out]
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .find(|s| !s.is_empty())
        .unwrap_or("no output");
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// Waits of 0.5 s doubling up to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(500))
    }

    fn peek(&self) -> Duration {
        self.0
    }

    async fn wait(&mut self) {
        sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}
