//! The agent's own footprint — resident memory and CPU time used — so an operator sees
//! from the status what running pve-gitops costs a node.

use std::time::Duration;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

/// This process's resource use at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfStat {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time since the process started (all threads).
    pub cpu_time: Duration,
}

/// Why the numbers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SelfStatError {
    #[error("cannot tell this process's id: {0}")]
    Pid(&'static str),
    #[error("this process ({0}) is not readable in the process table")]
    NotFound(u32),
}

/// Read this process's RSS and CPU time (on Linux: `/proc/self/statm` and `stat`).
pub fn sample() -> Result<SelfStat, SelfStatError> {
    let pid = sysinfo::get_current_pid().map_err(SelfStatError::Pid)?;
    let mut system = System::new();
    // Only this process, and not its threads one by one.
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing()
            .with_memory()
            .with_cpu()
            .without_tasks(),
    );
    let process = system
        .process(pid)
        .ok_or(SelfStatError::NotFound(pid.as_u32()))?;
    Ok(SelfStat {
        rss_bytes: process.memory(),
        cpu_time: Duration::from_millis(process.accumulated_cpu_time()),
    })
}

/// Return the allocator's free memory to the system. glibc keeps what a burst of work
/// freed (a full pass over a thousand guests) in its arenas, so the daemon's resident size
/// would stay at its peak through the idle hours after it; `malloc_trim` releases it.
/// Elsewhere (musl, other systems) this does nothing.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no
    // preconditions and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Let every thread allocate from one glibc arena. glibc gives threads their own arenas
/// (up to 8 per core) to avoid lock contention, which a daemon spending nearly all its
/// time asleep does not have; but each arena keeps its own free memory, so what a pass
/// freed on one worker thread could not serve the next pass on the other, and the
/// resident size crept up through a day of idle passes. Call before the runtime starts
/// its threads. Elsewhere (musl, other systems) this does nothing.
pub fn share_one_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads
    // allocate, and glibc takes its own lock anyway.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn rss_covers_memory_in_use() {
        const SIZE: usize = 64 << 20;
        // Touch every page so it is resident, not just reserved.
        let buffer = vec![1u8; SIZE];
        let stat = sample().expect("sample");
        assert!(
            stat.rss_bytes >= SIZE as u64,
            "RSS {} bytes while holding {SIZE}",
            stat.rss_bytes
        );
        assert_eq!(std::hint::black_box(&buffer)[SIZE - 1], 1);
    }

    #[test]
    fn cpu_time_grows_while_computing() {
        let before = sample().expect("sample").cpu_time;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        loop {
            // Work in slices, then look: the kernel counts CPU time in 10 ms ticks.
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            let now = sample().expect("sample").cpu_time;
            if now >= before + Duration::from_millis(50) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "CPU time stayed at {now:?} (from {before:?}) after 20 s of computing"
            );
        }
    }
}
