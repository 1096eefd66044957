//! How long a git connection may wait on the remote.
//!
//! libgit2 waits forever by default. A remote that accepts the connection and then says
//! nothing (a hung forge, a proxy that drops the traffic, a half-dead NAT entry) would
//! block a fetch for good, and with it the daemon's loop: the lease stays held, nothing
//! is reconciled, and the watchdog's restart only leads to the same hang on the first
//! poll. With a bound, such a remote fails like any unreachable one
//! ([`Error::Unreachable`](super::Error::Unreachable)): the agent keeps the cluster on the
//! last head it fetched, says why in its log and metrics, and tries again next poll.
//!
//! The bound is on each wait, not on a whole operation: connecting, and every read or
//! write once connected (the SSH session's timeout; the smart HTTP client's wait for an
//! answer and for each read of it). A large fetch that keeps receiving is never cut
//! short.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The bound when none is configured: far above any healthy remote's pause (a forge
/// packing a large repository streams progress as it goes), far below the watchdog's
/// two minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound set last, in milliseconds (0: none set).
static BOUND_MS: AtomicU64 = AtomicU64::new(0);

/// Bound every wait on a git remote by `timeout`, for the whole process: the transports
/// (`transport.rs`) read it when they connect. A zero `timeout` is taken as the smallest
/// bound, never as "forever".
pub fn bound_network_waits(timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    BOUND_MS.store(ms, Ordering::Relaxed);
}

/// Whether `err` is a wait on the remote that ran out: libgit2's own timeout, or libssh2's
/// ("Timed out waiting on socket", or a socket read that gave up with EAGAIN, "Resource
/// temporarily unavailable").
pub(crate) fn ran_out(err: &git2::Error) -> bool {
    let message = err.message().to_ascii_lowercase();
    err.code() == git2::ErrorCode::Timeout
        || message.contains("timed out")
        || message.contains("resource temporarily unavailable")
}

/// libgit2's message for `err`; for a wait that [`ran_out`], saying so and naming the
/// bound.
pub(crate) fn describe(err: &git2::Error) -> String {
    if ran_out(err) {
        waited(err.message())
    } else {
        err.message().to_string()
    }
}

/// The message for a wait on the remote that ran out, `detail` being what the transport
/// said about it.
pub(crate) fn waited(detail: &str) -> String {
    match BOUND_MS.load(Ordering::Relaxed) {
        0 => format!("the remote stopped answering ({detail})"),
        ms => format!(
            "no answer within {} ({detail}); the bound is repo.timeout, --git-timeout",
            humantime::format_duration(Duration::from_millis(ms))
        ),
    }
}

/// The bound on each wait: the one set last, else [`DEFAULT_TIMEOUT`]. The smart HTTP
/// transport reads it when it builds its client.
pub(crate) fn bound() -> Duration {
    match BOUND_MS.load(Ordering::Relaxed) {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_bound_is_the_smallest_and_the_bound_is_read_back() {
        bound_network_waits(Duration::ZERO);
        assert_eq!(bound(), Duration::from_millis(1));
        bound_network_waits(Duration::from_secs(7));
        assert_eq!(bound(), Duration::from_secs(7));
        assert!(waited("x").starts_with("no answer within 7s (x)"));
    }
}
