//! The `pve-gitops` binary: parse the command line, run the command, map the result to an
//! exit code. Everything else lives in the library.

use clap::Parser;
use pve_gitops::cli::{Cli, Command};
use pve_gitops::commands;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { dir, format } => commands::validate(&dir, format),
        Command::Render { dir, summary } => commands::render(&dir, summary),
        Command::Schema => commands::schema(),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("pve-gitops: {e:#}");
            std::process::exit(2);
        }
    }
}
