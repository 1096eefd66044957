//! Leader election in the daemon: the lease runs on its own thread, the passes ask it
//! whether they may apply.
//!
//! Every agent observes and plans on every pass, so a follower's view of the cluster
//! is warm when it takes over; only the agent whose [`WriteGate`] is open calls
//! `apply`, and the apply path asks the same gate again before each API write (see
//! `apply::steps`). The lease ([`crate::lease::Lease`]) does blocking filesystem calls
//! on pmxcfs, which can hang while the cluster has no quorum, so it ticks on a thread
//! of its own and never inside the async runtime.
//!
//! On shutdown the daemon first stops its pass (no more writes), then
//! [`LeaseThread::release`] removes the lock so another node takes over at its next
//! poll instead of after pmxcfs's lifetime.
//!
//! For tests, every apply window (the span of one `apply` call while leading) can be
//! appended to a file as `start_ns end_ns node`, in `CLOCK_MONOTONIC` nanoseconds,
//! which all processes on one machine share: a test compares the windows of several
//! agents to show that no two nodes ever applied at the same time.

use crate::lease::{Event, LeaderIdentity, Lease, LeaseConfig, StdLockFs, SystemClock, WriteGate};
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// What a pass needs to know about leader election; clones share it. The default (no
/// gate) always applies: `run --no-lease`, and daemons built without election.
#[derive(Debug, Clone, Default)]
pub struct Leadership {
    gate: Option<WriteGate>,
    /// This node's identity while it leads, kept current by the lease thread.
    leading: Arc<Mutex<Option<LeaderIdentity>>>,
    /// While following: the node the leader record names, kept current by the lease thread.
    following: Arc<Mutex<Option<String>>>,
    apply_log: Option<Arc<ApplyLog>>,
}

impl Leadership {
    /// The gate the apply path asks before every write; `None` without election.
    pub fn gate(&self) -> Option<WriteGate> {
        self.gate.clone()
    }

    /// This node's identity while it leads (for the status); `None` otherwise.
    pub fn leading(&self) -> Option<LeaderIdentity> {
        self.leading.lock().expect("leader lock").clone()
    }

    /// While another node leads: its name, from the leader record (for the status line).
    pub fn following(&self) -> Option<String> {
        self.following.lock().expect("leader lock").clone()
    }

    /// Opens an apply window if this agent may write now; `None` makes the pass a
    /// follower's (observe and plan only). The window ends when it is dropped.
    pub fn begin_apply(&self) -> Option<ApplyWindow> {
        let start_ns = monotonic_ns();
        if let Some(gate) = &self.gate {
            if !gate.may_write(Instant::now()) {
                return None;
            }
        }
        Some(ApplyWindow {
            start_ns,
            log: self.apply_log.clone(),
        })
    }

    /// Records apply windows in `log` (tests).
    pub fn with_apply_log(mut self, log: ApplyLog) -> Self {
        self.apply_log = Some(Arc::new(log));
        self
    }
}

/// One `apply` call while leading; recorded in the apply log when dropped, which also
/// happens when a shutdown cancels the pass mid-apply.
#[derive(Debug)]
pub struct ApplyWindow {
    start_ns: u64,
    log: Option<Arc<ApplyLog>>,
}

impl Drop for ApplyWindow {
    fn drop(&mut self) {
        if let Some(log) = &self.log {
            log.record(self.start_ns, monotonic_ns());
        }
    }
}

/// The apply-window file: one `start_ns end_ns node` line per window, appended.
#[derive(Debug)]
pub struct ApplyLog {
    node: String,
    file: Mutex<File>,
}

impl ApplyLog {
    pub fn open(path: &Path, node: &str) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the apply log {}", path.display()))?;
        Ok(ApplyLog {
            node: node.to_string(),
            file: Mutex::new(file),
        })
    }

    fn record(&self, start_ns: u64, end_ns: u64) {
        let line = format!("{start_ns} {end_ns} {}\n", self.node);
        // One write(2) on an O_APPEND file: lines of a restarted agent never interleave.
        if let Err(e) = self
            .file
            .lock()
            .expect("apply log lock")
            .write_all(line.as_bytes())
        {
            tracing::warn!("cannot write the apply log: {e}");
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable between processes on one machine
/// (unlike [`Instant`], whose value is opaque).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This machine's short host name, which is the PVE node name.
pub fn hostname() -> Result<String> {
    let path = "/proc/sys/kernel/hostname";
    let name = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let short = name.trim().split('.').next().unwrap_or_default();
    anyhow::ensure!(!short.is_empty(), "the host name is empty; pass --node");
    Ok(short.to_string())
}

/// The lease settings of `run`: production timing unless a test shortens it. The
/// follower polls twice per renew interval, as in production (10 s / 5 s).
pub fn lease_config(
    node: &str,
    root: &Path,
    lifetime: Duration,
    renew: Duration,
    margin: Duration,
) -> Result<LeaseConfig> {
    let config = LeaseConfig {
        renew_interval: renew,
        poll_interval: renew / 2,
        lifetime,
        fence_margin: margin,
        ..LeaseConfig::under_root(node, root)
    };
    config.validate()?;
    Ok(config)
}

/// The lease ticking on its own thread until [`LeaseThread::release`].
pub struct LeaseThread {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
    lock_path: PathBuf,
}

impl LeaseThread {
    /// Ticks once here (a restarted leader resumes before the first pass), then starts
    /// the thread. Returns the [`Leadership`] the daemon's passes share.
    pub fn start(config: LeaseConfig) -> Result<(LeaseThread, Leadership)> {
        let lock_path = config.lock_path.clone();
        let mut lease = Lease::new(config, StdLockFs, SystemClock)?;
        let leadership = Leadership {
            gate: Some(lease.gate()),
            ..Leadership::default()
        };
        let mut watch = Watch::default();
        let event = lease.tick();
        watch.update(&lease, &event, &leadership);
        let (stop, stopped) = mpsc::channel();
        let shared = leadership.clone();
        let thread = std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || loop {
                match stopped.recv_timeout(lease.next_tick_in()) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let event = lease.tick();
                        watch.update(&lease, &event, &shared);
                    }
                    // Stop asked, or the daemon is gone: hand the lock over.
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                        let _ = lease.release();
                        *shared.leading.lock().expect("leader lock") = None;
                        return;
                    }
                }
            })
            .context("starting the lease thread")?;
        Ok((
            LeaseThread {
                stop,
                thread,
                lock_path,
            },
            leadership,
        ))
    }

    /// Clean shutdown, after the passes stopped: `rmdir` the lock if this node holds it.
    pub fn release(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!(
                lock = %self.lock_path.display(),
                "the lease thread panicked; the lock passes on after pmxcfs's lifetime"
            );
        }
    }
}

/// Logs every change of leadership: when this node starts or stops leading, and
/// (while following) when the leader record names another node or term.
#[derive(Default)]
struct Watch {
    leading: Option<LeaderIdentity>,
    recorded: Option<LeaderIdentity>,
}

impl Watch {
    fn update(
        &mut self,
        lease: &Lease<StdLockFs, SystemClock>,
        event: &Event,
        shared: &Leadership,
    ) {
        let leading = lease.leader().cloned();
        if leading != self.leading {
            match &leading {
                Some(id) => tracing::info!(
                    node = %id.node,
                    term = id.term,
                    since = %since(id),
                    "leadership: this node leads"
                ),
                None => tracing::warn!("leadership: this node no longer leads"),
            }
            *shared.leading.lock().expect("leader lock") = leading.clone();
            self.leading = leading.clone();
        }
        if leading.is_none() && matches!(event, Event::Following { .. }) {
            // The record names the last leader that wrote it; while the lock is held by
            // another node, that is the current one.
            if let Ok(recorded) = lease.recorded_leader() {
                if let Some(id) = recorded
                    .as_ref()
                    .filter(|r| Some(*r) != self.recorded.as_ref())
                {
                    tracing::info!(
                        node = %id.node,
                        term = id.term,
                        since = %since(id),
                        "leadership: following"
                    );
                }
                *shared.following.lock().expect("leader lock") =
                    recorded.as_ref().map(|r| r.node.clone());
                self.recorded = recorded;
            }
        } else if leading.is_some() {
            *shared.following.lock().expect("leader lock") = None;
            self.recorded = leading;
        }
    }
}

fn since(id: &LeaderIdentity) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(id.since)).to_string()
}

/// Leader election as `run`'s flags ask for it: the lease thread (`None` with
/// `--no-lease`) and the [`Leadership`] for the passes.
pub fn start(args: &crate::cli::LeaseArgs) -> Result<(Option<LeaseThread>, Leadership)> {
    let node = match &args.node {
        Some(node) => node.clone(),
        None => hostname()?,
    };
    let (thread, leadership) = if args.no_lease {
        tracing::warn!("leader election is off (--no-lease): this agent applies on every pass");
        (None, Leadership::default())
    } else {
        let config = lease_config(
            &node,
            &args.pmxcfs_root,
            args.lock_lifetime,
            args.lock_renew,
            args.lock_margin,
        )?;
        tracing::info!(
            %node,
            lock = %config.lock_path.display(),
            "leader election: only the node holding the lock applies"
        );
        let (thread, leadership) = LeaseThread::start(config)?;
        (Some(thread), leadership)
    };
    let leadership = match &args.apply_log {
        Some(path) => leadership.with_apply_log(ApplyLog::open(path, &node)?),
        None => leadership,
    };
    Ok((thread, leadership))
}
