//! What can go wrong with a source, named so the operator knows which repository, branch and
//! step failed. No variant ever holds a credential: URLs carry none (see `url.rs`) and a
//! token or key is only ever named by the file it is read from.

use git2::Oid;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source configuration cannot work (bad URL, branch name, missing pin...).
    #[error("{url}: {message}")]
    Config { url: String, message: String },

    /// The SSH server presented a host key that is not pinned: never trusted, whether the
    /// key is new or changed.
    #[error(
        "{url}: host key of {host} is not pinned: expected {expected}, got {got}; refusing to \
         connect (if the server's key really changed, pin the new key)"
    )]
    HostKeyMismatch {
        url: String,
        host: String,
        expected: String,
        got: String,
    },

    /// An HTTPS server whose certificate does not chain to the configured CA file (or,
    /// without one, to the system's store) or does not name the host.
    #[error("{url}: TLS certificate of {host} is not trusted: {message}; refusing to connect")]
    Tls {
        url: String,
        host: String,
        message: String,
    },

    /// A credential file (deploy key, token) cannot be read.
    #[error("{url}: cannot read credential file {}: {source}", path.display())]
    Credential {
        url: String,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The remote refused the credentials, or asked for some that are not configured.
    #[error("{url}: authentication failed while {action}: {message}")]
    Auth {
        url: String,
        action: String,
        message: String,
    },

    /// The remote could not be reached or did not answer as a git server. The last fetched
    /// commit stays in the cache and is given here.
    #[error("{url}: remote unreachable while {action}: {message}")]
    Unreachable {
        url: String,
        action: String,
        message: String,
        last_fetched: Option<Oid>,
    },

    /// The remote answers but has no such branch.
    #[error("{url}: branch `{branch}` does not exist on the remote")]
    BranchMissing {
        url: String,
        branch: String,
        last_fetched: Option<Oid>,
    },

    /// The local cache repository cannot be created or written.
    #[error("{url}: cache {}: {message}", path.display())]
    Cache {
        url: String,
        path: PathBuf,
        message: String,
    },

    /// Signed-commit mode: the head is not signed by an allowed signer.
    #[error("{url}: head {commit} of `{branch}` refused: {problem}")]
    Signature {
        url: String,
        branch: String,
        commit: Oid,
        /// Boxed: the other variants are much smaller.
        problem: Box<SignatureProblem>,
    },

    /// A file or directory cannot be read from a fetched commit.
    #[error("commit {commit}: {path}: {message}")]
    Read {
        commit: Oid,
        path: String,
        message: String,
    },

    /// The remote refused a push for a reason other than a moved branch (a protected branch,
    /// a hook, no write permission).
    #[error("{url}: push to `{branch}` rejected by the remote: {message}")]
    PushRejected {
        url: String,
        branch: String,
        message: String,
    },
}

/// Why a head's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    #[error(
        "it is not signed (signed-commit mode requires an SSH signature by an allowed signer)"
    )]
    Unsigned,
    #[error("it carries an {0} signature; only SSH signatures are verified")]
    Unsupported(&'static str),
    #[error("its signature cannot be parsed: {0}")]
    Malformed(String),
    #[error("it is signed for namespace `{0}`, not `git`")]
    WrongNamespace(String),
    #[error("it is signed by {fingerprint}, which is not an allowed signer")]
    UnknownKey { fingerprint: String },
    #[error("it is signed by {fingerprint} ({principals}), allowed only {restriction}")]
    OutsideRestriction {
        fingerprint: String,
        principals: String,
        restriction: String,
    },
    #[error("its signature by {fingerprint} does not verify (commit or signature altered)")]
    Invalid { fingerprint: String },
}

/// A line of a pin or allowed-signers file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}line {line}: {message}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
pub struct ParseError {
    pub file: Option<PathBuf>,
    /// 1-based; 0 when the problem is the whole text (e.g. empty).
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(line: usize, message: String) -> Self {
        Self {
            file: None,
            line,
            message,
        }
    }

    pub(crate) fn in_file(mut self, file: &std::path::Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }
}
