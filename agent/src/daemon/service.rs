//! What the daemon loop tells the world outside it: systemd (`READY=1` after the first
//! fetch of the manifests, a `STATUS=` line per pass, watchdog pings by the rule in
//! [`crate::telemetry::liveness`]) and the Prometheus metrics.

use super::leader::Leadership;
use super::sources::Manifests;
use super::Outcome;
use crate::plan::{Finding, Plan};
use crate::report::StatusFiles;
use crate::telemetry::liveness::{self, Phase};
use crate::telemetry::metrics::{self, KindLabel, OutcomeLabel};
use crate::telemetry::notify::{one_line, Notifier};
use anyhow::Result;
use pve_gitops_schema::Repository;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The loop's reporter. [`Service::off`] for daemons run in-process (tests): metrics
/// only, no systemd.
pub struct Service {
    notifier: Notifier,
    leadership: Leadership,
    /// The last `STATUS=` sent, so an unchanged one is not sent again.
    status: Option<String>,
}

impl Service {
    /// `leadership` is the daemon's (clones share it): whether this agent leads, and
    /// whom it follows, for the status line and `pve_gitops_leader`.
    pub fn new(notifier: Notifier, leadership: Leadership) -> Self {
        Service {
            notifier,
            leadership,
            status: None,
        }
    }

    pub fn off() -> Self {
        Self::new(Notifier::off(), Leadership::default())
    }

    /// The timer the loop pings the watchdog on: half the watchdog period, as
    /// `sd_watchdog_enabled(3)` advises; `None` when systemd set no watchdog.
    pub fn beat_timer(&self) -> Option<tokio::time::Interval> {
        let period = self.notifier.watchdog()?;
        let mut timer = tokio::time::interval(period / 2);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(timer)
    }

    /// The beat timer fired while the loop is in `phase`: ping if the loop is alive.
    pub fn beat(&self, phase: Phase) {
        let Some(period) = self.notifier.watchdog() else {
            return;
        };
        if liveness::should_ping(phase, liveness::since_progress(), period) {
            self.notifier.watchdog_ping();
        } else {
            tracing::warn!(
                since_progress = ?liveness::since_progress(),
                "the pass made no progress for a whole watchdog period: not pinging the watchdog"
            );
        }
        metrics::global().leader.set(i64::from(self.may_write()));
    }

    /// A pass starts: progress, and the clock for its duration.
    pub fn pass_started(&self) -> Instant {
        liveness::mark();
        Instant::now()
    }

    /// A pass ended: metrics, and the status line when it changed.
    pub fn pass_done(&mut self, outcome: &Result<Outcome>, started: Instant) {
        liveness::mark();
        let leading = self.may_write();
        record(outcome, started.elapsed(), leading);
        let following = self.leadership.following();
        let role = if leading {
            Role::Leader
        } else {
            Role::Follower(following.as_deref())
        };
        if let Some(line) = status_line(outcome, role) {
            if self.status.as_ref() != Some(&line) {
                self.notifier.status(&line);
                self.status = Some(line);
            }
        }
    }

    pub fn stopping(&self) {
        self.notifier.stopping();
    }

    /// `manifests`, announcing `READY=1` when its first fetch returns.
    pub fn announce(&self, manifests: Box<dyn Manifests>) -> Box<dyn Manifests> {
        Box::new(Announce {
            inner: manifests,
            notifier: self.notifier.clone(),
            announced: false,
        })
    }

    fn may_write(&self) -> bool {
        self.leadership
            .gate()
            .is_none_or(|g| g.may_write(std::time::Instant::now()))
    }
}

/// This agent's part, for the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// It may apply: it leads, or runs without election.
    Leader,
    /// Another node applies (named when the leader record says which).
    Follower(Option<&'a str>),
}

/// The `STATUS=` line after a pass; `None` keeps the last one (an unchanged pass).
pub fn status_line(outcome: &Result<Outcome>, role: Role<'_>) -> Option<String> {
    let line = match outcome {
        Err(e) => format!("pass failed: {e:#}"),
        Ok(Outcome::Unchanged) => return None,
        Ok(Outcome::Invalid {
            revision, errors, ..
        }) => {
            let n = errors.lines().count();
            format!(
                "revision {} invalid: {n} error{}",
                short(revision),
                plural(n)
            )
        }
        Ok(Outcome::Refused {
            revision, problems, ..
        }) => {
            let n = problems.len();
            format!(
                "revision {} refused by pre-flight: {n} problem{}",
                short(revision),
                plural(n)
            )
        }
        Ok(Outcome::Waiting { revision, plan, .. }) => {
            let n = action_count(plan);
            format!(
                "revision {} waits for a sync window: {n} change{} pending",
                short(revision),
                plural(n)
            )
        }
        Ok(Outcome::Following { revision, plan }) => {
            let who = match role {
                Role::Follower(Some(node)) => format!("follower of {node}"),
                _ => "follower".to_string(),
            };
            match action_count(plan) {
                0 => format!("{who}, revision {} in sync", short(revision)),
                n => format!(
                    "{who}, revision {}: {n} change{} pending",
                    short(revision),
                    plural(n)
                ),
            }
        }
        Ok(Outcome::Reconciled {
            revision,
            report,
            status,
            ..
        }) => {
            let vms = status
                .resources
                .iter()
                .filter(|r| r.kind == "VirtualMachine")
                .count();
            let mut line = format!(
                "leader, applied {}, {vms} VM{}",
                short(revision),
                plural(vms)
            );
            if !report.done.is_empty() {
                line += &format!(", {} changed", report.done.len());
            }
            if !report.failed.is_empty() {
                line += &format!(", {} failed", report.failed.len());
            }
            line
        }
    };
    Some(one_line(&line, 200))
}

/// A revision as an operator reads it: a commit's first 7 hex digits, a directory's
/// fingerprint as it is.
pub fn short(revision: &str) -> &str {
    if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        &revision[..7]
    } else {
        revision
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn action_count(plan: &Plan) -> usize {
    plan.waves
        .iter()
        .flat_map(|w| w.values())
        .map(Vec::len)
        .sum()
}

/// The metrics of one pass.
fn record(outcome: &Result<Outcome>, elapsed: Duration, leading: bool) {
    let m = metrics::global();
    let name = match outcome {
        Err(_) => "error",
        Ok(Outcome::Unchanged) => "unchanged",
        Ok(Outcome::Following { .. }) => "following",
        Ok(Outcome::Invalid { .. }) => "invalid",
        Ok(Outcome::Refused { .. }) => "refused",
        Ok(Outcome::Waiting { .. }) => "waiting",
        Ok(Outcome::Reconciled { .. }) => "reconciled",
    };
    m.reconcile_duration
        .get_or_create(&OutcomeLabel { outcome: name })
        .observe(elapsed.as_secs_f64());
    m.leader.set(i64::from(leading));
    let plan = match outcome {
        Ok(Outcome::Following { plan, .. }) | Ok(Outcome::Reconciled { plan, .. }) => Some(plan),
        _ => None,
    };
    if let Some(plan) = plan {
        m.plan_actions.set(action_count(plan) as i64);
        m.findings.clear();
        for f in &plan.findings {
            m.findings
                .get_or_create(&KindLabel {
                    kind: finding_kind(f),
                })
                .inc();
        }
    }
    let succeeded = match outcome {
        Ok(Outcome::Reconciled { report, .. }) => report.failed.is_empty(),
        Ok(Outcome::Unchanged | Outcome::Following { .. }) => true,
        _ => false,
    };
    if succeeded {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        m.last_success.set(now.as_secs_f64());
    }
}

/// The `kind` label of `pve_gitops_findings`.
pub fn finding_kind(f: &Finding) -> &'static str {
    match f {
        Finding::Orphan { .. } => "orphan",
        Finding::PendingReboot { .. } => "pending_reboot",
        Finding::NotOwned { .. } => "not_owned",
        Finding::ShrinkRefused { .. } => "shrink_refused",
        Finding::SecretNotApplied { .. } => "secret_not_applied",
        Finding::WrongNode { .. } => "wrong_node",
        Finding::Locked { .. } => "locked",
        Finding::Drift(_) => "drift",
        Finding::PruneRefused { .. } => "prune_refused",
        Finding::RebuildRefused { .. } => "rebuild_refused",
    }
}

/// The manifests source, sending `READY=1` when its first fetch returns: the
/// configuration is loaded by then, and the agent has its first revision to work on. A
/// first fetch that fails announces readiness too (with the error as the status): the
/// daemon is up and retries every pass, and a git server down at boot must not make
/// systemd give up on the unit.
struct Announce {
    inner: Box<dyn Manifests>,
    notifier: Notifier,
    announced: bool,
}

impl Manifests for Announce {
    fn revision(&mut self) -> Result<String> {
        let revision = self.inner.revision();
        liveness::mark();
        if !self.announced {
            self.announced = true;
            let status = match &revision {
                Ok(r) => format!("fetched {}, reconciling", short(r)),
                Err(e) => one_line(&format!("fetching the manifests failed: {e:#}"), 200),
            };
            self.notifier.ready(&status);
        }
        revision
    }

    fn poll_now(&mut self) {
        self.inner.poll_now();
    }

    fn confirmed(&self) -> bool {
        self.inner.confirmed()
    }

    fn read(&mut self, revision: &str) -> Result<Repository> {
        self.inner.read(revision)
    }

    fn refusal(&self) -> Option<super::sources::Refusal> {
        self.inner.refusal()
    }

    fn preview_branches(&mut self, patterns: &[String]) -> Result<Vec<(String, String)>> {
        self.inner.preview_branches(patterns)
    }

    fn published_status(
        &mut self,
        cluster: &str,
    ) -> Result<Option<crate::report::status::ClusterStatus>> {
        self.inner.published_status(cluster)
    }

    fn write_status(
        &mut self,
        cluster: &str,
        files: &StatusFiles,
        message: &str,
        node: &str,
    ) -> Result<Option<String>> {
        self.inner.write_status(cluster, files, message, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Report;
    use crate::report::status::ClusterStatus;

    fn status() -> ClusterStatus {
        serde_yaml::from_str(
            "apiVersion: pve-gitops/v1alpha1\nkind: ClusterStatus\ncluster: c\nresources:\n\
             - {kind: VirtualMachine, name: a, state: running, sync: in-sync}\n\
             - {kind: VirtualMachine, name: b, state: running, sync: in-sync}\n",
        )
        .unwrap()
    }

    fn reconciled(done: usize, failed: usize) -> Outcome {
        let mut report = Report::default();
        for i in 0..done {
            report.done.insert(format!("vm{i}"), vec!["create".into()]);
        }
        for i in 0..failed {
            report.failed.insert(format!("bad{i}"), "boom".into());
        }
        Outcome::Reconciled {
            revision: "3f2a1c9d0e0f1a2b3c4d5e6f708192a3b4c5d6e7".into(),
            plan: Plan::default(),
            report,
            status: Box::new(status()),
        }
    }

    #[test]
    fn status_lines_say_what_the_agent_does() {
        let line = |o: Result<Outcome>, role| status_line(&o, role);
        assert_eq!(
            line(Ok(reconciled(0, 0)), Role::Leader).unwrap(),
            "leader, applied 3f2a1c9, 2 VMs"
        );
        assert_eq!(
            line(Ok(reconciled(2, 1)), Role::Leader).unwrap(),
            "leader, applied 3f2a1c9, 2 VMs, 2 changed, 1 failed"
        );
        assert_eq!(line(Ok(Outcome::Unchanged), Role::Leader), None);
        let invalid = Outcome::Invalid {
            revision: "dir:00000000deadbeef".into(),
            errors: "a.yaml:1:1: x\nb.yaml:2:2: y".into(),
            status: Box::new(status()),
        };
        assert_eq!(
            line(Ok(invalid), Role::Leader).unwrap(),
            "revision dir:00000000deadbeef invalid: 2 errors"
        );
        let following = Outcome::Following {
            revision: "3f2a1c9d0e0f1a2b3c4d5e6f708192a3b4c5d6e7".into(),
            plan: Plan::default(),
        };
        assert_eq!(
            line(Ok(following), Role::Follower(Some("pve2"))).unwrap(),
            "follower of pve2, revision 3f2a1c9 in sync"
        );
        assert_eq!(
            line(
                Err(anyhow::anyhow!("observing the cluster\nmore")),
                Role::Leader
            )
            .unwrap(),
            "pass failed: observing the cluster"
        );
    }

    #[test]
    fn short_revisions() {
        assert_eq!(short("3f2a1c9d0e0f1a2b3c4d5e6f708192a3b4c5d6e7"), "3f2a1c9");
        assert_eq!(short("dir:0123"), "dir:0123");
    }
}
