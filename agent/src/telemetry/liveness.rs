//! Whether the daemon loop is alive, for systemd's watchdog.
//!
//! # The rule
//!
//! A `WATCHDOG=1` ping certifies that the loop made progress within the last watchdog
//! period (`WatchdogSec=`, given to the process as `WATCHDOG_USEC`). The loop pings on a
//! timer at half that period, and only when [`should_ping`] says so:
//!
//! - **between passes** (waiting for the interval, a file change or a webhook): always.
//!   The loop is idle by design; nothing it waits on can hang.
//! - **during a pass**: only if something the pass waits on has completed within the
//!   last watchdog period: an API answer or error ([`mark`] is called by the API client
//!   once per HTTP attempt, so task polls count), a manifests fetch returning, a health
//!   gate's TCP probe, the pass starting.
//!
//! A timer alone would be wrong: it sits in the same `select!` as the pass and would go
//! on firing while the pass hangs forever on an API call or a git fetch. Tying the ping
//! to completed work means a stuck pass stops the pings, and systemd restarts the agent
//! at most two watchdog periods after the last progress. A long pass that keeps working
//! (a 500-VM apply polling its tasks) keeps pinging. Note that a git fetch runs on the
//! loop's own thread (libgit2 blocks): while it hangs, the loop does not even wake up
//! for the timer, which stops the pings the same way.
//!
//! An API call is bounded by the client's request timeout (120 s), and a git operation
//! by `--git-timeout` on each wait (`crate::source::bound_network_waits`); their errors
//! are progress, so a single slow call costs a failed request, not a restart. What has
//! no bound of its own (a blocking call on a wedged filesystem, a deadlock) is what the
//! watchdog catches.
//!
//! Progress is process-wide, like the watchdog itself: one loop and one systemd watchdog
//! per process, and the places that see progress sit deep inside a pass, where a handle
//! threaded through every signature would add noise for one atomic store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the loop is when the watchdog timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between passes.
    Idle,
    /// Inside a pass.
    Pass,
}

/// Whether to ping the watchdog now: always between passes; during a pass only if it
/// made progress within `period` (see the module doc).
pub fn should_ping(phase: Phase, since_progress: Duration, period: Duration) -> bool {
    match phase {
        Phase::Idle => true,
        Phase::Pass => since_progress < period,
    }
}

/// The process's reference point: progress is kept as milliseconds since it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since [`epoch`] of the last progress.
static LAST: AtomicU64 = AtomicU64::new(0);

/// Something the loop waited on has completed.
pub fn mark() {
    let ms = epoch().elapsed().as_millis() as u64;
    LAST.fetch_max(ms, Ordering::Relaxed);
}

/// Time since the last [`mark`] (since the process started, if none).
pub fn since_progress() -> Duration {
    let now = epoch().elapsed();
    now.saturating_sub(Duration::from_millis(LAST.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_always_pings_a_pass_only_while_it_progresses() {
        let period = Duration::from_secs(120);
        assert!(should_ping(Phase::Idle, Duration::from_secs(3600), period));
        assert!(should_ping(Phase::Pass, Duration::from_secs(5), period));
        assert!(should_ping(Phase::Pass, Duration::from_secs(119), period));
        assert!(!should_ping(Phase::Pass, Duration::from_secs(120), period));
        assert!(!should_ping(Phase::Pass, Duration::from_secs(600), period));
    }

    #[test]
    fn a_mark_resets_the_time_since_progress() {
        mark();
        assert!(since_progress() < Duration::from_secs(5));
    }
}
