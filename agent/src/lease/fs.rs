//! The few filesystem operations the lease needs, behind a trait.
//!
//! The same lease code runs on the real `/etc/pve` (pmxcfs), on the FUSE emulation the
//! tests mount, and on [`super::fake::FakePmxcfs`] for unit tests. Errors stay
//! [`io::Error`]s so the lease can tell `EEXIST` (someone holds the lock) and `ENOENT`
//! (the lock is gone) from everything else by [`io::ErrorKind`], as pmxcfs reports them
//! through the kernel.

use std::fs::{self, File, FileTimes};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Filesystem operations on pmxcfs (or something with its lock semantics).
///
/// Times are whole seconds since the Unix epoch, as pmxcfs stores them.
pub trait LockFs: Send + Sync {
    /// `mkdir(2)`: the acquire step; `AlreadyExists` when another holder has the lock.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// `rmdir(2)`: the release step.
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    /// `utime(2)` with explicit times: `(0, now)` renews, `(0, 0)` asks for release.
    fn utime(&self, path: &Path, atime: u64, mtime: u64) -> io::Result<()>;
    /// The modification time from `stat(2)`, or `None` when the path does not exist.
    fn mtime(&self, path: &Path) -> io::Result<Option<u64>>;
    /// A whole small file, or `None` when it does not exist.
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Replace a small file (one `write(2)`, so pmxcfs sends it as one message).
    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()>;
}

/// [`LockFs`] on a real mounted filesystem: `/etc/pve`, or an emulation's mount point.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdLockFs;

impl LockFs for StdLockFs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn utime(&self, path: &Path, atime: u64, mtime: u64) -> io::Result<()> {
        // std sets times through an open descriptor (futimens); opening a directory
        // read-only is allowed, and pmxcfs sees the same setattr as from utime(2).
        let times = FileTimes::new()
            .set_accessed(UNIX_EPOCH + Duration::from_secs(atime))
            .set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
        File::open(path)?.set_times(times)
    }

    fn mtime(&self, path: &Path) -> io::Result<Option<u64>> {
        match fs::metadata(path) {
            Ok(meta) => {
                let modified = meta.modified()?;
                // A time before 1970 cannot come from pmxcfs; treat it as the epoch.
                let secs = modified
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                Ok(Some(secs))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        fs::write(path, contents)
    }
}

/// A failed lease operation, with the operation and path an operator needs.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct LockError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl LockError {
    pub fn new(op: &'static str, path: &Path, source: io::Error) -> Self {
        LockError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}
