//! `make bench`: how fast and how cheaply the agent converges a cluster (issue 4).
//!
//! For each size N (`BENCH_SIZES=10,100,500` by default) a fresh 3-node fakepve at time
//! scale 0 (tasks end before their request returns, so only the agent and the API calls
//! are measured) gets one `VirtualMachineSet` of N clones (2 cores, 2 GiB, a static IPv4
//! by cloud-init, running), converged from empty at parallelism 4. The table shows the
//! wall time, the API calls per VM, and what the unchanged cluster costs afterwards: a
//! drift check (a second full pass) and an idle daemon pass, each against its target.
//! Then N = `BENCH_PARALLEL_N` (default 100; 0 skips it) converges at parallelism 1 and
//! 4 with tasks that take real time, and the ratio is checked against its target.
//!
//! The scenario itself is `agent/tests/support/scale.rs`, shared with the test that
//! guards the call counts in CI (`agent/tests/scale.rs`). Targets print PASS or MISS;
//! the exit status is 0 either way (a failure to converge panics).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::time::Duration;

use support::control::Counters;
use support::fakepve::{FakePve, Options};
use support::scale;

const DEFAULT_SIZES: &[u32] = &[10, 100, 500];
const DEFAULT_PARALLEL_N: u32 = 100;

/// The parallelism comparison needs tasks that take time. At time scale 0 a task ends
/// before its request returns, and fakepve is one Python process on this machine: p4
/// against p1 would compare how fast fakepve answers requests, not whether the agent
/// overlaps PVE's work. On a real cluster the time goes into tasks that the nodes run side
/// by side (a full clone copies a disk, a start boots QEMU: seconds against milliseconds
/// per request). So here every clone and every start takes TASK_SECS simulated seconds
/// (fakepve's Ceph "slow OSDs": RBD-backed clones and starts pay it) at TIME_SCALE real
/// seconds per simulated second: 50 ms each, 100 ms of task time per VM, several times
/// what its requests cost. Perfect overlap gives p4/p1 = 1/4 plus the part of the
/// requests fakepve serves one at a time; the target is under 1/3.
const TIME_SCALE: f64 = 0.01;
const TASK_SECS: f64 = 5.0;
const PARALLEL_TARGET: f64 = 1.0 / 3.0;

fn main() {
    let sizes = sizes_from_env("BENCH_SIZES", DEFAULT_SIZES);
    let parallel_n = sizes_from_env("BENCH_PARALLEL_N", &[DEFAULT_PARALLEL_N])
        .first()
        .copied()
        .unwrap_or(0);
    // Like the agent's own runtime (reconcile.rs): two workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let misses = runtime.block_on(run(&sizes, parallel_n));
    if misses > 0 {
        println!("\n{misses} target(s) missed");
    } else {
        println!("\nall targets met");
    }
}

/// A comma-separated list of sizes from `var`, or `default`.
fn sizes_from_env(var: &str, default: &[u32]) -> Vec<u32> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: {s:?} is not a number (e.g. {var}=10,100)"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

fn start(time_scale: f64) -> FakePve {
    FakePve::start(Options {
        time_scale,
        ..Options::default()
    })
    .unwrap_or_else(|| {
        eprintln!("the benchmark needs python3 (>= 3.10) for fakepve");
        std::process::exit(1)
    })
}

fn verdict(met: bool) -> &'static str {
    if met {
        "PASS"
    } else {
        "MISS"
    }
}

/// Run everything, print the tables; returns the number of targets missed.
async fn run(sizes: &[u32], parallel_n: u32) -> usize {
    let mut misses = 0;
    println!(
        "pve-gitops converge benchmark: fakepve, 3 nodes; one VirtualMachineSet of N full \
         clones\n(2 cores, 2 GiB, static IPv4 by cloud-init, running) from an empty cluster, \
         parallelism 4, time scale 0\n"
    );
    println!(
        "drift check = a second full pass on the unchanged cluster; target: 0 writes, \
         reads <= N + {}",
        scale::DRIFT_READS_CONSTANT
    );
    println!(
        "idle pass   = the daemon's pass with manifests and pmxcfs .vmlist unchanged; \
         target: <= {} calls\n",
        scale::IDLE_CALLS_MAX
    );
    println!(
        "{:>5} {:>10} {:>9} {:>10} {:>10} | {:>11} {:>12} {:>6} | {:>10} {:>6}",
        "N",
        "converge",
        "calls/VM",
        "reads/VM",
        "writes/VM",
        "drift reads",
        "drift writes",
        "",
        "idle calls",
        ""
    );
    let mut last: Option<(u32, Counters, Counters)> = None;
    for &n in sizes {
        let pve = start(0.0);
        scale::prepare(&pve).await;
        let converged = scale::converge(&pve, n, 4).await;
        check_converged(&converged, n);
        let drift = scale::drift_check(&pve, n).await;
        let idle = scale::idle_pass(&pve, n).await;
        let drift_ok = scale::drift_target_met(&drift, u64::from(n));
        let idle_ok = scale::idle_target_met(&idle);
        misses += usize::from(!drift_ok) + usize::from(!idle_ok);
        let per_vm = |x: u64| x as f64 / f64::from(n);
        println!(
            "{:>5} {:>8.2} s {:>9.1} {:>10.1} {:>10.1} | {:>11} {:>12} {:>6} | {:>10} {:>6}",
            n,
            converged.wall.as_secs_f64(),
            per_vm(converged.calls.total),
            per_vm(converged.calls.reads),
            per_vm(converged.calls.writes),
            drift.reads,
            drift.writes,
            verdict(drift_ok),
            idle.total,
            verdict(idle_ok),
        );
        last = Some((n, converged.calls, drift));
    }
    if let Some((n, converge, drift)) = last {
        println!("\nwhere the calls go at N = {n} (per VM, converge | drift check):");
        print!("{}", breakdown(n, &converge, &drift));
    }
    if parallel_n > 0 {
        misses += usize::from(!parallelism(parallel_n).await);
    }
    misses
}

fn check_converged(c: &scale::Converged, n: u32) {
    assert!(
        c.report.failed.is_empty() && c.report.skipped.is_empty(),
        "converging {n} VMs failed: {:?}",
        c.report
    );
    assert_eq!(
        c.report.done.len(),
        n as usize,
        "converging {n} VMs: {}",
        pve_gitops::reconcile::describe(&c.plan)
    );
}

/// Calls per VM by endpoint, side by side for the converge and the drift check.
fn breakdown(n: u32, converge: &Counters, drift: &Counters) -> String {
    let mut endpoints: Vec<&String> = converge
        .by_endpoint
        .keys()
        .chain(drift.by_endpoint.keys())
        .collect();
    endpoints.sort();
    endpoints.dedup();
    let mut out = String::new();
    for e in endpoints {
        let per_vm = |c: &Counters| c.endpoint(e) as f64 / f64::from(n);
        let _ = writeln!(
            out,
            "  {:<48} {:>6.2} | {:>6.2}",
            e,
            per_vm(converge),
            per_vm(drift)
        );
    }
    out
}

/// N VMs at parallelism 1 and 4, each on a fresh fake with slow tasks; true if the
/// target is met.
async fn parallelism(n: u32) -> bool {
    println!(
        "\nparallelism, N = {n}: every clone and start takes {:.0} ms (fakepve time scale \
         {TIME_SCALE}, Ceph slow {TASK_SECS} s)",
        TASK_SECS * TIME_SCALE * 1000.0
    );
    let mut walls = Vec::new();
    for p in [1, 4] {
        let pve = start(TIME_SCALE);
        scale::prepare(&pve).await;
        scale::slow_tasks(&pve, TASK_SECS).await;
        let converged = scale::converge(&pve, n, p).await;
        check_converged(&converged, n);
        println!("  p{p}: {:>7.2} s", converged.wall.as_secs_f64());
        walls.push(converged.wall);
    }
    let ratio = ratio(walls[1], walls[0]);
    let met = ratio < PARALLEL_TARGET;
    println!(
        "  p4/p1 = {ratio:.2} (target < {PARALLEL_TARGET:.2}): {}",
        verdict(met)
    );
    met
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
