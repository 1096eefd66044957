//! The soak's invariants, checked against what fakepve logged on arrival of every write
//! (`tests/fakepve/writelog.py`) and the pmxcfs emulation's lock history:
//!
//! * **one leader acts**: every write comes from the agent (by its API token) that holds
//!   the lease at that moment: the last change of the lock before the write is that
//!   node's acquisition or renewal, not more than the lock lifetime old. Two agents
//!   acting at once would break this for one of them; so would an agent writing after
//!   it lost the lease, before anyone else took it;
//! * **nothing from an invalid revision**: no write names the poison VM that only
//!   invalid revisions declare (and no status commit names an invalid revision as
//!   applied: [`applied_invalid`]);
//! * **no rollback**: the revisions status commits name as applied never go back in
//!   push order ([`applied_went_back`]): a new leader applies a head at least as new
//!   as its predecessor's, also when it takes over during a git outage;
//! * **deletions follow the prune rules**: a DELETE is only of a VM that carries the
//!   ownership tag or record, has no protection flag, and that a valid revision pushed
//!   before it no longer declares; nothing but VMs is ever deleted;
//! * **no secret outside PVE** ([`secrets_in`]): agent logs, state directories and every
//!   status commit are free of the corpus's secret plaintexts.

use super::revisions::POISON;
use crate::support::agents::LOCK;
use crate::support::control::{text, Control, WriteEntry};
use pmxcfs_emu::{LockChange, LockEvent};
use pve_gitops::daemon::leader::monotonic_ns;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The harness's own token: the soak's changes behind the agents' backs.
pub const OPERATOR: &str = "root@pam!test";

/// A revision the soak pushed.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub commit: String,
    pub valid: bool,
    /// The VM names it declares (valid revisions).
    pub names: BTreeSet<String>,
    /// When its push finished, `CLOCK_MONOTONIC` ns.
    pub t_ns: u64,
    pub what: String,
}

pub struct Checker {
    /// `Instant` is `CLOCK_MONOTONIC` on Linux but opaque: one pair maps it to ns.
    base: (Instant, u64),
    lifetime: Duration,
    next_seq: u64,
    pub writes: u64,
    pub deletes: u64,
    pub by_node: BTreeMap<String, u64>,
    /// The oldest lease any write arrived under (time since its holder's last renewal):
    /// the agents fence themselves at lifetime - margin, so this stays below it plus
    /// the time a request takes to arrive.
    pub max_age: Duration,
    pub violations: Vec<String>,
}

impl Checker {
    pub fn new(lifetime: Duration) -> Self {
        Checker {
            base: (Instant::now(), monotonic_ns()),
            lifetime,
            next_seq: 0,
            writes: 0,
            deletes: 0,
            by_node: BTreeMap::new(),
            max_age: Duration::ZERO,
            violations: Vec::new(),
        }
    }

    /// `at` in `CLOCK_MONOTONIC` nanoseconds.
    pub fn ns(&self, at: Instant) -> u64 {
        let (i, ns) = self.base;
        if at >= i {
            ns + (at - i).as_nanos() as u64
        } else {
            ns - (i - at).as_nanos() as u64
        }
    }

    /// Checks every write logged since the last call.
    pub async fn poll(&mut self, control: &Control, history: &[LockEvent], pushed: &[Pushed]) {
        let writes = control.writes(self.next_seq).await;
        self.check_all(&writes, history, pushed);
    }

    /// Checks `writes` (in arrival order) against the lock history and the pushes.
    pub fn check_all(&mut self, writes: &[WriteEntry], history: &[LockEvent], pushed: &[Pushed]) {
        let events: Vec<(u64, &str, LockChange)> = history
            .iter()
            .filter(|e| e.lock == LOCK)
            .map(|e| (self.ns(e.at), e.node.as_str(), e.change))
            .collect();
        for w in writes {
            self.next_seq = w.seq + 1;
            self.writes += 1;
            let found = self.check(w, &events, pushed);
            if let Err(why) = found {
                self.violations.push(format!(
                    "{why}\n    write #{} {} {} by {:?} body {:?}",
                    w.seq, w.method, w.path, w.user, w.body
                ));
            }
        }
    }

    fn check(
        &mut self,
        w: &WriteEntry,
        events: &[(u64, &str, LockChange)],
        pushed: &[Pushed],
    ) -> Result<(), String> {
        if w.path.contains(POISON) || w.body.contains(POISON) {
            return Err("a write from an invalid revision (it names the poison VM)".into());
        }
        let Some(user) = &w.user else {
            return Err("an unauthenticated write".into());
        };
        if user == OPERATOR {
            return Ok(()); // the soak itself, changing things behind the agents' backs
        }
        let node = user.split('!').nth(1).unwrap_or(user).to_string();
        *self.by_node.entry(node.clone()).or_default() += 1;
        let last = events[..events.partition_point(|(t, _, _)| *t <= w.t_ns)].last();
        match last {
            None => return Err(format!("{node} wrote before anyone held the lease")),
            Some((_, holder, LockChange::Released)) => {
                return Err(format!(
                    "{node} wrote while nobody held the lease ({holder} released it)"
                ))
            }
            Some((_, holder, _)) if *holder != node => {
                return Err(format!("{node} wrote while {holder} held the lease"))
            }
            Some((t, _, _)) if w.t_ns - t > self.lifetime.as_nanos() as u64 => {
                return Err(format!(
                    "{node} wrote {:?} after its last renewal (lock lifetime {:?}): it acted \
                     without a lease",
                    Duration::from_nanos(w.t_ns - t),
                    self.lifetime
                ))
            }
            Some((t, _, _)) => {
                self.max_age = self.max_age.max(Duration::from_nanos(w.t_ns - t));
            }
        }
        if w.method == "DELETE" {
            self.deletes += 1;
            check_delete(w, pushed)?;
        }
        Ok(())
    }
}

fn check_delete(w: &WriteEntry, pushed: &[Pushed]) -> Result<(), String> {
    let parts: Vec<&str> = w.path.trim_end_matches('/').split('/').collect();
    // ["", "api2", "json", "nodes", node, "qemu", vmid]
    if !(parts.len() == 7 && parts[3] == "nodes" && parts[5] == "qemu") {
        return Err(format!(
            "DELETE {}: the soak declares nothing but VMs",
            w.path
        ));
    }
    let Some(vm) = &w.vm else {
        return Ok(()); // no such VM: nothing deleted
    };
    let name = text(&vm["name"]);
    let config = &vm["config"];
    let tags = text(&config["tags"]);
    let owned = tags.split([';', ',', ' ']).any(|t| t == "pve-gitops")
        || text(&config["description"]).contains("pve-gitops: applied=");
    if !owned {
        return Err(format!("deleted {name}, which the agent does not own"));
    }
    if matches!(text(&config["protection"]).as_str(), "1" | "true") {
        return Err(format!("deleted {name}, which is protected"));
    }
    let undeclared = pushed
        .iter()
        .any(|p| p.valid && p.t_ns < w.t_ns && !p.names.contains(&name));
    if !undeclared {
        return Err(format!(
            "deleted {name}, which every valid revision pushed so far declares"
        ));
    }
    Ok(())
}

/// The status commits whose `status.yaml` names a refused revision as applied.
pub fn applied_invalid(bare: &Path, cluster: &str, invalid: &BTreeSet<String>) -> Vec<String> {
    let log = crate::support::git::git(bare, &["log", "--format=%H", "pve-gitops/status"]);
    let mut out = Vec::new();
    for commit in log.lines() {
        let applied = applied_revision(bare, commit, cluster);
        if let Some(applied) = applied.filter(|a| invalid.contains(a)) {
            out.push(format!("status commit {commit} says {applied} was applied"));
        }
    }
    out
}

/// The status commits, oldest first, whose `status.yaml` names as applied a revision
/// pushed before one an earlier status commit named.
pub fn applied_went_back(bare: &Path, cluster: &str, pushed: &[Pushed]) -> Vec<String> {
    let order: BTreeMap<&str, usize> = pushed
        .iter()
        .enumerate()
        .map(|(i, p)| (p.commit.as_str(), i))
        .collect();
    let log = crate::support::git::git(
        bare,
        &["log", "--reverse", "--format=%H", "pve-gitops/status"],
    );
    let mut newest: Option<(usize, String)> = None;
    let mut out = Vec::new();
    for commit in log.lines() {
        let Some(applied) = applied_revision(bare, commit, cluster) else {
            continue;
        };
        // A revision the soak did not record (none: every push is recorded) is skipped.
        let Some(&at) = order.get(applied.as_str()) else {
            continue;
        };
        match &newest {
            Some((n, by)) if at < *n => out.push(format!(
                "status commit {commit} says {applied} ({}) is applied, after {by} said {} was",
                pushed[at].what, pushed[*n].commit
            )),
            Some((n, _)) if at == *n => {}
            _ => newest = Some((at, commit.to_string())),
        }
    }
    out
}

/// The revision `commit`'s `<cluster>/status.yaml` names as applied.
fn applied_revision(bare: &Path, commit: &str, cluster: &str) -> Option<String> {
    let show = std::process::Command::new("git")
        .current_dir(bare)
        .args(["show", &format!("{commit}:{cluster}/status.yaml")])
        .output()
        .unwrap();
    if !show.status.success() {
        return None;
    }
    let status: pve_gitops::report::status::ClusterStatus =
        serde_yaml::from_slice(&show.stdout).expect("status.yaml parses");
    status.applied_revision
}

/// Where under `paths` (files, or directories walked) one of `secrets` shows.
pub fn secrets_in(paths: &[std::path::PathBuf], secrets: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            out.extend(secrets_in_bytes(&p.display().to_string(), &bytes, secrets));
        }
    }
    out
}

pub fn secrets_in_bytes(what: &str, bytes: &[u8], secrets: &[&str]) -> Vec<String> {
    secrets
        .iter()
        .filter(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
        .map(|s| format!("`{s}` in {what}"))
        .collect()
}

/// Apply windows (`start_ns end_ns node` lines of the agents' `--apply-log` files) of
/// different nodes that overlap: the agents' own view of "two leaders acting".
pub fn overlapping_windows(files: &[std::path::PathBuf]) -> Vec<String> {
    let mut windows: Vec<(u64, u64, String)> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            if let [start, end, node] = parts.as_slice() {
                windows.push((
                    start.parse().unwrap(),
                    end.parse().unwrap(),
                    node.to_string(),
                ));
            }
        }
    }
    windows.sort();
    let mut out = Vec::new();
    let (mut running_end, mut running_node) = (0u64, String::new());
    for (start, end, node) in windows {
        if node != running_node && start <= running_end {
            out.push(format!(
                "{node} began applying at {start} while {running_node} applied until {running_end}"
            ));
        }
        if end >= running_end {
            (running_end, running_node) = (end, node);
        }
    }
    out
}
