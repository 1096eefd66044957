//! The shared cluster filesystem state and pmxcfs's rules, without FUSE.
//!
//! Facts from pve-cluster's pmxcfs (`memdb.c`, `cfs-plug-memdb.c`, `dcdb.c`,
//! `pmxcfs.c`) that this model follows:
//!
//! - Every entry remembers its *writer*, the node that created or last changed it.
//!   A directory directly below `priv/lock/` is a lock; its owner is that writer. The
//!   owner is not visible through `stat`.
//! - `mkdir` of an existing name is `EEXIST`, whoever holds it.
//! - On a lock, `utime` with an mtime older than the current one is refused (`EACCES`),
//!   and so is any `utime` from a node that is not the writer: only the holder renews.
//! - `utime(lock, 0, 0)` is a release request. The lock is deleted if pmxcfs has seen
//!   no change to it for longer than the lifetime (120 s, `CFS_LOCK_TIMEOUT`), timed
//!   from the moment it saw the last change on its own clock, never from the stored
//!   mtime. A lock that is not expired stays, and the request itself fails with
//!   `EACCES` (an mtime of 0 is older than the lock's). Nothing expires by itself:
//!   only a release request deletes an expired lock.
//! - `rmdir` removes any empty directory; it does not check the owner.
//! - Without quorum every write (mkdir, rmdir, create, write, truncate, utime,
//!   rename, unlink) fails with `EACCES`; reads work. `stat` shows directories
//!   0777/0555 and files 0666/0444 (quorate/not), masked to 0700/0500 below `priv/`
//!   and to 0755, 0640 elsewhere; atime = ctime = mtime; gid is www-data's.
//! - Lock directories cannot be renamed.
//!
//! Times come in as arguments (`now` monotonic, `unix` wall seconds) so the rules are
//! tested here without sleeping.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use fuser::Errno;

pub type Ino = u64;
pub const ROOT: Ino = 1;
/// www-data on Debian, the group pmxcfs gives every file.
const WWW_DATA_GID: u32 = 33;

pub type Result<T> = std::result::Result<T, Errno>;

/// What `stat` shows of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub is_dir: bool,
    pub size: u64,
    pub mtime: u64,
    pub perm: u16,
    pub gid: u32,
}

/// A lock directory as the control channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub name: String,
    pub owner: String,
    pub mtime: u64,
    /// Time since pmxcfs last saw it change.
    pub age: Duration,
}

/// What happened to a lock, for tests that check who could act when
/// ([`Model::lock_history`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockChange {
    /// `mkdir`: the node took the lock.
    Acquired,
    /// `utime` by the holder: the lock's lifetime starts again.
    Renewed,
    /// `rmdir` by anyone, or a release request on an expired lock: nobody holds it.
    Released,
}

/// One change of a lock: when, which lock, by which node (for `Released`, the last
/// holder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEvent {
    pub at: Instant,
    pub lock: String,
    pub node: String,
    pub change: LockChange,
}

#[derive(Debug)]
struct Entry {
    parent: Ino,
    name: String,
    writer: String,
    mtime: u64,
    /// When it last changed, for the lock lifetime.
    changed: Instant,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Dir(BTreeMap<String, Ino>),
    File(Vec<u8>),
}

#[derive(Debug)]
pub struct Model {
    entries: HashMap<Ino, Entry>,
    next_ino: Ino,
    no_quorum: BTreeSet<String>,
    lifetime: Duration,
    /// The inode of `priv/lock`, the parent of every lock.
    lock_dir: Ino,
    /// Every acquisition, renewal and release, in order.
    history: Vec<LockEvent>,
}

impl Model {
    /// A filesystem with `priv/lock/` (as on every PVE node) and the given lifetime.
    pub fn new(lifetime: Duration, now: Instant, unix: u64) -> Self {
        let mut model = Model {
            entries: HashMap::new(),
            next_ino: ROOT,
            no_quorum: BTreeSet::new(),
            lifetime,
            lock_dir: 0,
            history: Vec::new(),
        };
        let root = model.insert(ROOT, "", "", now, unix, Kind::Dir(BTreeMap::new()));
        let private = model.insert(root, "priv", "", now, unix, Kind::Dir(BTreeMap::new()));
        model.lock_dir = model.insert(private, "lock", "", now, unix, Kind::Dir(BTreeMap::new()));
        model
    }

    pub fn set_quorate(&mut self, node: &str, quorate: bool) {
        if quorate {
            self.no_quorum.remove(node);
        } else {
            self.no_quorum.insert(node.to_string());
        }
    }

    pub fn quorate(&self, node: &str) -> bool {
        !self.no_quorum.contains(node)
    }

    pub fn nodes_without_quorum(&self) -> impl Iterator<Item = &str> {
        self.no_quorum.iter().map(String::as_str)
    }

    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Every change of every lock since the start, oldest first.
    pub fn lock_history(&self) -> &[LockEvent] {
        &self.history
    }

    fn log_lock(&mut self, at: Instant, lock: &str, node: &str, change: LockChange) {
        self.history.push(LockEvent {
            at,
            lock: lock.to_string(),
            node: node.to_string(),
            change,
        });
    }

    /// Every lock directory with its owner.
    pub fn locks(&self, now: Instant) -> Vec<LockInfo> {
        self.children(self.lock_dir)
            .filter_map(|(name, ino)| {
                let e = &self.entries[&ino];
                matches!(e.kind, Kind::Dir(_)).then(|| LockInfo {
                    name: name.clone(),
                    owner: e.writer.clone(),
                    mtime: e.mtime,
                    age: now.saturating_duration_since(e.changed),
                })
            })
            .collect()
    }

    pub fn getattr(&self, node: &str, ino: Ino) -> Result<Attr> {
        let entry = self.entries.get(&ino).ok_or(Errno::ENOENT)?;
        let quorate = self.quorate(node);
        let (size, is_dir) = match &entry.kind {
            Kind::Dir(_) => (0, true),
            Kind::File(data) => (data.len() as u64, false),
        };
        let perm = match (is_dir, quorate) {
            (true, true) => 0o777,
            (true, false) => 0o555,
            (false, true) => 0o666,
            (false, false) => 0o444,
        };
        let mask = if self.is_private(ino) {
            0o700
        } else if is_dir {
            0o755
        } else {
            0o750
        };
        Ok(Attr {
            ino,
            is_dir,
            size,
            mtime: entry.mtime,
            perm: perm & mask,
            gid: WWW_DATA_GID,
        })
    }

    pub fn lookup(&self, node: &str, parent: Ino, name: &str) -> Result<Attr> {
        let ino = self.child(parent, name)?.ok_or(Errno::ENOENT)?;
        self.getattr(node, ino)
    }

    pub fn readdir(&self, parent: Ino) -> Result<Vec<(Ino, bool, String)>> {
        self.dir(parent)?;
        Ok(self
            .children(parent)
            .map(|(name, ino)| {
                let is_dir = matches!(self.entries[&ino].kind, Kind::Dir(_));
                (ino, is_dir, name.clone())
            })
            .collect())
    }

    pub fn mkdir(
        &mut self,
        node: &str,
        parent: Ino,
        name: &str,
        now: Instant,
        unix: u64,
    ) -> Result<Attr> {
        self.write_allowed(node)?;
        check_name(name)?;
        if self.child(parent, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = self.insert(parent, name, node, now, unix, Kind::Dir(BTreeMap::new()));
        if self.is_lock(ino) {
            self.log_lock(now, name, node, LockChange::Acquired);
        }
        self.getattr(node, ino)
    }

    pub fn rmdir(&mut self, node: &str, parent: Ino, name: &str) -> Result<()> {
        self.write_allowed(node)?;
        let ino = self.child(parent, name)?.ok_or(Errno::ENOENT)?;
        match &self.entries[&ino].kind {
            Kind::File(_) => Err(Errno::ENOTDIR),
            Kind::Dir(children) if !children.is_empty() => Err(Errno::ENOTEMPTY),
            Kind::Dir(_) => {
                if self.is_lock(ino) {
                    let holder = self.entries[&ino].writer.clone();
                    // rmdir carries no time of its own; the history is for observers.
                    self.log_lock(Instant::now(), name, &holder, LockChange::Released);
                }
                self.unlink_entry(parent, name, ino);
                Ok(())
            }
        }
    }

    pub fn create(
        &mut self,
        node: &str,
        parent: Ino,
        name: &str,
        now: Instant,
        unix: u64,
    ) -> Result<Attr> {
        self.write_allowed(node)?;
        check_name(name)?;
        if self.child(parent, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = self.insert(parent, name, node, now, unix, Kind::File(Vec::new()));
        self.getattr(node, ino)
    }

    pub fn unlink(&mut self, node: &str, parent: Ino, name: &str) -> Result<()> {
        self.write_allowed(node)?;
        let ino = self.child(parent, name)?.ok_or(Errno::ENOENT)?;
        if matches!(self.entries[&ino].kind, Kind::Dir(_)) {
            return Err(Errno::EISDIR);
        }
        self.unlink_entry(parent, name, ino);
        Ok(())
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>> {
        let data = self.file(ino)?;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    pub fn write(
        &mut self,
        node: &str,
        ino: Ino,
        offset: u64,
        bytes: &[u8],
        now: Instant,
        unix: u64,
    ) -> Result<u32> {
        self.write_allowed(node)?;
        let entry = self.entries.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let Kind::File(data) = &mut entry.kind else {
            return Err(Errno::EISDIR);
        };
        let offset = offset as usize;
        if data.len() < offset + bytes.len() {
            data.resize(offset + bytes.len(), 0);
        }
        data[offset..offset + bytes.len()].copy_from_slice(bytes);
        touch(entry, node, now, unix);
        Ok(bytes.len() as u32)
    }

    pub fn truncate(
        &mut self,
        node: &str,
        ino: Ino,
        size: u64,
        now: Instant,
        unix: u64,
    ) -> Result<()> {
        self.write_allowed(node)?;
        let entry = self.entries.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let Kind::File(data) = &mut entry.kind else {
            return Err(Errno::EISDIR);
        };
        data.resize(size as usize, 0);
        touch(entry, node, now, unix);
        Ok(())
    }

    /// `utime`: renew or request release on locks, plain mtime change elsewhere.
    pub fn set_mtime(&mut self, node: &str, ino: Ino, mtime: u64, now: Instant) -> Result<()> {
        self.write_allowed(node)?;
        let is_lock = self.is_lock(ino);
        let lifetime = self.lifetime;
        let entry = self.entries.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if is_lock {
            if mtime == 0 && now.saturating_duration_since(entry.changed) > lifetime {
                let (parent, name, holder) =
                    (entry.parent, entry.name.clone(), entry.writer.clone());
                self.unlink_entry(parent, &name, ino);
                self.log_lock(now, &name, &holder, LockChange::Released);
                return Ok(());
            }
            if mtime < entry.mtime || entry.writer != node {
                return Err(Errno::EACCES);
            }
        }
        entry.mtime = mtime;
        entry.writer = node.to_string();
        entry.changed = now;
        if is_lock {
            let name = entry.name.clone();
            self.log_lock(now, &name, node, LockChange::Renewed);
        }
        Ok(())
    }

    pub fn rename(
        &mut self,
        node: &str,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
    ) -> Result<()> {
        self.write_allowed(node)?;
        check_name(new_name)?;
        let ino = self.child(parent, name)?.ok_or(Errno::ENOENT)?;
        if self.is_lock(ino) {
            return Err(Errno::EACCES);
        }
        self.dir(new_parent)?;
        if let Some(existing) = self.child(new_parent, new_name)? {
            if existing == ino {
                return Ok(());
            }
            match &self.entries[&existing].kind {
                Kind::Dir(children) if !children.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => self.unlink_entry(new_parent, new_name, existing),
            }
        }
        self.dir_mut(parent)?.remove(name);
        self.dir_mut(new_parent)?.insert(new_name.to_string(), ino);
        let entry = self.entries.get_mut(&ino).expect("renamed entry exists");
        entry.parent = new_parent;
        entry.name = new_name.to_string();
        Ok(())
    }

    fn write_allowed(&self, node: &str) -> Result<()> {
        if self.quorate(node) {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }

    fn is_lock(&self, ino: Ino) -> bool {
        self.entries.get(&ino).is_some_and(|e| {
            e.parent == self.lock_dir && ino != self.lock_dir && matches!(e.kind, Kind::Dir(_))
        })
    }

    /// Below `priv/` (pmxcfs hides those from other users).
    fn is_private(&self, mut ino: Ino) -> bool {
        while let Some(entry) = self.entries.get(&ino) {
            if entry.parent == ROOT && entry.name == "priv" {
                return true;
            }
            if ino == ROOT {
                return false;
            }
            ino = entry.parent;
        }
        false
    }

    fn insert(
        &mut self,
        parent: Ino,
        name: &str,
        writer: &str,
        now: Instant,
        unix: u64,
        kind: Kind,
    ) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        if ino != ROOT {
            self.dir_mut(parent)
                .expect("parent checked by caller")
                .insert(name.to_string(), ino);
        }
        self.entries.insert(
            ino,
            Entry {
                parent,
                name: name.to_string(),
                writer: writer.to_string(),
                mtime: unix,
                changed: now,
                kind,
            },
        );
        ino
    }

    fn unlink_entry(&mut self, parent: Ino, name: &str, ino: Ino) {
        if let Ok(children) = self.dir_mut(parent) {
            children.remove(name);
        }
        self.entries.remove(&ino);
    }

    fn child(&self, parent: Ino, name: &str) -> Result<Option<Ino>> {
        Ok(self.dir(parent)?.get(name).copied())
    }

    fn children(&self, parent: Ino) -> impl Iterator<Item = (&String, Ino)> {
        self.dir(parent)
            .into_iter()
            .flat_map(|children| children.iter().map(|(n, i)| (n, *i)))
    }

    fn dir(&self, ino: Ino) -> Result<&BTreeMap<String, Ino>> {
        match &self.entries.get(&ino).ok_or(Errno::ENOENT)?.kind {
            Kind::Dir(children) => Ok(children),
            Kind::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<String, Ino>> {
        match &mut self.entries.get_mut(&ino).ok_or(Errno::ENOENT)?.kind {
            Kind::Dir(children) => Ok(children),
            Kind::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file(&self, ino: Ino) -> Result<&Vec<u8>> {
        match &self.entries.get(&ino).ok_or(Errno::ENOENT)?.kind {
            Kind::File(data) => Ok(data),
            Kind::Dir(_) => Err(Errno::EISDIR),
        }
    }
}

fn touch(entry: &mut Entry, node: &str, now: Instant, unix: u64) {
    entry.writer = node.to_string();
    entry.mtime = unix;
    entry.changed = now;
}

/// pmxcfs refuses empty names, `.` and `..`.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        Err(Errno::EACCES)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    struct World {
        model: Model,
        start: Instant,
        secs: u64,
    }

    impl World {
        fn new() -> Self {
            let start = Instant::now();
            World {
                model: Model::new(Duration::from_secs(120), start, T0),
                start,
                secs: 0,
            }
        }
        fn now(&self) -> Instant {
            self.start + Duration::from_secs(self.secs)
        }
        fn unix(&self) -> u64 {
            T0 + self.secs
        }
        fn lock_dir(&self) -> Ino {
            self.model.lock_dir
        }
        fn mkdir(&mut self, node: &str, name: &str) -> Result<Ino> {
            let (now, unix, dir) = (self.now(), self.unix(), self.lock_dir());
            self.model.mkdir(node, dir, name, now, unix).map(|a| a.ino)
        }
        fn utime(&mut self, node: &str, ino: Ino, mtime: u64) -> Result<()> {
            let now = self.now();
            self.model.set_mtime(node, ino, mtime, now)
        }
    }

    #[test]
    fn lock_rules() {
        // (what, step) where each step runs against a fresh world holding pve1's lock
        // made at t=0; the step returns what it observed.
        type Check = fn(&mut World, Ino) -> Result<()>;
        let cases: &[(&str, Check, Result<()>)] = &[
            (
                "second mkdir of the same lock",
                |w, _| w.mkdir("pve2", "l").map(drop),
                Err(Errno::EEXIST),
            ),
            (
                "even by the holder",
                |w, _| w.mkdir("pve1", "l").map(drop),
                Err(Errno::EEXIST),
            ),
            (
                "holder renews",
                |w, l| {
                    w.secs = 10;
                    let m = w.unix();
                    w.utime("pve1", l, m)
                },
                Ok(()),
            ),
            (
                "another node cannot renew",
                |w, l| {
                    w.secs = 10;
                    let m = w.unix();
                    w.utime("pve2", l, m)
                },
                Err(Errno::EACCES),
            ),
            (
                "no renewal with an older mtime",
                |w, l| w.utime("pve1", l, T0 - 1),
                Err(Errno::EACCES),
            ),
            (
                "release request before the lifetime is refused",
                |w, l| {
                    w.secs = 120;
                    w.utime("pve2", l, 0)
                },
                Err(Errno::EACCES),
            ),
            (
                "release request after the lifetime deletes",
                |w, l| {
                    w.secs = 121;
                    w.utime("pve2", l, 0)?;
                    w.mkdir("pve2", "l").map(drop)
                },
                Ok(()),
            ),
            (
                "a renewal restarts the lifetime",
                |w, l| {
                    w.secs = 100;
                    let m = w.unix();
                    w.utime("pve1", l, m)?;
                    w.secs = 200;
                    w.utime("pve2", l, 0)
                },
                Err(Errno::EACCES),
            ),
            (
                "nothing expires without a request",
                |w, _| {
                    w.secs = 1000;
                    w.mkdir("pve2", "l").map(drop)
                },
                Err(Errno::EEXIST),
            ),
            (
                "rmdir by any node",
                |w, _| {
                    let dir = w.lock_dir();
                    w.model.rmdir("pve2", dir, "l")
                },
                Ok(()),
            ),
            (
                "no quorum: mkdir refused",
                |w, _| {
                    w.model.set_quorate("pve2", false);
                    w.mkdir("pve2", "other").map(drop)
                },
                Err(Errno::EACCES),
            ),
            (
                "no quorum: the holder cannot renew",
                |w, l| {
                    w.model.set_quorate("pve1", false);
                    w.secs = 5;
                    let m = w.unix();
                    w.utime("pve1", l, m)
                },
                Err(Errno::EACCES),
            ),
            (
                "no quorum on another node does not matter",
                |w, l| {
                    w.model.set_quorate("pve2", false);
                    w.secs = 5;
                    let m = w.unix();
                    w.utime("pve1", l, m)
                },
                Ok(()),
            ),
            (
                "locks cannot be renamed",
                |w, _| {
                    let dir = w.lock_dir();
                    w.model.rename("pve1", dir, "l", dir, "m")
                },
                Err(Errno::EACCES),
            ),
        ];
        for (what, check, expected) in cases {
            let mut world = World::new();
            let lock = world.mkdir("pve1", "l").unwrap();
            assert_eq!(&check(&mut world, lock), expected, "{what}");
        }
    }

    #[test]
    fn the_history_shows_each_holder_renewal_and_release() {
        let mut w = World::new();
        let lock = w.mkdir("pve1", "l").unwrap();
        w.secs = 10;
        let m = w.unix();
        w.utime("pve1", lock, m).unwrap();
        assert!(w.utime("pve2", lock, m).is_err(), "not the holder");
        w.secs = 200;
        w.utime("pve2", lock, 0).unwrap(); // expired: released
        w.mkdir("pve2", "l").unwrap();
        let dir = w.lock_dir();
        w.model.rmdir("pve2", dir, "l").unwrap();
        let got: Vec<(&str, LockChange, u64)> = w
            .model
            .lock_history()
            .iter()
            .map(|e| {
                let secs = e.at.saturating_duration_since(w.start).as_secs();
                (e.node.as_str(), e.change, secs)
            })
            .collect();
        assert_eq!(
            &got[..4],
            [
                ("pve1", LockChange::Acquired, 0),
                ("pve1", LockChange::Renewed, 10),
                ("pve1", LockChange::Released, 200),
                ("pve2", LockChange::Acquired, 200),
            ]
        );
        assert_eq!((got[4].0, got[4].1), ("pve2", LockChange::Released));
        assert!(w.model.lock_history().iter().all(|e| e.lock == "l"));
        // A plain directory is no lock.
        let (now, unix) = (w.now(), w.unix());
        w.model.mkdir("pve1", ROOT, "other", now, unix).unwrap();
        assert_eq!(w.model.lock_history().len(), 5);
    }

    #[test]
    fn the_owner_is_the_creating_node_and_not_visible_in_stat() {
        let mut w = World::new();
        let lock = w.mkdir("pve3", "x").unwrap();
        let locks = w.model.locks(w.now());
        assert_eq!(locks.len(), 1);
        assert_eq!(
            (locks[0].name.as_str(), locks[0].owner.as_str()),
            ("x", "pve3")
        );
        let from_pve1 = w.model.getattr("pve1", lock).unwrap();
        let from_pve3 = w.model.getattr("pve3", lock).unwrap();
        assert_eq!(from_pve1, from_pve3);
        assert_eq!(from_pve1.perm, 0o700);
        assert_eq!(from_pve1.mtime, T0);
    }

    #[test]
    fn files_write_read_and_obey_quorum() {
        let mut w = World::new();
        let (now, unix) = (w.now(), w.unix());
        let dir = w
            .model
            .mkdir("pve1", ROOT, "pve-gitops", now, unix)
            .unwrap()
            .ino;
        let file = w
            .model
            .create("pve1", dir, "config.yaml", now, unix)
            .unwrap()
            .ino;
        assert_eq!(w.model.write("pve2", file, 0, b"hello", now, unix), Ok(5));
        assert_eq!(w.model.write("pve2", file, 3, b"p!", now, unix), Ok(2));
        assert_eq!(w.model.read(file, 0, 100).unwrap(), b"help!");
        w.model.set_quorate("pve2", false);
        assert_eq!(
            w.model.write("pve2", file, 0, b"x", now, unix),
            Err(Errno::EACCES)
        );
        assert_eq!(
            w.model.read(file, 1, 2).unwrap(),
            b"el",
            "reads work without quorum"
        );
        let attr = w.model.getattr("pve2", file).unwrap();
        assert_eq!((attr.size, attr.perm), (5, 0o440));
        assert_eq!(w.model.getattr("pve1", file).unwrap().perm, 0o640);
    }
}
