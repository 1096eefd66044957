//! Proxmox VE API client.
//!
//! The agent's only way to read and change the cluster. It talks to the PVE API of its
//! own node (`https://127.0.0.1:8006`) with an API token, verifies the node's
//! certificate against the cluster CA (or a pinned fingerprint), and turns PVE's answers
//! into typed values and typed errors the planner and applier can act on.
//!
//! * [`client`]: HTTP core: auth, envelope, error classification, retries, limits.
//! * [`options`]: the API token and connection options a client is built from.
//! * [`error`]: [`PveError`], one variant per failure a caller reacts to differently.
//! * [`tls`]: trust configuration, including the fingerprint verifier.
//! * [`form`]: PVE's form encoding (`%2B`, `1`/`0`, `sshkeys`).
//! * [`upid`], [`task`], [`pace`]: task ids, waiting for tasks, learned task durations.
//! * [`retry`], [`limits`]: which failures are repeated; concurrency bounds.
//! * [`qemu`], [`lxc`], [`cluster`], [`storage`], [`guest_agent`]: typed endpoints.
//! * [`config`], [`types`]: what the read endpoints return.

pub mod board;
pub mod client;
pub mod cluster;
pub mod config;
pub mod de;
pub mod error;
pub mod firewall;
pub mod form;
pub mod guest_agent;
pub mod limits;
pub mod lxc;
pub mod options;
pub mod pace;
pub mod qemu;
pub mod retry;
pub mod sdn;
pub mod storage;
pub mod task;
pub mod tls;
pub mod types;
pub mod upid;

pub use client::PveClient;
pub use cluster::{PoolUpdate, ResourceType};
pub use config::{PendingEntry, VmConfig};
pub use error::{ClientBuildError, HttpFailure, PveError, TransportKind};
pub use form::{encode_sshkeys, Params};
pub use options::{ApiToken, ClientOptions};
pub use qemu::{CloneOptions, ShutdownOptions};
pub use retry::{Idempotency, RetryPolicy};
pub use storage::DownloadUrl;
pub use task::{Probed, TaskOutcome, TaskPollPolicy, TaskStatus};
pub use tls::{CertFingerprint, TlsTrust, PVE_ROOT_CA};
pub use types::{ClusterResource, NodeInfo, NodeStatus, Pool, StorageContent, VmStatus};
pub use upid::Upid;
