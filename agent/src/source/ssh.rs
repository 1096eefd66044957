//! SSH remotes: `git-upload-pack '<path>'` (or `git-receive-pack`) run over an SSH
//! channel through libssh2 (the ssh2 crate), registered with libgit2 as its transport for
//! `ssh://` and scp-like `user@host:path` URLs, which is what libgit2's own SSH transport
//! does; this one brings libssh2 and OpenSSL up with the first SSH connection rather than
//! with the first use of git (see `transport.rs`).
//!
//! The server must show a pinned host key ([`HostKeyPins`]: never trusted on first use)
//! before anything else happens; the client then authenticates with the deploy key. Every
//! wait (connecting, each read and write) is bounded as `timeout.rs` says.
//!
//! The authenticated session is kept between operations, as OpenSSH's `ControlPersist`
//! keeps a master connection: the next one opens a channel on it instead of connecting
//! again. A connection's key exchange, host-key check and public-key signature are some
//! 2.5 ms of CPU, several times what an idle daemon pass spends on everything else, and
//! the daemon asks the remote for its head every `--git-interval`. A kept session is
//! used only while recently used ([`KEEP_IDLE`]), and a reused session that fails to start
//! the command (the server or a firewall closed it meanwhile) is replaced by a new
//! connection within the same operation: reuse never turns into an error.

use super::hostkey::{fingerprint, HostKeyPins};
use super::timeout;
use super::transport::{Failure, FailureSlot};
use super::url::RemoteUrl;
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// User name when the URL has none: SSH servers for git conventionally use `git`.
const DEFAULT_USER: &str = "git";
/// How long a session may have been unused and still be reused. Stateful firewalls and
/// NAT gateways forget idle TCP connections after some minutes (350 s on some clouds),
/// and a forgotten one does not fail at once: it hangs until the wait bound. The default
/// `--git-interval` (1 min) stays well within this.
const KEEP_IDLE: Duration = Duration::from_secs(120);
/// The bound on starting a command on a kept session (or the transport's, if shorter):
/// one round trip on a live connection, so a kept session that does not answer quickly
/// is given up for a new one.
const REUSE_WAIT: Duration = Duration::from_secs(5);
/// libssh2's code for a wait that ran out (`LIBSSH2_ERROR_TIMEOUT`).
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;

/// One SSH remote's settings, shared by the [`Source`](super::Source)'s operations.
#[derive(Debug)]
pub(crate) struct SshRemote {
    target: Target,
    private_key: Option<PathBuf>,
    pins: HostKeyPins,
    failures: FailureSlot,
    /// The authenticated session of the last operation, and when it last started one.
    kept: Mutex<Option<Kept>>,
}

/// A session kept for the next operation.
struct Kept {
    session: ssh2::Session,
    used: Instant,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

impl SshRemote {
    pub fn new(
        url: &RemoteUrl,
        private_key: Option<PathBuf>,
        pins: HostKeyPins,
    ) -> Result<Self, String> {
        Ok(Self {
            target: Target::parse(url.as_str())?,
            private_key,
            pins,
            failures: FailureSlot::default(),
            kept: Mutex::new(None),
        })
    }

    pub fn failures(&self) -> &FailureSlot {
        &self.failures
    }

    /// Start `service` on the repository: on the kept session if there is a recent one
    /// that still answers, else on a new one (see the module's doc).
    fn open(&self, service: &str) -> Result<ssh2::Channel, Failure> {
        let kept = self.kept.lock().expect("session lock").take();
        if let Some(Kept { session, used }) = kept {
            if used.elapsed() < KEEP_IDLE {
                let wait = REUSE_WAIT.min(timeout::bound());
                if let Ok(channel) = self.start_on(&session, service, wait) {
                    self.keep(session);
                    return Ok(channel);
                }
            }
        }
        let session = self.connect()?;
        let channel = self
            .start_on(&session, service, timeout::bound())
            .map_err(unreachable)?;
        self.keep(session);
        Ok(channel)
    }

    fn keep(&self, session: ssh2::Session) {
        *self.kept.lock().expect("session lock") = Some(Kept {
            session,
            used: Instant::now(),
        });
    }

    /// Start `service` on the repository over `session`, waiting at most `wait`; the
    /// session's bound is the transport's again afterwards.
    fn start_on(
        &self,
        session: &ssh2::Session,
        service: &str,
        wait: Duration,
    ) -> Result<ssh2::Channel, ssh2::Error> {
        session.set_timeout(timeout_ms(wait));
        let started = session.channel_session().and_then(|mut channel| {
            channel.exec(&format!("{service} {}", quote(&self.target.path)))?;
            Ok(channel)
        });
        session.set_timeout(timeout_ms(timeout::bound()));
        started
    }

    /// Connect, check the host key and authenticate: a session ready for commands.
    fn connect(&self) -> Result<ssh2::Session, Failure> {
        let session = handshake(&self.target).map_err(Failure::Unreachable)?;
        let presented = host_key_sha256(&session);
        match presented {
            Some(sha) if self.pins.accepts(&sha) => {}
            got => {
                return Err(Failure::HostKey {
                    host: self.target.host.clone(),
                    expected: self.pins.expected(),
                    got: got
                        .map_or_else(|| "no SHA-256 fingerprint".to_string(), |s| fingerprint(&s)),
                })
            }
        }
        let Some(key) = &self.private_key else {
            return Err(Failure::Auth(
                "the remote asks for credentials (SSH key) that are not configured".into(),
            ));
        };
        // Checked here so a missing file is reported as such, not as a failed login.
        if let Err(source) = std::fs::File::open(key) {
            return Err(Failure::Credential {
                path: key.clone(),
                source,
            });
        }
        session
            .userauth_pubkey_file(&self.target.user, None, key, None)
            .map_err(|e| {
                Failure::Auth(format!(
                    "the remote rejected the configured credential ({})",
                    e.message()
                ))
            })?;
        Ok(session)
    }
}

/// A wait as libssh2's timeout: milliseconds, at least 1 (0 would mean no bound).
fn timeout_ms(wait: Duration) -> u32 {
    u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Where an SSH URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub user: String,
    pub host: String,
    pub port: u16,
    /// As the server's shell is given it: absolute for `ssh://host/path`, as written for
    /// scp-like `host:path` (relative to the login's home), `~/…` for `ssh://host/~/…`.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (authority, path) = match url.split_once("://") {
            Some((_, rest)) => {
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let path = path
                    .strip_prefix("/~")
                    .map_or(path.to_string(), |p| format!("~{p}"));
                (authority, path)
            }
            None => {
                let (authority, path) = url
                    .split_once(':')
                    .ok_or_else(|| format!("`{url}` is not an SSH URL"))?;
                (authority, path.to_string())
            }
        };
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, rest)) => (user.to_string(), rest),
            None => (DEFAULT_USER.to_string(), authority),
        };
        let (host, port) = match host_port.strip_prefix('[') {
            Some(v6) => {
                let (host, rest) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("`{url}`: unclosed `[` in the host"))?;
                (host, rest.strip_prefix(':'))
            }
            // Only `ssh://` URLs carry a port; scp-like ones end the host at the colon.
            None => match host_port.rsplit_once(':') {
                Some((host, port)) if url.contains("://") => (host, Some(port)),
                _ => (host_port, None),
            },
        };
        let port = match port {
            None | Some("") => 22,
            Some(p) => p
                .parse()
                .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
        };
        if host.is_empty() || path.is_empty() || path == "/" {
            return Err(format!("`{url}` names no host or no repository path"));
        }
        Ok(Self {
            user,
            host: host.to_string(),
            port,
            path,
        })
    }
}

/// A TCP connection to `target` and the SSH handshake over it, every wait bounded.
pub(crate) fn handshake(target: &Target) -> Result<ssh2::Session, String> {
    let bound = timeout::bound();
    let addresses = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?;
    let mut last = None;
    let mut tcp = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, bound) {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        let e = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
        if e.contains("timed out") {
            timeout::waited(&e)
        } else {
            format!("cannot connect to {}:{}: {e}", target.host, target.port)
        }
    })?;
    let mut session = ssh2::Session::new().map_err(|e| describe(&e))?;
    session.set_timeout(timeout_ms(bound));
    session.set_tcp_stream(tcp);
    session.handshake().map_err(|e| describe(&e))?;
    Ok(session)
}

/// The SHA-256 of the host key the server showed.
pub(crate) fn host_key_sha256(session: &ssh2::Session) -> Option<[u8; 32]> {
    session
        .host_key_hash(ssh2::HashType::Sha256)
        .and_then(|h| h.try_into().ok())
}

/// A libssh2 error that kept the remote from answering.
fn unreachable(e: ssh2::Error) -> Failure {
    Failure::Unreachable(describe(&e))
}

fn describe(e: &ssh2::Error) -> String {
    if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) {
        timeout::waited(e.message())
    } else {
        e.message().to_string()
    }
}

/// `path` single-quoted for the server's shell, as git quotes it.
fn quote(path: &str) -> String {
    format!("'{}'", path.replace('\'', r"'\''"))
}

/// libgit2's smart transport over SSH: stateful, the listing and what follows it share
/// one channel.
pub(crate) fn transport(
    remote: &git2::Remote<'_>,
    ssh: Arc<SshRemote>,
) -> Result<Transport, git2::Error> {
    Transport::smart(
        remote,
        false,
        Subtransport {
            ssh,
            current: Mutex::new(None),
        },
    )
}

struct Subtransport {
    ssh: Arc<SshRemote>,
    /// The channel the listing opened, for the negotiation or push that follows.
    current: Mutex<Option<Arc<Mutex<ssh2::Channel>>>>,
}

impl SmartSubtransport for Subtransport {
    fn action(
        &self,
        _url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let (service, listing) = match action {
            Service::UploadPackLs => ("git-upload-pack", true),
            Service::UploadPack => ("git-upload-pack", false),
            Service::ReceivePackLs => ("git-receive-pack", true),
            Service::ReceivePack => ("git-receive-pack", false),
        };
        let mut current = self.current.lock().expect("channel lock");
        let channel = match (&*current, listing) {
            (Some(channel), false) => channel.clone(),
            _ => {
                let channel = self
                    .ssh
                    .open(service)
                    .map_err(|f| self.ssh.failures.keep_git(f))?;
                let channel = Arc::new(Mutex::new(channel));
                *current = Some(channel.clone());
                channel
            }
        };
        Ok(Box::new(Stream {
            ssh: self.ssh.clone(),
            channel,
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        self.current.lock().expect("channel lock").take();
        Ok(())
    }
}

/// The channel's standard input and output, as libgit2 reads and writes them.
struct Stream {
    ssh: Arc<SshRemote>,
    channel: Arc<Mutex<ssh2::Channel>>,
}

impl Stream {
    fn failed(&self, e: io::Error) -> io::Error {
        let ran_out = e.kind() == io::ErrorKind::TimedOut
            || e.to_string().to_ascii_lowercase().contains("timed out");
        self.ssh
            .failures
            .keep(Failure::wait(ran_out, e.to_string()))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.channel.lock().expect("channel lock").read(buf);
        result.map_err(|e| self.failed(e))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.channel.lock().expect("channel lock").write(buf);
        result.map_err(|e| self.failed(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.channel.lock().expect("channel lock").flush();
        result.map_err(|e| self.failed(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: &str, host: &str, port: u16, path: &str) -> Target {
        Target {
            user: user.into(),
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn urls_name_user_host_port_and_path_as_git_does() {
        for (url, expected) in [
            (
                "ssh://git@127.0.0.1:2222/srv/git/infra.git",
                target("git", "127.0.0.1", 2222, "/srv/git/infra.git"),
            ),
            (
                "ssh://forge.example.org/infra.git",
                target("git", "forge.example.org", 22, "/infra.git"),
            ),
            (
                "git+ssh://deploy@[::1]:22/~/infra.git",
                target("deploy", "::1", 22, "~/infra.git"),
            ),
            (
                "git@forge.example.org:infra/cluster.git",
                target("git", "forge.example.org", 22, "infra/cluster.git"),
            ),
            (
                "forge.example.org:/srv/infra.git",
                target("git", "forge.example.org", 22, "/srv/infra.git"),
            ),
        ] {
            assert_eq!(Target::parse(url).unwrap(), expected, "{url}");
        }
        assert!(Target::parse("ssh://host:x/r.git").is_err());
        assert!(Target::parse("ssh://host/").is_err());
    }

    #[test]
    fn paths_are_quoted_for_the_servers_shell() {
        assert_eq!(quote("/srv/a b.git"), "'/srv/a b.git'");
        assert_eq!(quote("it's.git"), r"'it'\''s.git'");
    }
}
