//! The lease on real FUSE mounts of the pmxcfs emulation (tests/pmxcfs), one mount per
//! node, driven the way the daemon drives it: each lease ticks when its interval says.
//! After every tick the driver checks that at most one node may write and that this
//! node owns the lock in the emulation.
//!
//! Timing is scaled down (lifetime 3 s, margin 1.5 s, renew 250 ms, poll 100 ms), the
//! proportions of production (120 s, 60 s, 10 s, 5 s); the unit tests in
//! `src/lease/tests.rs` show the same logic at production timing on a simulated clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pmxcfs_emu::{fuse_ready_or_skip, Emulator, Mount};
use pve_gitops::lease::{Event, Lease, LeaseConfig, StdLockFs, SystemClock};

const LIFETIME: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_millis(1500);
const RENEW: Duration = Duration::from_millis(250);
const POLL: Duration = Duration::from_millis(100);

fn config(node: &str, mount: &Path) -> LeaseConfig {
    LeaseConfig {
        renew_interval: RENEW,
        poll_interval: POLL,
        lifetime: LIFETIME,
        fence_margin: MARGIN,
        ..LeaseConfig::under_root(node, mount)
    }
}

type FuseLease = Lease<StdLockFs, SystemClock>;

struct Agent {
    lease: FuseLease,
    due: Instant,
}

struct Cluster {
    emu: Emulator,
    mounts: BTreeMap<&'static str, Mount>,
    agents: BTreeMap<&'static str, Agent>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Option<Self> {
        if !fuse_ready_or_skip() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let emu = Emulator::new(LIFETIME);
        let mut mounts = BTreeMap::new();
        for node in ["pve1", "pve2"] {
            let path = dir.path().join(node);
            std::fs::create_dir(&path).unwrap();
            mounts.insert(node, emu.mount(node, &path).unwrap());
        }
        Some(Cluster {
            emu,
            mounts,
            agents: BTreeMap::new(),
            _dir: dir,
        })
    }

    fn mount(&self, node: &str) -> PathBuf {
        self.mounts[node].path().to_path_buf()
    }

    fn lease(&self, node: &str) -> FuseLease {
        Lease::new(config(node, &self.mount(node)), StdLockFs, SystemClock).unwrap()
    }

    fn start(&mut self, node: &'static str) {
        let lease = self.lease(node);
        self.agents.insert(
            node,
            Agent {
                lease,
                due: Instant::now(),
            },
        );
    }

    /// kill -9: the agent is gone without releasing.
    fn kill(&mut self, node: &str) {
        self.agents.remove(node).expect("agent runs");
    }

    /// SIGTERM: release, then exit.
    fn stop(&mut self, node: &str) {
        let mut agent = self.agents.remove(node).expect("agent runs");
        agent.lease.release().unwrap();
    }

    fn writer(&self) -> Option<&'static str> {
        let now = Instant::now();
        let writers: Vec<&'static str> = self
            .agents
            .iter()
            .filter(|(_, a)| a.lease.may_write(now))
            .map(|(n, _)| *n)
            .collect();
        assert!(writers.len() <= 1, "two writers: {writers:?}");
        if let Some(writer) = writers.first() {
            let owners: Vec<String> = self.emu.locks().into_iter().map(|l| l.owner).collect();
            assert_eq!(
                owners,
                [*writer],
                "{writer} may write without owning the lock"
            );
        }
        writers.first().copied()
    }

    /// Ticks due agents until `done` holds (returns how long that took) or `timeout`.
    fn run_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Cluster) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if done(self) {
                return Some(start.elapsed());
            }
            if start.elapsed() > timeout {
                return None;
            }
            let now = Instant::now();
            for agent in self.agents.values_mut() {
                if agent.due <= now {
                    agent.lease.tick();
                    agent.due = Instant::now() + agent.lease.next_tick_in();
                }
            }
            // Pacing, like the daemon's timer: wake for the next due tick or check.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs for `period`, asserting `expected` may write the whole time.
    fn hold(&mut self, period: Duration, expected: Option<&str>) {
        let broken = self.run_until(period, |c| c.writer() != expected);
        assert_eq!(broken, None, "expected {expected:?} to write throughout");
    }
}

fn leads(node: &'static str) -> impl Fn(&Cluster) -> bool {
    move |c| c.writer() == Some(node)
}

/// pve1 leads, pve2 follows.
fn pve1_leading() -> Option<Cluster> {
    let mut c = Cluster::new()?;
    c.start("pve1");
    c.run_until(Duration::from_secs(2), leads("pve1"))
        .expect("pve1 acquires");
    c.start("pve2");
    c.hold(LIFETIME / 2, Some("pve1"));
    Some(c)
}

#[test]
fn after_a_kill_the_other_node_leads_within_lifetime_plus_margin() {
    let Some(mut c) = pve1_leading() else { return };
    c.kill("pve1");
    let took = c
        .run_until(LIFETIME + MARGIN + Duration::from_secs(2), leads("pve2"))
        .expect("pve2 takes over");
    assert!(took <= LIFETIME + MARGIN, "took {took:?}");
    assert!(
        took >= LIFETIME - RENEW,
        "took {took:?}: sooner than the lifetime allows"
    );
    let leader = c.agents["pve2"].lease.leader().cloned().unwrap();
    assert_eq!((leader.node.as_str(), leader.term), ("pve2", 2));
    // The record on the shared filesystem, read through the other node's mount.
    let record = std::fs::read(c.mount("pve1").join("pve-gitops/leader.json")).unwrap();
    assert_eq!(record, leader.to_record());
}

#[test]
fn after_a_clean_release_the_other_node_leads_at_once() {
    let Some(mut c) = pve1_leading() else { return };
    c.stop("pve1");
    assert!(c.emu.locks().is_empty(), "rmdir released the lock");
    let took = c
        .run_until(LIFETIME, leads("pve2"))
        .expect("pve2 takes over");
    // Not a lifetime-based takeover: the next polls find the lock gone.
    assert!(took < LIFETIME / 3, "took {took:?}");
}

#[test]
fn an_agent_restarted_on_the_holding_node_resumes_by_renewing() {
    let Some(mut c) = pve1_leading() else { return };
    let before = c.agents["pve1"].lease.leader().cloned().unwrap();
    c.kill("pve1");
    let mut restarted = c.lease("pve1");
    match restarted.tick() {
        Event::Resumed(id) => assert_eq!(id, before),
        other => panic!("expected to resume, got {other:?}"),
    }
    assert!(restarted.may_write(Instant::now()));
    // The same lease on pve2's mount is someone else's lock there.
    let mut other = c.lease("pve2");
    assert!(matches!(other.tick(), Event::Following { .. }));
}

#[test]
fn quorum_loss_on_the_leader_fences_it_and_the_quorate_node_takes_over() {
    let Some(mut c) = pve1_leading() else { return };
    let gate = c.agents["pve1"].lease.gate();
    let lost_at = Instant::now();
    c.emu.set_quorate("pve1", false);
    // No renewal can succeed from here on, so the gate's deadline is final.
    let deadline = gate.deadline().expect("pve1 leads");
    assert!(
        deadline <= lost_at + MARGIN,
        "writes allowed until {:?} after the loss",
        deadline - lost_at
    );
    c.run_until(LIFETIME, |c| c.writer().is_none())
        .expect("pve1 stops writing");
    c.run_until(LIFETIME + MARGIN + Duration::from_secs(2), leads("pve2"))
        .expect("pve2 takes over");
    let took = lost_at.elapsed();
    assert!(took <= LIFETIME + MARGIN, "took {took:?}");
    assert!(!gate.may_write(Instant::now()));

    c.emu.set_quorate("pve1", true);
    c.hold(LIFETIME, Some("pve2"));
    assert!(!c.agents["pve1"].lease.is_leader());
}

#[test]
fn quorum_loss_on_a_follower_changes_nothing() {
    let Some(mut c) = pve1_leading() else { return };
    c.emu.set_quorate("pve2", false);
    c.hold(LIFETIME + MARGIN, Some("pve1"));
}
