//! The tasks this client waits for, per node, so that one look answers every wait on a
//! node.
//!
//! A converge runs several tasks on each node at once (`max_workers` of them), and a
//! wait used to read `/nodes/{node}/tasks/{upid}/status` for its own task alone: one
//! request per look per task. PVE's task list of the node,
//! `GET /nodes/{node}/tasks?source=all&since=…`, shows every task since a time with its
//! `endtime` and `status` (the exit status) once it ended, `RUNNING` before. So while two
//! or more waits are on a node, a wait whose look is due reads the list instead, and the
//! others whose tasks it shows ended are woken and finish without a request of their own,
//! often before their own look would have come.
//!
//! Looks on one node take turns: a wait whose turn comes after another's list look that
//! saw its task (ended, or running after it asked) takes that as its own look. A wait
//! alone on its node, a task the list does not show (it cannot tell one that ended from
//! one not listed yet), and a node whose list cannot be read fall back to the task's own
//! status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::de;
use super::upid::Upid;

/// What a look saw of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Still running, as of this instant.
    Running(Instant),
    /// Ended with this exit status (`OK`, `WARNINGS: N` or the error).
    Ended(String),
}

/// One entry of `GET /nodes/{node}/tasks`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ListedTask {
    pub upid: String,
    /// The exit status once it ended; `RUNNING` (or nothing) before.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub endtime: Option<u64>,
}

impl ListedTask {
    /// What the entry says of its task, as of `at`: `RUNNING` runs; any other status is
    /// the exit status; an end time without one ended all the same.
    fn seen(&self, at: Instant) -> Seen {
        match (self.status.as_deref(), self.endtime) {
            (Some("RUNNING"), _) | (None, None) => Seen::Running(at),
            (Some(exit), _) => Seen::Ended(exit.to_string()),
            (None, Some(_)) => Seen::Ended("unknown".into()),
        }
    }
}

/// The waits of one client, by node.
#[derive(Debug, Default)]
pub struct TaskBoard {
    nodes: Mutex<HashMap<String, Arc<NodeBoard>>>,
}

impl TaskBoard {
    /// Put a wait for `upid` on its node's board until the returned guard is dropped.
    pub fn enter(&self, upid: &Upid) -> Waiting {
        let node = lock(&self.nodes)
            .entry(upid.node().to_string())
            .or_default()
            .clone();
        let woken = Arc::new(Notify::new());
        lock(&node.waits).tasks.insert(
            upid.as_str().to_string(),
            Entry {
                starttime: upid.starttime(),
                woken: woken.clone(),
                seen: None,
            },
        );
        Waiting {
            node,
            upid: upid.as_str().to_string(),
            woken,
        }
    }
}

/// The waits on one node.
#[derive(Debug, Default)]
struct NodeBoard {
    /// One look at a time on the node.
    turn: tokio::sync::Mutex<()>,
    waits: Mutex<NodeWaits>,
}

#[derive(Debug, Default)]
struct NodeWaits {
    tasks: HashMap<String, Entry>,
    /// The node's task list could not be read (not allowed, not understood): every look
    /// reads its task's status.
    no_list: bool,
}

#[derive(Debug)]
struct Entry {
    starttime: u64,
    woken: Arc<Notify>,
    seen: Option<Seen>,
}

/// One wait on the board; leaves it when dropped.
#[derive(Debug)]
pub struct Waiting {
    node: Arc<NodeBoard>,
    upid: String,
    woken: Arc<Notify>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        lock(&self.node.waits).tasks.remove(&self.upid);
    }
}

impl Waiting {
    /// The task's exit status, if a look saw it ended.
    pub fn ended(&self) -> Option<String> {
        match self.seen() {
            Some(Seen::Ended(exit)) => Some(exit),
            _ => None,
        }
    }

    /// What a look made at or after `asked` saw (an end, whenever seen).
    pub fn seen_since(&self, asked: Instant) -> Option<Seen> {
        self.seen().filter(|s| match s {
            Seen::Running(at) => *at >= asked,
            Seen::Ended(_) => true,
        })
    }

    fn seen(&self) -> Option<Seen> {
        lock(&self.node.waits)
            .tasks
            .get(&self.upid)
            .and_then(|e| e.seen.clone())
    }

    /// Resolves once a look (anyone's) has seen the task ended; at once if one has.
    pub async fn ended_elsewhere(&self) {
        if self.ended().is_none() {
            self.woken.notified().await;
        }
    }

    /// This wait's turn to look at the node's tasks.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.node.turn.lock().await
    }

    /// The `since` of a list look (the earliest start of a task waited for on the node),
    /// when one would answer more than this wait; `None`: look at the task's status.
    pub fn list_since(&self) -> Option<u64> {
        let waits = lock(&self.node.waits);
        if waits.no_list || waits.tasks.len() < 2 {
            return None;
        }
        waits.tasks.values().map(|e| e.starttime).min()
    }

    /// Take in a list look made at `at`; wakes the waits whose tasks it shows ended.
    pub fn record(&self, list: &[ListedTask], at: Instant) {
        let mut waits = lock(&self.node.waits);
        for listed in list {
            let Some(entry) = waits.tasks.get_mut(&listed.upid) else {
                continue;
            };
            // An end is final; a list shows a task twice while PVE archives it.
            if matches!(entry.seen, Some(Seen::Ended(_))) {
                continue;
            }
            let seen = listed.seen(at);
            if matches!(seen, Seen::Ended(_)) {
                entry.woken.notify_one();
            }
            entry.seen = Some(seen);
        }
    }

    /// The node's list cannot be read: status looks only, from now on.
    pub fn list_unusable(&self) {
        lock(&self.node.waits).no_list = true;
    }
}

/// The maps hold plain values: a panic elsewhere leaves them usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upid(node: &str, n: u32, start: u32) -> Upid {
        format!("UPID:{node}:{n:08X}:00000001:{start:08X}:qmstart:{n}:root@pam!t:")
            .parse()
            .unwrap()
    }

    fn listed(u: &Upid, status: Option<&str>, endtime: Option<u64>) -> ListedTask {
        ListedTask {
            upid: u.as_str().into(),
            status: status.map(Into::into),
            endtime,
        }
    }

    #[test]
    fn a_list_look_is_made_only_for_two_waits_on_a_node() {
        let board = TaskBoard::default();
        let a = board.enter(&upid("pve1", 1, 0x200));
        assert_eq!(a.list_since(), None, "alone: the task's own status");
        let other_node = board.enter(&upid("pve2", 2, 0x100));
        assert_eq!(a.list_since(), None);
        let b = board.enter(&upid("pve1", 3, 0x1F0));
        assert_eq!(a.list_since(), Some(0x1F0), "since the earliest start");
        assert_eq!(b.list_since(), Some(0x1F0));
        drop(b);
        assert_eq!(a.list_since(), None, "a wait leaves when dropped");
        let _b = board.enter(&upid("pve1", 3, 0x1F0));
        a.list_unusable();
        assert_eq!(a.list_since(), None);
        drop(other_node);
    }

    #[tokio::test]
    async fn a_list_answers_and_wakes_the_other_waits() {
        let board = TaskBoard::default();
        let (ua, ub, uc) = (upid("pve1", 1, 1), upid("pve1", 2, 1), upid("pve1", 3, 1));
        let (a, b, c) = (board.enter(&ua), board.enter(&ub), board.enter(&uc));
        let asked = Instant::now();
        let at = Instant::now();
        b.record(
            &[
                listed(&ua, Some("OK"), Some(10)),
                listed(&ub, Some("RUNNING"), None),
                listed(&uc, None, Some(12)),
                // Not waited for here.
                listed(&upid("pve1", 4, 1), Some("OK"), Some(9)),
            ],
            at,
        );
        // Woken, with the exit status.
        a.ended_elsewhere().await;
        assert_eq!(a.ended().as_deref(), Some("OK"));
        assert_eq!(c.ended().as_deref(), Some("unknown"));
        assert_eq!(b.ended(), None);
        assert_eq!(b.seen_since(asked), Some(Seen::Running(at)));
        assert_eq!(
            b.seen_since(Instant::now() + std::time::Duration::from_millis(1)),
            None
        );
        // An end stays, even if a later list still shows the task running (PVE lists a
        // task in its active file and in its archive while it moves it).
        b.record(
            &[
                listed(&ua, Some("RUNNING"), None),
                listed(&ub, Some("boom"), Some(11)),
            ],
            at,
        );
        assert_eq!(a.ended().as_deref(), Some("OK"));
        b.ended_elsewhere().await;
        assert_eq!(b.ended().as_deref(), Some("boom"));
    }
}
