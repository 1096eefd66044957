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
//! A second test follows a git repository asked for its head only once an hour: the
//! follower that takes over must ask again before it applies, or it would apply the
//! older head it heard of while following. A third kills the leader during a git
//! outage: the follower that takes over applies and publishes nothing until the remote
//! answers, then builds on what its predecessor applied and published.
//!
//! The agents and the emulation they share are [`support::agents`]: the emulation is
//! served from this test process, the agents only see their mounts, and the lease
//! timing is scaled down (lifetime 2 s, self-fence margin 1 s, renew 250 ms).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pmxcfs_emu::fuse_ready_or_skip;
use pve_gitops::daemon::leader::monotonic_ns;
use pve_gitops::lease::LeaderIdentity;
use serde_json::Value;
use support::agents::{AgentConfig, Cluster, Source, NODES};
use support::corpus::{age_identity, CLUSTER_DIR};
use support::fakepve::FakePve;
use support::git::GitRemote;

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

/// Starts `node`'s agent and waits until its lease has looked at the lock.
fn start(c: &mut Cluster, node: &'static str) {
    c.start(node);
    until(c, Duration::from_secs(10), &format!("{node} starts"), |c| {
        let log = c.log(node).expect("started");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("leadership: ")
    });
}

/// The apply windows of every node, sorted by start.
fn windows(c: &Cluster) -> Vec<(u64, u64, String)> {
    let mut all = Vec::new();
    for node in NODES {
        let text = std::fs::read_to_string(c.apply_log(node)).unwrap_or_default();
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
fn until(c: &Cluster, timeout: Duration, what: &str, done: impl Fn(&Cluster) -> bool) -> Duration {
    let start = Instant::now();
    while !done(c) {
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n{}",
                c.log_tails(15)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The lock's owner; there is never more than one lock.
fn holder(c: &Cluster) -> Option<String> {
    let locks = c.emu.locks();
    assert!(locks.len() <= 1, "{locks:?}");
    c.holder()
}

/// Waits until a node other than `old` holds the lock and has applied since
/// `since_ns`; returns it and how long that took.
fn new_leader(c: &Cluster, old: &str, since_ns: u64, timeout: Duration) -> (String, Duration) {
    let took = until(
        c,
        timeout,
        &format!("a leader other than {old} applies"),
        |c| match holder(c) {
            Some(h) if h != old => windows(c)
                .iter()
                .any(|(start, _, n)| *n == h && *start > since_ns),
            _ => false,
        },
    );
    (holder(c).expect("held"), took)
}

/// The current leader, once it holds the lock and applies.
fn leader(c: &Cluster) -> String {
    let since = monotonic_ns();
    new_leader(c, "", since, TAKEOVER).0
}

fn record(c: &Cluster) -> LeaderIdentity {
    let bytes =
        std::fs::read(c.mount("pve1").join("pve-gitops/leader.json")).expect("leader record");
    LeaderIdentity::from_record(&bytes).expect("leader record parses")
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

/// fakepve at time scale 0 with template 9000 on pve1, and every node's token file
/// (`None`: fakepve cannot run here, and the test is skipped).
async fn api() -> Option<(FakePve, BTreeMap<&'static str, String>)> {
    let pve = FakePve::with_template().await?;
    let token = format!("{}={}\n", pve.info.token_id, pve.info.token_secret);
    let tokens = NODES.iter().map(|n| (*n, token.clone())).collect();
    Some((pve, tokens))
}

/// Agents following `remote`'s cluster directory, asking it for the head once an hour
/// (see [`Cluster::set_git_interval`]), with the age identity of the test data.
fn following(
    dir: &std::path::Path,
    pve: &FakePve,
    tokens: &BTreeMap<&'static str, String>,
    remote: &GitRemote,
) -> Cluster {
    let identity = age_identity(dir);
    Cluster::new(
        dir,
        AgentConfig {
            source: Source::Repo {
                url: remote.url(),
                identity,
                git_interval: "1h",
            },
            api_url: pve.base_url(),
            ca_file: pve.info.ca_file.clone(),
        },
        tokens,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_failovers_never_two_writers_and_no_duplicates() {
    if !fuse_ready_or_skip() {
        return;
    }
    let Some((pve, tokens)) = api().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
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

    let mut c = Cluster::new(
        dir.path(),
        AgentConfig {
            source: Source::Dir(manifests.clone()),
            api_url: pve.base_url(),
            ca_file: pve.info.ca_file.clone(),
        },
        &tokens,
    );
    for node in NODES {
        start(&mut c, node);
    }

    let mut leader = leader(&c);
    let mut changes = 0;
    for round in 0..CHANGES {
        // A pushed change just before the failover: applied once, by whoever leads.
        push(format!("during-{round}"));
        let since = monotonic_ns();
        let old: &'static str = NODES.into_iter().find(|n| *n == leader).unwrap();
        let (next, took): (String, Duration) = match round % 4 {
            0 => {
                c.kill(old);
                let next = new_leader(&c, old, since, TAKEOVER);
                start(&mut c, old);
                next
            }
            1 => {
                c.terminate(old).unwrap();
                let next = new_leader(&c, old, since, Duration::from_secs(15));
                start(&mut c, old);
                next
            }
            2 => {
                c.emu.set_quorate(old, false);
                let next = new_leader(&c, old, since, TAKEOVER);
                c.emu.set_quorate(old, true);
                next
            }
            _ => {
                // A follower without quorum cannot take over: the third node must.
                let deaf = NODES.into_iter().find(|n| *n != old).unwrap();
                c.emu.set_quorate(deaf, false);
                c.terminate(old).unwrap();
                let next = new_leader(&c, old, since, Duration::from_secs(15));
                assert_ne!(next.0, deaf, "a node without quorum took the lock");
                c.emu.set_quorate(deaf, true);
                start(&mut c, old);
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

    let windows = windows(&c);
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
    let record = record(&c);
    assert_eq!(record.node, leader);
    assert!(
        record.term > CHANGES as u64,
        "term {} after {CHANGES} changes",
        record.term
    );
}

/// The follower that takes over asks the remote for the head before it applies: a head
/// pushed while it followed, which the old leader never saw, is applied at once even
/// though neither agent would ask the remote again for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_applies_the_newest_head_not_the_one_it_heard_of_while_following() {
    if !fuse_ready_or_skip() {
        return;
    }
    let Some((pve, tokens)) = api().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    let remote = GitRemote::new();
    remote.write(&format!("{CLUSTER_DIR}/0-header.yaml"), HEADER);
    remote.write(&format!("{CLUSTER_DIR}/first.yaml"), vm("first"));
    let first = remote.commit("first");
    remote.push("main");

    let mut c = following(dir.path(), &pve, &tokens, &remote);
    start(&mut c, "pve1");
    let old = leader(&c);
    assert_eq!(old, "pve1");
    start(&mut c, "pve2");
    until(
        &c,
        Duration::from_secs(20),
        "pve2 fetches the first head",
        |c| c.fetched("pve2").as_deref() == Some(first.as_str()),
    );
    assert_eq!(
        guest_names(&pve).await,
        BTreeMap::from([("first".into(), 1)])
    );

    // Pushed while pve2 follows; nobody asks the remote for an hour.
    remote.write(&format!("{CLUSTER_DIR}/second.yaml"), vm("second"));
    let second = remote.commit("second");
    remote.push("main");
    let since = monotonic_ns();
    c.kill("pve1");
    let (next, took) = new_leader(&c, "pve1", since, TAKEOVER);
    assert_eq!(next, "pve2");
    eprintln!("pve2 took over in {took:?}");
    assert_eq!(c.fetched("pve2").as_deref(), Some(second.as_str()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = guest_names(&pve).await;
        if names.contains_key("second") {
            assert_eq!(
                names,
                BTreeMap::from([("first".into(), 1), ("second".into(), 1)])
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new leader did not apply the pushed head: {names:?}\n{}",
            c.log_tails(15)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A VM with a fixed vmid and `memory`, stopped (so a memory change is applied at once).
fn sized(memory: &str) -> String {
    format!(
        "apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: {{ name: sized }}
spec:
  node: pve1
  vmid: 200
  clone: {{ template: 9000 }}
  memory: {memory}
  powerState: stopped
  network: [ {{ bridge: vmbr0 }} ]
"
    )
}

/// VM 200's memory as fakepve holds it.
async fn memory(pve: &FakePve) -> Option<Value> {
    pve.control
        .vm(200)
        .await
        .map(|vm| vm["config"]["memory"].clone())
}

/// How many lines of `node`'s current log contain `text`.
fn logged(c: &Cluster, node: &str, text: &str) -> usize {
    let log = c.log(node).expect("runs");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(text)
        .count()
}

/// A follower that takes over while the remote is unreachable neither applies the
/// older head it heard of while following nor publishes on top of the status it kept
/// from an earlier term of its own: both are older than what its predecessor applied.
/// Once the remote answers, it builds on the published status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_during_a_git_outage_rolls_nothing_back() {
    if !fuse_ready_or_skip() {
        return;
    }
    let Some((pve, tokens)) = api().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The last status commit's message; empty before the first.
    let status = |remote: &GitRemote| remote.last_message("pve-gitops/status").unwrap_or_default();

    let remote = GitRemote::new();
    remote.write(&format!("{CLUSTER_DIR}/0-header.yaml"), HEADER);
    remote.write(&format!("{CLUSTER_DIR}/sized.yaml"), sized("1G"));
    let first = remote.commit("first");
    remote.push("main");
    let mut c = following(dir.path(), &pve, &tokens, &remote);

    // pve2's first term: it applies `first` and keeps that status in its state directory.
    start(&mut c, "pve2");
    assert_eq!(leader(&c), "pve2");
    until(&c, Duration::from_secs(20), "pve2 applies first", |_| {
        status(&remote).contains(&format!("Applied-Commit: {first}"))
    });
    // pve1 (asking the remote every pass) takes over; pve2 comes back as a follower
    // that asks only once an hour: it knows `first`, nothing later.
    c.set_git_interval("0s");
    start(&mut c, "pve1");
    let since = monotonic_ns();
    c.terminate("pve2").unwrap();
    assert_eq!(new_leader(&c, "pve2", since, TAKEOVER).0, "pve1");
    c.set_git_interval("1h");
    start(&mut c, "pve2");
    until(&c, Duration::from_secs(20), "pve2 fetches first", |c| {
        c.fetched("pve2").as_deref() == Some(first.as_str())
    });

    // pve1 applies `second`, then rejects the invalid `third`.
    remote.write(&format!("{CLUSTER_DIR}/sized.yaml"), sized("2G"));
    let second = remote.commit("second");
    remote.push("main");
    until(&c, Duration::from_secs(20), "pve1 applies second", |_| {
        status(&remote).contains(&format!("Applied-Commit: {second}"))
    });
    remote.write(&format!("{CLUSTER_DIR}/broken.yaml"), "kind: [\n");
    let third = remote.commit("third");
    remote.push("main");
    until(&c, Duration::from_secs(20), "pve1 rejects third", |_| {
        let m = status(&remote);
        m.contains(&format!("Applied-Commit: {second}"))
            && m.contains(&format!("Rejected-Commit: {third}"))
    });
    assert_eq!(memory(&pve).await, Some(Value::from("2048")));

    // The remote goes away, and so does pve1.
    let away = remote.bare.with_extension("away");
    std::fs::rename(&remote.bare, &away).unwrap();
    let since = monotonic_ns();
    c.kill("pve1");
    // As leader it asks the remote on every pass until it answers (following, never).
    // The fourth failed ask comes after the third pass has ended, warnings and all.
    until(&c, TAKEOVER, "pve2 leads through the outage", |c| {
        holder(c).as_deref() == Some("pve2")
            && logged(c, "pve2", "remote unreachable while fetching branch `main`") >= 4
    });
    assert_eq!(memory(&pve).await, Some(Value::from("2048")), "rolled back");
    assert!(
        !windows(&c)
            .iter()
            .any(|(start, _, n)| n == "pve2" && *start > since),
        "pve2 applied during the outage:\n{}",
        c.log_tails(15)
    );
    for warning in [
        "has not answered since this agent took over",
        "cannot read the last published status",
    ] {
        assert!(logged(&c, "pve2", warning) >= 3, "{}", c.log_tails(15));
    }

    // The remote answers again: pve2 takes up the published status and rejects `third`
    // on top of what pve1 applied, not on top of its own old `first`.
    std::fs::rename(&away, &remote.bare).unwrap();
    until(&c, Duration::from_secs(20), "pve2 rejects third", |c| {
        logged(c, "pve2", "revision rejected") >= 1
    });
    let last = status(&remote);
    assert!(
        last.contains(&format!("Applied-Commit: {second}"))
            && last.contains(&format!("Rejected-Commit: {third}")),
        "expected the reject of {third} on top of {second}:\n{last}"
    );
    assert_eq!(memory(&pve).await, Some(Value::from("2048")));
}
