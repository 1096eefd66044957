//! The `pve-gitops` binary: parse the command line, run the command, map the result to an
//! exit code. Everything else lives in the library.

use clap::Parser;
use pve_gitops::cli::{Cli, Command, GenerateCommand, SecretsCommand};
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
            secrets,
        } => pve_gitops::reconcile::plan_command(&dir, &connection, &policy, &secrets),
        Command::Apply {
            dir,
            connection,
            policy,
            apply,
            secrets,
            now,
            ..
        } => {
            // The one-shot prints its own progress; the agent's log (task polls, retries)
            // only when asked for.
            if std::env::var_os("RUST_LOG").is_some() {
                pve_gitops::telemetry::journal::init_logging();
            }
            pve_gitops::reconcile::apply_command(&dir, &connection, &policy, &apply, &secrets, now)
        }
        Command::Run(args) => {
            pve_gitops::telemetry::journal::init_logging();
            pve_gitops::reconcile::run_command(*args)
        }
        Command::Status { state_dir } => commands::status(&state_dir),
        Command::Secrets(SecretsCommand::Decrypt { identity, path }) => {
            commands::secrets_decrypt(&identity.identity, &path)
        }
        Command::Secrets(SecretsCommand::Recipients { identity }) => {
            commands::secrets_recipients(&identity.identity)
        }
        Command::Init(args) => pve_gitops::init::init_command(&args),
        Command::Doctor(args) => pve_gitops::doctor::doctor_command(&args),
        Command::Generate(GenerateCommand::Man { dir }) => pve_gitops::generate::man_command(&dir),
        Command::Generate(GenerateCommand::Completions { shell, dir }) => {
            pve_gitops::generate::completions_command(shell, &dir)
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
