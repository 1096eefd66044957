//! One node's mount: FUSE requests translated into [`Model`] calls as that node.
//!
//! Every mount of one [`crate::Emulator`] shares the model, so a `mkdir` through one
//! mount point is an `EEXIST` through the others at once. The kernel must not cache
//! anything for that to hold across mounts: attributes and entries are given a zero
//! TTL and files are opened with direct I/O, so each `stat` and `read` asks the model.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Attr, Model};

const NO_CACHE: Duration = Duration::ZERO;

pub(crate) struct NodeFs {
    pub(crate) node: String,
    pub(crate) model: Arc<Mutex<Model>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn to_secs(t: TimeOrNow) -> u64 {
    match t {
        TimeOrNow::Now => unix_now(),
        TimeOrNow::SpecificTime(t) => t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let mtime = UNIX_EPOCH + Duration::from_secs(a.mtime);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind: if a.is_dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: a.perm,
        nlink: if a.is_dir { 2 } else { 1 },
        uid: 0,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// A name pmxcfs could store (it is UTF-8 throughout).
fn utf8(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::EINVAL)
}

impl NodeFs {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().expect("pmxcfs model lock")
    }
}

impl Filesystem for NodeFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match utf8(name).and_then(|name| self.model().lookup(&self.node, parent.0, name)) {
            Ok(attr) => reply.entry(&NO_CACHE, &file_attr(&attr), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().getattr(&self.node, ino.0) {
            Ok(attr) => reply.attr(&NO_CACHE, &file_attr(&attr)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Mode and ownership changes are accepted and ignored: pmxcfs fixes both.
        let mut model = self.model();
        let now = Instant::now();
        let result = (|| {
            if let Some(size) = size {
                model.truncate(&self.node, ino.0, size, now, unix_now())?;
            }
            if let Some(mtime) = mtime {
                model.set_mtime(&self.node, ino.0, to_secs(mtime), now)?;
            }
            model.getattr(&self.node, ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&NO_CACHE, &file_attr(&attr)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let result = utf8(name).and_then(|name| {
            self.model()
                .mkdir(&self.node, parent.0, name, Instant::now(), unix_now())
        });
        match result {
            Ok(attr) => reply.entry(&NO_CACHE, &file_attr(&attr), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match utf8(name).and_then(|name| self.model().rmdir(&self.node, parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match utf8(name).and_then(|name| self.model().unlink(&self.node, parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = utf8(name).and_then(|name| {
            let newname = utf8(newname)?;
            self.model()
                .rename(&self.node, parent.0, name, newparent.0, newname)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = utf8(name).and_then(|name| {
            self.model()
                .create(&self.node, parent.0, name, Instant::now(), unix_now())
        });
        match result {
            Ok(attr) => reply.created(
                &NO_CACHE,
                &file_attr(&attr),
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.model();
        let result = model.getattr(&self.node, ino.0).and_then(|attr| {
            if flags.0 & libc::O_TRUNC != 0 && !attr.is_dir {
                model.truncate(&self.node, ino.0, 0, Instant::now(), unix_now())?;
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let written =
            self.model()
                .write(&self.node, ino.0, offset, data, Instant::now(), unix_now());
        match written {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.model().readdir(ino.0) {
            Ok(children) => children,
            Err(e) => return reply.error(e),
        };
        let dots = [
            (ino.0, true, ".".to_string()),
            (ino.0, true, "..".to_string()),
        ];
        let all = dots.into_iter().chain(children);
        for (i, (child, is_dir, name)) in all.enumerate().skip(offset as usize) {
            let kind = if is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
