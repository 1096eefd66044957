//! `make bench-compare`: pve-gitops against the Ansible playbook a Proxmox user writes,
//! on the same fakepve, and the agent's footprint at 1,000 VMs (issue 10).
//!
//! Comparison: one fakepve cluster (3 nodes, TLS, token auth, time scale 1: simulated
//! seconds are real seconds) per size N. Each tool converges N VMs (full clone of a
//! template on RBD storage, 2 cores, 2 GiB, static IPv4 by cloud-init, running) from an
//! empty cluster, then runs again on the unchanged cluster. Two scenarios: fakepve's own
//! task durations (tasks end as soon as they start), and realistic ones (every clone and
//! every start takes `REALISTIC_TASK_SECS` simulated seconds, fakepve's slow-Ceph knob).
//! Requests are counted by the harness (`tests/fakepve/harness.py`); wall time, CPU and
//! peak RSS are the child process's, from `wait4`.
//!
//! Scale (`scale.rs`): 1,000 desired against 1,000 existing VMs: plan time, the agent's
//! peak RSS and CPU, the requests of a drift check, and a day of daemon polling.
//!
//! Writes `docs/benchmarks.md`, `docs/benchmarks.json` and `docs/benchmarks.png` (the
//! chart, drawn by `tests/bench-compare/chart.py` with matplotlib from the bench venv).
//!
//! Environment:
//!   BENCH_SIZES=10,100,500        sizes of the scenario with fakepve's task durations
//!   BENCH_REALISTIC_SIZES=10,100  sizes of the realistic scenario (empty: skip it)
//!   BENCH_MAX_WORKERS=8,12        datacenter `max_workers` values pve-gitops converges
//!                                 the realistic scenario's largest size with again
//!                                 (empty: none; unset, PVE's default is 4)
//!   BENCH_ANSIBLE_RERUN_MAX=100   largest N at which Ansible's re-run is measured (at
//!                                 500 it alone takes a quarter of an hour)
//!   BENCH_SCALE=1000              VMs of the scale part (0: skip it)
//!   BENCH_DAY_PASSES=5760         daemon passes standing for a day (15 s interval)
//!   BENCH_PARTS=compare,scale     which parts run
//!   BENCH_OUT=docs                where the document, data and chart go

#[path = "../../tests/support/mod.rs"]
mod support;

mod agent;
mod ansible;
mod proc;
mod report;
mod scale;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use support::control::{text, Counters};
use support::fakepve::{FakePve, Options};
use support::scale as scenario;

/// Simulated seconds each clone and each start takes in the realistic scenario: a full
/// clone of a small cloud image on Ceph RBD and a QEMU start with cloud-init both take
/// about this long on a healthy cluster.
pub const REALISTIC_TASK_SECS: f64 = 2.0;

/// One scenario of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub key: &'static str,
    pub title: &'static str,
    /// Extra simulated seconds per clone and start (fakepve's Ceph slowness).
    pub task_secs: f64,
    pub sizes: Vec<u32>,
    /// Whether the unchanged-cluster re-run is measured (it runs no task, so one
    /// scenario is enough).
    pub rerun: bool,
    /// Datacenter `max_workers` values pve-gitops converges the largest size with again,
    /// after its run at PVE's default: where tasks take time, how many run at once per
    /// node sets the wall time, and this is the operator's setting for it.
    pub max_workers: Vec<u32>,
}

/// One measured run of one tool.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub scenario: &'static str,
    pub tool: &'static str,
    pub n: u32,
    /// `converge` (from empty) or `rerun` (unchanged cluster).
    pub phase: &'static str,
    /// The datacenter's `max_workers` for this run (`None`: not set, PVE's default).
    pub max_workers: Option<u32>,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_mib: f64,
    pub requests: u64,
    pub reads: u64,
    pub writes: u64,
    pub by_endpoint: std::collections::BTreeMap<String, u64>,
}

pub const PVE_GITOPS: &str = "pve-gitops";
pub const ANSIBLE: &str = "ansible";

fn main() {
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "compare,scale".into());
    let out = repo_root().join(std::env::var("BENCH_OUT").unwrap_or_else(|_| "docs".into()));
    let scenarios = vec![
        Scenario {
            key: "instant",
            title: "fakepve's task durations (tasks end as they start)",
            task_secs: 0.0,
            sizes: sizes_from_env("BENCH_SIZES", &[10, 100, 500]),
            rerun: true,
            max_workers: Vec::new(),
        },
        Scenario {
            key: "realistic",
            title: "realistic task durations (2 s per clone and per start, RBD)",
            task_secs: REALISTIC_TASK_SECS,
            sizes: sizes_from_env("BENCH_REALISTIC_SIZES", &[10, 100]),
            rerun: false,
            max_workers: sizes_from_env("BENCH_MAX_WORKERS", &[8, 12]),
        },
    ];
    let scale_n = sizes_from_env("BENCH_SCALE", &[1000])
        .first()
        .copied()
        .unwrap_or(0);
    let day_passes = sizes_from_env("BENCH_DAY_PASSES", &[5760])
        .first()
        .copied()
        .unwrap_or(5760);
    let ansible_rerun_max = sizes_from_env("BENCH_ANSIBLE_RERUN_MAX", &[100])
        .first()
        .copied()
        .unwrap_or(u32::MAX);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut runs = Vec::new();
    let mut compared = Vec::new();
    if parts.contains("compare") {
        let repo = repo_root();
        let bin = ansible::venv_bin(&repo);
        for s in &scenarios {
            for &n in &s.sizes {
                let ansible_rerun = s.rerun && n <= ansible_rerun_max;
                runs.extend(runtime.block_on(compare(s, n, ansible_rerun, &bin, &repo)));
            }
            if !s.sizes.is_empty() {
                compared.push(s.clone());
            }
        }
    }
    let scale = if parts.contains("scale") && scale_n > 0 {
        Some(runtime.block_on(scale::run(scale_n, day_passes)))
    } else {
        None
    };
    report::write(&out, &compared, &runs, ansible_rerun_max, scale.as_ref());
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the agent crate lives in the workspace")
        .to_path_buf()
}

/// A comma-separated list of numbers from `var`, or `default`; an empty value: none.
fn sizes_from_env(var: &str, default: &[u32]) -> Vec<u32> {
    match std::env::var(var) {
        Ok(v) => v
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: {s:?} is not a number (e.g. {var}=10,100)"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// A fresh 3-node fake at time scale 1 with the RBD storage and the template.
pub async fn fresh_fake(task_secs: f64, time_scale: f64) -> FakePve {
    let pve = FakePve::start(Options {
        time_scale,
        ..Options::default()
    })
    .unwrap_or_else(|| {
        eprintln!("the benchmark needs python3 (>= 3.11) for fakepve and Ansible");
        std::process::exit(1)
    });
    scenario::prepare(&pve).await;
    // fakepve's nodes have 8 GiB and `apply` checks capacity before it clones: room for
    // a few thousand 2 GiB VMs and their 2 GiB disks.
    pve.control
        .post(
            "/capacity",
            serde_json::json!({
                "nodes": { "maxmem": 4u64 << 40, "mem": 2u64 << 30, "maxcpu": 512 },
                "storages": { scenario::STORAGE: 64u64 << 40 },
            }),
        )
        .await;
    if task_secs > 0.0 {
        scenario::slow_tasks(&pve, task_secs).await;
    }
    pve
}

/// Both tools at size `n` in scenario `s`, each from an empty cluster, then re-run.
async fn compare(s: &Scenario, n: u32, ansible_rerun: bool, bin: &Path, repo: &Path) -> Vec<Run> {
    eprintln!("== {} N = {n}", s.key);
    let pve = fresh_fake(s.task_secs, 1.0).await;
    let work = agent::Workdir::new(&pve, &scenario::manifests(n));
    let mut runs = Vec::new();

    let log = work.path("pve-gitops-converge.log");
    pve.control.reset_counters().await;
    let m = agent::apply_once(&pve, &work, &log);
    runs.push(record(
        s,
        PVE_GITOPS,
        n,
        "converge",
        m,
        pve.control.counters().await,
    ));
    let hosts = converged(&pve, n).await;
    if s.rerun {
        pve.control.reset_counters().await;
        let m = agent::apply_once(&pve, &work, &work.path("pve-gitops-rerun.log"));
        runs.push(record(
            s,
            PVE_GITOPS,
            n,
            "rerun",
            m,
            pve.control.counters().await,
        ));
    }
    if s.sizes.iter().max() == Some(&n) {
        for &workers in &s.max_workers {
            runs.push(with_max_workers(s, n, workers, &pve, &work, &hosts).await);
        }
    }

    let removed = pve.control.reset().await;
    assert_eq!(removed.len(), n as usize, "reset removed {removed:?}");
    let inventory = work.path("inventory.ini");
    std::fs::write(
        &inventory,
        ansible::inventory(
            &hosts.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>(),
            scenario::TEMPLATE,
            scenario::STORAGE,
        ),
    )
    .expect("inventory");
    pve.control.reset_counters().await;
    let m = ansible::play(
        bin,
        repo,
        &pve,
        &inventory,
        &work.path("ansible-converge.log"),
    );
    runs.push(record(
        s,
        ANSIBLE,
        n,
        "converge",
        m,
        pve.control.counters().await,
    ));
    let theirs = converged(&pve, n).await;
    assert_eq!(
        theirs, hosts,
        "the playbook's VMs differ from pve-gitops's (name, vmid, node, address, cores, memory, user, status)"
    );
    if ansible_rerun {
        pve.control.reset_counters().await;
        let m = ansible::play(bin, repo, &pve, &inventory, &work.path("ansible-rerun.log"));
        runs.push(record(
            s,
            ANSIBLE,
            n,
            "rerun",
            m,
            pve.control.counters().await,
        ));
    }
    for r in &runs {
        eprintln!(
            "   {:<10} {:<8} {:>8.2} s  {:>6} requests ({:.1}/VM)  {} writes  cpu {:.1} s",
            r.tool,
            r.phase,
            r.wall_s,
            r.requests,
            r.requests as f64 / f64::from(n),
            r.writes,
            r.cpu_s
        );
    }
    runs
}

/// pve-gitops converging `n` VMs again from an empty cluster whose datacenter.cfg says
/// `max_workers: workers`; panics unless it leaves the VMs `hosts` (its run at the
/// default did). Leaves the VMs and the setting unset again.
async fn with_max_workers(
    s: &Scenario,
    n: u32,
    workers: u32,
    pve: &FakePve,
    work: &agent::Workdir,
    hosts: &[(ansible::Host, String)],
) -> Run {
    let removed = pve.control.reset().await;
    assert_eq!(removed.len(), n as usize, "reset removed {removed:?}");
    pve.control
        .datacenter(serde_json::json!({ "max_workers": workers }))
        .await;
    pve.control.reset_counters().await;
    let log = work.path(&format!("pve-gitops-max-workers-{workers}.log"));
    let m = agent::apply_once(pve, work, &log);
    let mut run = record(
        s,
        PVE_GITOPS,
        n,
        "converge",
        m,
        pve.control.counters().await,
    );
    run.max_workers = Some(workers);
    assert_eq!(
        converged(pve, n).await,
        hosts,
        "max_workers {workers} left other VMs than the default"
    );
    pve.control.datacenter(serde_json::json!({})).await;
    run
}

fn record(
    s: &Scenario,
    tool: &'static str,
    n: u32,
    phase: &'static str,
    m: proc::Measured,
    c: Counters,
) -> Run {
    Run {
        scenario: s.key,
        tool,
        n,
        phase,
        max_workers: None,
        wall_s: m.wall.as_secs_f64(),
        cpu_s: m.cpu.as_secs_f64(),
        max_rss_mib: m.max_rss as f64 / (1024.0 * 1024.0),
        requests: c.total,
        reads: c.reads,
        writes: c.writes,
        by_endpoint: c.by_endpoint,
    }
}

/// What the VMs a tool left look like, by vmid: the inventory entry and the settings
/// both tools are asked for. Panics unless there are `n`, all running.
async fn converged(pve: &FakePve, n: u32) -> Vec<(ansible::Host, String)> {
    let state = pve.control.state().await;
    let mut out = Vec::new();
    for g in state["guests"].as_array().expect("guests") {
        if g["template"].as_bool() == Some(true) {
            continue;
        }
        let cfg = &g["config"];
        let get = |k: &str| cfg.get(k).map(text).unwrap_or_default();
        assert_eq!(
            g["status"],
            Value::from("running"),
            "VM {} is not running",
            g["vmid"]
        );
        out.push((
            ansible::Host {
                name: text(&g["name"]),
                vmid: g["vmid"].as_u64().expect("vmid") as u32,
                node: text(&g["node"]),
                ipconfig0: get("ipconfig0"),
            },
            format!(
                "cores={} memory={} ciuser={}",
                get("cores"),
                get("memory"),
                get("ciuser")
            ),
        ));
    }
    assert_eq!(out.len(), n as usize, "VMs after converging {n}");
    out
}
