//! A FUSE emulation of pmxcfs, the Proxmox cluster filesystem behind `/etc/pve`, for
//! testing code that elects a leader through pmxcfs locks.
//!
//! One [`Emulator`] holds one cluster-wide filesystem ([`model::Model`]). Each simulated
//! node gets its own mount point ([`Emulator::mount`]); every request through that
//! mount is made as that node, which is how pmxcfs knows a lock's owner. The test
//! flips a node's quorum and the lock lifetime through the emulator (in process) or
//! through the control socket of the `pmxcfs-emu` binary ([`control`]).
//!
//! ```no_run
//! use std::time::Duration;
//! let emu = pmxcfs_emu::Emulator::new(Duration::from_secs(3));
//! let pve1 = emu.mount("pve1", "/tmp/emu/pve1".as_ref())?;
//! let pve2 = emu.mount("pve2", "/tmp/emu/pve2".as_ref())?;
//! std::fs::create_dir(pve1.path().join("priv/lock/demo"))?; // pve1 holds "demo"
//! assert!(std::fs::create_dir(pve2.path().join("priv/lock/demo")).is_err()); // EEXIST
//! emu.set_quorate("pve1", false); // pve1's writes now fail with EACCES
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Mounting needs root (the `mount(2)` syscall; no `fusermount` involved) and
//! `/dev/fuse`. The lock rules are documented on [`model`].

pub mod control;
mod fuse;
pub mod model;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{BackgroundSession, Config, MountOption};

use model::Model;
pub use model::{LockChange, LockEvent, LockInfo};

/// pmxcfs's lock lifetime (`CFS_LOCK_TIMEOUT`).
pub const PMXCFS_LOCK_LIFETIME: Duration = Duration::from_secs(120);

/// The shared cluster filesystem; clones share it.
#[derive(Clone)]
pub struct Emulator {
    model: Arc<Mutex<Model>>,
}

impl Emulator {
    /// An empty cluster filesystem (with `priv/lock/`) whose locks live `lifetime`.
    pub fn new(lifetime: Duration) -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Emulator {
            model: Arc::new(Mutex::new(Model::new(lifetime, Instant::now(), unix))),
        }
    }

    /// Mounts the filesystem at `mountpoint` as seen from `node`. It stays mounted
    /// until the returned [`Mount`] is dropped or unmounted.
    pub fn mount(&self, node: &str, mountpoint: &Path) -> io::Result<Mount> {
        let fs = fuse::NodeFs {
            node: node.to_string(),
            model: Arc::clone(&self.model),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(format!("pmxcfs-emu:{node}")),
            MountOption::Subtype("pmxcfs-emu".into()),
        ];
        let session = fuser::spawn_mount(fs, mountpoint, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("mounting {node} at {}: {e}", mountpoint.display()),
            )
        })?;
        Ok(Mount {
            node: node.to_string(),
            path: mountpoint.to_path_buf(),
            session: Some(session),
        })
    }

    /// Quorum of one node: without it, every write through its mount is EACCES.
    pub fn set_quorate(&self, node: &str, quorate: bool) {
        self.model().set_quorate(node, quorate);
    }

    pub fn quorate(&self, node: &str) -> bool {
        self.model().quorate(node)
    }

    /// How long a lock must go without renewal before a release request frees it.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.model().set_lifetime(lifetime);
    }

    pub fn lifetime(&self) -> Duration {
        self.model().lifetime()
    }

    /// Every lock with its owner (which pmxcfs itself does not show through `stat`).
    pub fn locks(&self) -> Vec<LockInfo> {
        self.model().locks(Instant::now())
    }

    /// Every acquisition, renewal and release of every lock so far, oldest first: who
    /// held which lock when, for tests that check no two nodes acted at once.
    pub fn lock_history(&self) -> Vec<LockEvent> {
        self.model().lock_history().to_vec()
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().expect("pmxcfs model lock")
    }
}

/// One node's mount point; unmounted on drop.
pub struct Mount {
    node: String,
    path: PathBuf,
    session: Option<BackgroundSession>,
}

impl Mount {
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts and waits for the serving thread to end.
    pub fn unmount(mut self) -> io::Result<()> {
        match self.session.take() {
            Some(session) => session.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}

/// For tests: true when FUSE can be mounted here (root and `/dev/fuse`). When it
/// cannot, this panics with the reason, unless `PMXCFS_EMU_SKIP=1` is set, in which
/// case it says so on stderr and returns false so the test can return early.
pub fn fuse_ready_or_skip() -> bool {
    let problem = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => return true,
        Err(e) => format!("cannot open /dev/fuse ({e}); FUSE tests need root and the fuse module"),
    };
    if std::env::var_os("PMXCFS_EMU_SKIP").is_some_and(|v| v == "1") {
        eprintln!("skipped: {problem} (PMXCFS_EMU_SKIP=1)");
        return false;
    }
    panic!("{problem}; set PMXCFS_EMU_SKIP=1 to skip these tests");
}
