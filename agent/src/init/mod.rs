//! `pve-gitops init`: set a cluster up for the agent, idempotently, from one node.
//!
//! Each step looks before it acts and prints one line: `[ok] …` when it changed
//! something, `[--] …` when it found the thing already there. A second run changes
//! nothing (no API write, no file written) and says so. Secrets are written once and
//! never replaced; the role is brought to exactly the privileges this version needs.
//!
//! | step | PVE / file |
//! |---|---|
//! | user | `pve-gitops@pve` (no password: it acts only through its token) |
//! | role | `PVEGitOps` = [`crate::access::privileges::required`] |
//! | token | `pve-gitops@pve!agent`, privilege-separated; secret to `<root>/priv/pve-gitops/token` |
//! | ACL | role on `/` for the user and for the token (a separated token holds what both hold) |
//! | age identity | `<root>/priv/pve-gitops/age.key` |
//! | deploy key | `<root>/priv/pve-gitops/deploy_key` (+ `.pub`), SSH remotes only |
//! | host key | pinned in the config (confirmed by the operator unless given) |
//! | config | `<root>/pve-gitops/config.yaml` |

pub mod hostkey;
pub mod keys;

use crate::access::{self, api, privileges};
use crate::cli::InitArgs;
use crate::config::{AgentConfig, ApiConfig, PolicyConfig, RebootConfig, RepoConfig};
use crate::pve::PveClient;
use crate::source::{RemoteUrl, Transport};
use anyhow::{bail, Context, Result};
use keys::Created;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where init puts things, below the pmxcfs root.
#[derive(Debug, Clone)]
pub struct Paths {
    pub token: PathBuf,
    pub age_key: PathBuf,
    pub deploy_key: PathBuf,
    pub config: PathBuf,
}

impl Paths {
    pub fn new(root: &Path, config: Option<&Path>) -> Self {
        let private = root.join("priv/pve-gitops");
        Paths {
            token: private.join("token"),
            age_key: private.join("age.key"),
            deploy_key: private.join("deploy_key"),
            config: config.map_or_else(|| root.join("pve-gitops/config.yaml"), Path::to_path_buf),
        }
    }
}

/// What a run of init did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Steps that changed something.
    pub changed: usize,
    pub recipient: Option<String>,
    pub deploy_public_key: Option<String>,
}

/// `pve-gitops init` on the terminal.
pub fn init_command(args: &InitArgs) -> Result<i32> {
    let mut out = std::io::stdout();
    init(args, &mut out)?;
    Ok(0)
}

/// Run every step, printing progress to `out`.
pub fn init(args: &InitArgs, out: &mut dyn Write) -> Result<Outcome> {
    let paths = Paths::new(&args.pve_root, args.config.as_deref());
    let existing = match paths.config.exists() {
        true => Some(AgentConfig::load(&paths.config)?),
        false => None,
    };
    let repo = repo_settings(args, existing.as_ref(), out)?;
    if args.connection.token_file == paths.token && !paths.token.exists() {
        bail!(
            "init needs an administrator's API token: --token-file FILE holding \
             USER@REALM!TOKENID=SECRET (e.g. from `pveum user token add root@pam setup \
             --privsep 0`; remove it afterwards)"
        );
    }
    let client = crate::reconcile::client(&args.connection).context("the API connection")?;
    let mut outcome = Outcome::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(pve_steps(&client, &paths, out, &mut outcome))?;
    key_steps(&paths, &repo, out, &mut outcome)?;
    let config = AgentConfig {
        repo: Some(repo),
        api: Some(ApiConfig {
            url: Some(args.connection.api_url.clone()),
            token_file: Some(paths.token.clone()),
            ca_file: args
                .connection
                .fingerprint
                .is_none()
                .then(|| args.connection.ca_file.clone()),
            fingerprint: args.connection.fingerprint.clone(),
        }),
        identities: vec![paths.age_key.clone()],
        interval: Some(std::time::Duration::from_secs(15)),
        resync: None,
        // Pruning is left to the manifests' ClusterPolicy (off unless it says so):
        // `prune: false` here would forbid it whatever they say.
        policy: Some(PolicyConfig {
            prune: None,
            reboot: Some(RebootConfig::Never),
            drift: None,
        }),
        apply: None,
        pmxcfs_root: (args.pve_root != Path::new("/etc/pve")).then(|| args.pve_root.clone()),
        metrics_listen: None,
        webhook: None,
    };
    match existing {
        Some(_) => step(
            out,
            &mut outcome,
            false,
            format!("config {} exists (kept as it is)", paths.config.display()),
        )?,
        None => {
            let written = keys::create_file(&paths.config, config.to_yaml().as_bytes(), 0o640)?;
            step(
                out,
                &mut outcome,
                written == Created::Written,
                format!("config {}", paths.config.display()),
            )?;
        }
    }
    summary(&paths, &mut outcome, out)?;
    Ok(outcome)
}

/// One progress line; `changed` counts the step.
fn step(out: &mut dyn Write, outcome: &mut Outcome, changed: bool, what: String) -> Result<()> {
    if changed {
        outcome.changed += 1;
        writeln!(out, "[ok] {what}")?;
    } else {
        writeln!(out, "[--] {what}")?;
    }
    Ok(())
}

/// The repository settings: from the existing config, else the command line; SSH host
/// keys pinned one way or another.
fn repo_settings(
    args: &InitArgs,
    existing: Option<&AgentConfig>,
    out: &mut dyn Write,
) -> Result<RepoConfig> {
    if let Some(repo) = existing.and_then(|c| c.repo.clone()) {
        if args.repo.as_ref().is_some_and(|r| *r != repo.url) {
            writeln!(
                out,
                "note: the config already names {}; --repo {} is ignored (edit the config to change it)",
                repo.url,
                args.repo.as_deref().unwrap_or("")
            )?;
        }
        return Ok(repo);
    }
    let Some(url) = &args.repo else {
        bail!("--repo is needed: there is no config file yet");
    };
    let transport = RemoteUrl::parse(url)
        .map_err(anyhow::Error::msg)?
        .transport();
    let host_keys = match transport {
        Transport::Ssh if !args.host_key.is_empty() => {
            crate::source::HostKeyPins::parse(&args.host_key.join("\n")).context("--host-key")?;
            args.host_key.clone()
        }
        Transport::Ssh => match &args.known_hosts {
            Some(file) => hostkey::from_known_hosts(file, url)?,
            None => hostkey::confirm(url, out)?,
        },
        _ => Vec::new(),
    };
    if !host_keys.is_empty() {
        writeln!(out, "[ok] host key pinned: {}", host_keys.join(", "))?;
    }
    let deploy_key =
        (transport == Transport::Ssh).then(|| Paths::new(&args.pve_root, None).deploy_key);
    Ok(RepoConfig {
        url: url.clone(),
        branch: Some(args.branch.clone()),
        path: Some(args.path.clone()),
        status_branch: Some(args.status_branch.clone()),
        cache: None,
        deploy_key,
        token_file: args.git_token_file.clone(),
        ca_file: args.git_ca_file.clone(),
        host_keys,
        allowed_signers: None,
        interval: None,
        timeout: None,
    })
}

/// User, role, token and ACL in PVE.
async fn pve_steps(
    c: &PveClient,
    paths: &Paths,
    out: &mut dyn Write,
    outcome: &mut Outcome,
) -> Result<()> {
    let version = api::version(c).await.context("GET /version")?;
    let major = privileges::major_version(&version).unwrap_or(9);
    let wanted = privileges::names(major);
    let user = access::USER;
    let token_id = format!("{user}!{}", access::TOKEN_NAME);

    let exists = api::users(c).await.context("listing users")?.contains(user);
    if !exists {
        api::create_user(c, user, "pve-gitops agent: acts only through its API token")
            .await
            .with_context(|| format!("creating user {user}"))?;
    }
    step(out, outcome, !exists, format!("user {user}"))?;

    let roles = api::roles(c).await.context("listing roles")?;
    match roles.get(access::ROLE) {
        None => {
            api::create_role(c, access::ROLE, &wanted)
                .await
                .with_context(|| format!("creating role {}", access::ROLE))?;
            step(
                out,
                outcome,
                true,
                format!(
                    "role {} ({} privileges, PVE {major})",
                    access::ROLE,
                    wanted.len()
                ),
            )?;
        }
        Some(held) if held.iter().map(String::as_str).eq(wanted.iter().copied()) => {
            step(
                out,
                outcome,
                false,
                format!("role {} has the {} privileges", access::ROLE, wanted.len()),
            )?;
        }
        Some(held) => {
            let added: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|p| !held.contains(*p))
                .collect();
            let removed: Vec<&str> = held
                .iter()
                .map(String::as_str)
                .filter(|p| !wanted.contains(p))
                .collect();
            api::set_role(c, access::ROLE, &wanted)
                .await
                .with_context(|| format!("updating role {}", access::ROLE))?;
            step(
                out,
                outcome,
                true,
                format!(
                    "role {} updated (added: {}; removed: {})",
                    access::ROLE,
                    list(&added),
                    list(&removed)
                ),
            )?;
        }
    }

    let token_exists = api::tokens(c, user)
        .await
        .context("listing API tokens")?
        .contains(access::TOKEN_NAME);
    match (token_exists, paths.token.exists()) {
        (true, true) => {
            let text = std::fs::read_to_string(&paths.token)
                .with_context(|| format!("reading {}", paths.token.display()))?;
            if !text.trim_start().starts_with(&format!("{token_id}=")) {
                bail!(
                    "{} holds another token than {token_id}",
                    paths.token.display()
                );
            }
            step(
                out,
                outcome,
                false,
                format!("API token {token_id}, secret in {}", paths.token.display()),
            )?;
        }
        (false, true) => bail!(
            "{} exists but PVE has no token {token_id}: remove the stale file and run init again",
            paths.token.display()
        ),
        (exists, false) => {
            let secret = if exists {
                api::regenerate_token(c, user, access::TOKEN_NAME).await
            } else {
                api::create_token(c, user, access::TOKEN_NAME, true, "pve-gitops agent").await
            }
            .with_context(|| format!("creating API token {token_id}"))?;
            let line = zeroize::Zeroizing::new(format!("{token_id}={secret}\n"));
            keys::create_secret(&paths.token, line.as_bytes())?;
            let what = if exists {
                "secret regenerated (its file was missing)"
            } else {
                "created"
            };
            step(
                out,
                outcome,
                true,
                format!(
                    "API token {token_id} {what}, secret in {}",
                    paths.token.display()
                ),
            )?;
        }
    }

    let acl = api::acl(c).await.context("reading the ACL")?;
    let granted = |kind: &str, id: &str| {
        acl.iter().any(|e| {
            e.path == "/"
                && e.kind == kind
                && e.ugid == id
                && e.roleid == access::ROLE
                && e.propagate
        })
    };
    let users: Vec<&str> = (!granted("user", user))
        .then_some(user)
        .into_iter()
        .collect();
    let tokens: Vec<&str> = (!granted("token", &token_id))
        .then_some(token_id.as_str())
        .into_iter()
        .collect();
    if !users.is_empty() || !tokens.is_empty() {
        api::grant(c, "/", access::ROLE, &users, &tokens)
            .await
            .context("granting the role on /")?;
    }
    step(
        out,
        outcome,
        !users.is_empty() || !tokens.is_empty(),
        format!("ACL: {} on / for {user} and {token_id}", access::ROLE),
    )?;
    Ok(())
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The age identity and, for an SSH remote, the deploy key.
fn key_steps(
    paths: &Paths,
    repo: &RepoConfig,
    out: &mut dyn Write,
    outcome: &mut Outcome,
) -> Result<()> {
    let (identity, _) = keys::new_age_identity();
    let created = keys::create_secret(&paths.age_key, identity.as_bytes())?;
    step(
        out,
        outcome,
        created == Created::Written,
        format!("age identity {}", paths.age_key.display()),
    )?;
    if let Some(key) = &repo.deploy_key {
        let (private, public) = keys::new_deploy_key("pve-gitops deploy key")?;
        let created = keys::create_secret(key, private.as_bytes())?;
        if created == Created::Written {
            keys::create_file(
                &key.with_extension("pub"),
                format!("{public}\n").as_bytes(),
                0o644,
            )?;
        }
        step(
            out,
            outcome,
            created == Created::Written,
            format!("SSH deploy key {}", key.display()),
        )?;
    }
    Ok(())
}

/// What the operator does next: the recipient to encrypt secrets to, the deploy key to
/// add to the repository.
fn summary(paths: &Paths, outcome: &mut Outcome, out: &mut dyn Write) -> Result<()> {
    if outcome.changed == 0 {
        writeln!(
            out,
            "nothing to do: this cluster is already set up (no change made)"
        )?;
    }
    let recipients = keys::age_recipients(&paths.age_key)?;
    outcome.recipient = recipients.first().cloned();
    writeln!(
        out,
        "\nage recipient (encrypt secrets to it: age -r, sops --age):\n  {}",
        recipients.join("\n  ")
    )?;
    let config = AgentConfig::load(&paths.config)?;
    if let Some(key) = config.repo.as_ref().and_then(|r| r.deploy_key.as_ref()) {
        let public = keys::deploy_public_key(key)?;
        writeln!(
            out,
            "\nSSH deploy key (add it to the repository, with write access for the status branch):\n  {public}"
        )?;
        outcome.deploy_public_key = Some(public);
    }
    writeln!(
        out,
        "\nnext: pve-gitops doctor --config {0}\n      then on every node: systemctl enable --now pve-gitops (with --config {0})",
        paths.config.display()
    )?;
    Ok(())
}
