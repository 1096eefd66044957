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
    /// Show what `apply` would change (`+` create, `~` change, `-` delete, `!` reported).
    ///
    /// Exit status 0 when the cluster matches, 2 when changes are pending, 1 when the
    /// manifests are invalid.
    Plan {
        dir: PathBuf,
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Make the cluster match the manifests.
    ///
    /// With `RUST_LOG` set (e.g. `RUST_LOG=info`), the agent's log (task waits, retries)
    /// goes to stderr besides the progress lines.
    Apply {
        /// Run one pass and exit (the daemon loop comes with `run`).
        #[arg(long, required = true)]
        once: bool,
        dir: PathBuf,
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        apply: ApplyArgs,
        #[command(flatten)]
        secrets: SecretArgs,
        /// Apply even outside the `ClusterPolicy` sync windows (reboots included). Without
        /// it, a closed window prints what waits and exits with status 2.
        #[arg(long)]
        now: bool,
    },
    /// Run as a daemon: reconcile now, then on every interval and whenever the manifests
    /// change, until SIGTERM or SIGINT.
    ///
    /// Invalid manifests and API errors are logged and the loop goes on; nothing from an
    /// invalid revision is applied. Logs go to stderr (`RUST_LOG=debug` for every pass).
    Run(Box<RunArgs>),
    /// What the agent on this node last did: per cluster, the applied revision, each
    /// resource's state, and a refused revision's errors (from the local state).
    ///
    /// Exit status 0 when every resource is in sync, 2 when something needs attention
    /// or a revision was refused, 1 when there is no status yet.
    Status {
        /// The agent's state directory.
        #[arg(long, default_value = crate::report::local::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Decrypt secrets the way the agent does, for debugging (age files, SOPS documents).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Set the cluster up for the agent, once, on one node: the PVE user, role, ACL and
    /// API token, the age identity, the SSH deploy key, the pinned host key and the config
    /// file. Safe to run again: what exists is kept (keys are never replaced).
    ///
    /// Needs an administrator's API token (`--token-file`, e.g. one made with
    /// `pveum user token add root@pam setup --privsep 0`), used only for this command.
    Init(Box<InitArgs>),
    /// Check that this node's agent can work: API and TLS, the token's privileges, the
    /// repository and its host key, the secrets, the pmxcfs lock directory, the clocks.
    ///
    /// Exit status 0 when every check passes, 1 otherwise.
    Doctor(DoctorArgs),
    /// Write the man pages or shell completions (for packaging).
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
}

/// `pve-gitops generate` (hidden: `make deb` runs it).
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// The man pages: pve-gitops.1 and one per subcommand.
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
    /// The completion script for a shell.
    Completions {
        shell: clap_complete::Shell,
        /// Where to write it.
        dir: PathBuf,
    },
}

/// `pve-gitops init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// The manifests repository (`ssh://…`, `git@host:path`, `https://…`, `file://…`);
    /// needed unless the config file exists.
    #[arg(long)]
    pub repo: Option<String>,
    /// The branch applied.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The cluster's directory in the repository (e.g. `clusters/prod`).
    #[arg(long, default_value = "")]
    pub path: String,
    /// Where status is committed.
    #[arg(long, default_value = "pve-gitops/status")]
    pub status_branch: String,
    /// The SSH server's host key (known_hosts line or `SHA256:…`), already verified;
    /// repeatable. Without it (or --known-hosts), init shows the key for you to confirm.
    #[arg(long)]
    pub host_key: Vec<String>,
    /// Take the repository host's keys from this known_hosts file.
    #[arg(long, conflicts_with = "host_key")]
    pub known_hosts: Option<PathBuf>,
    /// For an HTTPS repository: the file holding its access token (recorded in the config).
    #[arg(long)]
    pub git_token_file: Option<PathBuf>,
    /// For an HTTPS repository behind a private CA: the CA certificate file to verify it
    /// against (recorded in the config).
    #[arg(long)]
    pub git_ca_file: Option<PathBuf>,
    /// Where pmxcfs is mounted: keys go to `<root>/priv/pve-gitops/`, the config to
    /// `<root>/pve-gitops/config.yaml`.
    #[arg(long, default_value = "/etc/pve")]
    pub pve_root: PathBuf,
    /// The config file to write (default: `<pve-root>/pve-gitops/config.yaml`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The API connection, with an administrator's token.
    #[command(flatten)]
    pub connection: Connection,
}

/// `pve-gitops doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// The cluster's config file.
    #[arg(long, default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Where the repository is fetched to for the check (default: a temporary directory).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

/// `pve-gitops run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A manifests directory to follow (development); production follows `--repo`.
    #[arg(required_unless_present_any = ["repo", "config"], conflicts_with = "repo")]
    pub dir: Option<PathBuf>,
    /// The cluster's config file (e.g. /etc/pve/pve-gitops/config.yaml, as `init` writes
    /// it): settings for every flag below; a flag given here wins. Edits are followed
    /// without a restart; an invalid edit is logged and the previous settings kept.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How often the config file is read when inotify reports nothing (pmxcfs).
    #[arg(long, hide = true, default_value = "5s", value_parser = humantime::parse_duration)]
    pub config_poll: std::time::Duration,
    #[command(flatten)]
    pub git: GitArgs,
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub apply: ApplyArgs,
    #[command(flatten)]
    pub secrets: SecretArgs,
    /// Time between passes (e.g. `15s`, `1m`).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// A full pass at least this often, even when nothing seems to have changed.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub resync: std::time::Duration,
    /// Listen for forge push webhooks (GitHub, GitLab, Gitea, Forgejo) on this address
    /// (e.g. `0.0.0.0:9595`) and poll at once on a verified one. Off by default.
    #[arg(long)]
    pub webhook_listen: Option<std::net::SocketAddr>,
    /// The webhook's shared secret (HMAC key, or GitLab's token).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// Serve Prometheus metrics (`GET /metrics`) on this address, or `off`. Loopback by
    /// default; e.g. `0.0.0.0:9596` for a Prometheus on another host.
    #[arg(long, default_value = crate::telemetry::metrics::DEFAULT_LISTEN,
          value_parser = crate::telemetry::metrics::parse_listen)]
    pub metrics_listen: crate::telemetry::metrics::Listen,
    /// Where the last status is kept for `pve-gitops status`.
    #[arg(long, default_value = crate::report::local::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Stop after this many passes (for demos and scripts).
    #[arg(long, hide = true)]
    pub passes: Option<u64>,
    /// pmxcfs's guest list: while it and the manifests are unchanged, an idle pass costs
    /// one API call. Missing (not on a PVE node): every pass is a full one.
    /// Default: `.vmlist` under `--pmxcfs-root`.
    #[arg(long)]
    pub vmlist: Option<PathBuf>,
    #[command(flatten)]
    pub lease: LeaseArgs,
}

/// Leader election: an agent runs on every node, only the one holding the pmxcfs lock
/// `<pmxcfs-root>/priv/lock/pve-gitops` applies.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// This node's PVE name (default: the short host name).
    #[arg(long)]
    pub node: Option<String>,
    /// Where pmxcfs is mounted.
    #[arg(long, default_value = "/etc/pve")]
    pub pmxcfs_root: PathBuf,
    /// No leader election: apply on every pass (one node, or development only).
    #[arg(long)]
    pub no_lease: bool,
    /// pmxcfs's lock lifetime (tests against the emulation only).
    #[arg(long, hide = true, default_value = "120s", value_parser = humantime::parse_duration)]
    pub lock_lifetime: std::time::Duration,
    /// How often the leader renews the lock.
    #[arg(long, hide = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lock_renew: std::time::Duration,
    /// The leader stops writing this long after its last good renewal.
    #[arg(long, hide = true, default_value = "60s", value_parser = humantime::parse_duration)]
    pub lock_margin: std::time::Duration,
    /// Append every apply window as `start_ns end_ns node` (CLOCK_MONOTONIC) to this
    /// file (tests).
    #[arg(long, hide = true)]
    pub apply_log: Option<PathBuf>,
}

/// The git repository `run` follows, and where it writes status.
#[derive(Debug, Clone, clap::Args)]
pub struct GitArgs {
    /// The manifests repository: `ssh://…`, `git@host:path`, `https://…`, `file://…`.
    #[arg(long)]
    pub repo: Option<String>,
    /// The branch applied.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The cluster's directory in the repository (e.g. `clusters/prod`).
    #[arg(long, default_value = "")]
    pub path: String,
    /// Where status is committed (never the branch applied).
    #[arg(long, default_value = "pve-gitops/status")]
    pub status_branch: String,
    /// Local cache of the repository (survives restarts).
    #[arg(long, default_value = crate::source::DEFAULT_CACHE_ROOT)]
    pub cache: PathBuf,
    /// SSH deploy key (private key file) for an SSH remote.
    #[arg(long)]
    pub deploy_key: Option<PathBuf>,
    /// File holding an HTTPS access token.
    #[arg(long)]
    pub git_token_file: Option<PathBuf>,
    /// Verify an HTTPS remote against the CA certificate(s) in this PEM file instead of
    /// the system's store (a self-hosted forge with a private CA).
    #[arg(long)]
    pub git_ca_file: Option<PathBuf>,
    /// The SSH server's host key: a known_hosts line or `SHA256:…`; repeatable. Required
    /// for SSH: a host key is never trusted on first use.
    #[arg(long)]
    pub host_key: Vec<String>,
    /// Apply only heads signed by a key in this allowed-signers file (ssh-keygen format).
    #[arg(long)]
    pub allowed_signers: Option<PathBuf>,
    /// How often the remote is asked whether the branch moved (`0s`: every pass). A
    /// verified push webhook, a change of the config file and taking over as leader make
    /// the agent ask at once.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub git_interval: std::time::Duration,
    /// How long the git remote may keep the agent waiting, to connect or for the next
    /// bytes of a fetch or push, before the operation fails as unreachable (the last
    /// fetched head stays applied). Not a bound on a whole transfer. Read at start.
    #[arg(long, default_value = "30s", value_parser = positive_duration)]
    pub git_timeout: std::time::Duration,
}

/// A duration longer than zero (`30s`, `1m`).
fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// How the agent decrypts the secrets the manifests reference.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretArgs {
    /// An age identity file or an SSH private key to decrypt secrets with; repeatable.
    /// Default: the cluster's key /etc/pve/priv/pve-gitops/age.key if present; without
    /// any, secret values are reported as not set.
    #[arg(long)]
    pub identity: Vec<PathBuf>,
}

/// A count of things at once: 0 would do nothing at all.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// How much an apply does at once.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// VMs changed at once in the whole cluster (default: no bound beyond --per-node).
    #[arg(long, value_parser = at_least_one())]
    pub parallelism: Option<usize>,
    /// VMs changed at once on one node (default: the datacenter's `max_workers`, as PVE's
    /// own bulk actions use it; 4 when it is not set).
    #[arg(long, value_parser = at_least_one())]
    pub per_node: Option<usize>,
    /// Clones of one source template at once (default: no limit beyond --per-node and
    /// --parallelism; the clones run as tasks on the template's node);
    /// 1 for storages whose clones lock their source.
    #[arg(long)]
    pub clones_per_template: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a decrypted `.age` file or SOPS document (like `sops -d`), after checking its MAC.
    ///
    /// Exit status 1 when it cannot be decrypted; the message names the file and, in a SOPS
    /// document, the key.
    Decrypt {
        #[command(flatten)]
        identity: IdentityArgs,
        /// The encrypted file.
        path: PathBuf,
    },
    /// Print the recipient (`age1…`, or `ssh-… AAAA…` for an SSH key) of each identity: what
    /// to encrypt secrets to (`age -r`, `sops --age`).
    Recipients {
        #[command(flatten)]
        identity: IdentityArgs,
    },
}

/// The private keys to decrypt with.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// An age identity file or an SSH private key (e.g. the node's
    /// /etc/ssh/ssh_host_ed25519_key); repeatable. It must not be accessible by group or
    /// others.
    #[arg(short, long, default_value = crate::secrets::DEFAULT_AGE_KEY)]
    pub identity: Vec<PathBuf>,
}

/// How to reach the Proxmox API.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// API base URL.
    #[arg(long, default_value = "https://127.0.0.1:8006/api2/json")]
    pub api_url: String,
    /// File holding the API token as `USER@REALM!TOKENID=SECRET`.
    #[arg(long, default_value = "/etc/pve/priv/pve-gitops/token")]
    pub token_file: PathBuf,
    /// CA certificate(s) to verify the API's certificate against.
    #[arg(
        long,
        default_value = "/etc/pve/pve-root-ca.pem",
        conflicts_with = "fingerprint"
    )]
    pub ca_file: PathBuf,
    /// Pin the API certificate by SHA-256 fingerprint (`AB:CD:...`) instead of a CA.
    #[arg(long)]
    pub fingerprint: Option<String>,
}

/// What the agent may do. The manifests' `ClusterPolicy` decides; each flag given here
/// overrides it (and a VM's own `drift.mode`; `--no-prune` a VM's own `prune` too).
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Delete owned VMs that are no longer declared (over `prune.enabled`; a VM's own
    /// `prune: false` still keeps it).
    #[arg(long, overrides_with = "no_prune")]
    pub prune: bool,
    /// Never delete anything, whatever the manifests say.
    #[arg(long)]
    pub no_prune: bool,
    /// Whether a VM may be rebooted to apply changes PVE keeps pending (over `reboot`;
    /// default: never).
    #[arg(long, value_enum)]
    pub reboot: Option<Reboot>,
    /// What to do with changes made behind the agent's back (over `drift.mode` and every
    /// VM's; default: report).
    #[arg(long, value_enum)]
    pub drift: Option<Drift>,
}

impl PolicyArgs {
    /// The flags given, as overrides of the manifests' policy.
    pub fn overrides(&self) -> crate::plan::PolicyOverrides {
        use pve_gitops_schema::manifest::policy::DriftMode;
        crate::plan::PolicyOverrides {
            prune: match (self.prune, self.no_prune) {
                (_, true) => Some(false),
                (true, false) => Some(true),
                (false, false) => None,
            },
            reboot: self.reboot.map(|r| match r {
                Reboot::Never => crate::plan::RebootPolicy::Never,
                Reboot::Allowed => crate::plan::RebootPolicy::Allowed,
            }),
            drift: self.drift.map(|d| match d {
                Drift::Ignore => DriftMode::Ignore,
                Drift::Report => DriftMode::Report,
                Drift::Heal => DriftMode::Heal,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Drift {
    Ignore,
    Report,
    Heal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Reboot {
    Never,
    Allowed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}
