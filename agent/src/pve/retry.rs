//! When a failed request is repeated, and how long to wait first.
//!
//! Only failures that prove nothing happened, or that hit a request that may safely run
//! twice, are retried:
//!
//! * a config lock timeout ("can't lock file ... got timeout"): PVE takes the lock
//!   before it changes anything, so repeating is safe for every request;
//! * no connection at all (refused, DNS, connect timeout): PVE never saw the request;
//! * a busy or restarting proxy (HTTP 502/503/504, and pveproxy's 596/599) and a broken
//!   connection or timeout after sending: only for idempotent requests. A POST that
//!   creates something (create, clone, download, pool) is not retried on these, since
//!   it may have been applied: a caller that wants to try again must first check whether
//!   the thing exists (e.g. read the VM config, list the storage).
//!
//! Attempts are bounded and spaced by exponential backoff with jitter, so several
//! agents or workers do not retry in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::error::{PveError, TransportKind};

/// Whether repeating a request can change the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads, and writes of absolute values (a config PUT, an absolute resize).
    Idempotent,
    /// Creates and actions (create, clone, start, delete, `+2G` resize): at most once
    /// unless PVE provably did nothing.
    NotIdempotent,
}

/// How often and how patiently a request is repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of one wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    /// Never retry (for tests and for callers that do their own).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): half to all of
    /// `base * 2^(attempt-1)`, capped at `max_delay`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let full = exp.min(self.max_delay);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(random_unit())
    }
}

/// Whether `err` on a request of this kind may be repeated.
pub fn should_retry(err: &PveError, idempotency: Idempotency) -> bool {
    let idempotent = idempotency == Idempotency::Idempotent;
    match err {
        PveError::LockTimeout(_) => true,
        PveError::Transport { kind, .. } => match kind {
            TransportKind::Connect => true,
            TransportKind::Tls => false,
            TransportKind::Timeout | TransportKind::Other => idempotent,
        },
        PveError::Api(f) => idempotent && matches!(f.status, 502..=504 | 596 | 599),
        _ => false,
    }
}

/// A number in [0, 1) that differs between calls and processes. Jitter needs no
/// cryptographic quality; std's per-instance random hasher keys are enough.
fn random_unit() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::error::HttpFailure;
    use std::collections::BTreeMap;

    fn api(status: u16, message: &str) -> PveError {
        crate::pve::error::classify(HttpFailure {
            method: reqwest::Method::POST,
            path: "/x".into(),
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        })
    }

    #[test]
    fn delays_grow_with_jitter_and_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for attempt in 1..=10 {
            let d = p.delay(attempt);
            let full = (100u64 << (attempt - 1)).min(1000);
            assert!(d >= Duration::from_millis(full / 2), "{attempt}: {d:?}");
            assert!(d <= Duration::from_millis(full), "{attempt}: {d:?}");
        }
    }

    #[test]
    fn what_is_retried() {
        use Idempotency::*;
        let lock = api(
            500,
            "can't lock file '/var/lock/qemu-server/lock-1.conf' - got timeout",
        );
        assert!(should_retry(&lock, NotIdempotent));
        assert!(should_retry(&api(503, "busy"), Idempotent));
        assert!(!should_retry(&api(503, "busy"), NotIdempotent));
        assert!(!should_retry(&api(500, "boom"), Idempotent));
        assert!(!should_retry(&api(500, "checksum mismatch"), Idempotent));
        assert!(!should_retry(&api(595, "No route to host"), Idempotent));
    }
}
