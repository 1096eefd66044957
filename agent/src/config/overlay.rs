//! The config file under the command line: what `run` does when both say something.
//!
//! A flag given on the command line always wins; the file fills in every flag left at
//! its default. clap's parsed [`RunArgs`] cannot tell a default from a flag that happens
//! to have the default's value, so [`explicit_flags`] asks clap where each value came from.

use super::{AgentConfig, DriftConfig, RebootConfig};
use crate::cli::{Drift, Reboot, RunArgs};
use std::collections::BTreeSet;
use std::ffi::OsString;

/// The ids (clap's: the field names, `status_branch`) of the `run` flags given on the
/// command line `argv` (or in the environment); empty when `argv` is not a `run`.
pub fn explicit_flags(argv: impl IntoIterator<Item = OsString>) -> BTreeSet<String> {
    use clap::parser::ValueSource;
    use clap::CommandFactory;
    let Ok(matches) = crate::cli::Cli::command().try_get_matches_from(argv) else {
        return BTreeSet::new();
    };
    let Some(("run", run)) = matches.subcommand() else {
        return BTreeSet::new();
    };
    run.ids()
        .map(|id| id.as_str())
        .filter(|id| {
            matches!(
                run.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(str::to_string)
        .collect()
}

/// `args` with every setting not in `explicit` taken from `config` where it has one.
pub fn overlay(config: &AgentConfig, mut args: RunArgs, explicit: &BTreeSet<String>) -> RunArgs {
    let free = |id: &str| !explicit.contains(id);
    // A manifests directory on the command line replaces the repository altogether.
    if let (Some(repo), None) = (&config.repo, &args.dir) {
        let g = &mut args.git;
        set(&mut g.repo, free("repo"), Some(Some(repo.url.clone())));
        set(&mut g.branch, free("branch"), repo.branch.clone());
        set(&mut g.path, free("path"), repo.path.clone());
        set(
            &mut g.status_branch,
            free("status_branch"),
            repo.status_branch.clone(),
        );
        set(&mut g.cache, free("cache"), repo.cache.clone());
        set(
            &mut g.deploy_key,
            free("deploy_key"),
            repo.deploy_key.clone().map(Some),
        );
        set(
            &mut g.git_token_file,
            free("git_token_file"),
            repo.token_file.clone().map(Some),
        );
        set(
            &mut g.git_ca_file,
            free("git_ca_file"),
            repo.ca_file.clone().map(Some),
        );
        if free("host_key") && !repo.host_keys.is_empty() {
            g.host_key = repo.host_keys.clone();
        }
        set(
            &mut g.allowed_signers,
            free("allowed_signers"),
            repo.allowed_signers.clone().map(Some),
        );
        set(&mut g.git_timeout, free("git_timeout"), repo.timeout);
        set(&mut g.git_interval, free("git_interval"), repo.interval);
        // One credential: the file's, unless the command line named the other kind.
        if !free("deploy_key") && free("git_token_file") {
            g.git_token_file = None;
        }
        if !free("git_token_file") && free("deploy_key") {
            g.deploy_key = None;
        }
    }
    if let Some(api) = &config.api {
        let c = &mut args.connection;
        set(&mut c.api_url, free("api_url"), api.url.clone());
        set(
            &mut c.token_file,
            free("token_file"),
            api.token_file.clone(),
        );
        set(&mut c.ca_file, free("ca_file"), api.ca_file.clone());
        if free("fingerprint") && free("ca_file") {
            if let Some(f) = &api.fingerprint {
                c.fingerprint = Some(f.clone());
            }
        }
    }
    if free("identity") && !config.identities.is_empty() {
        args.secrets.identity = config.identities.clone();
    }
    set(&mut args.interval, free("interval"), config.interval);
    set(&mut args.resync, free("resync"), config.resync);
    if let Some(p) = &config.policy {
        // `prune: false` is `--no-prune` (nothing is deleted, whatever the manifests
        // say), not the absence of `--prune`.
        if let (Some(prune), true) = (p.prune, free("prune") && free("no_prune")) {
            args.policy.prune = prune;
            args.policy.no_prune = !prune;
        }
        let reboot = p.reboot.map(|r| match r {
            RebootConfig::Never => Reboot::Never,
            RebootConfig::Allowed => Reboot::Allowed,
        });
        set(&mut args.policy.reboot, free("reboot"), reboot.map(Some));
        let drift = p.drift.map(|d| match d {
            DriftConfig::Ignore => Drift::Ignore,
            DriftConfig::Report => Drift::Report,
            DriftConfig::Heal => Drift::Heal,
        });
        set(&mut args.policy.drift, free("drift"), drift.map(Some));
    }
    if let Some(a) = &config.apply {
        set(
            &mut args.apply.parallelism,
            free("parallelism"),
            a.parallelism.map(Some),
        );
        set(
            &mut args.apply.per_node,
            free("per_node"),
            a.per_node.map(Some),
        );
        set(
            &mut args.apply.clones_per_template,
            free("clones_per_template"),
            a.clones_per_template.map(Some),
        );
    }
    set(
        &mut args.lease.pmxcfs_root,
        free("pmxcfs_root"),
        config.pmxcfs_root.clone(),
    );
    // Checked when the file was parsed; a value that no longer parses keeps the flag's.
    let metrics = config
        .metrics_listen
        .as_deref()
        .and_then(|l| crate::telemetry::metrics::parse_listen(l).ok());
    set(&mut args.metrics_listen, free("metrics_listen"), metrics);
    if let Some(w) = &config.webhook {
        // The address and its secret go together: a flag for either replaces both.
        if free("webhook_listen") && free("webhook_secret_file") {
            args.webhook_listen = Some(w.listen);
            args.webhook_secret_file = Some(w.secret_file.clone());
        }
    }
    args
}

fn set<T>(slot: &mut T, free: bool, value: Option<T>) {
    if let (true, Some(v)) = (free, value) {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::path::Path;

    fn run_args(argv: &[&str]) -> (RunArgs, BTreeSet<String>) {
        let mut full = vec!["pve-gitops", "run"];
        full.extend_from_slice(argv);
        let Command::Run(args) = Cli::parse_from(&full).command else {
            unreachable!()
        };
        (*args, explicit_flags(full.iter().map(OsString::from)))
    }

    const CONFIG: &str = "\
repo: { url: 'file:///srv/repo.git', branch: prod, path: clusters/a, tokenFile: /t, timeout: 45s, interval: 5m }
api: { url: 'https://pve:8006', fingerprint: 'AB:CD' }
interval: 1m
policy: { prune: true, drift: heal }
apply: { parallelism: 7, perNode: 2 }
metricsListen: 0.0.0.0:9100
webhook: { listen: '127.0.0.1:9595', secretFile: /hook.secret }
";

    #[test]
    fn the_file_fills_defaults() {
        let config = AgentConfig::parse(Path::new("c"), CONFIG).unwrap();
        let (args, explicit) = run_args(&["--config", "c"]);
        assert_eq!(explicit, BTreeSet::from(["config".to_string()]));
        let a = overlay(&config, args, &explicit);
        assert_eq!(a.git.repo.as_deref(), Some("file:///srv/repo.git"));
        assert_eq!(a.git.branch, "prod");
        assert_eq!(a.git.path, "clusters/a");
        assert_eq!(a.git.status_branch, "pve-gitops/status");
        assert_eq!(a.git.git_token_file.as_deref(), Some(Path::new("/t")));
        assert_eq!(a.git.git_timeout, std::time::Duration::from_secs(45));
        assert_eq!(a.git.git_interval, std::time::Duration::from_secs(300));
        assert_eq!(a.connection.api_url, "https://pve:8006");
        assert_eq!(a.connection.fingerprint.as_deref(), Some("AB:CD"));
        assert_eq!(a.interval, std::time::Duration::from_secs(60));
        assert!(a.policy.prune);
        assert_eq!(a.policy.drift, Some(Drift::Heal));
        assert_eq!(a.apply.parallelism, Some(7));
        assert_eq!(a.apply.per_node, Some(2));
        assert_eq!(
            a.metrics_listen,
            crate::telemetry::metrics::Listen(Some("0.0.0.0:9100".parse().unwrap()))
        );
        assert_eq!(a.webhook_listen, Some("127.0.0.1:9595".parse().unwrap()));
        assert_eq!(
            a.webhook_secret_file.as_deref(),
            Some(Path::new("/hook.secret"))
        );
    }

    #[test]
    fn metrics_and_webhook_flags_win() {
        let config = AgentConfig::parse(Path::new("c"), CONFIG).unwrap();
        let (args, explicit) = run_args(&[
            "--config",
            "c",
            "--metrics-listen",
            "127.0.0.1:9596",
            "--webhook-listen",
            "127.0.0.1:1",
            "--webhook-secret-file",
            "/other.secret",
            "--drift",
            "report",
        ]);
        let a = overlay(&config, args, &explicit);
        // The flag wins even though it repeats the default.
        assert_eq!(
            a.metrics_listen,
            crate::telemetry::metrics::Listen(Some("127.0.0.1:9596".parse().unwrap()))
        );
        assert_eq!(a.webhook_listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(
            a.webhook_secret_file.as_deref(),
            Some(Path::new("/other.secret"))
        );
        assert_eq!(a.policy.drift, Some(Drift::Report));
        let (args, explicit) = run_args(&["--config", "c", "--metrics-listen", "off"]);
        let a = overlay(&config, args, &explicit);
        assert_eq!(a.metrics_listen, crate::telemetry::metrics::Listen(None));
    }

    #[test]
    fn zero_at_once_is_refused_on_the_command_line_as_in_the_file() {
        for flag in ["--per-node", "--parallelism"] {
            let argv = |n| ["pve-gitops", "run", "--config", "c", flag, n];
            let e = Cli::try_parse_from(argv("0")).unwrap_err();
            assert!(e.to_string().contains("0 is not in 1.."), "{flag}: {e}");
            assert!(Cli::try_parse_from(argv("1")).is_ok(), "{flag} 1");
        }
        let argv = |d| ["pve-gitops", "run", "--config", "c", "--git-timeout", d];
        let e = Cli::try_parse_from(argv("0s")).unwrap_err();
        assert!(e.to_string().contains("must be longer than 0s"), "{e}");
        assert!(Cli::try_parse_from(argv("1s")).is_ok());
    }

    #[test]
    fn flags_win_even_when_they_repeat_the_default() {
        let config = AgentConfig::parse(Path::new("c"), CONFIG).unwrap();
        let (args, explicit) = run_args(&[
            "--config",
            "c",
            "--branch",
            "main",
            "--interval",
            "15s",
            "--git-timeout",
            "30s",
            "--parallelism",
            "4",
            "--deploy-key",
            "/k",
            "--ca-file",
            "/ca.pem",
        ]);
        let a = overlay(&config, args, &explicit);
        assert_eq!(a.git.branch, "main");
        assert_eq!(a.git.path, "clusters/a");
        assert_eq!(a.interval, std::time::Duration::from_secs(15));
        assert_eq!(a.git.git_timeout, crate::source::DEFAULT_TIMEOUT);
        assert_eq!(a.apply.parallelism, Some(4));
        assert_eq!(
            a.apply.per_node,
            Some(2),
            "the file fills what the flags leave"
        );
        // The command line's deploy key replaces the file's token, its CA the pin.
        assert_eq!(a.git.deploy_key.as_deref(), Some(Path::new("/k")));
        assert_eq!(a.git.git_token_file, None);
        assert_eq!(a.connection.fingerprint, None);
        assert_eq!(a.connection.ca_file, Path::new("/ca.pem"));
    }

    /// `prune: false` in the file is `--no-prune`, `prune: true` `--prune`; either flag
    /// on the command line wins over the file.
    #[test]
    fn the_files_prune_is_a_flag_either_way() {
        let prune = |file: &str, argv: &[&str]| {
            let config = AgentConfig::parse(Path::new("c"), file).unwrap();
            let mut full = vec!["--config", "c"];
            full.extend_from_slice(argv);
            let (args, explicit) = run_args(&full);
            overlay(&config, args, &explicit).policy.overrides().prune
        };
        let never = "policy: { prune: false }\n";
        let always = "policy: { prune: true }\n";
        assert_eq!(prune(never, &[]), Some(false));
        assert_eq!(prune(always, &[]), Some(true));
        assert_eq!(prune("interval: 1m\n", &[]), None);
        assert_eq!(prune(never, &["--prune"]), Some(true));
        assert_eq!(prune(always, &["--no-prune"]), Some(false));
    }

    #[test]
    fn a_directory_on_the_command_line_replaces_the_repository() {
        let config = AgentConfig::parse(Path::new("c"), CONFIG).unwrap();
        let (args, explicit) = run_args(&["--config", "c", "/srv/manifests"]);
        let a = overlay(&config, args, &explicit);
        assert_eq!(a.git.repo, None);
        assert_eq!(a.dir.as_deref(), Some(Path::new("/srv/manifests")));
    }
}
