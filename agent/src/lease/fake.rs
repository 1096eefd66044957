//! An in-process model of pmxcfs's lock semantics, for fast tests without FUSE.
//!
//! It follows pmxcfs (`memdb.c`, `cfs-plug-memdb.c`, `dcdb.c` in pve-cluster):
//! - a directory directly below `priv/lock/` is a lock; its owner is the node that
//!   created it (pmxcfs records the writer's node id), and `stat` does not show it;
//! - `utime(lock, _, mtime)` with `mtime > 0` renews: refused (EACCES) unless the caller
//!   is the owner and `mtime` is not older than the current one;
//! - `utime(lock, 0, 0)` is a release request: the lock is deleted if it has not
//!   changed for longer than the lifetime, measured on a monotonic clock from its last
//!   change (pmxcfs uses each node's local time of first sight, not the stored mtime);
//!   otherwise EACCES;
//! - `rmdir` deletes any empty directory, whoever owns it (pmxcfs checks no owner);
//! - every write (mkdir, rmdir, utime, file writes) fails with EACCES on a node without
//!   quorum; reads still work.
//!
//! Simplifications: parent directories are not modelled (every parent exists), and
//! [`FakePmxcfs::set_failing`] makes every operation of a node fail, as if its pmxcfs
//! broke. The FUSE emulation in `tests/pmxcfs` models the same rules on a real mount.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::clock::{Clock, ManualClock};
use super::fs::LockFs;

/// The shared cluster filesystem; [`FakePmxcfs::node`] gives one node's view.
#[derive(Debug, Clone)]
pub struct FakePmxcfs {
    state: Arc<Mutex<State>>,
    clock: ManualClock,
}

#[derive(Debug)]
struct State {
    entries: BTreeMap<PathBuf, Entry>,
    no_quorum: BTreeSet<String>,
    failing: BTreeMap<String, io::ErrorKind>,
    lifetime: Duration,
    /// (node, operation) → how many times it was called.
    calls: BTreeMap<(String, &'static str), usize>,
}

#[derive(Debug)]
struct Entry {
    /// The node that created or last renewed it.
    writer: String,
    mtime: u64,
    /// When it last changed, for the lock lifetime.
    changed: Instant,
    /// `None` for a directory.
    contents: Option<Vec<u8>>,
}

impl FakePmxcfs {
    /// An empty filesystem with pmxcfs's 120 s lock lifetime, timed by `clock`.
    pub fn new(clock: ManualClock) -> Self {
        FakePmxcfs {
            state: Arc::new(Mutex::new(State {
                entries: BTreeMap::new(),
                no_quorum: BTreeSet::new(),
                failing: BTreeMap::new(),
                lifetime: Duration::from_secs(120),
                calls: BTreeMap::new(),
            })),
            clock,
        }
    }

    /// The filesystem as `node` sees it.
    pub fn node(&self, node: &str) -> FakeNode {
        FakeNode {
            cluster: self.clone(),
            node: node.to_string(),
        }
    }

    pub fn set_quorate(&self, node: &str, quorate: bool) {
        let mut state = self.state();
        if quorate {
            state.no_quorum.remove(node);
        } else {
            state.no_quorum.insert(node.to_string());
        }
    }

    /// Make every operation of `node` fail with `kind` (`None` heals it).
    pub fn set_failing(&self, node: &str, kind: Option<io::ErrorKind>) {
        let mut state = self.state();
        match kind {
            Some(kind) => state.failing.insert(node.to_string(), kind),
            None => state.failing.remove(node),
        };
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state().lifetime = lifetime;
    }

    /// The node that owns the lock directory at `path`, if it exists.
    pub fn holder(&self, path: &Path) -> Option<String> {
        self.state()
            .entries
            .get(path)
            .filter(|e| e.contents.is_none())
            .map(|e| e.writer.clone())
    }

    /// Removes `path` as an administrator would (no quorum or owner checks).
    pub fn remove(&self, path: &Path) {
        self.state().entries.remove(path);
    }

    /// How often `node` called `op` ("mkdir", "rmdir", "utime", "stat", "read", "write").
    pub fn calls(&self, node: &str, op: &'static str) -> usize {
        let key = (node.to_string(), op);
        self.state().calls.get(&key).copied().unwrap_or(0)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake pmxcfs lock")
    }
}

/// One node's view of a [`FakePmxcfs`].
#[derive(Debug, Clone)]
pub struct FakeNode {
    cluster: FakePmxcfs,
    node: String,
}

impl FakeNode {
    /// Counts the call, applies injected failures and, for writes, the quorum rule.
    fn enter(&self, op: &'static str, write: bool) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.cluster.state();
        *state.calls.entry((self.node.clone(), op)).or_default() += 1;
        if let Some(kind) = state.failing.get(&self.node) {
            return Err(io::Error::from(*kind));
        }
        if write && state.no_quorum.contains(&self.node) {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(state)
    }

    fn now(&self) -> (Instant, u64) {
        (self.cluster.clock.now(), self.cluster.clock.unix_secs())
    }
}

fn err(kind: io::ErrorKind) -> io::Error {
    io::Error::from(kind)
}

/// Whether `path` is a pmxcfs lock directory name (`…/priv/lock/<name>`).
fn is_lock_path(path: &Path) -> bool {
    let parent = path.parent();
    path.file_name().is_some()
        && parent.and_then(Path::file_name) == Some("lock".as_ref())
        && parent.and_then(Path::parent).and_then(Path::file_name) == Some("priv".as_ref())
}

impl LockFs for FakeNode {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        let (now, unix) = self.now();
        let mut state = self.enter("mkdir", true)?;
        if state.entries.contains_key(path) {
            return Err(err(io::ErrorKind::AlreadyExists));
        }
        state.entries.insert(
            path.to_path_buf(),
            Entry {
                writer: self.node.clone(),
                mtime: unix,
                changed: now,
                contents: None,
            },
        );
        Ok(())
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.enter("rmdir", true)?;
        match state.entries.get(path) {
            None => return Err(err(io::ErrorKind::NotFound)),
            Some(e) if e.contents.is_some() => return Err(err(io::ErrorKind::NotADirectory)),
            Some(_) => {}
        }
        if state
            .entries
            .keys()
            .any(|k| k != path && k.starts_with(path))
        {
            return Err(err(io::ErrorKind::DirectoryNotEmpty));
        }
        state.entries.remove(path);
        Ok(())
    }

    fn utime(&self, path: &Path, _atime: u64, mtime: u64) -> io::Result<()> {
        let (now, _) = self.now();
        let mut state = self.enter("utime", true)?;
        let lifetime = state.lifetime;
        let Some(entry) = state.entries.get_mut(path) else {
            return Err(err(io::ErrorKind::NotFound));
        };
        if entry.contents.is_none() && is_lock_path(path) {
            if mtime == 0 {
                if now.saturating_duration_since(entry.changed) > lifetime {
                    state.entries.remove(path);
                    return Ok(());
                }
                return Err(err(io::ErrorKind::PermissionDenied));
            }
            if mtime < entry.mtime || entry.writer != self.node {
                return Err(err(io::ErrorKind::PermissionDenied));
            }
            entry.changed = now;
        }
        entry.mtime = mtime;
        entry.writer = self.node.clone();
        Ok(())
    }

    fn mtime(&self, path: &Path) -> io::Result<Option<u64>> {
        let state = self.enter("stat", false)?;
        Ok(state.entries.get(path).map(|e| e.mtime))
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let state = self.enter("read", false)?;
        match state.entries.get(path) {
            None => Ok(None),
            Some(Entry { contents: None, .. }) => Err(err(io::ErrorKind::IsADirectory)),
            Some(Entry {
                contents: Some(c), ..
            }) => Ok(Some(c.clone())),
        }
    }

    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let (now, unix) = self.now();
        let mut state = self.enter("write", true)?;
        if let Some(Entry { contents: None, .. }) = state.entries.get(path) {
            return Err(err(io::ErrorKind::IsADirectory));
        }
        state.entries.insert(
            path.to_path_buf(),
            Entry {
                writer: self.node.clone(),
                mtime: unix,
                changed: now,
                contents: Some(contents.to_vec()),
            },
        );
        Ok(())
    }
}
