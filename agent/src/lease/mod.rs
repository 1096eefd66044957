//! Leader election on pmxcfs: exactly one agent in the cluster may write.
//!
//! The protocol is the one the Proxmox HA manager uses for its own manager lock, on
//! the lock directory `/etc/pve/priv/lock/pve-gitops`:
//!
//! - **acquire**: `mkdir`. pmxcfs orders it cluster-wide; `EEXIST` means another node
//!   holds the lock. pmxcfs remembers the creating node as the owner.
//! - **renew**: `utime(lock, 0, now)` every [`LeaseConfig::renew_interval`]. pmxcfs
//!   accepts it only from the owning node, which is also how an agent restarted on the
//!   holding node finds out that the lock is still its own: its first renewal works.
//! - **take over**: a follower watches the lock's mtime. When it has not changed for
//!   the lifetime (120 s, pmxcfs's constant), the follower sends `utime(lock, 0, 0)`,
//!   pmxcfs's release request; pmxcfs deletes the lock only if it, too, has seen no
//!   renewal for the lifetime, and the follower's next `mkdir` wins.
//! - **release**: the leader `rmdir`s on clean shutdown; a follower acquires on its
//!   next poll ([`LeaseConfig::poll_interval`]).
//! - **self-fence**: without quorum pmxcfs refuses every write (EACCES), renewals
//!   included. The leader keeps writing only until [`LeaseConfig::fence_margin`] after
//!   its last good renewal (60 s by default), measured from *before* that renewal was
//!   sent. pmxcfs cannot free the lock sooner than the lifetime after that renewal
//!   landed, so with `fence_margin < lifetime` the old leader is silent before a new
//!   one can exist. The apply path checks [`WriteGate::may_write`] before each write.
//!
//! The leader's identity ([`LeaderIdentity`]: node, since, term) goes to a record file
//! (`/etc/pve/pve-gitops/leader.json`) because pmxcfs does not show who owns a lock.
//!
//! Everything goes through [`LockFs`] and [`Clock`], so the same [`Lease`] runs on
//! `/etc/pve` ([`StdLockFs`]), on the FUSE emulation in `tests/pmxcfs`, and on
//! [`fake::FakePmxcfs`] in unit tests that step a [`ManualClock`] instead of sleeping.

mod clock;
mod config;
pub mod fake;
mod fs;
mod gate;
mod identity;
mod machine;
#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, LeaseConfig};
pub use fs::{LockError, LockFs, StdLockFs};
pub use gate::WriteGate;
pub use identity::LeaderIdentity;
pub use machine::{Event, Lease, StepDown};
