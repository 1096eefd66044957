//! The pve-gitops agent library: everything the binary wires together.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod manifests;
pub mod observe;
pub mod plan;
pub mod pve;
pub mod reconcile;
pub mod source;
