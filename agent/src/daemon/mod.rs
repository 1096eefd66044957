//! The daemon loop (`pve-gitops run`): reconcile on an interval and whenever the
//! manifests change, keep running through invalid revisions and API errors.
//!
//! An idle pass is cheap. When the last pass found nothing to do, and since then neither
//! the manifests (a `stat` walk) nor pmxcfs's guest list ([`changes::VmList`]) changed,
//! one `GET /cluster/resources` settles it: same listing, nothing to do. Anything else,
//! and at least every `resync`, is a full pass (observe, plan, apply).

pub mod changes;
pub mod leader;
pub mod sources;

use crate::apply::{allocate_vmids, apply, ApplyOptions, Report};
use crate::observe::{listing_fingerprint, observe};
use crate::plan::{plan, Finding, Plan, Policy};
use crate::pve::{PveClient, ResourceType};
use crate::report::status::{self, ClusterStatus};
use crate::report::StatusFiles;
use crate::revision::Revision;
use anyhow::{Context, Result};
use changes::ClusterChanges;
use sources::Manifests;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How the daemon paces itself and what it may do.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The cluster's name in the status (the manifests directory's name by default).
    pub cluster: String,
    /// This node's name, for status commits.
    pub node: String,
    /// Decrypts the secrets revisions reference; `None`: they are reported, not set.
    pub decryptor: Option<std::sync::Arc<crate::secrets::Decryptor>>,
    /// Time between passes when nothing wakes the daemon earlier.
    pub interval: Duration,
    /// A full pass at least this often, even when nothing seems to have changed.
    pub resync: Duration,
    /// Stop after this many passes (demos, tests); `None`: until shut down.
    pub passes: Option<u64>,
    /// Where the last status is kept for `pve-gitops status` (`<dir>/<cluster>.status.yaml`).
    pub state_dir: Option<std::path::PathBuf>,
    pub policy: Policy,
    pub apply: ApplyOptions,
}

/// What one pass did.
#[derive(Debug)]
pub enum Outcome {
    /// The manifests are invalid: nothing was applied. `errors` lists every problem;
    /// `status` is the last applied one with the rejection noted.
    Invalid {
        revision: String,
        errors: String,
        status: Box<ClusterStatus>,
    },
    /// The plan failed pre-flight (a missing template, a full node, a taken IP):
    /// nothing was applied. `status` notes the problems on the last applied status.
    Refused {
        revision: String,
        plan: Plan,
        problems: Vec<crate::preflight::PreflightProblem>,
        status: Box<ClusterStatus>,
    },
    /// Nothing changed since the last settled pass (one API call).
    Unchanged,
    /// Another node leads: observed and planned, nothing applied.
    Following { revision: String, plan: Plan },
    /// A full pass: the plan and what applying it did.
    Reconciled {
        revision: String,
        plan: Plan,
        report: Report,
        status: Box<ClusterStatus>,
    },
}

/// A pass that found nothing to do, remembered so the next ones can be cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settled {
    revision: String,
    vmlist: u64,
    listing: u64,
    at: Instant,
}

/// The reconcile loop's state between passes.
pub struct Daemon {
    client: PveClient,
    manifests: Box<dyn Manifests>,
    changes: Box<dyn ClusterChanges>,
    options: DaemonOptions,
    /// The last valid revision loaded, so an unchanged revision is not parsed again.
    desired: Option<(String, Revision)>,
    settled: Option<Settled>,
    /// The status of the last full pass, kept through rejected revisions.
    status: Option<ClusterStatus>,
    /// The status files last published, so an unchanged status costs nothing.
    published: Option<StatusFiles>,
    /// Whether this agent may apply (leader election); applies always by default.
    leadership: leader::Leadership,
}

impl Daemon {
    pub fn new(
        client: PveClient,
        manifests: Box<dyn Manifests>,
        changes: Box<dyn ClusterChanges>,
        options: DaemonOptions,
    ) -> Self {
        Daemon {
            client,
            manifests,
            published: None,
            changes,
            options,
            desired: None,
            settled: None,
            status: None,
            leadership: leader::Leadership::default(),
        }
    }

    /// Whether this agent may write now (always without election).
    fn may_write(&self) -> bool {
        self.leadership
            .gate()
            .is_none_or(|g| g.may_write(std::time::Instant::now()))
    }

    /// Apply only while `leadership` says this agent leads.
    pub fn with_leadership(mut self, leadership: leader::Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    pub fn options(&self) -> &DaemonOptions {
        &self.options
    }

    /// One pass, then its status published (when it changed).
    pub async fn tick(&mut self) -> Result<Outcome> {
        let outcome = self.pass().await?;
        let status = match &outcome {
            // Only the agent that may write publishes: followers would race the leader
            // for the status branch with the same news.
            _ if !self.may_write() => None,
            Outcome::Unchanged | Outcome::Following { .. } => None,
            Outcome::Invalid { status, .. }
            | Outcome::Refused { status, .. }
            | Outcome::Reconciled { status, .. } => Some(status),
        };
        if let Some(status) = status {
            self.publish(status);
        }
        Ok(outcome)
    }

    /// Write the status files if they differ from the last ones written. A failure is
    /// logged: the cluster was reconciled all the same, and the next change retries.
    fn publish(&mut self, status: &ClusterStatus) {
        let files = crate::report::files(status, None);
        if self.published.as_ref() == Some(&files) {
            return;
        }
        if let Some(dir) = &self.options.state_dir {
            if let Err(e) = crate::report::local::save(dir, status) {
                tracing::warn!("keeping the status in {}: {e:#}", dir.display());
            }
        }
        let message = crate::report::commit_message(status, &self.options.node);
        match self.manifests.write_status(
            &self.options.cluster,
            &files,
            &message,
            &self.options.node,
        ) {
            Ok(commit) => {
                if let Some(c) = commit {
                    tracing::info!(commit = %c, "status committed: {}", message.lines().next().unwrap_or(""));
                }
                self.published = Some(files);
            }
            Err(e) => tracing::error!("writing the status: {e:#}"),
        }
    }

    async fn pass(&mut self) -> Result<Outcome> {
        let revision = self.manifests.revision()?;
        let vmlist = self.changes.fingerprint();
        if let (Some(s), Some(v)) = (self.settled.take(), vmlist) {
            if s.revision == revision && s.vmlist == v && s.at.elapsed() < self.options.resync {
                let guests = self
                    .client
                    .cluster_resources(Some(ResourceType::Vm))
                    .await
                    .context("listing the cluster's guests")?;
                if listing_fingerprint(&guests) == s.listing {
                    self.settled = Some(s);
                    return Ok(Outcome::Unchanged);
                }
            }
        }
        if let Err(errors) = self.load(&revision)? {
            let status = status::after_rejection(
                self.status.clone(),
                &self.options.cluster,
                &revision,
                errors.lines().map(str::to_string).collect(),
            );
            return Ok(Outcome::Invalid {
                revision,
                errors,
                status: Box::new(status),
            });
        }
        let loaded = &self.desired.as_ref().expect("loaded").1;
        let desired = &loaded.desired;
        let policy = Policy {
            secrets_decrypted: loaded.secrets.decrypted(),
            ..self.options.policy
        };
        let options = ApplyOptions {
            secrets: loaded.secrets.clone(),
            gate: self.leadership.gate(),
            ..self.options.apply.clone()
        };
        let observed = observe(&self.client, desired)
            .await
            .context("observing the cluster")?;
        let mut plan = plan(desired, &observed.vms, &policy);
        allocate_vmids(&mut plan, &observed.used_vmids);
        let facts = crate::preflight::gather(&self.client, &plan, &observed)
            .await
            .context("pre-flight: reading the cluster")?;
        if let Err(problems) = crate::preflight::check(&plan, &facts) {
            let status = status::after_rejection(
                self.status.clone(),
                &self.options.cluster,
                &revision,
                problems
                    .iter()
                    .map(|p| format!("pre-flight: {p}"))
                    .collect(),
            );
            return Ok(Outcome::Refused {
                revision,
                plan,
                problems,
                status: Box::new(status),
            });
        }
        let Some(window) = self.leadership.begin_apply() else {
            return Ok(Outcome::Following { revision, plan });
        };
        let report = apply(&self.client, &plan, &observed.templates, &options).await;
        drop(window);
        let busy = plan
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Locked { .. }));
        if let (true, false, Some(vmlist)) = (plan.is_empty(), busy, vmlist) {
            self.settled = Some(Settled {
                revision: revision.clone(),
                vmlist,
                listing: observed.listing,
                at: Instant::now(),
            });
        }
        let status = status::after_pass(
            &self.options.cluster,
            &revision,
            &status::PassFacts {
                desired,
                actual: &observed.vms,
                plan: &plan,
                report: &report,
            },
        );
        let status = ClusterStatus {
            leader: self.leadership.leading().map(Into::into),
            ..status
        };
        self.status = Some(status.clone());
        Ok(Outcome::Reconciled {
            revision,
            plan,
            report,
            status: Box::new(status),
        })
    }

    /// Parse `revision` into `self.desired` unless it is there already; `Err` holds the
    /// problems of an invalid one.
    fn load(&mut self, revision: &str) -> Result<std::result::Result<(), String>> {
        if self.desired.as_ref().is_none_or(|(r, _)| r != revision) {
            // A revision whose files cannot be read (its directory is a symbolic link or
            // gone) is refused like an invalid one: reported on the status branch.
            let repo = match self.manifests.read(revision) {
                Ok(repo) => repo,
                Err(e) => return Ok(Err(format!("{e:#}"))),
            };
            match crate::revision::load(&repo, self.options.decryptor.as_deref()) {
                Ok(r) => self.desired = Some((revision.to_string(), r)),
                Err(errors) => return Ok(Err(errors.join("\n"))),
            }
        }
        Ok(Ok(()))
    }
}

/// Run passes until `shutdown` completes: one now, then one per interval or as soon as
/// `wake` says the manifests changed. A pass that fails is logged and the loop goes on.
pub async fn run(
    mut daemon: Daemon,
    mut wake: mpsc::UnboundedReceiver<()>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut pass = 0u64;
    loop {
        pass += 1;
        // Shutdown cancels a pass mid-way: its writes stop before the lease is released.
        let outcome = tokio::select! {
            outcome = daemon.tick() => outcome,
            () = &mut shutdown => break,
        };
        match outcome {
            Ok(outcome) => log(pass, &outcome),
            Err(e) => tracing::error!(pass, "pass failed: {e:#}"),
        }
        if daemon.options().passes.is_some_and(|n| pass >= n) {
            break;
        }
        let interval = daemon.options().interval;
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(interval) => {}
            Some(()) = wake.recv() => {
                // Editors and git write several files: let the burst settle, then drain it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while wake.try_recv().is_ok() {}
            }
        }
    }
    tracing::info!("stopping");
}

fn log(pass: u64, outcome: &Outcome) {
    match outcome {
        Outcome::Unchanged => tracing::debug!(pass, "unchanged since the last pass"),
        Outcome::Following { revision, plan } => tracing::debug!(
            pass,
            %revision,
            pending = plan.waves.iter().map(|w| w.len()).sum::<usize>(),
            "following: another node applies"
        ),
        Outcome::Refused {
            revision, problems, ..
        } => tracing::error!(
            pass,
            %revision,
            "{}",
            crate::reconcile::describe_preflight(problems).trim_end()
        ),
        Outcome::Invalid {
            revision, errors, ..
        } => {
            tracing::error!(pass, %revision, "invalid manifests; nothing from this revision is applied:\n{errors}")
        }
        Outcome::Reconciled {
            revision,
            plan,
            report,
            ..
        } => {
            if !plan.is_empty() || !plan.findings.is_empty() {
                tracing::info!(pass, %revision, "plan:\n{}", crate::reconcile::describe(plan));
            }
            let footprint = crate::selfstat::sample().ok();
            tracing::info!(
                pass,
                %revision,
                agent_rss_kib = footprint.map(|f| f.rss_bytes / 1024),
                agent_cpu_ms = footprint.map(|f| f.cpu_time.as_millis() as u64),
                changed = report.done.len(),
                failed = report.failed.len(),
                skipped = report.skipped.len(),
                "reconciled"
            );
            for (name, e) in &report.failed {
                tracing::warn!(pass, vm = %name, "failed: {e}");
            }
        }
    }
}

/// Watch `dir` for changes, waking the loop through `tx`. The watcher stops when the
/// returned handle is dropped.
pub fn watch(
    dir: &std::path::Path,
    tx: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })
    .context("starting the file watcher")?;
    watcher
        .watch(dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok(watcher)
}
