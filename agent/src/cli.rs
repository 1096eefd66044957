//! Command-line interface: every subcommand and flag, with the help text that also becomes
//! the man page.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// GitOps pull-agent for Proxmox VE: converge a cluster to the manifests in a git repository.
#[derive(Debug, Parser)]
#[command(name = "pve-gitops", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a manifests directory: every error at once, each as path:line:col.
    ///
    /// Exit status 0 when the revision is valid, 1 when it has errors.
    Validate {
        /// The manifests directory (e.g. clusters/prod).
        dir: PathBuf,
        /// Output format for the errors.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the expanded desired state as YAML (sets, blueprints, addresses resolved;
    /// secrets shown as references).
    Render {
        /// The manifests directory.
        dir: PathBuf,
        /// A table of the guests (name, vmid, node, address, size, tags) instead of YAML.
        #[arg(long)]
        summary: bool,
    },
    /// Print the JSON Schema of manifest documents (for yaml-language-server).
    Schema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}
