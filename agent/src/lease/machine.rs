//! The lease state machine: one node's view of the pmxcfs lock.
//!
//! The daemon calls [`Lease::tick`] every [`Lease::next_tick_in`] and
//! [`Lease::release`] on clean shutdown; the apply path asks a [`WriteGate`] before
//! every write. See the module documentation of [`crate::lease`] for the protocol.

use std::io;
use std::time::{Duration, Instant};

use super::clock::Clock;
use super::config::{ConfigError, LeaseConfig};
use super::fs::{LockError, LockFs};
use super::gate::WriteGate;
use super::identity::LeaderIdentity;

/// What a tick did, for logs and tests.
#[derive(Debug)]
pub enum Event {
    /// `mkdir` succeeded: this node leads in a new term.
    Acquired(LeaderIdentity),
    /// The lock already was this node's (agent restart, or quorum came back in time):
    /// renewing it worked, so this node leads again.
    Resumed(LeaderIdentity),
    /// The leader renewed the lock.
    Renewed,
    /// Renewing failed; this node still leads and may write for `writes_stop_in`.
    RenewFailed {
        error: LockError,
        writes_stop_in: Duration,
    },
    /// This node stopped leading.
    SteppedDown {
        identity: LeaderIdentity,
        reason: StepDown,
    },
    /// Another node holds the lock; its mtime has not moved for `unchanged_for`.
    Following { unchanged_for: Duration },
    /// The lock looked abandoned, so this node asked pmxcfs to release it
    /// (`utime(0, 0)`); pmxcfs decides, and the lock is still held.
    ReleaseRequested { unchanged_for: Duration },
    /// pmxcfs could not be asked at all (not mounted, I/O error).
    Unavailable(LockError),
}

#[derive(Debug)]
pub enum StepDown {
    /// No good renewal within the self-fence margin.
    Fenced { last_error: LockError },
    /// The lock directory is gone: someone released it under this node.
    LockGone(LockError),
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Acquired(id) => write!(f, "acquired the lock: leader {id}"),
            Event::Resumed(id) => write!(f, "this node still holds the lock: leader {id}"),
            Event::Renewed => write!(f, "renewed the lock"),
            Event::RenewFailed {
                error,
                writes_stop_in,
            } => write!(
                f,
                "renewing the lock failed: {error}; API writes stop in {}s without a renewal",
                writes_stop_in.as_secs()
            ),
            Event::SteppedDown { identity, reason } => match reason {
                StepDown::Fenced { last_error } => write!(
                    f,
                    "stepped down as leader {identity}: no renewal within the self-fence \
                     margin ({last_error})"
                ),
                StepDown::LockGone(error) => {
                    write!(
                        f,
                        "stepped down as leader {identity}: the lock is gone ({error})"
                    )
                }
            },
            Event::Following { unchanged_for } => write!(
                f,
                "another node holds the lock (unchanged for {}s)",
                unchanged_for.as_secs()
            ),
            Event::ReleaseRequested { unchanged_for } => write!(
                f,
                "the lock has not been renewed for {}s: asked pmxcfs to release it",
                unchanged_for.as_secs()
            ),
            Event::Unavailable(error) => write!(f, "cannot use the lock: {error}"),
        }
    }
}

#[derive(Debug)]
enum Role {
    Leader {
        identity: LeaderIdentity,
        /// When the last good renewal (or the acquire) started.
        renewed_at: Instant,
    },
    Follower {
        /// The lock's mtime and when this node first saw it.
        seen: Option<Seen>,
        /// The lock may still be this node's (fresh start, or stepped down while
        /// holding): try renewing before treating it as someone else's.
        maybe_holder: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    mtime: u64,
    at: Instant,
}

/// One node's lease on the pmxcfs lock.
pub struct Lease<F, C> {
    config: LeaseConfig,
    fs: F,
    clock: C,
    role: Role,
    gate: WriteGate,
    /// The highest mtime this node wrote or saw on its lock: pmxcfs refuses a renewal
    /// with an older mtime, so a wall clock stepping back must not cost the lease.
    last_mtime: u64,
    /// The last term this process knew, for numbering without a readable record.
    last_term: u64,
    /// Whether the last tick could not reach pmxcfs (to log that once, not every poll).
    unavailable: bool,
}

impl<F: LockFs, C: Clock> Lease<F, C> {
    /// A follower that has not looked at the lock yet. Nothing happens until `tick`.
    pub fn new(config: LeaseConfig, fs: F, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Lease {
            config,
            fs,
            clock,
            role: Role::Follower {
                seen: None,
                maybe_holder: true,
            },
            gate: WriteGate::default(),
            last_mtime: 0,
            last_term: 0,
            unavailable: false,
        })
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// A handle for the apply path; it closes by itself when renewals stop.
    pub fn gate(&self) -> WriteGate {
        self.gate.clone()
    }

    /// May this node issue an API write at `now`? Check before every write.
    pub fn may_write(&self, now: Instant) -> bool {
        self.gate.may_write(now)
    }

    /// This node's identity while it leads (even in the last seconds before it fences).
    pub fn leader(&self) -> Option<&LeaderIdentity> {
        match &self.role {
            Role::Leader { identity, .. } => Some(identity),
            Role::Follower { .. } => None,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader().is_some()
    }

    /// How long to wait before the next tick.
    pub fn next_tick_in(&self) -> Duration {
        match self.role {
            Role::Leader { .. } => self.config.renew_interval,
            Role::Follower { .. } => self.config.poll_interval,
        }
    }

    /// The leader as the record file names it, for `status` on any node. It names the
    /// last leader that wrote it, which may have died since; the lock decides.
    pub fn recorded_leader(&self) -> Result<Option<LeaderIdentity>, LockError> {
        let Some(path) = &self.config.record_path else {
            return Ok(None);
        };
        let bytes = self
            .fs
            .read_file(path)
            .map_err(|e| LockError::new("read", path, e))?;
        Ok(bytes.and_then(|b| LeaderIdentity::from_record(&b)))
    }

    /// One step: a leader renews, a follower watches the lock and takes it when free.
    pub fn tick(&mut self) -> Event {
        let now = self.clock.now();
        let event = if self.is_leader() {
            self.lead(now)
        } else {
            self.follow(now)
        };
        self.log(&event);
        event
    }

    /// Clean shutdown: stop writing, then `rmdir` the lock so the next leader need not
    /// wait for the lifetime. Does nothing when not leading.
    pub fn release(&mut self) -> Result<(), LockError> {
        let Role::Leader { identity, .. } = &self.role else {
            return Ok(());
        };
        let identity = identity.clone();
        self.gate.close();
        let path = &self.config.lock_path;
        let result = match self.fs.rmdir(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LockError::new("rmdir", path, e)),
        };
        self.role = Role::Follower {
            seen: None,
            maybe_holder: result.is_err(),
        };
        match &result {
            Ok(()) => tracing::info!("lease: released the lock; leader {identity} stepped down"),
            Err(e) => tracing::warn!(
                "lease: leader {identity} stepped down but could not release the lock ({e}); \
                 it passes on after pmxcfs's lifetime"
            ),
        }
        result
    }

    fn lead(&mut self, now: Instant) -> Event {
        let Role::Leader {
            identity,
            renewed_at,
        } = &self.role
        else {
            unreachable!("lead() runs only while leading");
        };
        let (identity, renewed_at) = (identity.clone(), *renewed_at);
        match self.renew() {
            Ok(()) => {
                self.role = Role::Leader {
                    identity,
                    renewed_at: now,
                };
                self.gate.open_until(now + self.config.fence_margin);
                Event::Renewed
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.step_down(false);
                Event::SteppedDown {
                    identity,
                    reason: StepDown::LockGone(error),
                }
            }
            Err(error) => {
                let since = now.saturating_duration_since(renewed_at);
                if since >= self.config.fence_margin {
                    // The lock may still be ours (a quorum loss that heals before the
                    // lifetime): keep trying to renew as a follower.
                    self.step_down(true);
                    Event::SteppedDown {
                        identity,
                        reason: StepDown::Fenced { last_error: error },
                    }
                } else {
                    Event::RenewFailed {
                        error,
                        writes_stop_in: self.config.fence_margin - since,
                    }
                }
            }
        }
    }

    fn follow(&mut self, now: Instant) -> Event {
        let Role::Follower { seen, maybe_holder } = self.role else {
            unreachable!("follow() runs only while following");
        };
        let path = self.config.lock_path.clone();
        let mtime = match self.fs.mtime(&path) {
            Ok(Some(mtime)) => mtime,
            Ok(None) => {
                // Free: take it. Should another node be faster, its lock is new to us.
                self.role = Role::Follower {
                    seen: None,
                    maybe_holder: false,
                };
                return self.acquire(now);
            }
            Err(e) => return Event::Unavailable(LockError::new("stat", &path, e)),
        };

        if maybe_holder {
            // pmxcfs accepts a renewal only from the node that holds the lock, so this
            // succeeds exactly when the lock is still this node's.
            self.last_mtime = self.last_mtime.max(mtime);
            if self.renew().is_ok() {
                return self.become_leader(now, true);
            }
        }

        // The lock's mtime is another node's wall clock: compare it only for change,
        // and measure its age on this node's monotonic clock, as pmxcfs does.
        let previous = seen;
        let seen = match previous {
            Some(seen) if seen.mtime == mtime => seen,
            _ => Seen { mtime, at: now },
        };
        // A changed mtime means another node renewed or re-created the lock: not ours.
        let maybe_holder = maybe_holder && previous.is_none_or(|p| p.mtime == mtime);
        self.role = Role::Follower {
            seen: Some(seen),
            maybe_holder,
        };

        let unchanged_for = now.saturating_duration_since(seen.at);
        if unchanged_for < self.config.lifetime {
            return Event::Following { unchanged_for };
        }
        // pmxcfs deletes the lock on this request only if it too has seen no renewal
        // for its lifetime; otherwise the request is refused (EACCES) and changes
        // nothing. Either way the answer tells nothing reliable, so mkdir decides.
        let _ = self.fs.utime(&path, 0, 0);
        match self.acquire(now) {
            Event::Following { .. } => Event::ReleaseRequested { unchanged_for },
            other => other,
        }
    }

    fn acquire(&mut self, now: Instant) -> Event {
        let path = self.config.lock_path.clone();
        let mut result = self.fs.mkdir(&path);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            // priv/lock itself is missing (the HA manager creates it the same way).
            if let Some(parent) = path.parent() {
                let _ = self.fs.mkdir(parent);
            }
            result = self.fs.mkdir(&path);
        }
        match result {
            Ok(()) => self.become_leader(now, false),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Event::Following {
                unchanged_for: Duration::ZERO,
            },
            Err(e) => Event::Unavailable(LockError::new("mkdir", &path, e)),
        }
    }

    /// `utime(lock, 0, now)` with an mtime that never goes back (pmxcfs refuses older
    /// mtimes on locks) and never is 0 (which would be a release request).
    fn renew(&mut self) -> Result<(), LockError> {
        let mtime = self.clock.unix_secs().max(self.last_mtime).max(1);
        let path = &self.config.lock_path;
        self.fs
            .utime(path, 0, mtime)
            .map_err(|e| LockError::new("utime", path, e))?;
        self.last_mtime = mtime;
        Ok(())
    }

    fn become_leader(&mut self, now: Instant, resumed: bool) -> Event {
        self.last_mtime = self.last_mtime.max(self.clock.unix_secs());
        let identity = self.next_identity(resumed);
        self.last_term = identity.term;
        self.gate.open_until(now + self.config.fence_margin);
        self.role = Role::Leader {
            identity: identity.clone(),
            renewed_at: now,
        };
        if resumed {
            Event::Resumed(identity)
        } else {
            Event::Acquired(identity)
        }
    }

    fn step_down(&mut self, maybe_holder: bool) {
        self.gate.close();
        self.role = Role::Follower {
            seen: None,
            maybe_holder,
        };
    }

    /// The identity of the term that starts now: a resumed lease keeps the recorded
    /// term when the record names this node; anything else is the next term.
    fn next_identity(&mut self, resumed: bool) -> LeaderIdentity {
        let recorded = self.recorded_leader().unwrap_or_else(|e| {
            tracing::warn!("lease: cannot read the leader record: {e}");
            None
        });
        if let Some(recorded) = &recorded {
            if resumed && recorded.node == self.config.node {
                return recorded.clone();
            }
        }
        let previous = recorded.map_or(0, |r| r.term).max(self.last_term);
        let identity = LeaderIdentity {
            node: self.config.node.clone(),
            since: self.clock.unix_secs(),
            term: previous + 1,
        };
        if let Err(e) = self.write_record(&identity) {
            tracing::warn!("lease: cannot write the leader record: {e}");
        }
        identity
    }

    fn write_record(&self, identity: &LeaderIdentity) -> Result<(), LockError> {
        let Some(path) = &self.config.record_path else {
            return Ok(());
        };
        let bytes = identity.to_record();
        let mut result = self.fs.write_file(path, &bytes);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            if let Some(parent) = path.parent() {
                let _ = self.fs.mkdir(parent);
            }
            result = self.fs.write_file(path, &bytes);
        }
        result.map_err(|e| LockError::new("write", path, e))
    }

    fn log(&mut self, event: &Event) {
        let was_unavailable = std::mem::replace(
            &mut self.unavailable,
            matches!(event, Event::Unavailable(_)),
        );
        match event {
            Event::Acquired(_) | Event::Resumed(_) | Event::ReleaseRequested { .. } => {
                tracing::info!("lease: {event}")
            }
            Event::RenewFailed { .. } | Event::SteppedDown { .. } => {
                tracing::warn!("lease: {event}")
            }
            Event::Unavailable(_) if !was_unavailable => tracing::warn!("lease: {event}"),
            _ => tracing::debug!("lease: {event}"),
        }
    }
}

impl<F, C> std::fmt::Debug for Lease<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("node", &self.config.node)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}
