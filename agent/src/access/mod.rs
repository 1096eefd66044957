//! The agent's identity in Proxmox VE: the privileges it needs and the access API
//! (`/access/...`) that `init` sets them up with and `doctor` checks them through.
//!
//! * [`privileges`]: the least-privilege list, each entry with the API calls that need it.
//! * [`api`]: users, roles, ACLs, API tokens and effective permissions.

pub mod api;
pub mod privileges;

/// The PVE user the agent's token belongs to. Realm `pve`: a user PVE itself keeps, with
/// no password set, so it can only act through its API token.
pub const USER: &str = "pve-gitops@pve";
/// The token's name: `pve-gitops@pve!agent`.
pub const TOKEN_NAME: &str = "agent";
/// The role holding exactly [`privileges::required`].
pub const ROLE: &str = "PVEGitOps";
