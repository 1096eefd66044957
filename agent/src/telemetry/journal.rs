//! Logging: to journald with structured fields when systemd connected stderr to the
//! journal, as text to stderr otherwise.
//!
//! Under journald every event carries the fields of its spans and its own, upper-cased
//! and without prefix, so `journalctl -u pve-gitops RESOURCE=web-1` or `ACTION=create`
//! finds what concerns one VM or one kind of change. The fields the agent sets:
//!
//! | field | set by | what |
//! | --- | --- | --- |
//! | `CLUSTER` | the `pass` span (daemon) | the cluster's name |
//! | `COMMIT` | the `pass` span (daemon) | the manifests revision the pass reconciles |
//! | `RESOURCE` | the `vm` span (apply) | the VM's name in the manifests |
//! | `ACTION` | the `action` span (apply) | `create`, `configure`, `start`, ... |
//! | `UPID` | task events (API client) | the PVE task, for `pvenode task log` |
//!
//! The event's own `MESSAGE`, `PRIORITY` (error 3 .. trace 7), `CODE_FILE`, `CODE_LINE`,
//! `TARGET` and `SYSLOG_IDENTIFIER=pve-gitops` come from tracing-journald.

use std::os::fd::AsFd;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Whether `journal_stream` (the `JOURNAL_STREAM` variable, `<device>:<inode>` in decimal)
/// names the file `(dev, ino)`. systemd sets it to the stream it connected the service's
/// stdout/stderr to; when stderr is that stream, nothing (a pipe, a redirect) sits
/// between us and the journal, and native journal entries keep the structured fields.
pub fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().is_ok_and(|d| d == dev) && i.parse::<u64>().is_ok_and(|i| i == ino)
}

/// Whether this process's stderr is the journal stream systemd set up
/// (`systemd.exec(5)`, `$JOURNAL_STREAM`).
pub fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(var) = var.to_str() else {
        return false;
    };
    match fstat(std::io::stderr().as_fd()) {
        Some((dev, ino)) => names_stream(var, dev, ino),
        None => false,
    }
}

/// Device and inode of an open file.
pub fn fstat(fd: std::os::fd::BorrowedFd<'_>) -> Option<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is an open descriptor for the borrow's lifetime; `st` is written by
    // fstat before it is read, and only read when fstat succeeded.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: fstat returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// Install the process's logger: `info` unless `RUST_LOG` says otherwise; journald when
/// stderr is the journal (and its socket answers), text on stderr otherwise.
pub fn init_logging() {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("pve-gitops".into());
                tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .init();
                return;
            }
            Err(e) => eprintln!("pve-gitops: journald is not reachable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_the_same_file() {
        assert!(names_stream("2049:123456", 2049, 123456));
        assert!(names_stream("2049:123456\n", 2049, 123456));
        assert!(!names_stream("2049:123457", 2049, 123456));
        assert!(!names_stream("2048:123456", 2049, 123456));
        assert!(!names_stream("2049", 2049, 123456));
        assert!(!names_stream("", 2049, 123456));
        assert!(!names_stream("x:y", 2049, 123456));
    }

    #[test]
    fn fstat_tells_files_apart() {
        let dir = tempfile::tempdir().unwrap();
        let a = std::fs::File::create(dir.path().join("a")).unwrap();
        let b = std::fs::File::create(dir.path().join("b")).unwrap();
        let (da, ia) = fstat(a.as_fd()).unwrap();
        let (db, ib) = fstat(b.as_fd()).unwrap();
        let stream = format!("{da}:{ia}");
        assert!(names_stream(&stream, da, ia));
        assert_eq!(da, db, "same directory, same device");
        assert!(
            !names_stream(&stream, db, ib),
            "another inode is not the stream"
        );
        // A reopened file is the same stream (what systemd checks against).
        let again = std::fs::File::open(dir.path().join("a")).unwrap();
        assert_eq!(fstat(again.as_fd()), Some((da, ia)));
    }
}
