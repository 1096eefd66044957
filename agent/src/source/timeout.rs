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
//! write once connected (libgit2's server connect and server timeouts, which it also
//! gives libssh2 as the SSH session's timeout). A large fetch that keeps receiving is
//! never cut short.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The bound when none is configured: far above any healthy remote's pause (a forge
/// packing a large repository streams progress as it goes), far below the watchdog's
/// two minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound set last, in milliseconds (0: none set), for error messages.
static BOUND_MS: AtomicU64 = AtomicU64::new(0);

/// Bound every wait on a git remote by `timeout`, for the whole process (libgit2 keeps it
/// in a global). A zero `timeout` is taken as the smallest bound, never as "forever".
///
/// # Safety
///
/// libgit2 reads the setting without synchronization: call this before any thread that
/// may run a git operation exists (`run`: before the runtime starts), or while no
/// git operation runs.
pub unsafe fn bound_network_waits(timeout: Duration) {
    let ms = libc_int_millis(timeout);
    BOUND_MS.store(ms.unsigned_abs().into(), Ordering::Relaxed);
    // SAFETY: the caller guarantees no git operation runs concurrently. Both calls only
    // store an int and cannot fail (git2 returns `Ok` for them unconditionally).
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)
            .expect("setting libgit2's connect timeout");
        git2::opts::set_server_timeout_in_milliseconds(ms)
            .expect("setting libgit2's server timeout");
    }
}

/// Whether `err` is a wait on the remote that ran out: libgit2's own timeout, libssh2's
/// ("Timed out waiting on socket"), or OpenSSL's read of a socket whose wait ran out
/// (EAGAIN, "Resource temporarily unavailable"), which libgit2 passes on as an SSL error.
pub(crate) fn ran_out(err: &git2::Error) -> bool {
    let message = err.message().to_ascii_lowercase();
    err.code() == git2::ErrorCode::Timeout
        || message.contains("timed out")
        || message.contains("resource temporarily unavailable")
}

/// libgit2's message for `err`; for a wait that [`ran_out`], saying so and naming the
/// bound.
pub(crate) fn describe(err: &git2::Error) -> String {
    let message = err.message();
    if !ran_out(err) {
        return message.to_string();
    }
    match BOUND_MS.load(Ordering::Relaxed) {
        0 => format!("the remote stopped answering ({message})"),
        ms => format!(
            "no answer within {} ({message}); the bound is repo.timeout, --git-timeout",
            humantime::format_duration(Duration::from_millis(ms))
        ),
    }
}

/// `d` in milliseconds for libgit2: at least 1 (0 means "no bound" there), at most
/// what its `int` holds.
fn libc_int_millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_are_clamped_to_what_libgit2_takes() {
        assert_eq!(libc_int_millis(Duration::ZERO), 1);
        assert_eq!(libc_int_millis(Duration::from_micros(300)), 1);
        assert_eq!(libc_int_millis(DEFAULT_TIMEOUT), 30_000);
        assert_eq!(libc_int_millis(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
