//! One reconcile pass as the CLI runs it: load the manifests, observe, plan, and (for
//! `apply`) check the cluster can take the plan (pre-flight), then execute, printing what
//! happens.

use crate::apply::{ApplyOptions, Report};
use crate::cli::{ApplyArgs, Connection, PolicyArgs, RunArgs, SecretArgs};
use crate::observe::observe;
use crate::plan::RebootPolicy;
use crate::plan::{plan, Action, Finding, Plan, Policy};
use crate::preflight::PreflightProblem;
use crate::pve::{ApiToken, ClientOptions, PveClient, TlsTrust};
use crate::revision::Revision;
use crate::secrets::Decryptor;
use crate::windows::WindowState;
use anyhow::{Context, Result};
use chrono::Utc;
use pve_gitops_schema::manifest::policy::WindowScope;
use std::fmt::Write;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

/// Exit code of `plan` when changes are pending (like `terraform plan -detailed-exitcode`).
pub const EXIT_CHANGES: i32 = 2;

pub fn client(c: &Connection) -> Result<PveClient> {
    let text = std::fs::read_to_string(&c.token_file)
        .with_context(|| format!("cannot read the API token from {}", c.token_file.display()))?;
    let token = ApiToken::parse(&text).with_context(|| format!("{}", c.token_file.display()))?;
    let mut o = ClientOptions::new(token);
    o.base_url = c
        .api_url
        .trim_end_matches('/')
        .trim_end_matches("/api2/json")
        .to_string();
    o.tls = match &c.fingerprint {
        Some(f) => TlsTrust::Fingerprint(
            f.parse()
                .map_err(|e| anyhow::anyhow!("--fingerprint: {e}"))?,
        ),
        None => TlsTrust::CaFile(c.ca_file.clone()),
    };
    Ok(PveClient::new(o)?)
}

/// The effective policy: the revision's `ClusterPolicy` with the explicit flags over it.
fn policy(p: &PolicyArgs, revision: &Revision) -> Policy {
    Policy {
        secrets_decrypted: revision.secrets.decrypted(),
        ..Policy::effective(
            revision.desired.policy.as_ref().map(|p| &p.spec),
            &p.overrides(),
        )
    }
}

/// The plan as an operator reads it: one line per action or finding.
pub fn describe(p: &Plan) -> String {
    let mut out = String::new();
    for (i, wave) in p.waves.iter().enumerate() {
        for (name, actions) in wave {
            for a in actions {
                let line = match a {
                    Action::Create {
                        vmid, node, clone, ..
                    } => format!(
                        "+ {name}: create{} on {node}{}",
                        vmid.map_or(String::new(), |v| format!(" {v}")),
                        clone
                            .as_ref()
                            .map_or(String::new(), |c| format!(" (clone of {})", c.template))
                    ),
                    Action::Configure { changes, .. } => {
                        let c: Vec<String> = changes
                            .iter()
                            .map(|c| {
                                format!(
                                    "{}: {} -> {}",
                                    c.key,
                                    c.from.as_deref().unwrap_or("(unset)"),
                                    if c.key == "cipassword" {
                                        "(secret)"
                                    } else {
                                        &c.to
                                    }
                                )
                            })
                            .collect();
                        format!("~ {name}: {}", c.join("; "))
                    }
                    Action::Resize { disk, to, .. } => format!(
                        "~ {name}: grow {disk} to {}",
                        pve_gitops_schema::units::Bytes(*to)
                    ),
                    Action::Migrate { from, to, .. } => {
                        format!("~ {name}: migrate from {from} to {to} (stopped)")
                    }
                    Action::Start { .. } => format!("~ {name}: start"),
                    Action::Stop { .. } => format!("~ {name}: stop"),
                    Action::Reboot { pending, .. } => {
                        format!("~ {name}: reboot to apply {}", pending.join(", "))
                    }
                    Action::Delete { vmid, .. } => {
                        format!("- {name}: delete {vmid} with its disks")
                    }
                    Action::Retire { vmid, .. } => format!(
                        "- {name}: prune {vmid}: stopped and tagged {}, disks kept",
                        crate::plan::ORPHAN_TAG
                    ),
                };
                let _ = writeln!(out, "[wave {}] {line}", i + 1);
            }
        }
    }
    for f in &p.findings {
        let line = match f {
            Finding::Orphan { vmid, name, kept } => format!(
                "! {name} ({vmid}): no longer declared; kept ({})",
                kept.describe()
            ),
            Finding::Drift(d) => format!(
                "! {}{}: drift in {}: declared {}, found {}{}",
                d.name,
                d.vmid.map_or(String::new(), |v| format!(" ({v})")),
                d.field,
                d.desired,
                d.actual,
                if d.healed { " (healed)" } else { " (reported, not changed)" }
            ),
            Finding::PruneRefused { would_delete, owned, max_share } => format!(
                "! pruning refused: it would delete {would_delete} of {owned} owned guests, more than maxDeleteShare {max_share}%; nothing is deleted this pass"
            ),
            Finding::RebuildRefused { name, vmid } => format!(
                "! {name} ({vmid}): rebuild token changed but the VM is protected; not rebuilt"
            ),
            Finding::PendingReboot { name, keys } => format!("! {name}: {} pending until a reboot (reboot policy: never)", keys.join(", ")),
            Finding::NotOwned { name, vmid } => format!("! {name}: VM {vmid} exists but is not managed by pve-gitops (set adopt: true to take it over)"),
            Finding::ShrinkRefused { name, disk, actual, desired } => format!(
                "! {name}: {disk} is {} but declared {}: disks are never shrunk",
                pve_gitops_schema::units::Bytes(*actual),
                pve_gitops_schema::units::Bytes(*desired)
            ),
            Finding::SecretNotApplied { name, key } => {
                format!("! {name}: {key} not set: it comes from a secret and no identity is configured (--identity)")
            }
            Finding::WrongNode { name, desired, actual } => format!("! {name}: runs on {actual}, declared on {desired} (a running VM is not migrated)"),
            Finding::Locked { name, vmid, lock } => format!("! {name} ({vmid}): locked by PVE ({lock}); left for a later pass"),
        };
        let _ = writeln!(out, "{line}");
    }
    if p.is_empty() {
        out.push_str("no changes: the cluster matches the manifests\n");
    }
    out
}

fn load_or_report(dir: &Path, s: &SecretArgs) -> Result<Option<Revision>> {
    let repo = crate::manifests::read_dir(dir)?;
    let decryptor = decryptor(s)?;
    match crate::revision::load(&repo, decryptor.as_deref()) {
        Ok(r) => Ok(Some(r)),
        Err(errors) => {
            for e in errors {
                eprintln!("{}", dir.join(e).display());
            }
            eprintln!("nothing from this revision would be applied");
            Ok(None)
        }
    }
}

/// The identities to decrypt secrets with: the given files, else the cluster's age key if
/// this node has one; `None` when there is none (secrets are then reported, not set).
pub fn decryptor(s: &SecretArgs) -> Result<Option<Arc<Decryptor>>> {
    let files: Vec<PathBuf> = if s.identity.is_empty() {
        let default = PathBuf::from(crate::secrets::DEFAULT_AGE_KEY);
        if !default.exists() {
            return Ok(None);
        }
        vec![default]
    } else {
        s.identity.clone()
    };
    let mut ids = crate::secrets::Identities::new();
    for f in &files {
        ids.add_file(f)?;
    }
    Ok(Some(Arc::new(Decryptor::new(ids))))
}

/// The commands' runtime. Multi-threaded so that a pass waiting on the git remote
/// (`block_in_place`, see `daemon::sources`) hands its thread over and the metrics
/// endpoint and the webhook keep answering; one worker, because the agent's work is
/// waiting on the API, and a second worker mostly woke up to steal the first's tasks:
/// at 1,000 guests the daemon's idle pass cost 1.6 times its request's CPU in process
/// with two workers, 1.25 times with one (the scale bench, same runs). The lease ticks
/// on a thread of its own (`daemon::leader`).
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

pub fn plan_command(dir: &Path, conn: &Connection, p: &PolicyArgs, s: &SecretArgs) -> Result<i32> {
    let Some(revision) = load_or_report(dir, s)? else {
        return Ok(1);
    };
    let client = client(conn)?;
    let policy = policy(p, &revision);
    let (plan, cluster) = runtime()?.block_on(async {
        let observed = observe(&client, &revision.desired)
            .await
            .context("observing the cluster")?;
        let cluster = crate::apply::cluster::prepare(&client, &revision.desired, &policy)
            .await
            .context("observing SDN, pools and firewalls")?;
        anyhow::Ok((plan(&revision.desired, &observed.vms, &policy), cluster))
    })?;
    let objects = crate::apply::cluster::describe(&cluster);
    print!("{objects}");
    if objects.is_empty() || !plan.is_empty() {
        print!("{}", describe(&plan));
    }
    Ok(if plan.is_empty() && cluster.is_empty() {
        0
    } else {
        EXIT_CHANGES
    })
}

/// The outcome of an apply as lines for the terminal.
pub fn describe_report(r: &Report) -> String {
    let mut out = String::new();
    for (name, done) in &r.done {
        let _ = writeln!(out, "ok     {name}: {}", done.join(", "));
    }
    for (name, e) in &r.failed {
        let _ = writeln!(out, "FAILED {name}: {e}");
    }
    for (name, why) in &r.skipped {
        let _ = writeln!(out, "skip   {name}: {why}");
    }
    let _ = writeln!(
        out,
        "{} changed, {} failed, {} skipped",
        r.done.len(),
        r.failed.len(),
        r.skipped.len()
    );
    out
}

fn apply_options(a: &ApplyArgs) -> ApplyOptions {
    ApplyOptions {
        parallelism: a.parallelism,
        per_node: a.per_node,
        clones_per_template: a.clones_per_template,
        ..ApplyOptions::default()
    }
}

pub fn apply_command(
    dir: &Path,
    conn: &Connection,
    p: &PolicyArgs,
    a: &ApplyArgs,
    s: &SecretArgs,
    now: bool,
) -> Result<i32> {
    let Some(revision) = load_or_report(dir, s)? else {
        return Ok(1);
    };
    let client = client(conn)?;
    let mut policy = policy(p, &revision);
    let window = |scope| {
        if now {
            WindowState::Open
        } else {
            crate::windows::for_policy(revision.desired.policy.as_ref(), scope, Utc::now())
        }
    };
    if !window(WindowScope::Reboot).is_open() {
        policy.reboot = RebootPolicy::Never;
    }
    let options = ApplyOptions {
        secrets: revision.secrets.clone(),
        // Node-local snippet files of this node's VMs are written here.
        node: crate::daemon::leader::hostname().ok(),
        ..apply_options(a)
    };
    let desired = &revision.desired;
    let (plan, outcome) = runtime()?.block_on(async {
        let prepared = crate::pass::prepare(&client, desired, &policy).await?;
        let outcome = match (&prepared.preflight, window(WindowScope::Apply)) {
            (Err(problems), _) => Err(Held::Refused(problems.clone())),
            (Ok(()), WindowState::Closed { next_open }) if !prepared.plan.is_empty() => {
                Err(Held::Waiting(next_open))
            }
            (Ok(()), _) => Ok(crate::pass::execute(&client, &prepared, &options).await),
        };
        print!("{}", crate::apply::cluster::describe(&prepared.cluster));
        anyhow::Ok((prepared.plan, outcome))
    })?;
    print!("{}", describe(&plan));
    match outcome {
        Ok(report) => {
            print!("{}", describe_report(&report));
            Ok(if report.failed.is_empty() { 0 } else { 1 })
        }
        Err(Held::Refused(problems)) => {
            eprint!("{}", describe_preflight(&problems));
            Ok(1)
        }
        Err(Held::Waiting(next_open)) => {
            eprintln!(
                "outside the sync windows, nothing was applied{}; `--now` applies anyway",
                next_open
                    .map(|t| format!(" (the next window opens at {})", t.to_rfc3339()))
                    .unwrap_or_default()
            );
            Ok(EXIT_CHANGES)
        }
    }
}

/// Why `apply --once` applied nothing.
enum Held {
    Refused(Vec<PreflightProblem>),
    Waiting(Option<chrono::DateTime<Utc>>),
}

/// A failed pre-flight as lines for the terminal: what is missing, and that nothing ran.
pub fn describe_preflight(problems: &[PreflightProblem]) -> String {
    let mut out = String::from("pre-flight failed, nothing was applied:\n");
    for p in problems {
        let _ = writeln!(out, "  {p}");
    }
    out
}

/// `pve-gitops run`: the daemon loop until SIGTERM or SIGINT.
pub fn run_command(args: RunArgs) -> Result<i32> {
    use crate::config::watch::{ConfigFile, Reloader};
    use crate::daemon::{changes::VmList, run_as_service, service::Service, watch, Daemon};
    // The config file (if any) under the command line; the file is followed while running.
    let base = args.clone();
    let explicit = crate::config::overlay::explicit_flags(std::env::args_os());
    let (config_file, args) = match &base.config {
        Some(path) => {
            let (file, config) = ConfigFile::open(path)?;
            let args = crate::config::overlay::overlay(&config, base.clone(), &explicit);
            (Some(file), args)
        }
        None => (None, args),
    };
    let node = match &args.lease.node {
        Some(n) => n.clone(),
        None => crate::daemon::leader::hostname()?,
    };
    let git_timeout = args.git.git_timeout;
    crate::source::bound_network_waits(git_timeout);
    let lease_args = args.lease.clone();
    // What the file watcher of a manifests directory tells the directory's source.
    let dir_watch = crate::daemon::sources::DirWatch::default();
    let parts = daemon_parts(&args, &node, &dir_watch)?;
    let watched = args.dir.clone();
    let options = parts.options.clone();
    let reload = config_file.map(|file| {
        let node = node.clone();
        let dir_watch = dir_watch.clone();
        Reloader::new(
            file,
            base.clone(),
            explicit,
            Box::new(move |a: &RunArgs| {
                if a.git.git_timeout != git_timeout {
                    tracing::warn!(running = ?git_timeout, configured = ?a.git.git_timeout, "repo.timeout takes effect when the agent restarts");
                }
                daemon_parts(a, &node, &dir_watch)
            }),
        )
    });
    let vmlist = args
        .vmlist
        .clone()
        .unwrap_or_else(|| args.lease.pmxcfs_root.join(".vmlist"));
    let metrics_listen = args.metrics_listen;
    // Read before the runtime starts threads: systemd's NOTIFY_SOCKET and WATCHDOG_USEC.
    let notifier = crate::telemetry::notify::Notifier::from_env();
    let webhook = match (&args.webhook_listen, &args.webhook_secret_file) {
        (Some(addr), Some(file)) => {
            let secret = std::fs::read(file)
                .with_context(|| format!("cannot read the webhook secret {}", file.display()))?;
            let secret = String::from_utf8_lossy(&secret).trim().as_bytes().to_vec();
            Some((*addr, secret))
        }
        (Some(_), None) => anyhow::bail!("--webhook-listen needs --webhook-secret-file"),
        _ => None,
    };
    crate::selfstat::share_one_heap();
    // The loop runs as a task on the runtime's workers, not on this thread in `block_on`:
    // there, every hand-off with the HTTP connection's task (request out, body chunks in)
    // crossed threads with a wake-up; on a worker the two mostly run one after the other
    // on the same thread. About a tenth of an idle pass's CPU.
    let rt = runtime()?;
    let daemon = async move {
        // A directory wakes the loop when its files change, a verified push webhook
        // whatever the source; otherwise the interval does.
        let (tx, wake) = tokio::sync::mpsc::unbounded_channel();
        let _watcher = match &watched {
            Some(dir) => Some(watch(dir, tx.clone(), dir_watch)?),
            None => None,
        };
        let _config_watch = base
            .config
            .as_ref()
            .map(|path| crate::config::watch::watch(path, base.config_poll, tx.clone()));
        if let Some((addr, secret)) = webhook {
            crate::webhook::serve(addr, secret, tx.clone())
                .await
                .with_context(|| format!("webhook receiver on {addr}"))?;
        }
        // /metrics is worth a log line, not a refusal to reconcile (a port taken by
        // another exporter must not stop the agent).
        if let Some(addr) = metrics_listen.0 {
            if let Err(e) = crate::telemetry::metrics::serve(addr).await {
                tracing::error!(%addr, "cannot serve /metrics: {e}; running without metrics");
            }
        }
        tracing::info!(cluster = %options.cluster, node = %options.node, interval = ?options.interval, "starting");
        let (lease, leadership) = crate::daemon::leader::start(&lease_args)?;
        let service = Service::new(notifier, leadership.clone());
        let manifests = service.announce(parts.manifests);
        let mut daemon = Daemon::new(parts.client, manifests, Box::new(VmList(vmlist)), options)
            .with_leadership(leadership);
        if let Some(reload) = reload {
            daemon = daemon.with_reload(Box::new(reload));
        }
        run_as_service(daemon, wake, shutdown_signal(), service).await;
        // The passes have stopped writing: hand the lock over.
        if let Some(lease) = lease {
            lease.release();
        }
        anyhow::Ok(0)
    };
    rt.block_on(async move { tokio::spawn(daemon).await? })
}

/// What the daemon runs with, from `run`'s settings: built at start, and again for each
/// new version of the config file.
fn daemon_parts(
    args: &RunArgs,
    node: &str,
    dir_watch: &crate::daemon::sources::DirWatch,
) -> Result<crate::daemon::reload::Reconfigured> {
    use crate::daemon::sources::{Git, Manifests, WatchedDirectory};
    use crate::daemon::DaemonOptions;
    let client = client(&args.connection)?;
    let (manifests, cluster): (Box<dyn Manifests>, String) = match (&args.git.repo, &args.dir) {
        (Some(url), _) => {
            let source = crate::source::Source::open(source_config(url, &args.git)?)?;
            let cluster = last_component(&args.git.path)
                .or_else(|| last_component(url.trim_end_matches(".git")))
                .unwrap_or_else(|| "cluster".into());
            let git = Git::new(
                source,
                args.git.path.clone(),
                args.git.status_branch.clone(),
                args.git.git_interval,
            );
            (Box::new(git), cluster)
        }
        (None, Some(dir)) => {
            let cluster = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "cluster".into());
            let manifests = WatchedDirectory::new(dir.clone(), dir_watch.clone());
            (Box::new(manifests), cluster)
        }
        (None, None) => {
            anyhow::bail!("give a manifests directory, --repo or a --config with repo.url")
        }
    };
    let options = DaemonOptions {
        decryptor: decryptor(&args.secrets)?,
        cluster,
        node: node.to_string(),
        interval: args.interval,
        resync: args.resync,
        passes: args.passes,
        state_dir: Some(args.state_dir.clone()),
        policy: args.policy.overrides(),
        apply: apply_options(&args.apply),
        clock: Default::default(),
    };
    Ok(crate::daemon::reload::Reconfigured {
        client,
        manifests,
        options,
    })
}

/// The last `/`-separated part of a path or URL, if any.
fn last_component(path: &str) -> Option<String> {
    path.trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The git source `run` (and `doctor`) open for `url` with these settings.
pub fn source_config(url: &str, g: &crate::cli::GitArgs) -> Result<crate::source::SourceConfig> {
    use crate::source::{AllowedSigners, Credentials, HostKeyPins, SourceConfig};
    let mut c = SourceConfig::new(url, g.branch.clone());
    c.cache_root = g.cache.clone();
    c.credentials = match (&g.deploy_key, &g.git_token_file) {
        (Some(k), None) => Credentials::SshKey {
            private_key: k.clone(),
        },
        (None, Some(t)) => Credentials::Token { file: t.clone() },
        (None, None) => Credentials::None,
        (Some(_), Some(_)) => anyhow::bail!("give --deploy-key or --git-token-file, not both"),
    };
    c.ca_file.clone_from(&g.git_ca_file);
    if !g.host_key.is_empty() {
        c.host_keys = Some(HostKeyPins::parse(&g.host_key.join("\n")).context("--host-key")?);
    }
    if let Some(f) = &g.allowed_signers {
        c.allowed_signers = Some(AllowedSigners::load(f).context("--allowed-signers")?);
    }
    Ok(c)
}

/// Completes on SIGTERM (systemd stopping the service) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
