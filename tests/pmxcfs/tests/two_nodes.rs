//! Two simulated nodes on real FUSE mounts: the pmxcfs lock rules as seen through the
//! kernel by ordinary syscalls (mkdir, utime, stat, read, write).

use std::fs::{self, File, FileTimes};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pmxcfs_emu::{control::Client, fuse_ready_or_skip, Emulator, Mount};

struct Cluster {
    emu: Emulator,
    pve1: Mount,
    pve2: Mount,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(lifetime: Duration) -> Option<Self> {
        if !fuse_ready_or_skip() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let emu = Emulator::new(lifetime);
        let mount = |node: &str| {
            let path = dir.path().join(node);
            fs::create_dir(&path).unwrap();
            emu.mount(node, &path).unwrap()
        };
        let (pve1, pve2) = (mount("pve1"), mount("pve2"));
        Some(Cluster {
            emu,
            pve1,
            pve2,
            _dir: dir,
        })
    }
}

fn lock(mount: &Mount, name: &str) -> PathBuf {
    mount.path().join("priv/lock").join(name)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `utime(path, (0, mtime))` as the HA manager calls it.
fn utime(path: &Path, mtime: u64) -> io::Result<()> {
    let times = FileTimes::new()
        .set_accessed(UNIX_EPOCH)
        .set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
    File::open(path)?.set_times(times)
}

fn mtime(path: &Path) -> u64 {
    let modified = fs::metadata(path).unwrap().modified().unwrap();
    modified.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn kind<T: std::fmt::Debug>(result: io::Result<T>) -> io::ErrorKind {
    result.expect_err("the operation should fail").kind()
}

#[test]
fn one_mkdir_wins_the_other_gets_eexist() {
    let Some(c) = Cluster::new(Duration::from_secs(120)) else {
        return;
    };
    fs::create_dir(lock(&c.pve1, "pve-gitops")).unwrap();
    assert_eq!(
        kind(fs::create_dir(lock(&c.pve2, "pve-gitops"))),
        io::ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(fs::create_dir(lock(&c.pve1, "pve-gitops"))),
        io::ErrorKind::AlreadyExists,
        "not even the holder can mkdir twice"
    );
    let listed: Vec<String> = fs::read_dir(c.pve2.path().join("priv/lock"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed, ["pve-gitops"]);
    let locks = c.emu.locks();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].owner, "pve1");
}

#[test]
fn only_the_owner_renews_and_everyone_sees_the_new_mtime() {
    let Some(c) = Cluster::new(Duration::from_secs(120)) else {
        return;
    };
    let (l1, l2) = (lock(&c.pve1, "l"), lock(&c.pve2, "l"));
    fs::create_dir(&l1).unwrap();
    let later = unix_now() + 100;
    assert_eq!(kind(utime(&l2, later)), io::ErrorKind::PermissionDenied);
    assert_ne!(mtime(&l1), later);
    utime(&l1, later).unwrap();
    assert_eq!(mtime(&l2), later, "pve2 sees pve1's renewal at once");
    assert_eq!(
        kind(utime(&l1, later - 1)),
        io::ErrorKind::PermissionDenied,
        "an older mtime is refused, even from the owner"
    );
    assert_eq!(
        kind(utime(&l2, 0)),
        io::ErrorKind::PermissionDenied,
        "a release request on a fresh lock is refused"
    );
    assert!(l2.is_dir());
}

#[test]
fn after_the_lifetime_without_renewal_a_release_request_frees_the_lock() {
    let lifetime = Duration::from_millis(1500);
    let Some(c) = Cluster::new(lifetime) else {
        return;
    };
    let (l1, l2) = (lock(&c.pve1, "l"), lock(&c.pve2, "l"));
    fs::create_dir(&l1).unwrap();
    let created = Instant::now();

    // The HA manager's contender loop: release request, then mkdir, until it wins.
    let deadline = created + lifetime + Duration::from_secs(5);
    let won_after = loop {
        let _ = utime(&l2, 0);
        if fs::create_dir(&l2).is_ok() {
            break created.elapsed();
        }
        assert!(Instant::now() < deadline, "pve2 never got the lock");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(won_after >= lifetime, "freed after {won_after:?}");
    assert_eq!(c.emu.locks()[0].owner, "pve2");
    // The old holder's renewal now fails: the lock is pve2's.
    assert_eq!(
        kind(utime(&l1, unix_now())),
        io::ErrorKind::PermissionDenied
    );
}

#[test]
fn renewals_keep_the_lock_past_its_lifetime() {
    let lifetime = Duration::from_secs(1);
    let Some(c) = Cluster::new(lifetime) else {
        return;
    };
    let (l1, l2) = (lock(&c.pve1, "l"), lock(&c.pve2, "l"));
    fs::create_dir(&l1).unwrap();
    let start = Instant::now();
    while start.elapsed() < lifetime * 5 / 2 {
        utime(&l1, unix_now()).unwrap();
        let _ = utime(&l2, 0);
        assert_eq!(
            kind(fs::create_dir(&l2)),
            io::ErrorKind::AlreadyExists,
            "taken over at {:?} despite renewals",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn quorum_loss_refuses_writes_on_that_node_only() {
    let Some(c) = Cluster::new(Duration::from_secs(120)) else {
        return;
    };
    let config = c.pve1.path().join("pve-gitops");
    fs::create_dir(&config).unwrap();
    fs::write(config.join("config.yaml"), b"repo: a\n").unwrap();
    fs::create_dir(lock(&c.pve2, "held")).unwrap();

    c.emu.set_quorate("pve2", false);
    let on2 = c.pve2.path().join("pve-gitops/config.yaml");
    assert_eq!(kind(fs::write(&on2, b"x")), io::ErrorKind::PermissionDenied);
    assert_eq!(
        kind(fs::create_dir(lock(&c.pve2, "other"))),
        io::ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(utime(&lock(&c.pve2, "held"), unix_now())),
        io::ErrorKind::PermissionDenied,
        "the holder cannot renew without quorum"
    );
    assert_eq!(fs::read(&on2).unwrap(), b"repo: a\n", "reads still work");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions()) & 0o777
    };
    assert_eq!(mode(&lock(&c.pve2, "held")), 0o500);
    assert_eq!(mode(&lock(&c.pve1, "held")), 0o700);

    // pve1 is unaffected.
    fs::create_dir(lock(&c.pve1, "other")).unwrap();
    fs::write(config.join("config.yaml"), b"repo: b\n").unwrap();

    c.emu.set_quorate("pve2", true);
    fs::write(&on2, b"repo: c\n").unwrap();
    assert_eq!(fs::read(config.join("config.yaml")).unwrap(), b"repo: c\n");
}

#[test]
fn plain_files_are_shared_without_stale_caches() {
    let Some(c) = Cluster::new(Duration::from_secs(120)) else {
        return;
    };
    let dir1 = c.pve1.path().join("pve-gitops");
    fs::create_dir(&dir1).unwrap();
    let on2 = c.pve2.path().join("pve-gitops/leader.json");
    for contents in [&b"a longer first version\n"[..], b"short\n", b""] {
        fs::write(dir1.join("leader.json"), contents).unwrap();
        assert_eq!(fs::read(&on2).unwrap(), contents);
    }
    fs::rename(dir1.join("leader.json"), dir1.join("old.json")).unwrap();
    assert!(!on2.exists());
    fs::remove_file(c.pve2.path().join("pve-gitops/old.json")).unwrap();
    fs::remove_dir(c.pve2.path().join("pve-gitops")).unwrap();
    assert!(!dir1.exists());
}

/// The binary the multi-process tests will use: mounts, control socket, clean exit.
#[test]
fn the_binary_serves_mounts_and_obeys_its_control_socket() {
    if !fuse_ready_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (m1, m2, sock) = (
        dir.path().join("pve1"),
        dir.path().join("pve2"),
        dir.path().join("control.sock"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_pmxcfs-emu"))
        .arg(format!("--node=pve1={}", m1.display()))
        .arg(format!("--node=pve2={}", m2.display()))
        .arg(format!("--control={}", sock.display()))
        .arg("--lifetime=1s")
        .arg("--exit-on-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");

    let control = Client::new(&sock);
    fs::create_dir(m1.join("priv/lock/l")).unwrap();
    assert_eq!(
        kind(fs::create_dir(m2.join("priv/lock/l"))),
        io::ErrorKind::AlreadyExists
    );
    let locks = control.locks().unwrap();
    assert_eq!((locks.len(), locks[0].owner.as_str()), (1, "pve1"));

    control.set_quorate("pve1", false).unwrap();
    assert_eq!(
        kind(fs::remove_dir(m1.join("priv/lock/l"))),
        io::ErrorKind::PermissionDenied
    );
    assert_eq!(
        control.request("status").unwrap(),
        "lifetime_ms=1000 no_quorum=pve1"
    );
    control.set_lifetime(Duration::from_secs(120)).unwrap();
    assert!(control.request("reboot").is_err());

    control.shutdown().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&m1.display().to_string()),
        "pve1 still mounted"
    );
    assert!(
        !mounts.contains(&m2.display().to_string()),
        "pve2 still mounted"
    );
}
