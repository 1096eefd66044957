//! The `pve-gitops` binary: parse the command line, run the command, map the result to an
//! exit code. Everything else lives in the library.

use clap::Parser;
use pve_gitops::cli::{Cli, Command, SecretsCommand};
use pve_gitops::commands;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { dir, format } => commands::validate(&dir, format),
        Command::Render { dir, summary } => commands::render(&dir, summary),
        Command::Schema => commands::schema(),
        Command::Plan {
            dir,
            connection,
            policy,
        } => pve_gitops::reconcile::plan_command(&dir, &connection, &policy),
        Command::Apply {
            dir,
            connection,
            policy,
            parallelism,
            ..
        } => pve_gitops::reconcile::apply_command(&dir, &connection, &policy, parallelism),
        Command::Secrets(SecretsCommand::Decrypt { identity, path }) => {
            commands::secrets_decrypt(&identity.identity, &path)
        }
        Command::Secrets(SecretsCommand::Recipients { identity }) => {
            commands::secrets_recipients(&identity.identity)
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("pve-gitops: {e:#}");
            std::process::exit(2);
        }
    }
}
