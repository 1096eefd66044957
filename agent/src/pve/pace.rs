//! How long PVE tasks of each type have been taking, so that waiting for the next one
//! costs about one status request instead of a backoff schedule from zero.
//!
//! [`super::task`] polls a task's status from 50 ms on, growing the wait 1.6× up to 2 s:
//! right for a task whose length nobody knows, but a full clone on Ceph that takes 2 s
//! then costs eight status requests, and a converge of N VMs clones and starts N times.
//! Tasks of one type on one cluster take about as long as the last ones did, so the
//! client remembers, per task type (`qmstart`, ...; clones per source template), how
//! long waiting took, sleeps that long before the first look (15 s at most, so one slow
//! task does not hold up the next quick one for long), and polls at an eighth of it
//! after a miss.
//!
//! A look that comes too early costs a request or two more; one that comes late costs
//! only the time by which it is late. So the estimate leans long:
//! * the first one is when the first wait saw its task stopped (the backoff's looks are
//!   far apart by then, so this can be half as long again as the task);
//! * a miss raises it to when the task was seen stopped (an upper bound of its length),
//!   by a quarter at most per miss, so one slow task does not slow every later wait;
//! * a hit lowers it, since the cluster may have become faster or the estimate may be
//!   long: by a tenth each time until the first miss (the first estimate is coarse),
//!   then by 3 % every fourth hit, so that it stays just above the tasks' length.
//!
//! Waits that run at the same time see the same cluster: a converge starts its clones
//! together, and four hits of one round say no more than one. Only a hit by a wait that
//! began after the last counted observation counts, and waits that began with no
//! estimate only seed one.
//!
//! Before the first estimate, one wait of a type finds out (the scout, polling on the
//! backoff) and the others that begin meanwhile wait for it to end ([`TaskPace::scout`]):
//! the first round of a converge then pays the backoff once, not once per VM.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How much a hit lowers a settled estimate, and after how many counted hits.
const SETTLED_SHRINK: f64 = 0.97;
const HITS_PER_SHRINK: u32 = 4;
/// How much a hit lowers the estimate before the first miss.
const UNSETTLED_SHRINK: f64 = 0.9;
/// The most one miss raises the estimate by.
const MAX_GROWTH: f64 = 1.25;

/// What one wait saw of its task, measured from when the wait began.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    /// When the wait began.
    pub started: Instant,
    /// The estimate the wait slept for before its first look (`None`: there was none).
    pub expected: Option<Duration>,
    /// The last look that found the task running (`None`: no look did).
    pub running_at: Option<Duration>,
    /// The look that found it stopped.
    pub stopped_at: Duration,
}

impl Observation {
    /// The first look after the expected time found the task stopped.
    fn hit(&self) -> bool {
        self.expected.is_some() && self.running_at.is_none()
    }
}

/// One task type's estimate.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    expected: Duration,
    /// A paced look has missed at least once: the estimate is near the tasks' length.
    settled: bool,
    /// Counted hits since the last change.
    hits: u32,
    /// When the last counted observation was made: hits of waits that began before it
    /// saw the same round of tasks.
    counted_at: Instant,
}

/// Learned task durations, shared by every wait of one client.
#[derive(Debug, Default)]
pub struct TaskPace {
    expected: Mutex<HashMap<String, Estimate>>,
    /// Task types a wait is finding out the length of, with what wakes the others.
    scouts: Mutex<HashMap<String, Arc<Notify>>>,
}

/// A wait's part before its type has an estimate.
#[derive(Debug)]
pub enum Scouting<'a> {
    /// This wait finds out; the others are woken when it ends (the guard is dropped).
    Lead(Scout<'a>),
    /// Another wait is finding out: wait for it with [`TaskPace::follow`].
    Follow(Arc<Notify>),
}

/// Held by the wait that finds out how long tasks of a type take.
#[derive(Debug)]
pub struct Scout<'a> {
    pace: &'a TaskPace,
    kind: String,
}

impl Drop for Scout<'_> {
    fn drop(&mut self) {
        // Ended (its observation is in) or given up (an error, a deadline): either way the
        // others stop waiting for it.
        if let Some(woken) = lock(&self.pace.scouts).remove(&self.kind) {
            woken.notify_waiters();
        }
    }
}

impl TaskPace {
    /// Lead or follow the finding out of how long tasks of this type take.
    pub fn scout(&self, task_type: &str) -> Scouting<'_> {
        let mut scouts = lock(&self.scouts);
        match scouts.get(task_type) {
            Some(woken) => Scouting::Follow(woken.clone()),
            None => {
                scouts.insert(task_type.to_string(), Arc::new(Notify::new()));
                Scouting::Lead(Scout {
                    pace: self,
                    kind: task_type.to_string(),
                })
            }
        }
    }

    /// Wait until the scout of this type ends, `cap` at most; then its estimate, if it
    /// left one.
    pub async fn follow(&self, task_type: &str, woken: &Notify, cap: Duration) -> Option<Duration> {
        let ended = woken.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        // The scout may have ended between `scout` and `enable`.
        let scouting = lock(&self.scouts)
            .get(task_type)
            .is_some_and(|n| std::ptr::eq(Arc::as_ptr(n), woken));
        if scouting {
            let _ = tokio::time::timeout(cap, ended).await;
        }
        self.expected(task_type)
    }

    /// How long a task of this type is expected to run; `None` before the first one ended.
    pub fn expected(&self, task_type: &str) -> Option<Duration> {
        self.lock().get(task_type).map(|e| e.expected)
    }

    /// A wait for a task of this type ended `now`.
    pub fn observed(&self, task_type: &str, seen: Observation, now: Instant) {
        let mut map = self.lock();
        let Some(e) = map.get_mut(task_type) else {
            map.insert(
                task_type.to_string(),
                Estimate {
                    expected: seen.stopped_at,
                    settled: false,
                    hits: 0,
                    counted_at: now,
                },
            );
            return;
        };
        let Some(used) = seen.expected else {
            // Began before any estimate: one of the round that seeded it.
            return;
        };
        if seen.hit() {
            if seen.started < e.counted_at {
                return;
            }
            e.counted_at = now;
            e.hits += 1;
            if !e.settled {
                e.expected = e.expected.mul_f64(UNSETTLED_SHRINK);
                e.hits = 0;
            } else if e.hits >= HITS_PER_SHRINK {
                e.expected = e.expected.mul_f64(SETTLED_SHRINK);
                e.hits = 0;
            }
        } else {
            let bound = seen.stopped_at.min(used.mul_f64(MAX_GROWTH));
            e.expected = e.expected.max(bound);
            e.settled = true;
            e.hits = 0;
            e.counted_at = now;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Estimate>> {
        lock(&self.expected)
    }
}

/// The maps hold plain values: a panic elsewhere leaves them usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A clock for one test: `at(ms)` is `ms` after its start.
    fn clock() -> impl Fn(u64) -> Instant {
        let base = Instant::now();
        move |ms| base + Duration::from_millis(ms)
    }

    /// A wait that began at `started` and saw the task stopped `stopped_ms` after.
    fn seen(
        started: Instant,
        expected: Option<u32>,
        running_ms: Option<u32>,
        stopped_ms: u32,
    ) -> Observation {
        Observation {
            started,
            expected: expected.map(|e| e * MS),
            running_at: running_ms.map(|r| r * MS),
            stopped_at: stopped_ms * MS,
        }
    }

    /// A hit of a wait that began at `began`, observed a little later.
    fn hit(pace: &TaskPace, kind: &str, began: Instant) {
        let e = pace.expected(kind).unwrap();
        let ms = e.as_millis() as u32;
        pace.observed(kind, seen(began, Some(ms), None, ms), began + e + MS);
    }

    #[test]
    fn the_first_estimate_is_when_the_first_wait_saw_the_task_stopped() {
        let at = clock();
        let pace = TaskPace::default();
        assert_eq!(pace.expected("qmclone"), None);
        pace.observed("qmclone", seen(at(0), None, Some(1310), 2150), at(2150));
        assert_eq!(pace.expected("qmclone"), Some(2150 * MS));
        assert_eq!(pace.expected("qmstart"), None);
        // The rest of the first round does not move it.
        pace.observed("qmclone", seen(at(0), None, Some(2150), 3490), at(3490));
        assert_eq!(pace.expected("qmclone"), Some(2150 * MS));
    }

    #[test]
    fn hits_lower_it_fast_until_a_miss_then_slowly() {
        let at = clock();
        let pace = TaskPace::default();
        pace.observed("qmstart", seen(at(0), None, None, 3000), at(3000));
        hit(&pace, "qmstart", at(3001));
        assert_eq!(pace.expected("qmstart"), Some(2700 * MS));
        // A miss at 2430 ms: the task was seen stopped at 2700 ms.
        pace.observed(
            "qmstart",
            seen(at(6000), Some(2430), Some(2430), 2700),
            at(8700),
        );
        assert_eq!(pace.expected("qmstart"), Some(2700 * MS));
        for round in 1..HITS_PER_SHRINK {
            hit(&pace, "qmstart", at(10_000 * u64::from(round)));
            assert_eq!(pace.expected("qmstart"), Some(2700 * MS));
        }
        hit(&pace, "qmstart", at(50_000));
        assert_eq!(pace.expected("qmstart"), Some(2619 * MS));
    }

    #[test]
    fn one_round_of_concurrent_hits_counts_once() {
        let at = clock();
        let pace = TaskPace::default();
        pace.observed("qmstart", seen(at(0), None, None, 2000), at(2000));
        for i in 0..4 {
            pace.observed(
                "qmstart",
                seen(at(2001), Some(2000), None, 2000),
                at(4001 + i),
            );
        }
        assert_eq!(pace.expected("qmstart"), Some(1800 * MS));
    }

    #[test]
    fn a_miss_raises_it_by_a_quarter_at_most() {
        let at = clock();
        let pace = TaskPace::default();
        pace.observed("vzdump", seen(at(0), None, None, 2000), at(2000));
        pace.observed(
            "vzdump",
            seen(at(2001), Some(2000), Some(2000), 60_000),
            at(62_001),
        );
        assert_eq!(pace.expected("vzdump"), Some(2500 * MS));
    }

    #[test]
    fn instant_tasks_stay_near_zero() {
        let at = clock();
        let pace = TaskPace::default();
        pace.observed("qmconfig", seen(at(0), None, None, 0), at(0));
        hit(&pace, "qmconfig", at(1));
        assert_eq!(pace.expected("qmconfig"), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn one_wait_finds_out_and_the_others_wait_for_it() {
        let pace = TaskPace::default();
        let Scouting::Lead(scout) = pace.scout("qmclone:9000") else {
            panic!("the first wait leads");
        };
        let Scouting::Follow(woken) = pace.scout("qmclone:9000") else {
            panic!("a second wait follows");
        };
        assert!(matches!(pace.scout("qmstart"), Scouting::Lead(_)));
        let at = clock();
        let cap = Duration::from_secs(60);
        let began = std::time::Instant::now();
        let (found, ()) = tokio::join!(pace.follow("qmclone:9000", &woken, cap), async {
            tokio::task::yield_now().await;
            pace.observed("qmclone:9000", seen(at(0), None, None, 2150), at(2150));
            drop(scout);
        });
        assert_eq!(found, Some(2150 * MS));
        assert!(
            began.elapsed() < cap / 2,
            "woken by the scout, not by the cap"
        );
        // A scout that gives up leaves no estimate, and the next wait leads.
        let Scouting::Lead(scout) = pace.scout("qmclone:9001") else {
            panic!("no scout left for this template");
        };
        drop(scout);
        assert!(matches!(pace.scout("qmclone:9001"), Scouting::Lead(_)));
    }
}
