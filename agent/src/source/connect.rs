//! One operation on the remote: the transport it goes through (`transport.rs`), and the
//! translation of libgit2's failures into [`Error`]s.
//!
//! libgit2 only lets a transport fail with a string, so one that refuses (a host key that
//! is not pinned, an unreadable key file, a rejected token) leaves its typed failure
//! behind, and [`Session::error`] hands that back instead of libgit2's message.

use super::error::Error;
use super::transport::{Active, Failure, Remote};
use super::url::RemoteUrl;
use git2::{ErrorCode, Oid, RemoteCallbacks};

/// One operation's view of the remote.
pub(crate) struct Session<'a> {
    pub url: &'a RemoteUrl,
    /// The network remote the transports serve while this session lives (`None`: a local
    /// repository, which libgit2 reads itself).
    remote: Option<(Remote, Active)>,
}

impl<'a> Session<'a> {
    pub fn new(url: &'a RemoteUrl, remote: Option<&Remote>) -> Self {
        Self {
            url,
            remote: remote.map(|r| (r.clone(), r.activate())),
        }
    }

    /// Callbacks for one libgit2 call (each call takes its own set). Credentials and the
    /// server's identity are the transports' business, so there are none to answer.
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        RemoteCallbacks::new()
    }

    /// The error to report for a failed libgit2 call made while `action` (e.g. "fetching
    /// branch `main`"): the transport's own failure if there was one, else libgit2's
    /// failure classified.
    pub fn error(&self, err: git2::Error, action: &str, last_fetched: Option<Oid>) -> Error {
        let url = self.url.to_string();
        let action = action.to_string();
        let failure = self.remote.as_ref().and_then(|(r, _)| r.take_failure());
        match failure {
            Some(Failure::Auth(message)) => Error::Auth {
                url,
                action,
                message,
            },
            Some(Failure::Tls { host, message }) => Error::Tls { url, host, message },
            Some(Failure::HostKey {
                host,
                expected,
                got,
            }) => Error::HostKeyMismatch {
                url,
                host,
                expected,
                got,
            },
            Some(Failure::Credential { path, source }) => Error::Credential { url, path, source },
            Some(Failure::Unreachable(message)) => Error::Unreachable {
                url,
                action,
                message,
                last_fetched,
            },
            None if err.code() == ErrorCode::Auth => Error::Auth {
                url,
                action,
                message: err.message().to_string(),
            },
            None => Error::Unreachable {
                url,
                action,
                message: super::timeout::describe(&err),
                last_fetched,
            },
        }
    }
}
