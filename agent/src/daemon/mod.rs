//! The daemon loop (`pve-gitops run`): reconcile on an interval and whenever the
//! manifests change, keep running through invalid revisions and API errors.
//!
//! An idle pass is cheap. When the last pass found nothing to do, and since then neither
//! the manifests (a `stat` walk) nor pmxcfs's guest list ([`changes::VmList`]) changed,
//! one `GET /cluster/resources` settles it: same listing, nothing to do. Anything else,
//! and at least every `resync`, is a full pass (observe, plan, apply).

pub mod changes;
pub mod leader;
mod previews;
pub mod reload;
pub mod service;
pub mod sources;

use crate::apply::{ApplyOptions, Report};
use crate::observe::listing;
use crate::plan::{Finding, Plan, Policy, PolicyOverrides, RebootPolicy};
use crate::pve::PveClient;
use crate::report::status::{self, ClusterStatus};
use crate::report::StatusFiles;
use crate::revision::Revision;
use crate::windows::WindowState;
use anyhow::{Context, Result};
use changes::ClusterChanges;
use chrono::SecondsFormat;
use pve_gitops_schema::manifest::policy::{PlanPreviews, WindowScope};
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
    /// The command line's policy flags, over each revision's `ClusterPolicy`.
    pub policy: PolicyOverrides,
    pub apply: ApplyOptions,
    /// The time sync windows are judged at.
    pub clock: crate::windows::Clock,
}

/// What one pass did.
#[derive(Debug)]
pub enum Outcome {
    /// The manifests are invalid, or the source refuses the revision (a head not signed
    /// by an allowed key): nothing was applied. `errors` lists every problem; `status` is
    /// the last applied one with the rejection noted.
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
    /// The revision is valid and planned, but the cluster's sync windows are closed:
    /// nothing was applied. `status` notes what waits, and until when.
    Waiting {
        revision: String,
        plan: Plan,
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
    /// Plan previews of other branches, published with the status.
    previews: previews::Previews,
    /// Where a new configuration comes from (`run --config`); `None`: fixed.
    reload: Option<Box<dyn reload::Reload>>,
    /// What the guests published (addresses, output files), kept between passes.
    outputs: crate::outputs::Outputs,
    /// Whether this agent could write when the last pass read its revision.
    led: bool,
    /// Whether the source confirmed a revision since this agent started to lead.
    heard: bool,
    /// Whether this agent took up the published status since it started to lead; until
    /// it has, it publishes nothing (what it would publish could contradict what is
    /// applied).
    taken_up: bool,
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
            previews: previews::Previews::default(),
            reload: None,
            outputs: crate::outputs::Outputs::default(),
            led: false,
            heard: false,
            taken_up: false,
        }
    }

    /// The manifests source should be asked again before the next pass (a push webhook,
    /// a config change): its last answer may be out of date.
    pub fn poll_now(&mut self) {
        self.manifests.poll_now();
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

    /// One pass, then its status (and plan previews) published when they changed.
    pub async fn tick(&mut self) -> Result<Outcome> {
        self.reload();
        let outcome = self.pass().await?;
        // Only the agent that may write publishes: followers would race the leader for
        // the status branch with the same news. A new leader publishes once it has taken
        // up the status its predecessor published.
        if !self.may_write() || !self.taken_up {
            return Ok(outcome);
        }
        let status = match &outcome {
            Outcome::Unchanged | Outcome::Following { .. } => None,
            Outcome::Invalid { status, .. }
            | Outcome::Refused { status, .. }
            | Outcome::Waiting { status, .. }
            | Outcome::Reconciled { status, .. } => Some(status.as_ref().clone()),
        };
        let replan = matches!(outcome, Outcome::Reconciled { .. });
        let previews_changed = self.refresh_previews(replan).await;
        match (status, previews_changed) {
            (Some(status), _) => self.publish(&status),
            (None, true) => {
                if let Some(status) = self.status.clone() {
                    self.publish(&status);
                }
            }
            (None, false) => {}
        }
        Ok(outcome)
    }

    /// Plan the preview branches the current policy names (default `plan/*`).
    async fn refresh_previews(&mut self, replan: bool) -> bool {
        let patterns = self
            .desired
            .as_ref()
            .and_then(|(_, r)| r.desired.policy.as_ref())
            .map(|p| p.spec.plan_previews.branches.clone())
            .unwrap_or_else(|| PlanPreviews::default().branches);
        self.previews
            .refresh(
                &self.client,
                self.manifests.as_mut(),
                &patterns,
                self.options.decryptor.as_deref(),
                &self.options.policy,
                replan,
            )
            .await
    }

    /// Write the status files if they differ from the last ones written. A failure is
    /// logged: the cluster was reconciled all the same, and the next change retries.
    fn publish(&mut self, status: &ClusterStatus) {
        let desired = self.desired.as_ref().map(|(_, r)| &r.desired);
        let inventory = desired.and_then(|d| d.inventories.first()).map(|i| &i.spec);
        let mut files = crate::report::files(status, inventory);
        if let Some(desired) = desired {
            files.extend(self.outputs.files(desired, status));
        }
        files.extend(self.previews.files());
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
                    tracing::info!(status_commit = %c, "status committed: {}", message.lines().next().unwrap_or(""));
                }
                self.published = Some(files);
            }
            Err(e) => tracing::error!("writing the status: {e:#}"),
        }
    }

    async fn pass(&mut self) -> Result<Outcome> {
        // An agent that has just become the leader asks the remote itself: the head it
        // heard of while following may be older than the one its predecessor applied.
        // It also takes up the status as last published: what it reports on a rejection
        // or a closed window builds on what is applied, which the previous leader knew.
        let leading = self.may_write();
        if leading && !self.led {
            self.manifests.poll_now();
            self.heard = false;
            self.taken_up = false;
        }
        if leading && !self.taken_up {
            self.take_up_status();
        }
        self.led = leading;
        let revision = self.manifests.revision()?;
        self.heard |= self.manifests.confirmed();
        tracing::Span::current().record("commit", revision.as_str());
        if let Some(refusal) = self.manifests.refusal() {
            let status = status::after_rejection(
                self.status.clone(),
                &self.options.cluster,
                &refusal.revision,
                vec![refusal.reason.clone()],
            );
            return Ok(Outcome::Invalid {
                revision: refusal.revision,
                errors: refusal.reason,
                status: Box::new(status),
            });
        }
        let vmlist = self.changes.fingerprint();
        if let (Some(s), Some(v)) = (self.settled.take(), vmlist) {
            if s.revision == revision && s.vmlist == v && s.at.elapsed() < self.options.resync {
                let listing = listing::fetch_fingerprint(&self.client)
                    .await
                    .context("listing the cluster's guests")?;
                if listing == s.listing {
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
        let now = self.options.clock.now();
        let window = |scope| crate::windows::for_policy(desired.policy.as_ref(), scope, now);
        let mut policy = Policy {
            secrets_decrypted: loaded.secrets.decrypted(),
            existed: self.existed(),
            ..Policy::effective(
                desired.policy.as_ref().map(|p| &p.spec),
                &self.options.policy,
            )
        };
        if !window(WindowScope::Reboot).is_open() {
            // Pending changes stay pending (and reported) until a reboot window opens.
            policy.reboot = RebootPolicy::Never;
        }
        let options = ApplyOptions {
            secrets: loaded.secrets.clone(),
            gate: self.leadership.gate(),
            node: Some(self.options.node.clone()),
            ..self.options.apply.clone()
        };
        let prepared = crate::pass::prepare(&self.client, desired, &policy).await?;
        if let Err(problems) = &prepared.preflight {
            let (plan, problems) = (prepared.plan.clone(), problems.clone());
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
        if let (false, WindowState::Closed { next_open }) =
            (prepared.plan.is_empty(), window(WindowScope::Apply))
        {
            let waiting = status::Waiting {
                revision: revision.clone(),
                changes: prepared.plan.waves.iter().map(|w| w.len()).sum(),
                next_open: next_open.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            };
            let status = status::while_waiting(self.status.clone(), &self.options.cluster, waiting);
            self.status = Some(status.clone());
            return Ok(Outcome::Waiting {
                revision,
                plan: prepared.plan,
                status: Box::new(status),
            });
        }
        // Leading now but not when the revision was read, or the source has not answered
        // since this agent took over (a git outage): the revision may be older than what
        // the previous leader applied. Follow until the source confirms one.
        // No window is opened then: the apply log records only windows that may apply.
        if leading && !self.heard {
            tracing::warn!(%revision, "leading, but the manifests source has not answered since this agent took over: applying nothing until it does");
        }
        let window = (leading && self.heard)
            .then(|| self.leadership.begin_apply())
            .flatten();
        let Some(window) = window else {
            crate::pass::follow(&prepared, &options);
            return Ok(Outcome::Following {
                revision,
                plan: prepared.plan,
            });
        };
        let report = crate::pass::execute(&self.client, &prepared, &options).await;
        drop(window);
        let crate::pass::Prepared {
            observed,
            plan,
            cluster,
            ..
        } = prepared;
        let mut status = status::after_pass(
            &self.options.cluster,
            &revision,
            &status::PassFacts {
                desired,
                actual: &observed.vms,
                plan: &plan,
                report: &report,
            },
        );
        let changed: std::collections::BTreeSet<String> = report.done.keys().cloned().collect();
        let recipients = loaded.output_recipients(self.options.decryptor.as_deref());
        self.outputs
            .refresh(&self.client, desired, &mut status, &changed, &recipients)
            .await;
        // SDN, firewalls or pools had writes: the next pass checks they took. An output
        // still missing is asked for again.
        let busy = plan
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Locked { .. }))
            || !cluster.is_empty()
            || self.outputs.incomplete();
        if let (true, false, Some(vmlist)) = (plan.is_empty(), busy, vmlist) {
            self.settled = Some(Settled {
                revision: revision.clone(),
                vmlist,
                listing: observed.listing,
                at: Instant::now(),
            });
        }
        let status = ClusterStatus {
            leader: self.leadership.leading().map(Into::into),
            ..status
        };
        self.status = Some(status.clone());
        // Made from what this pass observed and did, not from an earlier status: newer
        // than anything published, so it is the one to build on and publish.
        self.taken_up = true;
        Ok(Outcome::Reconciled {
            revision,
            plan,
            report,
            status: Box::new(status),
        })
    }

    /// The status to build on as this agent starts to lead: the one last published to
    /// the source (by any agent), else the one this node kept in its state directory.
    /// What this agent published before, maybe in an earlier term, no longer counts.
    /// While the status branch cannot be read, nothing is taken up: a later pass tries
    /// again, and nothing is published meanwhile.
    fn take_up_status(&mut self) {
        match self.manifests.published_status(&self.options.cluster) {
            Ok(published) => {
                self.status = published.or_else(|| self.kept_status());
                self.published = None;
                self.taken_up = true;
            }
            Err(e) => tracing::warn!(
                "cannot read the last published status, publishing nothing until it can be: {e:#}"
            ),
        }
    }

    /// The status this node kept in its state directory, if any.
    fn kept_status(&self) -> Option<ClusterStatus> {
        let dir = self.options.state_dir.as_ref()?;
        crate::report::local::load_all(dir)
            .ok()?
            .into_iter()
            .find(|s| s.cluster == self.options.cluster)
    }

    /// The VMs the last full pass saw existing (this process's, else the one kept in the
    /// state directory): one absent now was deleted behind the agent's back.
    fn existed(&self) -> std::collections::BTreeSet<String> {
        match &self.status {
            Some(s) => status::existing(s),
            None => self
                .kept_status()
                .map(|s| status::existing(&s))
                .unwrap_or_default(),
        }
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
    daemon: Daemon,
    wake: mpsc::UnboundedReceiver<()>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    run_as_service(daemon, wake, shutdown, service::Service::off()).await
}

/// [`run`], reporting to systemd and the metrics through `service`: the watchdog is
/// pinged from this loop, on a timer polled beside the pass and beside the wait, and
/// only as [`crate::telemetry::liveness`] allows (never just because the timer fired).
pub async fn run_as_service(
    mut daemon: Daemon,
    mut wake: mpsc::UnboundedReceiver<()>,
    shutdown: impl std::future::Future<Output = ()>,
    mut service: service::Service,
) {
    use crate::telemetry::liveness::Phase;
    tokio::pin!(shutdown);
    let mut beat = service.beat_timer();
    let mut pass = 0u64;
    'passes: loop {
        pass += 1;
        let started = service.pass_started();
        let span = tracing::info_span!(
            "pass",
            cluster = %daemon.options().cluster,
            commit = tracing::field::Empty
        );
        // Shutdown cancels a pass mid-way: its writes stop before the lease is released.
        let outcome = {
            let tick = tracing::Instrument::instrument(daemon.tick(), span.clone());
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    outcome = &mut tick => break outcome,
                    () = &mut shutdown => break 'passes,
                    () = next_beat(&mut beat) => service.beat(Phase::Pass),
                }
            }
        };
        service.pass_done(&outcome, started);
        if !matches!(outcome, Ok(Outcome::Unchanged)) {
            // A full pass parsed every guest's config; give what it freed back to the node
            // rather than keep it resident through the idle passes until the next one.
            crate::selfstat::release_free_heap();
        }
        span.in_scope(|| match outcome {
            Ok(outcome) => log(pass, &outcome),
            Err(e) => tracing::error!(pass, "pass failed: {e:#}"),
        });
        if daemon.options().passes.is_some_and(|n| pass >= n) {
            break;
        }
        let next = tokio::time::sleep(daemon.options().interval);
        tokio::pin!(next);
        loop {
            tokio::select! {
                () = &mut shutdown => break 'passes,
                () = &mut next => break,
                Some(()) = wake.recv() => {
                    // Editors and git write several files: let the burst settle, then drain it.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while wake.try_recv().is_ok() {}
                    daemon.poll_now();
                    break;
                }
                () = next_beat(&mut beat) => service.beat(Phase::Idle),
            }
        }
    }
    service.stopping();
    tracing::info!("stopping");
}

/// The next tick of the watchdog timer; never, without a watchdog.
async fn next_beat(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn log(pass: u64, outcome: &Outcome) {
    match outcome {
        Outcome::Unchanged => tracing::debug!(pass, "unchanged since the last pass"),
        Outcome::Waiting {
            revision, status, ..
        } => tracing::info!(
            pass,
            %revision,
            "outside the sync windows; {}",
            crate::report::commit_message(status, "").lines().next().unwrap_or("")
        ),
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
            tracing::error!(pass, %revision, "revision rejected, nothing from it is applied:\n{errors}")
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
                tracing::warn!(pass, resource = %name, "failed: {e}");
            }
        }
    }
}

/// Watch `dir` for changes, telling `seen` (which the [`sources::WatchedDirectory`] of
/// `dir` reads) and waking the loop through `tx`. An error from the watcher (inotify's
/// queue overflowed) counts as a change. The watcher stops when the returned handle is
/// dropped.
pub fn watch(
    dir: &std::path::Path,
    tx: mpsc::UnboundedSender<()>,
    seen: sources::DirWatch,
) -> Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let told = seen.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if !event.is_ok_and(|e| e.kind.is_access()) {
            told.changed();
            let _ = tx.send(());
        }
    })
    .context("starting the file watcher")?;
    watcher
        .watch(dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    seen.started(dir);
    Ok(watcher)
}
