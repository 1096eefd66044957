//! The pve-gitops agent library: everything the binary wires together.

pub mod access;
pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod init;
pub mod kinds;
pub mod lease;
pub mod manifests;
pub mod observe;
pub mod pass;
pub mod plan;
pub mod preflight;
pub mod preview;
pub mod pve;
pub mod reconcile;
pub mod report;
pub mod revision;
pub mod secrets;
pub mod selfstat;
pub mod source;
pub mod webhook;
pub mod windows;
