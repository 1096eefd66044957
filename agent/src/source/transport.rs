//! The agent's own transports, registered with libgit2: smart HTTP over reqwest and rustls
//! (`smart_http.rs`) and git over SSH through libssh2 (`ssh.rs`). libgit2 keeps the
//! protocol (ref advertisement, negotiation, packs); the transports move its bytes.
//!
//! Built with its own, libgit2 would bring up OpenSSL for HTTPS and libssh2 (with
//! OpenSSL's configuration, error strings and algorithm tables) the first time the process
//! touches git, whatever the remote: about 5 MiB resident in every agent, even one
//! following a `file://` remote. Here HTTPS is the rustls stack the PVE API client uses,
//! and libssh2 starts with the first SSH connection.
//!
//! libgit2 asks for a transport through a global registry of URL schemes, handing the
//! factory nothing but the URL: the remote of the operation under way reaches it through a
//! thread-local, set for as long as the [`Session`](super::connect::Session) lives (libgit2
//! calls a transport on the thread that made the call). What went wrong is kept there as a
//! [`Failure`] for the session to report, since libgit2 passes only a message on.

use super::smart_http::HttpRemote;
use super::ssh::SshRemote;
use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};

/// Why a transport failed, for the session to report as an [`Error`](super::Error).
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server refused the credentials, or asked for some that are not configured.
    Auth(String),
    /// The server's TLS certificate was refused.
    Tls { host: String, message: String },
    /// The SSH server showed a host key that is not pinned.
    HostKey {
        host: String,
        expected: String,
        got: String,
    },
    /// A credential file cannot be read.
    Credential { path: PathBuf, source: io::Error },
    /// No usable answer: connection refused, a wait that ran out, an HTTP error, not a
    /// git server.
    Unreachable(String),
}

impl Failure {
    /// A wait on the remote that ended in `detail`; one that `ran_out` names the bound.
    pub fn wait(ran_out: bool, detail: String) -> Self {
        Failure::Unreachable(if ran_out {
            super::timeout::waited(&detail)
        } else {
            detail
        })
    }
}

/// Where a transport leaves its [`Failure`] for the session.
#[derive(Debug, Default)]
pub(crate) struct FailureSlot(Mutex<Option<Failure>>);

impl FailureSlot {
    /// Keep `failure` and give libgit2 an error carrying its message.
    pub fn keep(&self, failure: Failure) -> io::Error {
        let message = match &failure {
            Failure::Auth(m) | Failure::Unreachable(m) => m.clone(),
            Failure::Tls { message, .. } => message.clone(),
            Failure::HostKey { got, .. } => format!("host key {got} is not pinned"),
            Failure::Credential { path, source } => {
                format!("cannot read {}: {source}", path.display())
            }
        };
        *self.0.lock().expect("failure lock") = Some(failure);
        io::Error::other(message)
    }

    /// [`FailureSlot::keep`] for libgit2's own error type.
    pub fn keep_git(&self, failure: Failure) -> git2::Error {
        git2::Error::from_str(&self.keep(failure).to_string())
    }

    pub fn take(&self) -> Option<Failure> {
        self.0.lock().expect("failure lock").take()
    }
}

/// The remote an operation is under way on, as the transports see it.
#[derive(Clone, Debug)]
pub(crate) enum Remote {
    Http(Arc<HttpRemote>),
    Ssh(Arc<SshRemote>),
}

impl Remote {
    fn failures(&self) -> &FailureSlot {
        match self {
            Remote::Http(h) => h.failures(),
            Remote::Ssh(s) => s.failures(),
        }
    }

    /// Make this the remote the transports serve on this thread until the guard is
    /// dropped.
    pub fn activate(&self) -> Active {
        register();
        self.failures().take();
        let previous = ACTIVE.with(|a| a.replace(Some(self.clone())));
        Active { previous }
    }

    /// What went wrong in the operation under way, if the transport knows.
    pub fn take_failure(&self) -> Option<Failure> {
        self.failures().take()
    }
}

thread_local! {
    static ACTIVE: RefCell<Option<Remote>> = const { RefCell::new(None) };
}

/// While alive, libgit2's transports on this thread serve one [`Remote`].
#[derive(Debug)]
pub(crate) struct Active {
    previous: Option<Remote>,
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.with(|a| *a.borrow_mut() = self.previous.take());
    }
}

/// Register the transports, once per process. libgit2's registry is not synchronized:
/// this runs before the first network operation of the process (every one goes through
/// [`Remote::activate`]), and [`Once`] holds back any other thread's until it is done.
/// libgit2 also sends scp-like `user@host:path` URLs to whatever serves `ssh://`.
fn register() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        for scheme in ["https", "http"] {
            // SAFETY: see above; the factory is 'static and thread-safe.
            unsafe { git2::transport::register(scheme, http_factory) }
                .expect("registering the smart HTTP transport");
        }
        for scheme in ["ssh", "ssh+git", "git+ssh"] {
            // SAFETY: as above.
            unsafe { git2::transport::register(scheme, ssh_factory) }
                .expect("registering the SSH transport");
        }
    });
}

fn active() -> Option<Remote> {
    ACTIVE.with(|a| a.borrow().clone())
}

fn http_factory(remote: &git2::Remote<'_>) -> Result<git2::transport::Transport, git2::Error> {
    match active() {
        Some(Remote::Http(http)) => super::smart_http::transport(remote, http),
        _ => Err(outside()),
    }
}

fn ssh_factory(remote: &git2::Remote<'_>) -> Result<git2::transport::Transport, git2::Error> {
    match active() {
        Some(Remote::Ssh(ssh)) => super::ssh::transport(remote, ssh),
        _ => Err(outside()),
    }
}

fn outside() -> git2::Error {
    git2::Error::from_str("a network remote is reached through pve-gitops' git source only")
}
