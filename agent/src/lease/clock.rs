//! Time for the lease, injectable so tests step it instead of sleeping.
//!
//! Two kinds of time matter. Deadlines (renew, self-fence, staleness) use a monotonic
//! [`Instant`], immune to clock steps. The lock directory's mtime is wall-clock seconds,
//! because that is what pmxcfs stores and what `utime(0, now)` writes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Monotonic time for every deadline.
    fn now(&self) -> Instant;
    /// Wall-clock seconds since the Unix epoch, for mtimes and the leader record.
    fn unix_secs(&self) -> u64;
}

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    start_unix: u64,
    elapsed: Arc<Mutex<Duration>>,
}

impl ManualClock {
    /// Starts at the real current instant and at `start_unix` wall-clock seconds.
    pub fn new(start_unix: u64) -> Self {
        ManualClock {
            start: Instant::now(),
            start_unix,
            elapsed: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock().expect("clock lock") += by;
    }

    /// Time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        *self.elapsed.lock().expect("clock lock")
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn unix_secs(&self) -> u64 {
        self.start_unix + self.elapsed().as_secs()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }

    fn unix_secs(&self) -> u64 {
        (**self).unix_secs()
    }
}
