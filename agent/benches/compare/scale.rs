//! Issue 10 item 2: the agent at 1,000 desired VMs against 1,000 existing ones.
//!
//! On one fakepve at time scale 0 (tasks end at once: only the agent and its requests are
//! measured): converge N VMs with `apply --once`, then
//! * the drift check: `apply --once` again on the unchanged cluster (requests, CPU, RSS);
//! * `pve-gitops plan` as a command, and the `plan` function alone, in process, over the
//!   observed state (the median of `PLAN_ROUNDS`);
//! * a day of the daemon: `pve-gitops run` polling the unchanged cluster for
//!   `day_passes` idle passes (a day at the default 15 s interval), with the clock
//!   compressed (`DAY_INTERVAL` between passes) and full passes (resyncs) about as often
//!   against idle ones as the defaults give (10 min / 15 s = 1 in 40). Its RSS and CPU
//!   are read from /proc; passes are counted by the requests fakepve sees (an idle pass
//!   is one `GET /cluster/resources`, a full pass reads every VM). The day runs twice:
//!   on the manifests directory, and following them in a git repository over SSH with a
//!   deploy key and a pinned host key (an sshd on a loopback port; `file://` only where
//!   sshd cannot be installed), asked for its head every `PASSES_PER_GIT_ASK`th idle pass
//!   and written status to, as a node follows its remote;
//! * what asking a remote for its head costs, in process, over `file://` and over SSH
//!   (`Source::poll` of an unchanged branch, the median CPU of `POLL_ROUNDS` batches).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use pve_gitops::observe::listing::fetch_fingerprint;
use pve_gitops::plan::{plan, Policy};
use pve_gitops::pve::ResourceType;
use pve_gitops_schema::load;

use crate::agent::{self, Workdir};
use crate::proc::{Measured, ProcessCpu};
use crate::support::fakepve::FakePve;
use crate::support::git::{fingerprint, GitRemote};
use crate::support::pass::repo;
use crate::support::scale as scenario;
use crate::support::sshd::Sshd;
use pve_gitops::source::{Credentials, HostKeyPins, SourceConfig};

const PLAN_ROUNDS: usize = 21;
/// Time between the compressed day's passes.
const DAY_INTERVAL: Duration = Duration::from_millis(10);
/// Resync period of the compressed day, chosen so about 40 idle passes (10 ms apart plus
/// the pass itself) fall between two full passes, as 10 min / 15 s does.
const DAY_RESYNC: Duration = Duration::from_millis(600);
/// Idle passes per ask of the remote in the compressed day following git, as the
/// defaults give (`--git-interval` 1 min over `--interval` 15 s).
pub const PASSES_PER_GIT_ASK: u32 = 4;
/// Batches of `POLLS_PER_ROUND` polls the remote's poll cost is the median of.
pub const POLL_ROUNDS: usize = 11;
pub const POLLS_PER_ROUND: u32 = 50;
/// Polls per batch over SSH, where each waits some 100 ms for the server to start
/// `git-upload-pack`.
pub const SSH_POLLS_PER_ROUND: u32 = 10;
const RESOURCES: &str = "GET /cluster/resources";
const PENDING: &str = "GET /nodes/{node}/qemu/{vmid}/pending";

/// A process's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Proc {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_mib: f64,
    pub requests: u64,
    pub writes: u64,
}

/// The daemon's day.
#[derive(Clone, Debug, Serialize)]
pub struct Day {
    pub idle_passes: u64,
    pub full_passes: u64,
    pub wall_s: f64,
    /// RSS at the first idle moment of the day and at its last one (the end of an
    /// interval [`IdleIntervals`] counts): what the daemon keeps between passes, not what
    /// a full pass holds while it runs.
    pub rss_start_mib: f64,
    pub rss_end_mib: f64,
    /// VmHWM: the most the daemon was resident at any time.
    pub peak_rss_mib: f64,
    /// CPU per idle pass, from the sampling intervals that saw only idle passes, far
    /// enough from a full pass ([`IdleIntervals`]).
    pub cpu_per_idle_ms: f64,
    /// CPU over the whole day per pass, resyncs included.
    pub cpu_per_pass_ms: f64,
    pub requests_per_idle: f64,
    /// Wall time from one idle pass to the next: `DAY_INTERVAL` and the pass itself.
    pub idle_period_ms: f64,
    /// How often the remote was asked for its head, when following git.
    pub git_interval_ms: Option<f64>,
    /// `--resync` of the day, ms.
    pub resync_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scale {
    pub n: u32,
    pub converge: Proc,
    pub drift: Proc,
    pub drift_reads_per_vm: f64,
    pub plan_command: Proc,
    /// The `plan` function alone: median and worst of PLAN_ROUNDS, milliseconds.
    pub plan_fn_median_ms: f64,
    pub plan_fn_max_ms: f64,
    /// The daemon following the manifests directory.
    pub day: Day,
    /// The same, following them in a git repository over [`Scale::git_transport`].
    pub git_day: Day,
    pub git_transport: Transport,
    /// CPU of one ask of a `file://` repository for its (unchanged) head, in process, ms.
    pub git_poll_ms: f64,
    /// The same over SSH, on the session kept from the last ask; `None` without sshd.
    pub git_poll_ssh_ms: Option<f64>,
    /// An idle pass's request in process, against a baseline on the same answer.
    pub listing: ListingCost,
}

/// What the guest listing an idle pass reads costs, in process (medians of
/// `POLL_ROUNDS` batches of `POLLS_PER_ROUND`): the machine's speed in the same run,
/// for reading the daemon's CPU per idle pass.
#[derive(Clone, Debug, Serialize)]
pub struct ListingCost {
    /// The size of `GET /cluster/resources?type=vm`'s answer.
    pub bytes: usize,
    /// CPU of `listing::fetch_fingerprint`: request, TLS, reading and hashing, ms.
    pub fetch_ms: f64,
    /// The baseline: serde_json reading the same answer and skipping every value, ms.
    pub read_ms: f64,
}

fn proc_figures(m: Measured, c: &crate::Counters) -> Proc {
    Proc {
        wall_s: m.wall.as_secs_f64(),
        cpu_s: m.cpu.as_secs_f64(),
        max_rss_mib: mib(m.max_rss),
        requests: c.total,
        writes: c.writes,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub async fn run(n: u32, day_passes: u32) -> Scale {
    eprintln!("== scale N = {n}");
    let pve = crate::fresh_fake(0.0, 0.0).await;
    let work = Workdir::new(&pve, &scenario::manifests(n));

    pve.control.reset_counters().await;
    let m = agent::apply_once(&pve, &work, &work.path("converge.log"));
    let converge = proc_figures(m, &pve.control.counters().await);
    eprintln!("   converge: {converge:?}");

    pve.control.reset_counters().await;
    let m = agent::apply_once(&pve, &work, &work.path("drift.log"));
    let drift_counters = pve.control.counters().await;
    let drift = proc_figures(m, &drift_counters);
    eprintln!("   drift check: {drift:?}");

    pve.control.reset_counters().await;
    let (m, code) = agent::plan(&pve, &work, &work.path("plan.log"));
    assert_eq!(code, 0, "plan after converging found changes");
    let plan_command = proc_figures(m, &pve.control.counters().await);

    let (plan_fn_median_ms, plan_fn_max_ms) = plan_function(&pve, n).await;
    eprintln!("   plan: command {plan_command:?}, function median {plan_fn_median_ms:.2} ms");

    let resources_per_full = drift_counters.endpoint(RESOURCES).max(1);
    let passes = u64::from(day_passes);
    let day_of = |source, resync| day(&pve, &work, n, passes, resources_per_full, source, resync);
    let day = day_of(None, DAY_RESYNC).await;
    eprintln!("   day: {day:?}");
    let remote = GitRemote::new();
    let manifests = std::fs::read(work.manifests().join("set.yaml")).expect("manifests");
    remote.write("set.yaml", manifests);
    remote.commit("the scale scenario");
    remote.push("main");
    let sshd = Sshd::start(&remote.scratch("ssh"));
    let followed = match &sshd {
        Some(sshd) => Followed::ssh(sshd, &remote),
        None => {
            eprintln!("   no sshd here: the git day follows file://");
            Followed::file(&remote)
        }
    };
    let git_poll = poll_cost(
        Followed::file(&remote).config(&remote, "poll-file"),
        POLLS_PER_ROUND,
    )
    .await;
    eprintln!("   a poll of the remote over file://: {git_poll:?}");
    let git_poll_ssh = match followed.transport {
        Transport::Ssh => {
            let config = followed.config(&remote, "poll-ssh");
            Some(poll_cost(config, SSH_POLLS_PER_ROUND).await)
        }
        Transport::File => None,
    };
    eprintln!("   a poll of the remote over SSH: {git_poll_ssh:?}");
    // The day's pace following git. An idle pass takes longer than `DAY_INTERVAL`
    // (fakepve builds a listing of 1,000 guests slowly), and one that asks the remote
    // longer still (over SSH the server starts `git-upload-pack` for each ask). The
    // interval, which runs from the remote's answer, is half a pass short of
    // `PASSES_PER_GIT_ASK` passes of the directory's day, so every that-many-th pass asks;
    // the resync is stretched as those passes are, so that full passes come as often
    // against idle ones as on the directory.
    let ask_wall_ms = git_poll_ssh.unwrap_or(git_poll).wall_ms;
    let git_interval = Duration::from_secs_f64(
        day.idle_period_ms * (f64::from(PASSES_PER_GIT_ASK) - 0.5) / 1000.0,
    );
    let stretch = 1.0 + ask_wall_ms / f64::from(PASSES_PER_GIT_ASK) / day.idle_period_ms;
    let git_resync = DAY_RESYNC.mul_f64(stretch);
    let git_day = day_of(Some((&followed, git_interval)), git_resync).await;
    eprintln!(
        "   day, from git over {:?}: {git_day:?}",
        followed.transport
    );
    let git_poll_ms = git_poll.cpu_ms;
    let git_poll_ssh_ms = git_poll_ssh.map(|p| p.cpu_ms);
    let listing = listing_cost(&pve).await;
    eprintln!("   the guest listing: {listing:?}");
    Scale {
        n,
        converge,
        drift_reads_per_vm: drift_counters.reads as f64 / f64::from(n),
        drift,
        plan_command,
        plan_fn_median_ms,
        plan_fn_max_ms,
        day,
        git_day,
        git_transport: followed.transport,
        git_poll_ms,
        git_poll_ssh_ms,
        listing,
    }
}

/// The median, over `POLL_ROUNDS` batches of `per_round` runs of `f`, of the CPU this
/// thread spends per run, ms. The runtime is current-thread: a request's TLS and HTTP work
/// is on this thread too.
async fn median_cpu_ms<F: std::future::Future<Output = ()>>(
    per_round: u32,
    mut f: impl FnMut() -> F,
) -> f64 {
    let mut per_run = Vec::with_capacity(POLL_ROUNDS);
    for _ in 0..POLL_ROUNDS {
        let before = crate::proc::thread_cpu();
        for _ in 0..per_round {
            f().await;
        }
        let cpu = crate::proc::thread_cpu() - before;
        per_run.push(cpu.as_secs_f64() * 1000.0 / f64::from(per_round));
    }
    per_run.sort_by(f64::total_cmp);
    per_run[per_run.len() / 2]
}

async fn listing_cost(pve: &FakePve) -> ListingCost {
    let client = pve.client();
    let body = client
        .cluster_resources_with(Some(ResourceType::Vm), |b| Ok(b.to_vec()))
        .await
        .expect("the guest listing");
    let fetch_ms = median_cpu_ms(POLLS_PER_ROUND, || async {
        fetch_fingerprint(&client).await.expect("fingerprint");
    })
    .await;
    let read_ms = median_cpu_ms(POLLS_PER_ROUND, || async {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).expect("JSON");
    })
    .await;
    ListingCost {
        bytes: body.len(),
        fetch_ms,
        read_ms,
    }
}

/// What one ask of a remote costs: CPU in process and wall time, ms.
#[derive(Clone, Copy, Debug)]
struct PollCost {
    cpu_ms: f64,
    wall_ms: f64,
}

/// One `Source::poll` of an unchanged branch: the CPU of the median batch, and the mean
/// wall time. The CPU is what the daemon spends on git in a pass that asks the remote.
async fn poll_cost(config: SourceConfig, per_round: u32) -> PollCost {
    let mut source = pve_gitops::source::Source::open(config).expect("source");
    source.poll().expect("first poll");
    let (mut polls, started) = (0u32, Instant::now());
    let cpu_ms = median_cpu_ms(per_round, || {
        source.poll().expect("poll");
        polls += 1;
        std::future::ready(())
    })
    .await;
    PollCost {
        cpu_ms,
        wall_ms: started.elapsed().as_secs_f64() * 1000.0 / f64::from(polls.max(1)),
    }
}

/// How the git day reaches its remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A deploy key and a pinned host key, as a node follows its remote.
    Ssh,
    /// Only where sshd could not be installed.
    File,
}

/// The remote a git day follows, as the daemon's flags and as a [`SourceConfig`].
pub struct Followed {
    url: String,
    /// The SSH deploy key and host-key pin.
    ssh: Option<(std::path::PathBuf, String)>,
    transport: Transport,
}

impl Followed {
    fn file(remote: &GitRemote) -> Self {
        Followed {
            url: remote.url(),
            ssh: None,
            transport: Transport::File,
        }
    }

    fn ssh(sshd: &Sshd, remote: &GitRemote) -> Self {
        Followed {
            url: sshd.url(&remote.bare),
            ssh: Some((sshd.client_key.clone(), fingerprint(&sshd.host_key))),
            transport: Transport::Ssh,
        }
    }

    /// `--repo` and, over SSH, `--deploy-key` and `--host-key`.
    fn args(&self, cmd: &mut Command) {
        cmd.arg("--repo").arg(&self.url);
        if let Some((key, pin)) = &self.ssh {
            cmd.arg("--deploy-key").arg(key).arg("--host-key").arg(pin);
        }
    }

    fn config(&self, remote: &GitRemote, cache: &str) -> SourceConfig {
        let mut config = SourceConfig::new(self.url.clone(), "main");
        config.cache_root = remote.scratch(cache);
        if let Some((key, pin)) = &self.ssh {
            config.credentials = Credentials::SshKey {
                private_key: key.clone(),
            };
            config.host_keys = Some(HostKeyPins::parse(pin).expect("pin"));
        }
        config
    }
}

/// Observe once, then time `plan` alone over the same desired and observed state.
async fn plan_function(pve: &FakePve, n: u32) -> (f64, f64) {
    let desired = load(&repo(&scenario::manifests(n))).unwrap_or_else(|e| panic!("{e}"));
    let observed = pve_gitops::observe::observe(&pve.client(), &desired)
        .await
        .expect("observe");
    let mut times = Vec::with_capacity(PLAN_ROUNDS);
    for _ in 0..PLAN_ROUNDS {
        let started = Instant::now();
        let p = plan(&desired, &observed.vms, &Policy::default());
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(p.is_empty(), "the converged cluster still has a plan");
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() - 1])
}

/// `/proc/<pid>/status` figures: (RSS bytes, peak RSS bytes).
fn proc_rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((kib("VmRSS:")? * 1024, kib("VmHWM:")? * 1024))
}

/// The daemon over the converged cluster for `passes` idle passes, on the manifests
/// directory or following `remote`.
async fn day(
    pve: &FakePve,
    work: &Workdir,
    n: u32,
    passes: u64,
    resources_per_full: u64,
    remote: Option<(&Followed, Duration)>,
    resync: Duration,
) -> Day {
    let vmlist = work.path(".vmlist");
    std::fs::write(&vmlist, r#"{"version": 1}"#).expect(".vmlist");
    let state = tempfile::tempdir().expect("state dir");
    let log = work.path("daemon.log");
    let file = std::fs::File::create(&log).expect("daemon log");
    let mut cmd = Command::new(agent::binary());
    cmd.arg("run");
    match remote {
        None => cmd.arg(work.manifests()),
        Some((r, interval)) => {
            r.args(&mut cmd);
            cmd.arg("--cache")
                .arg(state.path().join("cache"))
                .arg("--git-interval")
                .arg(format!("{}ms", interval.as_millis()))
        }
    };
    cmd.arg("--no-lease")
        .arg("--node")
        .arg("pve1")
        .arg("--state-dir")
        .arg(state.path())
        .arg("--metrics-listen")
        .arg("off")
        .arg("--vmlist")
        .arg(&vmlist)
        .arg("--interval")
        .arg(format!("{}ms", DAY_INTERVAL.as_millis()))
        .arg("--resync")
        .arg(format!("{}ms", resync.as_millis()));
    work.connection(pve, &mut cmd);
    cmd.env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file);
    pve.control.reset_counters().await;
    let mut child = cmd.spawn().expect("spawn pve-gitops run");
    let pid = child.id();
    let mut cpu = ProcessCpu::new(pid);
    let count = |c: &crate::Counters| {
        let full = c.endpoint(PENDING) / u64::from(n);
        let idle = c
            .endpoint(RESOURCES)
            .saturating_sub(full * resources_per_full);
        (full, idle)
    };
    // The first pass is a full one (the daemon has not settled yet).
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut last_full, mut last_idle, mut last_cpu) = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the daemon exited:\n{}",
            crate::proc::tail(&log, 4000)
        );
        assert!(
            Instant::now() < deadline,
            "the daemon's first pass took over 10 minutes"
        );
        let c = pve.control.counters().await;
        let (full, idle) = count(&c);
        if full >= 1 && idle >= 1 {
            break (full, idle, cpu.read().expect("/proc of the daemon"));
        }
    };
    let started = Instant::now();
    let (first_idle, first_cpu, first_full) = (last_idle, last_cpu, last_full);
    let mut idle = IdleIntervals::default();
    let c = pve.control.counters().await;
    let (mut last_total, mut last_pending) = (c.total, c.endpoint(PENDING));
    let mut sampled = Instant::now();
    let end = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the daemon exited:\n{}",
            crate::proc::tail(&log, 4000)
        );
        let c = pve.control.counters().await;
        let (rss, peak) = proc_rss(pid).expect("/proc of the daemon");
        let now = cpu.read().expect("/proc of the daemon");
        let (full, idle_total) = count(&c);
        idle.push(Interval {
            vm_reads: c.endpoint(PENDING) - last_pending,
            passes: idle_total - last_idle,
            cpu: now - last_cpu,
            requests: c.total - last_total,
            rss,
            wall: sampled.elapsed(),
        });
        sampled = Instant::now();
        (last_full, last_idle, last_cpu) = (full, idle_total, now);
        (last_total, last_pending) = (c.total, c.endpoint(PENDING));
        // The day ends at an idle moment, once the passes are done.
        if idle_total - first_idle >= passes && idle.last_was_idle {
            break (peak, now);
        }
    };
    let wall = started.elapsed();
    // SAFETY: pid is our running child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let total_passes = (last_idle - first_idle) + (last_full - first_full);
    Day {
        idle_passes: last_idle - first_idle,
        full_passes: last_full - first_full,
        wall_s: wall.as_secs_f64(),
        rss_start_mib: mib(idle.first_rss.expect("an idle moment")),
        rss_end_mib: mib(idle.last_rss.expect("an idle moment")),
        peak_rss_mib: mib(end.0),
        cpu_per_idle_ms: idle.cpu.as_secs_f64() * 1000.0 / idle.passes.max(1) as f64,
        cpu_per_pass_ms: (end.1 - first_cpu).as_secs_f64() * 1000.0 / total_passes.max(1) as f64,
        requests_per_idle: idle.requests as f64 / idle.passes.max(1) as f64,
        idle_period_ms: idle.wall.as_secs_f64() * 1000.0 / idle.passes.max(1) as f64,
        git_interval_ms: remote.map(|(_, i)| i.as_secs_f64() * 1000.0),
        resync_ms: resync.as_secs_f64() * 1000.0,
    }
}

/// What the daemon did between two samples of the day.
#[derive(Clone, Copy)]
struct Interval {
    /// VM config reads: a full pass ran in this interval.
    vm_reads: u64,
    /// Idle passes counted (guest listings beyond the full passes').
    passes: u64,
    cpu: Duration,
    requests: u64,
    /// RSS at the interval's end, bytes.
    rss: u64,
    wall: Duration,
}

/// The sum of the intervals that saw nothing but idle passes. An interval counts only
/// when it and both its neighbours read no VM config: a full pass plans, publishes and
/// gives back its heap after its last read (in the next interval), and lists the guests
/// before its first read (in the one before), work that is not an idle pass's.
#[derive(Default)]
struct IdleIntervals {
    /// The last two intervals, oldest first; the newer one is decided when the next comes.
    recent: Vec<Interval>,
    passes: u64,
    cpu: Duration,
    requests: u64,
    wall: Duration,
    /// RSS at the end of the first idle interval and of the last one.
    first_rss: Option<u64>,
    last_rss: Option<u64>,
    /// Whether the interval decided last was an idle one: the daemon is idle now.
    last_was_idle: bool,
}

impl IdleIntervals {
    fn push(&mut self, next: Interval) {
        self.recent.push(next);
        if self.recent.len() < 3 {
            return;
        }
        self.last_was_idle = self.recent.iter().all(|i| i.vm_reads == 0);
        if self.last_was_idle {
            let middle = self.recent[1];
            self.passes += middle.passes;
            self.cpu += middle.cpu;
            self.requests += middle.requests;
            self.wall += middle.wall;
            self.first_rss.get_or_insert(middle.rss);
            self.last_rss = Some(middle.rss);
        }
        self.recent.remove(0);
    }
}
