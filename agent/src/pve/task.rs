//! Waiting for PVE tasks.
//!
//! A task is done when `/nodes/{node}/tasks/{upid}/status` says `status: stopped`; its
//! `exitstatus` is then `OK`, `WARNINGS: N` (done, with warnings in the task log) or the
//! error text. Polling starts fast, because most tasks on a healthy cluster end within
//! a second, and backs off to a cap, because a slow clone or a long shutdown should not
//! cost a request every few milliseconds. Time is tokio's, so tests can run the fake
//! with a small `time_scale` and not wait for real seconds.
//!
//! While other tasks on the node are waited for too, a look reads the node's task list
//! instead, which answers them all ([`super::board`]).

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::board::{ListedTask, Seen, Waiting};
use super::client::PveClient;
use super::de;
use super::error::PveError;
use super::form::{segment, Params};
use super::pace::{Observation, Scout, Scouting};
use super::upid::Upid;

/// How task status is polled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskPollPolicy {
    /// Wait before the second poll (the first is immediate).
    pub first_interval: Duration,
    /// Longest wait between polls.
    pub max_interval: Duration,
    /// Growth of the wait after each poll.
    pub factor: f64,
}

impl Default for TaskPollPolicy {
    fn default() -> Self {
        TaskPollPolicy {
            first_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(2),
            factor: 1.6,
        }
    }
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct TaskStatus {
    pub upid: Upid,
    #[serde(default)]
    pub node: Option<String>,
    /// `running` or `stopped`.
    pub status: String,
    #[serde(default)]
    pub exitstatus: Option<String>,
    #[serde(rename = "type", default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub starttime: Option<u64>,
}

impl TaskStatus {
    pub fn is_running(&self) -> bool {
        self.status != "stopped"
    }
}

/// The longest wait before the first poll, however long tasks of the type took: one
/// unusually slow task must not make the next, quick one wait minutes.
const MAX_FIRST_WAIT: Duration = Duration::from_secs(15);

/// The most tasks one list look reads (PVE's default is 50). Only tasks started since
/// the earliest one waited for are listed, so this is rarely reached; a task it leaves
/// out is looked at by its status.
const LIST_LIMIT: u32 = 200;

/// How many looks in a row a wait takes the node's task list's word that its task still
/// runs before it asks the task's status. PVE's list shows a task as running until the
/// daemon that started it has reaped its worker and noted the end, which is at once
/// unless that daemon is busy or gone; the status reads the task's process itself.
const LISTED_RUNNING: u32 = 3;

/// What one look at a task saw.
#[derive(Debug)]
enum Looked {
    /// Ended with this exit status.
    Ended(String),
    /// Still running, as the node's task list (`listed`) or the task's status said.
    Running { listed: bool },
}

/// Whether a failed list look means the list cannot serve this node at all (rather
/// than a passing fault, which the task's status look meets too).
fn list_unusable(e: &PveError) -> bool {
    match e {
        PveError::ParameterVerification(_)
        | PveError::Auth(_)
        | PveError::NotFound(_)
        | PveError::InvalidResponse { .. } => true,
        PveError::Api(f) => f.status == 501,
        _ => false,
    }
}

/// One wait's place in [`super::pace`]: what it expected, and since when it waits.
struct Pacing<'a> {
    kind: String,
    expected: Option<Duration>,
    started: Instant,
    /// Held while this wait finds out how long tasks of its type take.
    _scout: Option<Scout<'a>>,
    /// Its place on the node's [`super::board`].
    waiting: Waiting,
}

/// Sleep `wait`, or less if a look at the node's tasks sees this wait's task end.
async fn nap(waiting: &Waiting, wait: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = waiting.ended_elsewhere() => {}
    }
}

impl Pacing<'_> {
    /// The task was seen stopped now; `running_at`: the last look (since the wait began)
    /// that found it still running, if any did.
    fn ended(&self, client: &PveClient, running_at: Option<Duration>) {
        client.task_pace().observed(
            &self.kind,
            Observation {
                started: self.started,
                expected: self.expected,
                running_at,
                stopped_at: self.started.elapsed(),
            },
            Instant::now(),
        );
    }
}

/// What [`super::pace`] learns durations by: the task type, and for clones the source
/// (a clone's UPID names the template, and templates of different sizes clone at
/// different speeds).
fn pace_key(upid: &Upid) -> String {
    match upid.task_type() {
        t @ ("qmclone" | "vzclone") => format!("{t}:{}", upid.id()),
        t => t.to_string(),
    }
}

/// The wait between looks at a task whose type takes `expected`: an eighth of that, or
/// the policy's first interval while it is not known.
fn paced_interval(policy: &TaskPollPolicy, expected: Option<Duration>) -> Duration {
    expected.map_or(policy.first_interval, |e| {
        (e / 8).clamp(policy.first_interval, policy.max_interval)
    })
}

/// What a look at a task's result (instead of its status) tells.
#[derive(Debug)]
pub enum Probed<T> {
    /// The result is there: the task is over and succeeded.
    Done(T),
    /// The result shows the task still at work (a create's VM still locked by it).
    Busy,
    /// Nothing to tell by: no result yet, or an error reading it.
    Unknown,
}

/// A task that ended successfully.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOutcome {
    pub upid: Upid,
    /// From `WARNINGS: N`; 0 for `OK`.
    pub warnings: u32,
    pub exitstatus: String,
}

/// `OK` and `WARNINGS: N` succeed; anything else is the task's error.
pub fn outcome(upid: &Upid, exitstatus: &str) -> Result<TaskOutcome, PveError> {
    let done = |warnings| TaskOutcome {
        upid: upid.clone(),
        warnings,
        exitstatus: exitstatus.to_string(),
    };
    if exitstatus == "OK" {
        return Ok(done(0));
    }
    if let Some(n) = exitstatus.strip_prefix("WARNINGS: ") {
        if let Ok(n) = n.trim().parse() {
            return Ok(done(n));
        }
    }
    Err(PveError::TaskFailed {
        upid: upid.clone(),
        exitstatus: exitstatus.to_string(),
    })
}

impl PveClient {
    /// The task's status, read from the node that runs it.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, PveError> {
        let path = format!(
            "/nodes/{}/tasks/{}/status",
            segment(upid.node()),
            segment(upid.as_str())
        );
        self.get(&path, &Params::new()).await
    }

    /// The node's tasks that started at `since` (Unix time) or later, running or ended.
    pub async fn node_tasks(&self, node: &str, since: u64) -> Result<Vec<ListedTask>, PveError> {
        let path = format!("/nodes/{}/tasks", segment(node));
        let query = Params::new()
            .with("source", "all")
            .with("since", since)
            .with("limit", LIST_LIMIT);
        self.get(&path, &query).await
    }

    /// One look at the task. Another wait's look at the node's list may have answered it
    /// since `asked`; else, with other tasks on the node waited for, this look reads the
    /// list and answers them too. `by_list: false` takes only an end from the list and
    /// asks the task's status otherwise (see [`LISTED_RUNNING`]).
    async fn look(
        &self,
        upid: &Upid,
        waiting: &Waiting,
        by_list: bool,
    ) -> Result<Looked, PveError> {
        let asked = Instant::now();
        let listed = |seen: Seen| match seen {
            Seen::Ended(exit) => Some(Looked::Ended(exit)),
            Seen::Running(_) => by_list.then_some(Looked::Running { listed: true }),
        };
        if let Some(exit) = waiting.ended() {
            return Ok(Looked::Ended(exit));
        }
        let _turn = waiting.turn().await;
        if let Some(looked) = waiting.seen_since(asked).and_then(listed) {
            return Ok(looked);
        }
        if let Some(since) = waiting.list_since().filter(|_| by_list) {
            match self.node_tasks(upid.node(), since).await {
                Ok(list) => {
                    waiting.record(&list, Instant::now());
                    if let Some(looked) = waiting.seen_since(asked).and_then(listed) {
                        return Ok(looked);
                    }
                }
                Err(e) => {
                    if list_unusable(&e) {
                        tracing::info!(node = upid.node(), error = %e, "cannot read the node's task list; looking at each task's status instead");
                        waiting.list_unusable();
                    }
                }
            }
        }
        let status = self.task_status(upid).await?;
        Ok(match status.is_running() {
            true => Looked::Running { listed: false },
            false => Looked::Ended(status.exitstatus.unwrap_or_else(|| "unknown".into())),
        })
    }

    /// Poll until the task stops, at most `timeout`. A task still running then gives
    /// [`PveError::TaskDeadline`] (it is not stopped: PVE may still finish it).
    ///
    /// Once a task of the same type has ended, the first poll waits for as long as such
    /// tasks take ([`super::pace`]), and later polls come at an eighth of that.
    pub async fn wait_task(&self, upid: &Upid, timeout: Duration) -> Result<TaskOutcome, PveError> {
        let pacing = self.paced_first_wait(upid, timeout).await;
        self.poll_task(upid, &pacing, timeout, None).await
    }

    /// Wait for `upid` by asking `probe` for the task's result instead of its status.
    ///
    /// A create's task, for one, is over when the new VM's config is there without its
    /// `clone`/`create` lock, and the configure step that follows reads that config
    /// anyway: reading it in place of the status saves a request per VM.
    ///
    /// A probe that finds the task still at work ([`Probed::Busy`]) is asked once more a
    /// paced interval later, so a look that came a little early costs one request more.
    /// Otherwise (busy twice, or [`Probed::Unknown`]: not there yet, an error from PVE)
    /// the task's status is polled as by [`Self::wait_task`], so a failed task still
    /// fails with its own exit status, and `probe` is asked once more after it ended well.
    ///
    /// A probe that succeeds does not see the task's exit status: use this only where the
    /// result itself shows the task succeeded.
    pub async fn wait_task_probing<T, F, Fut>(
        &self,
        upid: &Upid,
        timeout: Duration,
        mut probe: F,
    ) -> Result<T, PveError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Probed<T>>,
    {
        let pacing = self.paced_first_wait(upid, timeout).await;
        let mut looked = None;
        for again in [false, true] {
            match probe().await {
                Probed::Done(found) => {
                    tracing::info!(upid = %upid, "PVE task finished (its result is there)");
                    pacing.ended(self, looked);
                    return Ok(found);
                }
                Probed::Busy if !again => {
                    looked = Some(pacing.started.elapsed());
                    let left = (pacing.started + timeout).saturating_duration_since(Instant::now());
                    let wait = paced_interval(&self.task_poll(), pacing.expected);
                    nap(&pacing.waiting, wait.min(left)).await;
                }
                _ => {
                    looked = Some(pacing.started.elapsed());
                    break;
                }
            }
        }
        // The probes missed: the status is asked a paced interval later, not at once.
        let outcome = self.poll_task(upid, &pacing, timeout, looked).await?;
        match probe().await {
            Probed::Done(found) => Ok(found),
            _ => Err(PveError::TaskFailed {
                upid: upid.clone(),
                exitstatus: format!(
                    "the task ended with {} but its result is not there",
                    outcome.exitstatus
                ),
            }),
        }
    }

    /// Sleep before the first look at a task for as long as tasks of its type take. While
    /// that is not known, the first wait of the type finds out and later ones wait for it
    /// (`MAX_FIRST_WAIT` at most).
    async fn paced_first_wait(&self, upid: &Upid, timeout: Duration) -> Pacing<'_> {
        let kind = pace_key(upid);
        let pace = self.task_pace();
        let started = Instant::now();
        let waiting = self.task_board().enter(upid);
        let mut scout = None;
        let mut expected = pace.first_wait(&kind, started);
        if expected.is_none() {
            match pace.scout(&kind) {
                Scouting::Lead(s) => scout = Some(s),
                Scouting::Follow(woken) => {
                    let cap = MAX_FIRST_WAIT.min(timeout);
                    tokio::select! {
                        e = pace.follow(&kind, &woken, cap) => expected = e,
                        _ = waiting.ended_elsewhere() => expected = pace.expected(&kind),
                    }
                }
            }
        }
        if let Some(e) = expected.filter(|e| !e.is_zero()) {
            let due = started + e.min(MAX_FIRST_WAIT).min(timeout);
            nap(&waiting, due.saturating_duration_since(Instant::now())).await;
        }
        Pacing {
            kind,
            expected,
            started,
            _scout: scout,
            waiting,
        }
    }

    /// Poll the task's status until it stops or `timeout` (from `pacing.started`) ends.
    /// `looked`: when (since the wait began) a look that found the task still at work came
    /// just before these polls (a probe's); the first poll then waits an interval.
    async fn poll_task(
        &self,
        upid: &Upid,
        pacing: &Pacing<'_>,
        timeout: Duration,
        looked: Option<Duration>,
    ) -> Result<TaskOutcome, PveError> {
        let policy = self.task_poll();
        let deadline = pacing.started + timeout;
        let mut interval = paced_interval(&policy, pacing.expected);
        let mut learned = pacing.expected.is_some();
        let mut running_at = looked;
        let mut polls = 0u32;
        let mut listed_running = 0u32;
        loop {
            if running_at.is_some() {
                let now = Instant::now();
                if now >= deadline {
                    tracing::warn!(upid = %upid, waited = ?(now - pacing.started), "PVE task still running at its deadline");
                    return Err(PveError::TaskDeadline {
                        upid: upid.clone(),
                        waited: now - pacing.started,
                    });
                }
                let mut wait = interval;
                if !learned {
                    // Another task of the type ended meanwhile: wait as long as it took.
                    if let Some(e) = self.task_pace().expected(&pacing.kind) {
                        learned = true;
                        let due =
                            (pacing.started + e.min(MAX_FIRST_WAIT)).saturating_duration_since(now);
                        wait = wait.max(due);
                        interval = paced_interval(&policy, Some(e));
                    }
                }
                nap(&pacing.waiting, wait.min(deadline - now)).await;
                interval = interval.mul_f64(policy.factor).min(policy.max_interval);
            }
            let looked = self
                .look(upid, &pacing.waiting, listed_running < LISTED_RUNNING)
                .await?;
            polls += 1;
            match looked {
                Looked::Ended(exit) => {
                    tracing::info!(upid = %upid, exitstatus = exit, polls, "PVE task finished");
                    pacing.ended(self, running_at);
                    return outcome(upid, &exit);
                }
                Looked::Running { listed: true } => listed_running += 1,
                Looked::Running { listed: false } => listed_running = 0,
            }
            running_at = Some(pacing.started.elapsed());
        }
    }

    /// For endpoints that may answer with a UPID or with nothing (already done).
    pub async fn wait_optional(
        &self,
        upid: Option<Upid>,
        timeout: Duration,
    ) -> Result<Option<TaskOutcome>, PveError> {
        match upid {
            Some(upid) => self.wait_task(&upid, timeout).await.map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upid() -> Upid {
        "UPID:pve1:00000001:00000002:00000003:qmstart:100:root@pam:"
            .parse()
            .unwrap()
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(outcome(&upid(), "OK").unwrap().warnings, 0);
        assert_eq!(outcome(&upid(), "WARNINGS: 3").unwrap().warnings, 3);
        match outcome(&upid(), "VM 100 already running") {
            Err(PveError::TaskFailed {
                upid: u,
                exitstatus,
            }) => {
                assert_eq!(u, upid());
                assert_eq!(exitstatus, "VM 100 already running");
            }
            other => panic!("{other:?}"),
        }
    }
}
