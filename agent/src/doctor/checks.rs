//! The checks themselves, in the order a first pass would meet their subjects.

use super::{Check, Verdict, MAX_SKEW};
use crate::access::{api, privileges};
use crate::cli::{Cli, Command, DoctorArgs, RunArgs};
use crate::config::AgentConfig;
use crate::pve::{PveClient, PveError, TransportKind};
use anyhow::Result;
use clap::Parser;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict: Verdict::Pass(detail.into()),
    }
}

fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict: Verdict::Fail(detail.into()),
    }
}

fn skip(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict: Verdict::Skip(detail.into()),
    }
}

/// Every check, with `run`'s settings from `args.config`.
pub fn run(args: &DoctorArgs) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    let settings = match AgentConfig::load(&args.config) {
        Ok(config) => {
            out.push(pass("config", args.config.display().to_string()));
            settings(&args.config, &config)
        }
        Err(e) => {
            out.push(fail("config", e.to_string()));
            for name in [
                "api",
                "token",
                "privileges",
                "clock",
                "repository",
                "manifests",
                "secrets",
                "lock",
            ] {
                out.push(skip(name, "needs the config"));
            }
            return Ok(out);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    out.extend(runtime.block_on(api_checks(&settings)));
    out.extend(repository_checks(&settings, args.cache.as_deref()));
    out.push(lock_check(&settings.lease.pmxcfs_root));
    Ok(out)
}

/// What `run --config FILE` would run with: the same defaults, the same overlay.
fn settings(path: &Path, config: &AgentConfig) -> RunArgs {
    let parsed = Cli::parse_from([
        "pve-gitops".as_ref(),
        "run".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
    ]);
    let Command::Run(args) = parsed.command else {
        unreachable!("parsed a run command")
    };
    let explicit = BTreeSet::from(["config".to_string()]);
    crate::config::overlay::overlay(config, *args, &explicit)
}

/// api, token, privileges, clock.
async fn api_checks(s: &RunArgs) -> Vec<Check> {
    let c = &s.connection;
    let trust = match &c.fingerprint {
        Some(f) => format!("pinned fingerprint {f}"),
        None => format!("CA {}", c.ca_file.display()),
    };
    let client = match crate::reconcile::client(c) {
        Ok(client) => client,
        Err(e) => {
            return vec![
                skip("api", "no client without a token"),
                fail("token", format!("{e:#}")),
                skip("privileges", "needs the token"),
                skip("clock", "needs the token"),
            ]
        }
    };
    let (api_row, token_row, version) = match api::version(&client).await {
        Ok(v) => (
            pass(
                "api",
                format!("{}, certificate verified ({trust})", c.api_url),
            ),
            pass("token", format!("{} accepted (PVE {v})", token_id(c))),
            Some(v),
        ),
        Err(PveError::Transport { kind, source, .. }) => {
            let why = match kind {
                TransportKind::Tls => {
                    format!("{}: certificate not trusted ({trust}): {source}", c.api_url)
                }
                _ => format!("{}: {kind}: {source}", c.api_url),
            };
            (fail("api", why), skip("token", "needs the API"), None)
        }
        Err(e @ PveError::Auth(_)) => (
            pass(
                "api",
                format!("{}, certificate verified ({trust})", c.api_url),
            ),
            fail("token", format!("{} refused: {e}", token_id(c))),
            None,
        ),
        Err(e) => (
            fail("api", e.to_string()),
            skip("token", "needs the API"),
            None,
        ),
    };
    let Some(version) = version else {
        return vec![
            api_row,
            token_row,
            skip("privileges", "needs the token"),
            skip("clock", "needs the token"),
        ];
    };
    vec![
        api_row,
        token_row,
        privileges_check(&client, &version).await,
        clock_check(&client).await,
    ]
}

fn token_id(c: &crate::cli::Connection) -> String {
    std::fs::read_to_string(&c.token_file)
        .ok()
        .and_then(|t| t.trim().split('=').next().map(str::to_string))
        .unwrap_or_else(|| c.token_file.display().to_string())
}

async fn privileges_check(client: &PveClient, version: &str) -> Check {
    let major = privileges::major_version(version).unwrap_or(9);
    match api::permissions(client, "/").await {
        Err(e) => fail("privileges", format!("GET /access/permissions: {e}")),
        Ok(held) => {
            let missing: Vec<&str> = privileges::names(major)
                .into_iter()
                .filter(|p| !held.contains(*p))
                .collect();
            if missing.is_empty() {
                pass(
                    "privileges",
                    format!("all {} on / (PVE {major})", privileges::names(major).len()),
                )
            } else {
                fail(
                    "privileges",
                    format!(
                        "missing on /: {} (pve-gitops init brings role {} up to date)",
                        missing.join(", "),
                        crate::access::ROLE
                    ),
                )
            }
        }
    }
}

/// Every online node's clock against this one's, allowing for the request's duration.
async fn clock_check(client: &PveClient) -> Check {
    let nodes = match client.nodes().await {
        Ok(n) => n,
        Err(e) => return fail("clock", format!("GET /nodes: {e}")),
    };
    let mut worst: Vec<String> = Vec::new();
    let mut checked = 0;
    for node in nodes
        .iter()
        .filter(|n| n.status.as_deref().is_none_or(|s| s == "online"))
    {
        let before = now();
        let theirs = match api::node_time(client, &node.node).await {
            Ok(t) => t as f64,
            Err(e) => return fail("clock", format!("{}: {e}", node.node)),
        };
        let after = now();
        checked += 1;
        // PVE answers in whole seconds, taken somewhere between before and after.
        let skew = if theirs + 1.0 < before {
            theirs + 1.0 - before
        } else if theirs > after {
            theirs - after
        } else {
            0.0
        };
        if skew.abs() > MAX_SKEW.as_secs_f64() {
            // For the operator: the middle of PVE's second against the request's middle.
            let estimate = theirs + 0.5 - (before + after) / 2.0;
            worst.push(format!("{} is {estimate:+.0}s off", node.node));
        }
    }
    if worst.is_empty() {
        pass(
            "clock",
            format!("{checked} nodes within {}s of this one", MAX_SKEW.as_secs()),
        )
    } else {
        fail(
            "clock",
            format!(
                "{} (more than {}s: check chrony/NTP)",
                worst.join("; "),
                MAX_SKEW.as_secs()
            ),
        )
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// repository, manifests, secrets.
fn repository_checks(s: &RunArgs, cache: Option<&Path>) -> Vec<Check> {
    let later = |why: &str| {
        vec![
            skip("manifests", why.to_string()),
            skip("secrets", why.to_string()),
        ]
    };
    let Some(url) = &s.git.repo else {
        let mut out = vec![fail("repository", "no repo.url in the config")];
        out.extend(later("needs the repository"));
        return out;
    };
    let scratch = tempfile_dir();
    let mut git = s.git.clone();
    git.cache = match cache {
        Some(c) => c.to_path_buf(),
        None => scratch.clone(),
    };
    crate::source::bound_network_waits(git.git_timeout);
    let result = crate::reconcile::source_config(url, &git)
        .and_then(|c| Ok(crate::source::Source::open(c)?))
        .and_then(|mut source| {
            let head = match source.poll()? {
                crate::source::Poll::Updated(u) => u.head,
                crate::source::Poll::Unchanged { head } => head,
            };
            let files = source.read_tree(head, &s.git.path)?;
            Ok((head, files))
        });
    let _ = std::fs::remove_dir_all(&scratch);
    let (head, files) = match result {
        Ok(r) => r,
        Err(e) => {
            let mut out = vec![fail("repository", format!("{e:#}"))];
            out.extend(later("needs the repository"));
            return out;
        }
    };
    let pinned = if s.git.host_key.is_empty() {
        String::new()
    } else {
        ", host key pinned".into()
    };
    let mut out = vec![pass(
        "repository",
        format!(
            "{url} `{}` at {}{pinned}",
            s.git.branch,
            &head.to_string()[..12]
        ),
    )];
    let desired = match pve_gitops_schema::load(&files) {
        Ok(d) => d,
        Err(d) => {
            let errors: Vec<String> = d.into_sorted().iter().map(ToString::to_string).collect();
            out.push(fail("manifests", errors.join("\n")));
            out.push(skip("secrets", "needs valid manifests"));
            return out;
        }
    };
    out.push(pass(
        "manifests",
        format!("`{}`: {} VMs", display_path(&s.git.path), desired.vms.len()),
    ));
    let referenced = desired
        .vms
        .iter()
        .filter(|v| {
            v.spec
                .cloud_init
                .as_ref()
                .is_some_and(|c| c.password.is_some())
        })
        .count();
    let decryptor = match crate::reconcile::decryptor(&s.secrets) {
        Ok(d) => d,
        Err(e) => {
            out.push(fail("secrets", format!("{e:#}")));
            return out;
        }
    };
    let Some(decryptor) = decryptor else {
        out.push(match referenced {
            0 => pass("secrets", "none referenced, no identity configured"),
            n => fail(
                "secrets",
                format!("{n} referenced but no identity configured (identities:)"),
            ),
        });
        return out;
    };
    out.push(
        match crate::revision::load(&files, Some(decryptor.as_ref())) {
            Ok(_) => pass(
                "secrets",
                format!(
                    "{referenced} decrypted with {}",
                    decryptor
                        .identities()
                        .sources()
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Err(errors) => fail("secrets", errors.join("\n")),
        },
    );
    out
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// A fresh directory for a throw-away cache.
fn tempfile_dir() -> std::path::PathBuf {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("pve-gitops-doctor-{}-{n}", std::process::id()))
}

/// The lease's directory takes a `mkdir`/`rmdir` (a probe beside the real lock, which
/// is only looked at).
fn lock_check(pmxcfs_root: &Path) -> Check {
    let dir = pmxcfs_root.join("priv/lock");
    let probe = dir.join(format!("pve-gitops-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&probe) {
        return fail(
            "lock",
            format!(
                "cannot create {}: {e} (leader election needs it)",
                probe.display()
            ),
        );
    }
    if let Err(e) = std::fs::remove_dir(&probe) {
        return fail("lock", format!("cannot remove {}: {e}", probe.display()));
    }
    let lock = dir.join("pve-gitops");
    let held = match std::fs::metadata(&lock).and_then(|m| m.modified()) {
        Ok(t) => {
            let age = SystemTime::now().duration_since(t).unwrap_or_default();
            format!("; the lock is held (renewed {}s ago)", age.as_secs())
        }
        Err(_) => "; the lock is free".into(),
    };
    pass("lock", format!("{} usable{held}", dir.display()))
}
