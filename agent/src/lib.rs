//! The pve-gitops agent library: everything the binary wires together.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod generate;
pub mod lease;
pub mod manifests;
pub mod observe;
pub mod plan;
pub mod preflight;
pub mod pve;
pub mod reconcile;
pub mod report;
pub mod revision;
pub mod secrets;
pub mod selfstat;
pub mod source;
pub mod telemetry;
pub mod webhook;
