//! Running one command of the comparison and measuring it as the kernel sees it.
//!
//! Both sides run as child processes (`pve-gitops apply --once`, `ansible-playbook`), so
//! their figures mean the same thing: wall time from spawn to exit, CPU time and peak RSS
//! from `wait4(2)`'s resource usage. For `ansible-playbook` that usage includes the worker
//! processes it forked and waited for (the kernel adds a waited-for child's usage to its
//! parent's); its peak RSS is the largest single process, not the sum.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of a command cost.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub wall: Duration,
    /// User plus system CPU time of the process and the children it waited for.
    pub cpu: Duration,
    /// Peak resident set size of the largest of those processes, bytes.
    pub max_rss: u64,
}

/// Run `cmd` to completion with stdout and stderr going to `log`; panic (with the log's
/// tail) unless it exits 0 or with one of `ok_codes`.
pub fn run(mut cmd: Command, log: &Path, ok_codes: &[i32]) -> (Measured, i32) {
    let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = file.try_clone().expect("clone the log handle");
    cmd.stdin(Stdio::null()).stdout(file).stderr(err);
    let started = Instant::now();
    // Reaped by wait4 below, which std's Child cannot be told about.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let (status, usage) = wait4(child.id());
    let wall = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    if code != 0 && !ok_codes.contains(&code) {
        panic!(
            "{:?} failed (wait status {status:#x}); log {}:\n{}",
            cmd.get_program(),
            log.display(),
            tail(log, 4000)
        );
    }
    (
        Measured {
            wall,
            cpu: cpu_of(&usage),
            // Linux reports ru_maxrss in KiB.
            max_rss: usage.ru_maxrss as u64 * 1024,
        },
        code,
    )
}

/// User plus system CPU time in `usage`.
fn cpu_of(usage: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A running process's CPU time to the nanosecond, read as often as a sampler needs:
/// the sum over its threads of the time the scheduler ran them
/// (`/proc/<pid>/task/<tid>/schedstat`). `/proc/<pid>/stat` counts in clock ticks of
/// 10 ms, about what the idle passes of one 100 ms sample take together: read that way,
/// one day's samples, grouped by their place after a resync, gave 0.67 to 1.36 ms per
/// idle pass where the scheduler's account gave 0.97 to 0.99 for each group.
pub struct ProcessCpu {
    pid: u32,
    /// Each thread's CPU at the last read, ns.
    threads: std::collections::HashMap<u32, u64>,
    total: Duration,
}

impl ProcessCpu {
    pub fn new(pid: u32) -> Self {
        ProcessCpu {
            pid,
            threads: Default::default(),
            total: Duration::ZERO,
        }
    }

    /// The process's CPU since it started, as of now. A thread that ended between two
    /// reads loses what it ran after the first (tokio's blocking threads end after 10 s
    /// of doing nothing, so next to nothing); `None` once the process is gone.
    pub fn read(&mut self) -> Option<Duration> {
        let mut now = std::collections::HashMap::with_capacity(self.threads.len());
        for entry in std::fs::read_dir(format!("/proc/{}/task", self.pid)).ok()? {
            let entry = entry.ok()?;
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread that ended since the listing has no file any more.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                continue;
            };
            let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
            let before = self.threads.get(&tid).copied().unwrap_or(0);
            self.total += Duration::from_nanos(ns.saturating_sub(before));
            now.insert(tid, ns);
        }
        self.threads = now;
        Some(self.total)
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_THREAD has no preconditions.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    cpu_of(&usage)
}

/// `wait4(pid)`: the exit status and the resource usage of the child (std's `Child::wait`
/// throws the usage away).
fn wait4(pid: u32) -> (i32, libc::rusage) {
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child `pid`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is a child this process spawned and has
        // not waited for.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            return (status, usage);
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4({pid}): {err}"
        );
    }
}

/// The last `max` bytes of a file, for failure messages.
pub fn tail(path: &Path, max: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}
