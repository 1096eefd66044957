//! Leader election end to end: three real `pve-gitops run` processes, one per node
//! mount of the pmxcfs emulation, against one fakepve, through 20 forced leadership
//! changes (kill -9, SIGTERM, quorum loss on the leader, and a follower without quorum
//! while the leader stops).
//!
//! Each agent appends its apply windows (`start_ns end_ns node`, CLOCK_MONOTONIC) to a
//! file. At the end no two windows of different nodes may overlap, leadership must
//! have moved at least 20 times (in the windows and in the leader record's term), and
//! every VM pushed during the failovers must exist exactly once.
//!
//! The emulation is served from this test process (the `pmxcfs-emu` library, as the
//! `pmxcfs-emu` binary serves it); the agents only see their mounts. Timing is scaled
//! down: lifetime 2 s, self-fence margin 1 s, renew 250 ms (production: 120/60/10 s).

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pmxcfs_emu::{fuse_ready_or_skip, Emulator, Mount};
use pve_gitops::daemon::leader::monotonic_ns;
use pve_gitops::lease::LeaderIdentity;
use serde_json::Value;
use support::fakepve::{FakePve, Options};

const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
const LIFETIME: Duration = Duration::from_secs(2);
/// The bound for a takeover after kill -9 or quorum loss: lifetime + 15 s.
const TAKEOVER: Duration = Duration::from_secs(17);
const CHANGES: usize = 20;

const HEADER: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
";

/// A VM without a vmid: the leader allocates one, so two writers would make two VMs.
fn vm(name: &str) -> String {
    format!(
        "apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: {{ name: {name} }}
spec:
  node: pve1
  clone: {{ template: 9000 }}
  memory: 1G
  network: [ {{ bridge: vmbr0 }} ]
"
    )
}

struct Agent {
    child: Child,
    log: PathBuf,
}

struct Cluster {
    /// Agents first: they are killed before the mounts go away.
    agents: BTreeMap<&'static str, Agent>,
    mounts: BTreeMap<&'static str, Mount>,
    emu: Emulator,
    dir: tempfile::TempDir,
    api_url: String,
    ca_file: PathBuf,
    starts: usize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for agent in self.agents.values_mut() {
            let _ = agent.child.kill();
            let _ = agent.child.wait();
        }
    }
}

impl Cluster {
    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    fn apply_log(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.windows"))
    }

    /// Starts `node`'s agent and waits until its lease has looked at the lock.
    fn start(&mut self, node: &'static str) {
        self.starts += 1;
        let log = self.dir.path().join(format!("{node}-{}.log", self.starts));
        let child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
            .arg("run")
            .arg(self.manifests())
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("{node}-state")))
            .args(["--api-url", &self.api_url])
            .arg("--token-file")
            .arg(self.dir.path().join("token"))
            .arg("--ca-file")
            .arg(&self.ca_file)
            .args(["--vmlist", "/nonexistent/.vmlist"])
            .args(["--interval", "150ms", "--node", node])
            .arg("--pmxcfs-root")
            .arg(self.mounts[node].path())
            .args(["--lock-lifetime", "2s", "--lock-margin", "1s"])
            .args(["--lock-renew", "250ms"])
            .arg("--apply-log")
            .arg(self.apply_log(node))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("pve-gitops runs");
        self.agents.insert(node, Agent { child, log });
        self.until(Duration::from_secs(10), &format!("{node} starts"), |c| {
            let text = std::fs::read_to_string(&c.agents[node].log).unwrap_or_default();
            text.contains("leadership: ")
        });
    }

    fn kill(&mut self, node: &str) {
        let mut agent = self.agents.remove(node).expect("agent runs");
        agent.child.kill().unwrap();
        agent.child.wait().unwrap();
    }

    /// SIGTERM, and wait for the agent to exit (it releases the lock first).
    fn terminate(&mut self, node: &str) {
        let mut agent = self.agents.remove(node).expect("agent runs");
        let pid = agent.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = agent.child.try_wait().unwrap() {
                assert!(status.success(), "{node} exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "{node} ignores SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lock's owner as the emulation knows it.
    fn holder(&self) -> Option<String> {
        let locks = self.emu.locks();
        assert!(locks.len() <= 1, "{locks:?}");
        locks.into_iter().next().map(|l| l.owner)
    }

    fn windows(&self) -> Vec<(u64, u64, String)> {
        let mut all = Vec::new();
        for node in NODES {
            let text = std::fs::read_to_string(self.apply_log(node)).unwrap_or_default();
            for line in text.lines() {
                let parts: Vec<&str> = line.split(' ').collect();
                let [start, end, who] = parts.as_slice() else {
                    panic!("bad apply-log line {line:?}");
                };
                assert_eq!(*who, node, "{line}");
                all.push((
                    start.parse().unwrap(),
                    end.parse().unwrap(),
                    who.to_string(),
                ));
            }
        }
        all.sort();
        all
    }

    /// Polls `done` every 20 ms until it holds; panics with `what` after `timeout`.
    fn until(&self, timeout: Duration, what: &str, done: impl Fn(&Cluster) -> bool) -> Duration {
        let start = Instant::now();
        while !done(self) {
            if start.elapsed() > timeout {
                let logs: String = self
                    .agents
                    .iter()
                    .map(|(n, a)| {
                        let text = std::fs::read_to_string(&a.log).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(15).collect();
                        format!(
                            "--- {n}\n{}\n",
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        )
                    })
                    .collect();
                panic!("timed out after {timeout:?} waiting for: {what}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// Waits until a node other than `old` holds the lock and has applied since
    /// `since_ns`; returns it and how long that took.
    fn new_leader(&self, old: &str, since_ns: u64, timeout: Duration) -> (String, Duration) {
        let took = self.until(
            timeout,
            &format!("a leader other than {old} applies"),
            |c| match c.holder() {
                Some(h) if h != old => c
                    .windows()
                    .iter()
                    .any(|(start, _, n)| *n == h && *start > since_ns),
                _ => false,
            },
        );
        (self.holder().expect("held"), took)
    }

    /// The current leader, once it holds the lock and applies.
    fn leader(&self) -> String {
        let since = monotonic_ns();
        self.new_leader("", since, TAKEOVER).0
    }

    fn record(&self) -> LeaderIdentity {
        let bytes = std::fs::read(self.mounts["pve1"].path().join("pve-gitops/leader.json"))
            .expect("leader record");
        LeaderIdentity::from_record(&bytes).expect("leader record parses")
    }
}

/// Non-template guests by name: how many of each.
async fn guest_names(pve: &FakePve) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for g in pve.control.state().await["guests"].as_array().unwrap() {
        if g["template"] != Value::Bool(true) {
            *names
                .entry(g["name"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_failovers_never_two_writers_and_no_duplicates() {
    if !fuse_ready_or_skip() {
        return;
    }
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    pve.control.create_template(9000, "pve1", "local-lvm").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("token"),
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("0-header.yaml"), HEADER).unwrap();
    let mut declared = Vec::new();
    let mut push = |name: String| {
        std::fs::write(manifests.join(format!("{name}.yaml")), vm(&name)).unwrap();
        declared.push(name);
    };
    for i in 0..3 {
        push(format!("base-{i}"));
    }

    let emu = Emulator::new(LIFETIME);
    let mut mounts = BTreeMap::new();
    for node in NODES {
        let path = dir.path().join(format!("mnt-{node}"));
        std::fs::create_dir(&path).unwrap();
        mounts.insert(node, emu.mount(node, &path).unwrap());
    }
    let mut c = Cluster {
        agents: BTreeMap::new(),
        mounts,
        emu,
        api_url: pve.base_url(),
        ca_file: pve.info.ca_file.clone(),
        dir,
        starts: 0,
    };
    for node in NODES {
        c.start(node);
    }

    let mut leader = c.leader();
    let mut changes = 0;
    for round in 0..CHANGES {
        // A pushed change just before the failover: applied once, by whoever leads.
        push(format!("during-{round}"));
        let since = monotonic_ns();
        let old: &'static str = NODES.into_iter().find(|n| *n == leader).unwrap();
        let (next, took): (String, Duration) = match round % 4 {
            0 => {
                c.kill(old);
                let next = c.new_leader(old, since, TAKEOVER);
                c.start(old);
                next
            }
            1 => {
                c.terminate(old);
                let next = c.new_leader(old, since, Duration::from_secs(15));
                c.start(old);
                next
            }
            2 => {
                c.emu.set_quorate(old, false);
                let next = c.new_leader(old, since, TAKEOVER);
                c.emu.set_quorate(old, true);
                next
            }
            _ => {
                // A follower without quorum cannot take over: the third node must.
                let deaf = NODES.into_iter().find(|n| *n != old).unwrap();
                c.emu.set_quorate(deaf, false);
                c.terminate(old);
                let next = c.new_leader(old, since, Duration::from_secs(15));
                assert_ne!(next.0, deaf, "a node without quorum took the lock");
                c.emu.set_quorate(deaf, true);
                c.start(old);
                next
            }
        };
        eprintln!("round {round}: {old} -> {next} in {took:?}");
        leader = next;
        changes += 1;
    }

    // Converged: every declared VM exactly once, nothing else.
    let expected: BTreeMap<String, usize> = declared.iter().map(|n| (n.clone(), 1)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = guest_names(&pve).await;
        if names == expected {
            break;
        }
        assert!(names.values().all(|n| *n == 1), "duplicate VMs: {names:?}");
        assert!(Instant::now() < deadline, "not converged: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let windows = c.windows();
    for pair in windows.windows(2) {
        let ((s1, e1, n1), (s2, _, n2)) = (&pair[0], &pair[1]);
        assert!(s1 <= e1, "window ends before it starts: {:?}", pair[0]);
        // Sorted by start: a window that starts before the previous one ended overlaps
        // it. (Overlaps with earlier windows imply one with the direct predecessor,
        // since windows of one node never overlap each other.)
        if n1 != n2 {
            assert!(s2 > e1, "{n1} and {n2} applied at the same time: {pair:?}");
        }
    }
    let mut running_end = 0u64;
    let mut running_node = String::new();
    for (s, e, n) in &windows {
        if *n != running_node {
            assert!(
                *s > running_end,
                "{n} started applying at {s} while {running_node} applied until {running_end}"
            );
        }
        if *e >= running_end {
            running_end = *e;
            running_node = n.clone();
        }
    }
    let switches = windows.windows(2).filter(|p| p[0].2 != p[1].2).count();
    assert!(
        switches >= CHANGES,
        "the applying node changed only {switches} times"
    );
    assert_eq!(changes, CHANGES);
    let record = c.record();
    assert_eq!(record.node, leader);
    assert!(
        record.term > CHANGES as u64,
        "term {} after {CHANGES} changes",
        record.term
    );
}
