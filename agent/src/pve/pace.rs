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
//! * it is lowered only by a trial: one wait at a time sleeps a shorter time (a tenth
//!   shorter until the first miss, when the first estimate may be far too long; 3 %
//!   after), and only if that wait finds its task ended is the shorter time taken. A
//!   trial that misses costs that one wait one request, where lowering the estimate for
//!   everyone would cost every wait running meanwhile one; and the next trial then
//!   waits twice as many hits, so an estimate already just above the tasks' length is
//!   seldom tried lower.
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

/// How much shorter a trial is than a settled estimate, and how many counted hits come
/// before the first trial after a change (doubling after each failed trial, up to
/// [`MAX_HITS_PER_TRIAL`]).
const SETTLED_SHRINK: f64 = 0.97;
const HITS_PER_TRIAL: u32 = 4;
const MAX_HITS_PER_TRIAL: u32 = 64;
/// How much shorter a trial is before the first miss (each counted hit starts one).
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
    /// A look has missed at least once: the estimate is near the tasks' length.
    settled: bool,
    /// Counted hits since the last change or trial.
    hits: u32,
    /// Counted hits before the next trial.
    hits_per_trial: u32,
    /// When the last counted observation was made: hits of waits that began before it
    /// saw the same round of tasks.
    counted_at: Instant,
    trial: Option<Trial>,
}

/// A shorter wait offered to one wait, taken as the estimate if that wait hits.
#[derive(Debug, Clone, Copy)]
struct Trial {
    wait: Duration,
    /// When a wait took it (`None`: offered, not yet taken).
    taken_at: Option<Instant>,
}

impl Estimate {
    fn new(expected: Duration, now: Instant) -> Self {
        Estimate {
            expected,
            settled: false,
            hits: 0,
            hits_per_trial: 1,
            counted_at: now,
            trial: None,
        }
    }

    /// The trial missed (or its wait never told): keep the estimate, try less often.
    fn trial_failed(&mut self) {
        self.trial = None;
        self.settled = true;
        self.hits = 0;
        self.hits_per_trial = (self.hits_per_trial.max(HITS_PER_TRIAL) * 2).min(MAX_HITS_PER_TRIAL);
    }

    /// A trial taken this long ago whose wait has not told is given up: the wait failed
    /// or was cancelled, and no later trial may start while it is open.
    fn trial_lost(&self, now: Instant) -> bool {
        self.trial.and_then(|t| t.taken_at).is_some_and(|at| {
            now.saturating_duration_since(at) > self.expected * 4 + Duration::from_secs(1)
        })
    }
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

    /// How long a wait beginning `now` sleeps before its first look: the estimate, or the
    /// open trial's shorter time for the one wait that takes it.
    pub fn first_wait(&self, task_type: &str, now: Instant) -> Option<Duration> {
        let mut map = self.lock();
        let e = map.get_mut(task_type)?;
        if e.trial_lost(now) {
            e.trial_failed();
        }
        match &mut e.trial {
            Some(t) if t.taken_at.is_none() => {
                t.taken_at = Some(now);
                Some(t.wait)
            }
            _ => Some(e.expected),
        }
    }

    /// A wait for a task of this type ended `now`.
    pub fn observed(&self, task_type: &str, seen: Observation, now: Instant) {
        let mut map = self.lock();
        let Some(e) = map.get_mut(task_type) else {
            map.insert(task_type.to_string(), Estimate::new(seen.stopped_at, now));
            return;
        };
        let Some(used) = seen.expected else {
            // Began before any estimate: one of the round that seeded it.
            return;
        };
        let trial = e.trial.filter(|t| t.taken_at.is_some() && t.wait == used);
        if let Some(t) = trial {
            if seen.hit() {
                e.expected = t.wait;
                e.trial = None;
                e.hits = 0;
                e.hits_per_trial = if e.settled { HITS_PER_TRIAL } else { 1 };
            } else {
                e.trial_failed();
            }
            e.counted_at = now;
            return;
        }
        if seen.hit() {
            if seen.started < e.counted_at {
                return;
            }
            e.counted_at = now;
            e.hits += 1;
            if e.hits >= e.hits_per_trial && e.trial.is_none() && !e.expected.is_zero() {
                let shrink = if e.settled {
                    SETTLED_SHRINK
                } else {
                    UNSETTLED_SHRINK
                };
                e.trial = Some(Trial {
                    wait: e.expected.mul_f64(shrink),
                    taken_at: None,
                });
                e.hits = 0;
            }
        } else {
            // Tasks take longer than the estimate: no trial goes lower now.
            let bound = seen.stopped_at.min(used.mul_f64(MAX_GROWTH));
            e.expected = e.expected.max(bound);
            e.settled = true;
            e.hits = 0;
            e.hits_per_trial = e.hits_per_trial.max(HITS_PER_TRIAL);
            e.counted_at = now;
            if e.trial.is_some_and(|t| t.taken_at.is_none()) {
                e.trial = None;
            }
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

    /// What the next wait beginning at `at` sleeps.
    fn take(pace: &TaskPace, kind: &str, at: Instant) -> u128 {
        pace.first_wait(kind, at).unwrap().as_millis()
    }

    #[test]
    fn one_wait_tries_a_shorter_time_which_is_kept_only_if_it_hits() {
        let at = clock();
        let pace = TaskPace::default();
        pace.observed("qmstart", seen(at(0), None, None, 3000), at(3000));
        assert_eq!(
            take(&pace, "qmstart", at(3001)),
            3000,
            "no trial before a hit"
        );
        hit(&pace, "qmstart", at(3001));
        assert_eq!(
            pace.expected("qmstart"),
            Some(3000 * MS),
            "a hit alone lowers nothing"
        );
        // The next wait tries a tenth less; the others meanwhile wait the estimate.
        assert_eq!(take(&pace, "qmstart", at(7000)), 2700);
        assert_eq!(take(&pace, "qmstart", at(7001)), 3000);
        pace.observed("qmstart", seen(at(7000), Some(2700), None, 2700), at(9700));
        assert_eq!(pace.expected("qmstart"), Some(2700 * MS), "the trial hit");
        // The next trial (2430 ms) misses: the estimate stays, later ones are 3 % steps.
        hit(&pace, "qmstart", at(10_000));
        assert_eq!(take(&pace, "qmstart", at(13_000)), 2430);
        pace.observed(
            "qmstart",
            seen(at(13_000), Some(2430), Some(2430), 2700),
            at(15_700),
        );
        assert_eq!(pace.expected("qmstart"), Some(2700 * MS));
        // After a failed trial the next one waits twice the hits.
        for round in 1..2 * HITS_PER_TRIAL {
            hit(&pace, "qmstart", at(20_000 * u64::from(round)));
            assert_eq!(
                take(&pace, "qmstart", at(20_000 * u64::from(round) + 5000)),
                2700
            );
        }
        hit(&pace, "qmstart", at(200_000));
        assert_eq!(take(&pace, "qmstart", at(205_000)), 2619);
    }

    #[test]
    fn a_trial_whose_wait_never_tells_is_given_up() {
        let at = clock();
        let pace = TaskPace::default();
        pace.observed("qmstart", seen(at(0), None, None, 2000), at(2000));
        hit(&pace, "qmstart", at(2001));
        assert_eq!(take(&pace, "qmstart", at(5000)), 1800);
        // Its wait failed and never reports: no trial is open for anyone else...
        assert_eq!(take(&pace, "qmstart", at(6000)), 2000);
        // ...until it is given up, as a failed one.
        assert_eq!(take(&pace, "qmstart", at(5000 + 4 * 2000 + 1001)), 2000);
        for round in 1..2 * HITS_PER_TRIAL {
            hit(&pace, "qmstart", at(20_000 * u64::from(round)));
        }
        assert_eq!(take(&pace, "qmstart", at(190_000)), 2000);
        hit(&pace, "qmstart", at(200_000));
        assert_eq!(take(&pace, "qmstart", at(205_000)), 1940);
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
        assert_eq!(pace.expected("qmstart"), Some(2000 * MS));
        // One counted hit: one trial, for one wait.
        assert_eq!(take(&pace, "qmstart", at(4100)), 1800);
        assert_eq!(take(&pace, "qmstart", at(4101)), 2000);
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
