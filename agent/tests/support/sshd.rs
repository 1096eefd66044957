//! An OpenSSH server for one test: `/usr/sbin/sshd` on a loopback port with its own
//! configuration, a freshly generated host key, and one authorized client key for the
//! current user, so `git-upload-pack` / `git-receive-pack` are reachable over SSH.
//!
//! sshd is installed once per machine by `tests/git/install-sshd.sh`; only when that script
//! says it cannot install (exit 2: not root, no apt) does [`Sshd::start`] return `None` and
//! the test skip, loudly. Any other failure is a test failure.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::git::ssh_keygen;

const SSHD: &str = "/usr/sbin/sshd";
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// A running sshd; killed on drop.
pub struct Sshd {
    pub port: u16,
    /// The user the client logs in as (the current user).
    pub user: String,
    /// The server's host key (private; `.pub` beside it).
    pub host_key: PathBuf,
    /// The authorized client key (private; `.pub` beside it).
    pub client_key: PathBuf,
    child: Child,
    log: PathBuf,
}

/// Whether sshd is (now) installed; the install runs once per test process.
fn installed() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/git/install-sshd.sh");
        let out = Command::new("bash").arg(&script).output().expect("bash");
        match out.status.code() {
            Some(0) => true,
            Some(2) => {
                eprintln!(
                    "\n*** SKIPPING SSH TEST: {}***\n",
                    String::from_utf8_lossy(&out.stderr)
                );
                false
            }
            _ => panic!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    })
}

impl Sshd {
    /// Start sshd with its files in `dir`; `None` if sshd cannot be installed here.
    pub fn start(dir: &Path) -> Option<Sshd> {
        if !installed() {
            return None;
        }
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let host_key = ssh_keygen(dir, "host_key");
        let client_key = ssh_keygen(dir, "client_key");
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        if is_root() {
            // sshd's privilege separation directory (normally made by the service unit).
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        // The port is free when asked for; another process could take it before sshd binds,
        // so a start that fails is retried on a new port.
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let config = dir.join(format!("sshd_config.{attempt}"));
            let log = dir.join(format!("sshd.{attempt}.log"));
            std::fs::write(
                &config,
                config_text(port, dir, &host_key, &authorized, &user),
            )
            .unwrap();
            let child = spawn(&config, &log);
            let mut sshd = Sshd {
                port,
                user: user.clone(),
                host_key: host_key.clone(),
                client_key: client_key.clone(),
                child,
                log,
            };
            if sshd.wait_ready() {
                return Some(sshd);
            }
            last_log = sshd.log();
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    /// Stop, give the server a new host key, and start again on the same port (a
    /// reinstalled or impersonated server). Panics if it does not come back.
    pub fn change_host_key(&mut self, dir: &Path) {
        // A reinstalled server has none of the old one's connections either.
        self.drop_connections();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let new_key = ssh_keygen(dir, "host_key_changed");
        let authorized = dir.join("authorized_keys");
        let config = dir.join("sshd_config.changed");
        let log = dir.join("sshd.changed.log");
        std::fs::write(
            &config,
            config_text(self.port, dir, &new_key, &authorized, &self.user),
        )
        .unwrap();
        // The old listener is closed; a bind can still race a dying process, so retry.
        for _ in 0..50 {
            self.child = spawn(&config, &log);
            self.log = log.clone();
            self.host_key = new_key.clone();
            if self.wait_ready() {
                return;
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd did not restart; its log:\n{}", self.log());
    }

    /// Kill every connection the server has open (its per-connection processes), as a
    /// restarted server or a firewall forgetting them would; the listener stays.
    /// Returns how many processes were killed.
    pub fn drop_connections(&self) -> usize {
        let mut killed = 0;
        let mut parents = vec![self.child.id()];
        while let Some(parent) = parents.pop() {
            for pid in children(parent) {
                parents.push(pid);
                // SAFETY: kill(2) on a pid read from /proc; at worst it is gone (ESRCH).
                if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                    killed += 1;
                }
            }
        }
        killed
    }

    /// How many connections sshd accepted so far (its log's `Accepted publickey` lines).
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    /// `ssh://user@127.0.0.1:port/<path>`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// What sshd logged so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Until the deadline: sshd still running and answering with its banner.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut banner = [0u8; 8];
                if s.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(port: u16, dir: &Path, host_key: &Path, authorized: &Path, user: &str) -> String {
    format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {authorized}\n\
         AllowUsers {user}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         PermitRootLogin prohibit-password\n\
         StrictModes no\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        authorized = authorized.display(),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        == "0"
}

/// sshd in the foreground with `config`, logging to the file `log`.
/// The processes whose parent is `pid`, from `/proc`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            // `pid (comm) state ppid …`: comm may hold spaces, so split after its `)`.
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn sshd")
}
