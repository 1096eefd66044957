//! How long PVE tasks of each type have been taking, so that waiting for the next one
//! costs about one status request instead of a backoff schedule from zero.
//!
//! [`super::task`] polls a task's status from 50 ms on, growing the wait 1.6× up to 2 s:
//! right for a task whose length nobody knows, but a full clone on Ceph that takes 2 s
//! then costs eight status requests, and a converge of N VMs clones and starts N times.
//! Tasks of one type on one cluster take about as long as the last ones did, so the
//! client remembers, per task type (`qmstart`, ...; clones per source template), how
//! long waiting took, sleeps that long before the first poll (15 s at most, so one slow
//! task does not hold up the next quick one for long), and polls at an eighth of it
//! after a miss.
//! A wait that began before any task of its type had ended adopts the estimate as soon as
//! one does, instead of polling on its backoff from zero: a converge starts its first
//! clones together, and all of them would otherwise pay the backoff.
//! An estimate that was long enough shrinks a little each time (the cluster may have
//! become faster); a miss moves it halfway to what the task took. Instant tasks keep an
//! estimate near zero and are polled at once, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What a hit (the first poll found the task stopped) does to the estimate. Small, since
/// a shrink below the real duration costs a miss (two or three requests, not one); large
/// enough that an estimate twice too long halves within about twenty tasks.
const SHRINK_ON_HIT: f64 = 0.97;

/// Learned task durations, shared by every wait of one client.
#[derive(Debug, Default)]
pub struct TaskPace {
    expected: Mutex<HashMap<String, Duration>>,
}

impl TaskPace {
    /// How long a task of this type is expected to run; `None` before the first one ended.
    pub fn expected(&self, task_type: &str) -> Option<Duration> {
        self.lock().get(task_type).copied()
    }

    /// A wait ended after `took`; `hit` if its first poll, made after the expected time,
    /// already found the task stopped.
    pub fn observed(&self, task_type: &str, took: Duration, hit: bool) {
        let mut map = self.lock();
        let next = match map.get(task_type) {
            None => took,
            Some(&e) if hit => e.mul_f64(SHRINK_ON_HIT),
            Some(&e) => (e + took) / 2,
        };
        map.insert(task_type.to_string(), next);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Duration>> {
        // The map holds plain numbers: a panic elsewhere leaves it usable.
        self.expected.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn unknown_until_a_task_of_the_type_ended() {
        let pace = TaskPace::default();
        assert_eq!(pace.expected("qmclone"), None);
        pace.observed("qmclone", 2150 * MS, false);
        assert_eq!(pace.expected("qmclone"), Some(2150 * MS));
        assert_eq!(pace.expected("qmstart"), None);
    }

    #[test]
    fn a_hit_shrinks_the_estimate_and_a_miss_moves_it_halfway() {
        let pace = TaskPace::default();
        pace.observed("qmclone", 2000 * MS, false);
        pace.observed("qmclone", 2000 * MS, true);
        assert_eq!(pace.expected("qmclone"), Some(1940 * MS));
        pace.observed("qmclone", 2060 * MS, false);
        assert_eq!(pace.expected("qmclone"), Some(2000 * MS));
    }

    #[test]
    fn instant_tasks_stay_near_zero() {
        let pace = TaskPace::default();
        pace.observed("qmconfig", Duration::ZERO, false);
        pace.observed("qmconfig", 3 * MS, true);
        assert_eq!(pace.expected("qmconfig"), Some(Duration::ZERO));
    }
}
