//! Crash consistency: `pve-gitops run` is killed with SIGKILL at a different point of a
//! 20-VM apply in every trial (after the N-th write request fakepve has seen: mid-clone,
//! after a clone before its config, mid-resize, before or during a start), then started
//! again. Each time the cluster must converge to exactly the 20 declared VMs: none
//! missing, none twice (by name), none left locked, every extra VM the agent owns reported
//! in the status, and the status file telling the truth (20 VMs, their vmids as fakepve
//! has them).
//!
//! One fakepve serves every trial (`POST /reset` between them). Clones and starts run on
//! a slow RBD storage so tasks take real time and a kill can land inside one.
//! `CRASH_TRIALS` sets the number of trials (default 30), `CRASH_SEED` the seed of the
//! kill points.

#[macro_use]
mod support;

use pve_gitops::report::status::ClusterStatus;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::control::text;
use support::fakepve::{FakePve, Options};

/// 16 members with declared vmids on three nodes, four VMs whose vmid the agent allocates.
const MANIFESTS: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: prerequisites }
spec: { templates: [9000], bridges: [vmbr0] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: { name: web }
spec:
  replicas: 16
  vmidStart: 2001
  nodes: [pve1, pve2, pve3]
  template:
    clone: { template: 9000 }
    cpu: { cores: 2 }
    memory: 512M
    disks: [{ slot: scsi0, storage: ceph-vm, size: 4G }]
    network: [{ bridge: vmbr0 }]
";

const SOLO: [&str; 4] = ["solo-a", "solo-b", "solo-c", "solo-d"];

fn manifests() -> String {
    let mut text = MANIFESTS.to_string();
    for name in SOLO {
        text.push_str(&format!(
            "---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: {{ name: {name} }}
spec:
  node: pve2
  clone: {{ template: 9000 }}
  memory: 512M
  disks: [{{ slot: scsi0, storage: ceph-vm, size: 3G }}]
  network: [{{ bridge: vmbr0 }}]
"
        ));
    }
    text
}

/// The declared VMs: name → declared vmid (`None`: allocated by the agent).
fn declared() -> BTreeMap<String, Option<u64>> {
    let mut out: BTreeMap<String, Option<u64>> = (1..=16)
        .map(|i| (format!("web-{i}"), Some(2000 + i)))
        .collect();
    out.extend(SOLO.iter().map(|n| (n.to_string(), None)));
    out
}

/// A small deterministic generator for the kill points (no crate for one use).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `pve-gitops run` on the manifests directory, stderr kept for failure messages.
struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn start(pve: &FakePve, dir: &Path) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
            .arg("run")
            .arg(dir.join("crash"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--no-lease", "--node", "pve1", "--interval", "100ms"])
            .arg("--vmlist")
            .arg(dir.join("no-vmlist"))
            .args(["--api-url", &pve.base_url()])
            .arg("--token-file")
            .arg(dir.join("token"))
            .arg("--ca-file")
            .arg(&pve.info.ca_file)
            .env("RUST_LOG", "pve_gitops=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the agent starts");
        let log = support::agent::collect_stderr(&mut child);
        Agent { child, log }
    }

    /// SIGKILL: no destructor, no signal handler, nothing flushed.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The non-template guests as fakepve holds them.
async fn guests(pve: &FakePve) -> Vec<Value> {
    pve.control.state().await["guests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["template"] != json!(true))
        .cloned()
        .collect()
}

fn owned(g: &Value) -> bool {
    let c = &g["config"];
    text(&c["tags"]).split(';').any(|t| t == "pve-gitops")
        || text(&c["description"]).contains("Created by pve-gitops.")
}

/// The status the restarted agent keeps once every declared VM is in sync.
fn settled_status(path: &Path) -> Option<ClusterStatus> {
    let text = std::fs::read_to_string(path).ok()?;
    let status: ClusterStatus = serde_yaml::from_str(&text).ok()?;
    let names = declared();
    let in_sync = status
        .resources
        .iter()
        .filter(|r| names.contains_key(&r.name))
        .all(|r| r.sync.as_str() == "in-sync");
    (in_sync && status.resources.len() >= names.len()).then_some(status)
}

/// What is wrong with the cluster and the status after convergence (empty: nothing).
fn check_converged(guests: &[Value], status: &ClusterStatus) -> Vec<String> {
    let mut problems = Vec::new();
    let declared = declared();
    let mut by_name: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for g in guests {
        by_name
            .entry(text(&g["name"]))
            .or_default()
            .push(g["vmid"].as_u64().unwrap());
    }
    for (name, vmids) in &by_name {
        if vmids.len() > 1 {
            problems.push(format!("{name} exists {} times: {vmids:?}", vmids.len()));
        }
    }
    for (name, want) in &declared {
        match (by_name.get(name), want) {
            (None, _) => problems.push(format!("{name} is missing")),
            (Some(have), Some(want)) if !have.contains(want) => {
                problems.push(format!("{name} has vmid {have:?}, declared {want}"))
            }
            _ => {}
        }
    }
    for g in guests {
        let (name, vmid, c) = (text(&g["name"]), g["vmid"].as_u64().unwrap(), &g["config"]);
        if !g["lock"].is_null() || !c["lock"].is_null() {
            problems.push(format!("{name} ({vmid}) is locked: {}", g["lock"]));
        }
        if declared.contains_key(&name) {
            if g["status"] != json!("running") {
                problems.push(format!("{name} ({vmid}) is {}", g["status"]));
            }
            if !text(&c["tags"]).split(';').any(|t| t == "pve-gitops") {
                problems.push(format!("{name} ({vmid}) lacks the ownership tag: {c}"));
            }
            let size = if name.starts_with("solo") { "3G" } else { "4G" };
            if !text(&c["scsi0"]).contains(&format!("size={size}")) {
                problems.push(format!("{name} ({vmid}) disk: {}", c["scsi0"]));
            }
        }
        // An extra VM the agent owns must show in the status as an orphan.
        let reported = status
            .resources
            .iter()
            .any(|r| r.vmid == Some(vmid as u32) && r.name == name);
        if owned(g) && !reported {
            problems.push(format!(
                "{name} ({vmid}) is owned but not in the status (unreported orphan)"
            ));
        }
    }
    // The status tells the truth: every declared VM with the vmid fakepve has.
    for r in &status.resources {
        let actual = by_name.get(&r.name).and_then(|v| v.first().copied());
        if declared.contains_key(&r.name) && r.vmid.map(u64::from) != actual {
            problems.push(format!(
                "status says {} is vmid {:?}, fakepve has {actual:?}",
                r.name, r.vmid
            ));
        }
    }
    let declared_in_status = status
        .resources
        .iter()
        .filter(|r| declared.contains_key(&r.name))
        .count();
    if declared_in_status != 20 {
        problems.push(format!("the status lists {declared_in_status} of 20 VMs"));
    }
    problems
}

#[tokio::test]
async fn killed_mid_apply_the_agent_converges_exactly_on_restart() {
    let pve = fake!(Options {
        time_scale: 0.01,
        ..Options::default()
    });
    let control = &pve.control;
    // Every RBD clone and start takes 8 PVE seconds (80 ms here): kills land mid-task.
    control.ceph(json!({"add_storage": "ceph-vm"})).await;
    control.create_template(9000, "pve1", "ceph-vm").await;
    control.ceph(json!({"slow": 8.0})).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("crash")).unwrap();
    std::fs::write(dir.path().join("crash/vms.yaml"), manifests()).unwrap();
    std::fs::write(
        dir.path().join("token"),
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    let status_file = dir.path().join("state/crash.status.yaml");

    // One undisturbed apply: how many writes a whole apply takes.
    control.reset().await;
    let agent = Agent::start(&pve, dir.path());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = settled_status(&status_file) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no convergence:\n{}",
            agent.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    agent.kill();
    let total_writes = control.counters().await.writes;
    let problems = check_converged(&guests(&pve).await, &status);
    assert!(problems.is_empty(), "undisturbed: {problems:#?}");
    println!(
        "an undisturbed apply: {total_writes} writes in {:?}",
        start.elapsed()
    );

    let trials: u64 = env_or("CRASH_TRIALS", 30);
    let mut rng = Rng(env_or("CRASH_SEED", 0x5eed_cafe_u64) | 1);
    let mut failures = Vec::new();
    let started = Instant::now();
    for trial in 0..trials {
        // Spread over the whole apply, each point shifted by a seeded amount.
        let span = total_writes.max(2) - 1;
        let kill_at = 1 + (trial * span / trials.max(1) + rng.next() % 3).min(span);
        let _ = std::fs::remove_file(&status_file);
        control.reset().await;
        let agent = Agent::start(&pve, dir.path());
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = loop {
            let writes = control.counters().await.writes;
            if writes >= kill_at {
                break writes;
            }
            assert!(
                Instant::now() < deadline,
                "trial {trial}: only {writes} writes before the deadline:\n{}",
                agent.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        agent.kill();
        let at_kill = guests(&pve).await;
        let locked = at_kill.iter().filter(|g| !g["lock"].is_null()).count();
        let last: Vec<String> = control
            .requests(1)
            .await
            .into_iter()
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect();

        let agent = Agent::start(&pve, dir.path());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = settled_status(&status_file) {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let problems = match &status {
            Some(s) => check_converged(&guests(&pve).await, s),
            None => vec![format!(
                "no convergence within 30 s:\n{}",
                agent.log_tail(30)
            )],
        };
        agent.kill();
        println!(
            "trial {trial}: killed after write {seen} (aimed at {kill_at}; last request {last:?}): \
             {} VMs, {locked} locked at the kill; {}",
            at_kill.len(),
            if problems.is_empty() { "converged" } else { "FAILED" }
        );
        if !problems.is_empty() {
            failures.push(format!(
                "trial {trial} (kill at write {seen}): {problems:#?}"
            ));
        }
    }
    println!("{trials} trials in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
