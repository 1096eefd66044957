//! Chaos soak: three `pve-gitops run` agents (one per node, leader election over the
//! pmxcfs emulation) follow a bare repository while a seeded schedule pushes random valid
//! and invalid revisions, injects faults into fakepve (500s, lock timeouts, failed and
//! slow tasks, an offline node, lost quorum, dropped and hung connections), takes the git
//! remote away, loses pmxcfs quorum on a node, kills and stops leaders, and drops foreign,
//! stray and protected VMs into the cluster. Invariants are checked continuously
//! (`support/chaos/invariants.rs`): never two leaders acting (each write against the
//! lease's history), never a write from an invalid revision, never a deletion outside
//! the prune rules; at the end, with every fault cleared, the cluster must converge to
//! the last revision, and no secret may show in any log, state file or status commit.
//!
//! Time is scaled: fakepve runs 100 PVE seconds per real second and the lease 60 times
//! faster than production, so the default minute of chaos is over an hour and a half of
//! simulated PVE time. `CHAOS_SECS` sets the chaos phase (default 60), `CHAOS_SEED` the
//! seed (default: from the clock). The seed is printed at the start and in every
//! failure: the same seed replays the same schedule (as far as process scheduling
//! lets timing repeat).

#[macro_use]
mod support;

use pmxcfs_emu::{fuse_ready_or_skip, LockChange};
use pve_gitops::daemon::leader::monotonic_ns;
use pve_gitops::report::status::ClusterStatus;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agents::{AgentConfig, Cluster, Source, LIFETIME, NODES};
use support::chaos::faults::{down, Fault};
use support::chaos::invariants::{
    applied_invalid, applied_went_back, overlapping_windows, secrets_in, secrets_in_bytes, Checker,
    Pushed,
};
use support::chaos::revisions::{write_tree, Desired, ExpectedVm, TEMPLATE};
use support::chaos::Rng;
use support::control::text;
use support::corpus::{age_identity, cases, Case, OUTSIDE, PLAINTEXTS};
use support::fakepve::{FakePve, Options};
use support::git::{git, GitRemote};

/// Real seconds per PVE second.
const TIME_SCALE: f64 = 0.01;
/// How long the cluster may take to converge once every fault is cleared.
const CONVERGE: Duration = Duration::from_secs(90);
/// Chaos between two calm checkpoints (each must converge).
const CHECKPOINT: Duration = Duration::from_secs(30);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_keeps_the_invariants_and_converges() {
    if !fuse_ready_or_skip() {
        return;
    }
    let secs: u64 = env_or("CHAOS_SECS", 60);
    let seed: u64 = env_or("CHAOS_SEED", monotonic_ns() % 1_000_000);
    let replay = format!("CHAOS_SEED={seed} CHAOS_SECS={secs}");
    eprintln!("chaos: seed {seed}, {secs} s of chaos (replay with {replay})");
    if let Err(e) = soak(seed, Duration::from_secs(secs)).await {
        panic!("chaos soak failed; replay with {replay}\n{e}");
    }
}

/// What the soak did, for the summary line.
#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    faults: BTreeMap<&'static str, usize>,
    kills: usize,
    stops: usize,
    extra_vms: usize,
    tampered: usize,
    checkpoints: usize,
}

struct Soak {
    pve: FakePve,
    remote: GitRemote,
    cluster: Cluster,
    rng: Rng,
    desired: Desired,
    cases: Vec<Case>,
    pushed: Vec<Pushed>,
    active: Vec<(Fault, Instant)>,
    restarts: Vec<(&'static str, Instant)>,
    checker: Checker,
    /// Foreign (unowned) and protected owned VMs: they must outlive the soak untouched.
    untouchable: BTreeMap<String, u32>,
    tally: Tally,
    extra: u32,
}

async fn soak(seed: u64, chaos: Duration) -> Result<(), String> {
    let Some(pve) = FakePve::start(Options {
        time_scale: TIME_SCALE,
        ..Options::default()
    }) else {
        return Ok(());
    };
    let control = &pve.control;
    let remote = GitRemote::new();
    let scratch = remote.scratch("chaos");
    // Snippet files go to a directory of this run, which fakepve lists as pve1's
    // `local:snippets/` (the web VMs' user data; the leader checks it is there).
    control
        .post(
            "/storages",
            json!({"local": {"type": "dir", "path": scratch.join("local"), "shared": 0,
                "content": "iso,import,snippets,vztmpl,backup"}}),
        )
        .await;
    control.ceph(json!({"add_storage": "ceph-vm"})).await;
    control.create_template(9000, "pve1", "local-lvm").await;
    control.create_template(TEMPLATE, "pve1", "ceph-vm").await;
    control
        .post(
            "/capacity",
            json!({"nodes": {"maxmem": 256u64 << 30, "maxcpu": 64}}),
        )
        .await;
    let mut tokens = BTreeMap::new();
    for node in NODES {
        let id = format!("root@pam!{node}");
        let secret = control.add_token(&id).await;
        tokens.insert(node, format!("{id}={secret}\n"));
    }

    let identity = age_identity(&scratch);
    let cluster = Cluster::new(
        &scratch,
        AgentConfig {
            source: Source::Repo {
                url: remote.url(),
                identity,
                // Asked every fourth pass, as the defaults (15 s, 1 min) do: a new leader
                // must ask before it applies.
                git_interval: "600ms",
            },
            api_url: pve.base_url(),
            ca_file: pve.info.ca_file.clone(),
        },
        &tokens,
    );
    let mut rng = Rng::new(seed);
    let desired = Desired::initial(&mut rng);
    let mut s = Soak {
        pve,
        remote,
        cluster,
        rng,
        desired,
        cases: cases(),
        pushed: Vec::new(),
        active: Vec::new(),
        restarts: Vec::new(),
        checker: Checker::new(LIFETIME),
        untouchable: BTreeMap::new(),
        tally: Tally::default(),
        extra: 0,
    };
    s.push_valid("initial");
    for node in NODES {
        s.cluster.start(node);
    }
    let started = Instant::now();
    let result = s.run(chaos).await;
    let summary = format!(
        "{:?} real ({:.1} simulated PVE hours): {:?}; {} writes ({:?}), {} deletes, {} leader terms, \
         oldest lease a write arrived under {:?}",
        started.elapsed(),
        started.elapsed().as_secs_f64() / TIME_SCALE / 3600.0,
        s.tally,
        s.checker.writes,
        s.checker.by_node,
        s.checker.deletes,
        s.cluster
            .emu
            .lock_history()
            .iter()
            .filter(|e| e.change == LockChange::Acquired)
            .count(),
        s.checker.max_age
    );
    eprintln!("chaos: {summary}");
    result.map_err(|e| {
        let kept = s.keep(seed);
        format!(
            "{e}\n{summary}\nlogs and the status branch kept in {}\n{}",
            kept.display(),
            s.cluster.log_tails(25)
        )
    })
}

impl Soak {
    fn control(&self) -> &support::control::Control {
        &self.pve.control
    }

    /// Copies every agent log and the status branch's files where a failed run's
    /// temporary directory does not take them along.
    fn keep(&self, seed: u64) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pve-gitops-chaos-{seed}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for log in self.cluster.logs() {
            let _ = std::fs::copy(&log, dir.join(log.file_name().unwrap()));
        }
        for file in ["STATUS.md", "status.yaml", "errors.md"] {
            if let Ok(out) = std::process::Command::new("git")
                .current_dir(&self.remote.bare)
                .args(["show", &format!("pve-gitops/status:prod/{file}")])
                .output()
            {
                let _ = std::fs::write(dir.join(file), out.stdout);
            }
        }
        let pushed: String = self
            .pushed
            .iter()
            .map(|p| format!("{} {} {}\n", p.commit, p.t_ns, p.what))
            .collect();
        let _ = std::fs::write(dir.join("pushed.txt"), pushed);
        dir
    }

    /// The bare repository where it is now (moved away during a git outage).
    fn bare_now(&self) -> PathBuf {
        if self
            .active
            .iter()
            .any(|(f, _)| matches!(f, Fault::GitOutage))
        {
            down(&self.remote.bare)
        } else {
            self.remote.bare.clone()
        }
    }

    fn commit_and_push(&mut self, valid: bool, what: String) {
        let commit = self.remote.commit(&what);
        let bare = self.bare_now();
        git(
            &self.remote.work,
            &[
                "push",
                "-q",
                "--force",
                bare.to_str().unwrap(),
                "HEAD:refs/heads/main",
            ],
        );
        let names = if valid {
            self.desired.names()
        } else {
            BTreeSet::new()
        };
        self.pushed.push(Pushed {
            commit,
            valid,
            names,
            t_ns: monotonic_ns(),
            what,
        });
    }

    fn push_valid(&mut self, what: &str) {
        write_tree(&self.remote.work, &self.desired, None);
        self.tally.valid += 1;
        self.commit_and_push(true, format!("valid: {what}"));
    }

    fn push_invalid(&mut self) {
        let case = self.rng.pick(&self.cases);
        let k = self.pushed.len() as u32;
        write_tree(&self.remote.work, &self.desired, Some((case, k)));
        let what = format!("invalid: {}", case.name);
        self.tally.invalid += 1;
        self.commit_and_push(false, what);
    }

    /// The chaos phase, with a calm checkpoint every [`CHECKPOINT`], then a last one.
    async fn run(&mut self, chaos: Duration) -> Result<(), String> {
        let end = Instant::now() + chaos;
        let mut checkpoint = Instant::now() + CHECKPOINT;
        let mut next_step = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            self.tend().await?;
            if Instant::now() >= checkpoint
                && end.saturating_duration_since(Instant::now()) > CHECKPOINT / 2
            {
                self.calm("checkpoint").await?;
                checkpoint = Instant::now() + CHECKPOINT;
            }
            if Instant::now() >= next_step {
                self.step().await?;
                next_step = Instant::now() + Duration::from_millis(self.rng.between(200, 1200));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.calm("final").await?;
        self.final_checks()
    }

    /// Every fault cleared, every agent running, one more valid revision: the cluster
    /// must converge to it within [`CONVERGE`].
    async fn calm(&mut self, label: &str) -> Result<(), String> {
        for (fault, _) in std::mem::take(&mut self.active) {
            fault
                .clear(self.control(), &self.cluster, &self.remote.bare)
                .await;
        }
        for (node, _) in std::mem::take(&mut self.restarts) {
            self.cluster.start(node);
        }
        let what = self.desired.mutate(&mut self.rng);
        self.push_valid(&format!("{label}: {what}"));
        let last = self.pushed.last().unwrap().commit.clone();
        let started = Instant::now();
        loop {
            self.tend().await?;
            let problems = self.convergence_problems(&last).await;
            if problems.is_empty() {
                break;
            }
            if started.elapsed() > CONVERGE {
                return Err(format!(
                    "{label}: no convergence {CONVERGE:?} after the faults cleared:\n  {}",
                    problems.join("\n  ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.tally.checkpoints += 1;
        eprintln!(
            "chaos: {label}: converged {:?} after the faults cleared",
            started.elapsed()
        );
        Ok(())
    }

    /// Ends faults and restarts agents whose time has come; checks the new writes.
    async fn tend(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let (over, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|(_, until)| *until <= now);
        self.active = still;
        for (fault, _) in over {
            fault
                .clear(self.control(), &self.cluster, &self.remote.bare)
                .await;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.restarts)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.restarts = later;
        for (node, _) in due {
            self.cluster.start(node);
        }
        if let Some((node, status)) = self.cluster.exited() {
            return Err(format!("the agent of {node} exited by itself: {status}"));
        }
        let history = self.cluster.emu.lock_history();
        self.checker
            .poll(&self.pve.control, &history, &self.pushed)
            .await;
        if !self.checker.violations.is_empty() {
            return Err(format!(
                "invariants broken:\n{}\nrecent pushes: {:?}\nactive faults: {:?}",
                self.checker.violations.join("\n"),
                self.pushed
                    .iter()
                    .rev()
                    .take(5)
                    .map(|p| (&p.commit[..7], &p.what))
                    .collect::<Vec<_>>(),
                self.active.iter().map(|(f, _)| f).collect::<Vec<_>>()
            ));
        }
        Ok(())
    }

    async fn step(&mut self) -> Result<(), String> {
        match self.rng.below(100) {
            0..=24 => {
                let what = self.desired.mutate(&mut self.rng);
                self.push_valid(&what);
            }
            25..=34 => self.push_invalid(),
            35..=64 => {
                let fault = Fault::random(&mut self.rng);
                let millis = self.rng.between(300, 5000);
                self.inject(fault, millis).await;
            }
            65..=79 => self.kill_leader().await?,
            80..=87 => self.add_extra_vm().await,
            88..=95 => self.tamper().await,
            _ => {}
        }
        Ok(())
    }

    async fn inject(&mut self, fault: Fault, millis: u64) {
        if self.active.iter().any(|(f, _)| f.conflicts(&fault)) {
            return;
        }
        fault
            .inject(self.control(), &self.cluster, &self.remote.bare)
            .await;
        *self.tally.faults.entry(fault_kind(&fault)).or_default() += 1;
        self.active
            .push((fault, Instant::now() + Duration::from_millis(millis)));
    }

    /// kill -9 or SIGTERM of the leader (another agent when none leads), sometimes while
    /// its writes hang; it comes back after a while, often past the lock's lifetime.
    async fn kill_leader(&mut self) -> Result<(), String> {
        let stop = self.rng.chance(40);
        let back = Duration::from_millis(self.rng.between(100, 6000));
        if self.rng.chance(30) {
            let (method, path) = *self.rng.pick(&[
                ("POST", "/nodes/{node}/qemu/{vmid}/config"),
                ("POST", "/nodes/{node}/qemu/{vmid}/clone"),
                ("POST", "/nodes/{node}/qemu/{vmid}/status/start"),
            ]);
            let millis = self.rng.between(500, 4000);
            self.inject(Fault::Hang { method, path }, millis).await;
        }
        let running: Vec<&'static str> = NODES
            .into_iter()
            .filter(|n| self.cluster.running(n))
            .collect();
        let holder = self.cluster.holder();
        let victim = running
            .iter()
            .find(|n| Some(n.to_string()) == holder)
            .or_else(|| running.first())
            .copied();
        if let Some(node) = victim {
            if stop {
                self.cluster.terminate(node)?;
                self.tally.stops += 1;
            } else {
                self.cluster.kill(node);
                self.tally.kills += 1;
            }
            self.restarts.push((node, Instant::now() + back));
        }
        Ok(())
    }

    /// A change behind the agent's back to one of its declared VMs (drift is healed):
    /// memory changed, the VM stopped or destroyed, or PVE locking it for a while.
    async fn tamper(&mut self) {
        let declared = self.desired.names();
        let state = self.control().state().await;
        let targets: Vec<(u32, String)> = state["guests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["template"] != json!(true) && g["lock"].is_null())
            .filter(|g| declared.contains(&text(&g["name"])))
            .map(|g| (g["vmid"].as_u64().unwrap() as u32, text(&g["name"])))
            .collect();
        if targets.is_empty() {
            return;
        }
        let (vmid, _name) = self.rng.pick(&targets).clone();
        match self.rng.below(4) {
            0 => {
                self.control()
                    .update_vm(vmid, json!({"config": {"memory": 4096}}))
                    .await;
            }
            1 => {
                self.control()
                    .update_vm(vmid, json!({"status": "stopped"}))
                    .await;
            }
            2 => {
                let millis = self.rng.between(300, 3000);
                self.inject(Fault::VmLock(vmid), millis).await;
            }
            _ => {
                self.control()
                    .update_vm(vmid, json!({"status": "stopped"}))
                    .await;
                let node = text(&self.control().vm(vmid).await.unwrap()["node"]);
                // As an operator would, with the harness's own token (not an agent's).
                let _ = self.pve.client().delete_vm(&node, vmid, true, true).await;
            }
        }
        self.tally.tampered += 1;
    }

    /// A VM the agent finds beside its own: foreign (no tag: never touched), a stray it
    /// owns (pruned), or one it owns with PVE's protection flag (never deleted).
    async fn add_extra_vm(&mut self) {
        let k = self.extra;
        self.extra += 1;
        let node = *self.rng.pick(&NODES);
        let (name, tags, protection) = match self.rng.below(3) {
            0 => (format!("foreign-{k}"), "other", 0),
            1 => (format!("stray-{k}"), "pve-gitops", 0),
            _ => (format!("kept-{k}"), "pve-gitops", 1),
        };
        let vmid = 600 + k;
        let mut config = json!({"memory": 512, "cores": 1, "tags": tags,
            "net0": "virtio=BC:24:11:00:10:01,bridge=vmbr0", "ostype": "l26"});
        if protection == 1 {
            config["protection"] = json!(1);
        }
        self.control()
            .create_vm(
                json!({"vmid": vmid, "name": name, "node": node, "status": "running",
                "config": config}),
            )
            .await;
        if !name.starts_with("stray") {
            self.untouchable.insert(name, vmid);
        }
        self.tally.extra_vms += 1;
    }

    /// What still differs from the last revision (empty: converged).
    async fn convergence_problems(&self, last: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let state = self.control().state().await;
        let guests: Vec<&Value> = state["guests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["template"] != json!(true))
            .collect();
        let mut by_name: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for g in &guests {
            by_name.entry(text(&g["name"])).or_default().push(g);
        }
        let expected = self.desired.expected();
        for vm in &expected {
            match by_name.get(&vm.name).map(Vec::as_slice) {
                None | Some([]) => problems.push(format!("{} is missing", vm.name)),
                Some([g]) => problems.extend(vm_problems(vm, g)),
                Some(many) => problems.push(format!("{} exists {} times", vm.name, many.len())),
            }
        }
        let declared: BTreeSet<&str> = expected.iter().map(|v| v.name.as_str()).collect();
        for g in &guests {
            let name = text(&g["name"]);
            let owned = text(&g["config"]["tags"])
                .split(';')
                .any(|t| t == "pve-gitops");
            if owned && !declared.contains(name.as_str()) && !self.untouchable.contains_key(&name) {
                problems.push(format!(
                    "{name} ({}) is owned, undeclared and not pruned",
                    g["vmid"]
                ));
            }
        }
        for (name, vmid) in &self.untouchable {
            let kept = guests
                .iter()
                .any(|g| text(&g["name"]) == *name && g["vmid"] == json!(vmid));
            if !kept {
                problems.push(format!(
                    "{name} ({vmid}) is gone, but was never the agent's to delete"
                ));
            }
        }
        match status_at_head(&self.remote.bare) {
            None => problems.push("no status on the status branch".into()),
            Some(st) => {
                if st.applied_revision.as_deref() != Some(last) {
                    problems.push(format!(
                        "the status says {:?} is applied, not {last}",
                        st.applied_revision
                    ));
                }
                if st.rejected.is_some() {
                    problems.push(format!(
                        "the status still shows a rejection: {:?}",
                        st.rejected
                    ));
                }
                for r in st
                    .resources
                    .iter()
                    .filter(|r| declared.contains(r.name.as_str()))
                {
                    if r.sync.as_str() != "in-sync" {
                        problems.push(format!("the status has {} {}", r.name, r.sync.as_str()));
                    }
                }
            }
        }
        problems
    }

    /// After convergence: status commits never name an invalid revision as applied nor
    /// go back to an older one, and
    /// no secret shows in logs, state directories or the status branch's history.
    fn final_checks(&self) -> Result<(), String> {
        let invalid: BTreeSet<String> = self
            .pushed
            .iter()
            .filter(|p| !p.valid)
            .map(|p| p.commit.clone())
            .collect();
        let mut problems = applied_invalid(&self.remote.bare, "prod", &invalid);
        problems.extend(applied_went_back(&self.remote.bare, "prod", &self.pushed));
        let windows: Vec<PathBuf> = NODES.iter().map(|n| self.cluster.apply_log(n)).collect();
        problems.extend(overlapping_windows(&windows));
        let secrets: Vec<&str> = PLAINTEXTS.iter().copied().chain([OUTSIDE]).collect();
        let mut places: Vec<PathBuf> = self.cluster.logs();
        places.extend(NODES.iter().map(|n| self.cluster.state_dir(n)));
        problems.extend(secrets_in(&places, &secrets));
        let history = git(
            &self.remote.bare,
            &["log", "-p", "--format=%H%n%B", "pve-gitops/status"],
        );
        problems.extend(secrets_in_bytes(
            "the status branch",
            history.as_bytes(),
            &secrets,
        ));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

fn fault_kind(f: &Fault) -> &'static str {
    match f {
        Fault::Error500 { .. } => "500",
        Fault::Named { error, .. } => error,
        Fault::SlowTasks(_) => "slow tasks",
        Fault::NodeOffline(_) => "node offline",
        Fault::PveQuorumLost => "PVE quorum",
        Fault::PmxcfsQuorumLost(_) => "pmxcfs quorum",
        Fault::Drops(..) => "drops",
        Fault::Hang { .. } => "hang",
        Fault::GitOutage => "git outage",
        Fault::VmLock(_) => "VM lock",
    }
}

/// How one declared VM differs from what fakepve holds.
fn vm_problems(vm: &ExpectedVm, g: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let c = &g["config"];
    let name = &vm.name;
    if let Some(vmid) = vm.vmid {
        if g["vmid"] != json!(vmid) {
            out.push(format!("{name} is vmid {}, declared {vmid}", g["vmid"]));
        }
    }
    if let Some(node) = &vm.node {
        if text(&g["node"]) != *node {
            out.push(format!("{name} is on {}, declared {node}", g["node"]));
        }
    }
    if text(&c["memory"]) != vm.memory_mib.to_string() {
        out.push(format!(
            "{name} has memory {}, declared {}",
            c["memory"], vm.memory_mib
        ));
    }
    if let Some(cores) = vm.cores {
        if text(&c["cores"]) != cores.to_string() {
            out.push(format!("{name} has {} cores, declared {cores}", c["cores"]));
        }
    }
    if g["status"] != json!("running") {
        out.push(format!("{name} is {}", g["status"]));
    }
    if !g["lock"].is_null() {
        out.push(format!("{name} is locked: {}", g["lock"]));
    }
    if !text(&c["tags"]).split(';').any(|t| t == "pve-gitops") {
        out.push(format!("{name} lacks the ownership tag"));
    }
    out
}

fn status_at_head(bare: &Path) -> Option<ClusterStatus> {
    let out = std::process::Command::new("git")
        .current_dir(bare)
        .args(["show", "pve-gitops/status:prod/status.yaml"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_yaml::from_slice(&out.stdout).expect("status.yaml parses"))
}

/// The checks themselves, on made-up writes: each invariant must be able to fail.
#[test]
fn the_invariant_checks_catch_each_violation() {
    use pmxcfs_emu::LockEvent;
    use support::control::WriteEntry;
    let t0 = Instant::now();
    let checker = Checker::new(LIFETIME);
    let at = |ms: u64| checker.ns(t0 + Duration::from_millis(ms));
    let event = |ms: u64, node: &str, change| LockEvent {
        at: t0 + Duration::from_millis(ms),
        lock: "pve-gitops".into(),
        node: node.into(),
        change,
    };
    // pve1 leads from 0 to 1000 ms (renewed at 500), releases; pve2 takes it at 1500.
    let history = [
        event(0, "pve1", LockChange::Acquired),
        event(500, "pve1", LockChange::Renewed),
        event(1000, "pve1", LockChange::Released),
        event(1500, "pve2", LockChange::Acquired),
    ];
    let pushed = [Pushed {
        commit: "c1".into(),
        valid: true,
        names: ["web-1".to_string()].into(),
        t_ns: at(0),
        what: "valid".into(),
    }];
    let write = |ms: u64, node: &str, method: &str, body: &str, vm: Option<Value>| WriteEntry {
        seq: 0,
        t_ns: at(ms),
        method: method.into(),
        path: if method == "DELETE" {
            "/api2/json/nodes/pve1/qemu/650".into()
        } else {
            "/api2/json/nodes/pve1/qemu/801/config".into()
        },
        user: Some(format!("root@pam!{node}")),
        body: body.into(),
        vm,
    };
    let stray = |tags: &str, protection: u8, name: &str| {
        Some(json!({"name": name, "node": "pve1",
            "config": {"tags": tags, "protection": protection}}))
    };
    let cases = [
        (write(600, "pve1", "POST", "memory=512", None), None),
        (write(1600, "pve2", "POST", "memory=512", None), None),
        (
            write(600, "pve2", "POST", "memory=512", None),
            Some("while pve1 held"),
        ),
        (
            write(1200, "pve1", "POST", "memory=512", None),
            Some("nobody held"),
        ),
        (
            write(4000, "pve2", "POST", "memory=512", None),
            Some("without a lease"),
        ),
        (
            write(600, "pve1", "POST", "name=poison-3", None),
            Some("invalid revision"),
        ),
        (
            write(600, "pve1", "DELETE", "", stray("pve-gitops", 0, "stray-1")),
            None,
        ),
        (
            write(600, "pve1", "DELETE", "", stray("other", 0, "foreign-1")),
            Some("does not own"),
        ),
        (
            write(600, "pve1", "DELETE", "", stray("pve-gitops", 1, "kept-1")),
            Some("protected"),
        ),
        (
            write(600, "pve1", "DELETE", "", stray("pve-gitops", 0, "web-1")),
            Some("declares"),
        ),
    ];
    for (w, expect) in cases {
        let mut c = Checker::new(LIFETIME);
        c.check_all(std::slice::from_ref(&w), &history, &pushed);
        match expect {
            None => assert!(c.violations.is_empty(), "{w:?}: {:?}", c.violations),
            Some(text) => assert!(
                c.violations.len() == 1 && c.violations[0].contains(text),
                "{w:?}: expected `{text}`, got {:?}",
                c.violations
            ),
        }
    }
    // Apply windows: pve2 starting inside pve1's window is caught, after it is not.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, "100 200 pve1\n300 400 pve1\n").unwrap();
    std::fs::write(&b, "250 280 pve2\n").unwrap();
    assert!(overlapping_windows(&[a.clone(), b.clone()]).is_empty());
    std::fs::write(&b, "250 280 pve2\n350 360 pve2\n").unwrap();
    let found = overlapping_windows(&[a, b]);
    assert_eq!(found.len(), 1, "{found:?}");

    // Status commits naming revisions 1, 2, 2, then 1 again: one rollback, the last.
    let remote = GitRemote::new();
    let revisions: Vec<Pushed> = (1..=2)
        .map(|i| Pushed {
            commit: remote.commit(&format!("revision {i}")),
            valid: true,
            names: BTreeSet::new(),
            t_ns: 0,
            what: format!("revision {i}"),
        })
        .collect();
    for (k, r) in [0, 1, 1, 0].into_iter().enumerate() {
        let status = format!(
            "apiVersion: pve-gitops/v1alpha1\nkind: ClusterStatus\ncluster: prod\nappliedRevision: {}\n",
            revisions[r].commit
        );
        remote.write("prod/status.yaml", status);
        remote.commit(&format!("status {r}"));
        remote.push("pve-gitops/status");
        let found = applied_went_back(&remote.bare, "prod", &revisions);
        assert_eq!(found.len(), usize::from(k == 3), "after {k}: {found:?}");
    }
}
