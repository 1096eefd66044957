//! The lease on the in-process pmxcfs model, driven second by second like the daemon
//! would drive it. After every simulated second the checker asserts the safety
//! property: at most one node may write, and that node holds the lock in pmxcfs.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::fake::{FakeNode, FakePmxcfs};
use super::*;

const START_UNIX: u64 = 1_700_000_000;

struct Agent {
    lease: Lease<FakeNode, ManualClock>,
    due: Instant,
}

struct Sim {
    clock: ManualClock,
    fs: FakePmxcfs,
    config: fn(&str) -> LeaseConfig,
    agents: BTreeMap<&'static str, Agent>,
    /// Every instant some node could write, with that node, for timing checks.
    writers: Vec<(Duration, &'static str)>,
}

fn production(node: &str) -> LeaseConfig {
    LeaseConfig::new(node)
}

/// Short timings like the integration tests use, same proportions as production.
fn short(node: &str) -> LeaseConfig {
    LeaseConfig {
        renew_interval: Duration::from_secs(2),
        poll_interval: Duration::from_secs(1),
        lifetime: Duration::from_secs(20),
        fence_margin: Duration::from_secs(10),
        ..LeaseConfig::new(node)
    }
}

impl Sim {
    fn new(config: fn(&str) -> LeaseConfig) -> Self {
        let clock = ManualClock::new(START_UNIX);
        let fs = FakePmxcfs::new(clock.clone());
        fs.set_lifetime(config("x").lifetime);
        Sim {
            clock,
            fs,
            config,
            agents: BTreeMap::new(),
            writers: Vec::new(),
        }
    }

    fn lock(&self) -> PathBuf {
        (self.config)("x").lock_path
    }

    fn start(&mut self, node: &'static str) {
        let lease = Lease::new((self.config)(node), self.fs.node(node), self.clock.clone())
            .expect("valid config");
        let due = self.clock.now();
        assert!(self.agents.insert(node, Agent { lease, due }).is_none());
    }

    /// Advance `secs` seconds, ticking every agent when due (in node order).
    fn run(&mut self, secs: u64) {
        for _ in 0..secs {
            self.clock.advance(Duration::from_secs(1));
            let now = self.clock.now();
            for agent in self.agents.values_mut() {
                if agent.due <= now {
                    agent.lease.tick();
                    agent.due = now + agent.lease.next_tick_in();
                }
            }
            self.check();
        }
    }

    fn check(&mut self) {
        let now = self.clock.now();
        let writers: Vec<&'static str> = self
            .agents
            .iter()
            .filter(|(_, a)| a.lease.may_write(now))
            .map(|(node, _)| *node)
            .collect();
        assert!(
            writers.len() <= 1,
            "two writers at {:?}: {writers:?}",
            self.clock.elapsed()
        );
        if let Some(writer) = writers.first() {
            assert_eq!(
                self.fs.holder(&self.lock()).as_deref(),
                Some(*writer),
                "{writer} may write but does not hold the lock"
            );
            self.writers.push((self.clock.elapsed(), writer));
        }
    }

    fn writer(&self) -> Option<&'static str> {
        let now = self.clock.now();
        self.agents
            .iter()
            .find(|(_, a)| a.lease.may_write(now))
            .map(|(node, _)| *node)
    }

    fn first_writer_after(&self, t: Duration, other_than: &str) -> Option<Duration> {
        self.writers
            .iter()
            .find(|(at, node)| *at > t && *node != other_than)
            .map(|(at, _)| *at)
    }

    fn lease(&mut self, node: &str) -> &mut Lease<FakeNode, ManualClock> {
        &mut self.agents.get_mut(node).expect("agent runs").lease
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Start(node) => self.start(node),
            Step::Run(secs) => self.run(secs),
            Step::Kill(node) => {
                self.agents.remove(node).expect("agent runs");
            }
            Step::Stop(node) => {
                self.lease(node).release().expect("release");
                self.agents.remove(node);
            }
            Step::Quorum(node, quorate) => self.fs.set_quorate(node, quorate),
            Step::Fail(node, kind) => self.fs.set_failing(node, kind),
        }
    }
}

#[derive(Debug)]
enum Step {
    Start(&'static str),
    /// Let this many seconds pass.
    Run(u64),
    /// kill -9: the agent vanishes without releasing.
    Kill(&'static str),
    /// SIGTERM: release, then exit.
    Stop(&'static str),
    Quorum(&'static str, bool),
    /// Every pmxcfs operation of the node fails with this error (`None` heals).
    Fail(&'static str, Option<io::ErrorKind>),
}
use Step::*;

/// Who may write after a step: `Some(node)` or nobody.
type Expect = Option<&'static str>;

fn scenario(name: &str, steps: &[(Step, Expect)]) {
    let mut sim = Sim::new(production);
    for (i, (step, expect)) in steps.iter().enumerate() {
        sim.apply(step);
        assert_eq!(
            sim.writer(),
            *expect,
            "{name}: after step {i} ({step:?}) at {:?}",
            sim.clock.elapsed()
        );
    }
}

#[test]
fn scenarios() {
    let cases: Vec<(&str, Vec<(Step, Expect)>)> = vec![
        (
            "the first node to tick leads and keeps leading",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Start("pve3"), None),
                (Run(1), Some("pve1")),
                (Run(600), Some("pve1")),
            ],
        ),
        (
            "kill -9 of the leader: silence for the lifetime, then a follower leads",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Start("pve3"), None),
                (Run(1), Some("pve1")),
                (Kill("pve1"), None),
                (Run(119), None),
                (Run(15), Some("pve2")),
                (Run(300), Some("pve2")),
            ],
        ),
        (
            "SIGTERM of the leader: the next poll takes over",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Run(30), Some("pve1")),
                (Stop("pve1"), None),
                (Run(5), Some("pve2")),
            ],
        ),
        (
            "quorum loss on the leader: fenced within the margin, taken over after the lifetime",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                // pve1 renews at t=31, just before quorum goes.
                (Run(31), Some("pve1")),
                (Quorum("pve1", false), Some("pve1")),
                (Run(59), Some("pve1")),
                (Run(1), None),
                // The lock passes no sooner than the lifetime after the t=31 renewal.
                (Run(59), None),
                (Run(10), Some("pve2")),
                (Quorum("pve1", true), Some("pve2")),
                (Run(120), Some("pve2")),
            ],
        ),
        (
            "quorum loss on a follower changes nothing",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Run(1), Some("pve1")),
                (Quorum("pve2", false), Some("pve1")),
                (Run(300), Some("pve1")),
                (Quorum("pve2", true), Some("pve1")),
                (Run(60), Some("pve1")),
            ],
        ),
        (
            "a quorum blip shorter than the margin: the leader keeps writing",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Run(1), Some("pve1")),
                (Quorum("pve1", false), Some("pve1")),
                (Run(40), Some("pve1")),
                (Quorum("pve1", true), Some("pve1")),
                (Run(300), Some("pve1")),
            ],
        ),
        (
            "quorum back after the margin, before the lifetime: the holder renews again",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Run(1), Some("pve1")),
                (Quorum("pve1", false), Some("pve1")),
                (Run(70), None),
                (Quorum("pve1", true), None),
                (Run(5), Some("pve1")),
                (Run(300), Some("pve1")),
            ],
        ),
        (
            "an agent restarted on the holding node resumes by renewing",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Run(20), Some("pve1")),
                (Kill("pve1"), None),
                (Start("pve1"), None),
                (Run(1), Some("pve1")),
                (Run(300), Some("pve1")),
            ],
        ),
        (
            "an agent restarted after its lock passed on follows",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Run(1), Some("pve1")),
                (Kill("pve1"), None),
                (Run(140), Some("pve2")),
                (Start("pve1"), Some("pve2")),
                (Run(300), Some("pve2")),
            ],
        ),
        (
            "I/O errors on the leader past the margin: it steps down; healed, it resumes",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Run(1), Some("pve1")),
                (Fail("pve1", Some(io::ErrorKind::Other)), Some("pve1")),
                (Run(70), None),
                (Fail("pve1", None), None),
                (Run(5), Some("pve1")),
                (Run(200), Some("pve1")),
            ],
        ),
        (
            "a follower that never saw the lock change waits a full lifetime from first sight",
            vec![
                (Start("pve1"), None),
                (Run(1), Some("pve1")),
                (Kill("pve1"), None),
                (Run(200), None),
                (Start("pve2"), None),
                (Run(119), None),
                (Run(10), Some("pve2")),
            ],
        ),
        (
            "leader and one follower lose quorum: the quorate node takes over",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Start("pve3"), None),
                (Run(1), Some("pve1")),
                (Quorum("pve1", false), Some("pve1")),
                (Quorum("pve2", false), Some("pve1")),
                (Run(200), Some("pve3")),
                (Quorum("pve1", true), Some("pve3")),
                (Quorum("pve2", true), Some("pve3")),
                (Run(300), Some("pve3")),
            ],
        ),
        (
            "leadership moves around: kill, stop, quorum loss in a row",
            vec![
                (Start("pve1"), None),
                (Start("pve2"), None),
                (Start("pve3"), None),
                (Run(1), Some("pve1")),
                (Kill("pve1"), None),
                (Run(140), Some("pve2")),
                (Start("pve1"), Some("pve2")),
                (Stop("pve2"), None),
                (Run(5), Some("pve1")),
                (Start("pve2"), Some("pve1")),
                (Quorum("pve1", false), Some("pve1")),
                // pve3 saw pve1's last renewal first (pve2 restarted just now), so
                // its view of the lock's age runs out first.
                (Run(200), Some("pve3")),
            ],
        ),
    ];
    for (name, steps) in &cases {
        scenario(name, steps);
    }
}

/// The takeover after a kill -9 comes no sooner than the lifetime after the last
/// renewal and no later than two polls after that (one to notice the last change, one
/// to notice the lifetime has passed) plus pmxcfs's strictly-greater check, for
/// production timing and for the short timing the integration tests use.
#[test]
fn takeover_after_kill_is_bounded_by_lifetime_plus_two_polls() {
    for config in [production as fn(&str) -> LeaseConfig, short] {
        let c = config("x");
        // Kill at every offset within a renewal interval.
        for offset in 0..c.renew_interval.as_secs() {
            let mut sim = Sim::new(config);
            sim.start("pve1");
            sim.start("pve2");
            sim.run(5 * c.renew_interval.as_secs() + offset);
            assert_eq!(sim.writer(), Some("pve1"));
            let killed_at = sim.clock.elapsed();
            sim.apply(&Kill("pve1"));
            sim.run(c.lifetime.as_secs() + 4 * c.poll_interval.as_secs() + 2);
            let took_over = sim
                .first_writer_after(killed_at, "pve1")
                .expect("pve2 takes over");
            // pve1 acquired at t=1 s and renewed every renew_interval since.
            let (killed, every) = (killed_at.as_secs(), c.renew_interval.as_secs());
            let renewed = Duration::from_secs(1 + (killed - 1) / every * every);
            assert!(
                took_over > renewed + c.lifetime,
                "{c:?} offset {offset}: took over at {took_over:?}, renewed at {renewed:?}"
            );
            assert!(
                took_over <= renewed + c.lifetime + 2 * c.poll_interval + Duration::from_secs(1),
                "{c:?} offset {offset}: took over at {took_over:?}, renewed at {renewed:?}"
            );
        }
    }
}

#[test]
fn terms_count_leadership_changes_and_survive_a_restart() {
    let mut sim = Sim::new(production);
    sim.start("pve1");
    sim.start("pve2");
    sim.run(1);
    let first = sim.lease("pve1").leader().cloned().unwrap();
    assert_eq!(first.node, "pve1");
    assert_eq!(first.term, 1);
    assert_eq!(first.since, START_UNIX + 1);
    assert_eq!(sim.lease("pve2").recorded_leader().unwrap(), Some(first));

    sim.apply(&Stop("pve1"));
    sim.run(5);
    let second = sim.lease("pve2").leader().cloned().unwrap();
    assert_eq!((second.node.as_str(), second.term), ("pve2", 2));

    // pve2's agent restarts while holding: same term, same start.
    sim.apply(&Kill("pve2"));
    sim.run(3);
    sim.start("pve2");
    sim.run(1);
    assert_eq!(sim.lease("pve2").leader(), Some(&second));
}

#[test]
fn the_write_gate_closes_by_itself_when_ticks_stop() {
    let clock = ManualClock::new(START_UNIX);
    let fs = FakePmxcfs::new(clock.clone());
    let mut lease = Lease::new(LeaseConfig::new("pve1"), fs.node("pve1"), clock.clone()).unwrap();
    let gate = lease.gate();
    assert!(!gate.may_write(clock.now()));
    assert!(matches!(lease.tick(), Event::Acquired(_)));
    assert!(gate.may_write(clock.now()));
    // No tick at all (say the renewal hangs inside pmxcfs): the margin still holds.
    clock.advance(Duration::from_secs(59));
    assert!(gate.may_write(clock.now()));
    clock.advance(Duration::from_secs(1));
    assert!(!gate.may_write(clock.now()));
    assert!(lease.is_leader(), "the role changes only on the next tick");
}

#[test]
fn renew_failures_report_the_time_left_then_step_down() {
    let clock = ManualClock::new(START_UNIX);
    let fs = FakePmxcfs::new(clock.clone());
    let mut lease = Lease::new(LeaseConfig::new("pve1"), fs.node("pve1"), clock.clone()).unwrap();
    lease.tick();
    fs.set_quorate("pve1", false);
    clock.advance(Duration::from_secs(10));
    let event = lease.tick();
    assert_eq!(
        event.to_string(),
        "renewing the lock failed: utime /etc/pve/priv/lock/pve-gitops: permission denied; \
         API writes stop in 50s without a renewal"
    );
    clock.advance(Duration::from_secs(50));
    match lease.tick() {
        Event::SteppedDown {
            identity,
            reason: StepDown::Fenced { .. },
        } => assert_eq!(identity.node, "pve1"),
        other => panic!("expected a fenced step-down, got {other:?}"),
    }
    assert!(!lease.is_leader());
    assert_eq!(lease.next_tick_in(), Duration::from_secs(5));
}

#[test]
fn a_vanished_lock_stops_the_leader_at_its_next_renewal() {
    let clock = ManualClock::new(START_UNIX);
    let fs = FakePmxcfs::new(clock.clone());
    let mut lease = Lease::new(LeaseConfig::new("pve1"), fs.node("pve1"), clock.clone()).unwrap();
    lease.tick();
    fs.remove(Path::new(LeaseConfig::LOCK_PATH));
    clock.advance(Duration::from_secs(10));
    assert!(matches!(
        lease.tick(),
        Event::SteppedDown {
            reason: StepDown::LockGone(_),
            ..
        }
    ));
    assert!(!lease.may_write(clock.now()));
    // Next poll: the lock is free, so it is taken again in a new term.
    clock.advance(Duration::from_secs(5));
    match lease.tick() {
        Event::Acquired(id) => assert_eq!(id.term, 2),
        other => panic!("expected a new acquire, got {other:?}"),
    }
}

#[test]
fn a_follower_of_a_live_leader_only_stats() {
    let mut sim = Sim::new(production);
    sim.start("pve1");
    sim.start("pve2");
    sim.run(600);
    // Besides stat, pve2 tried to renew only until it saw pve1's lock change once.
    assert!(
        sim.fs.calls("pve2", "utime") <= 3,
        "{}",
        sim.fs.calls("pve2", "utime")
    );
    assert_eq!(sim.fs.calls("pve2", "mkdir"), 0);
    assert_eq!(sim.fs.calls("pve2", "stat"), 120);
    // Acquired at t=1 s, renewed at 11, 21, … 591.
    assert_eq!(sim.fs.calls("pve1", "utime"), 59);
}

#[test]
fn release_is_a_no_op_for_followers_and_reports_a_refused_rmdir() {
    let clock = ManualClock::new(START_UNIX);
    let fs = FakePmxcfs::new(clock.clone());
    let mut follower =
        Lease::new(LeaseConfig::new("pve2"), fs.node("pve2"), clock.clone()).unwrap();
    let mut leader = Lease::new(LeaseConfig::new("pve1"), fs.node("pve1"), clock.clone()).unwrap();
    leader.tick();
    follower.tick();
    follower.release().unwrap();
    assert_eq!(
        fs.holder(Path::new(LeaseConfig::LOCK_PATH)).as_deref(),
        Some("pve1")
    );

    fs.set_quorate("pve1", false);
    let err = leader.release().unwrap_err();
    assert_eq!(err.op, "rmdir");
    assert!(
        !leader.may_write(clock.now()),
        "writes stop even if rmdir fails"
    );
    assert!(!leader.is_leader());
}
