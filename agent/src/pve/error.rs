//! Typed errors of the PVE client.
//!
//! PVE reports most failures as an HTTP status plus a one-line message (in the body's
//! `message` and in the HTTP reason phrase) and, for parameter errors, an `errors` map.
//! The callers above (plan, apply) must react differently to a stale digest, a busy
//! config lock, a locked guest or a lost quorum, so [`classify`] turns PVE's wording
//! into variants here, once, instead of every caller matching on strings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;

use super::upid::Upid;

/// What PVE answered when it refused a request, kept whole so it can be reported verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFailure {
    pub method: Method,
    /// The API path below `/api2/json`, as sent (path segments percent-encoded).
    pub path: String,
    pub status: u16,
    /// PVE's message, trailing newline removed.
    pub message: String,
    /// Per-parameter messages of a 400 "Parameter verification failed.".
    pub errors: BTreeMap<String, String>,
}

impl fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: HTTP {}: {}",
            self.method, self.path, self.status, self.message
        )?;
        if !self.errors.is_empty() {
            let parts: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.trim_end()))
                .collect();
            write!(f, " ({})", parts.join("; "))?;
        }
        Ok(())
    }
}

/// How a request failed below HTTP: this decides whether it may have reached PVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection was made, so PVE never saw the request (safe to repeat any request).
    Connect,
    /// The server's certificate was refused: repeating cannot help.
    Tls,
    /// No answer in time; the request may or may not have been applied.
    Timeout,
    /// The connection broke after the request was (perhaps) sent.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connection failed",
            TransportKind::Tls => "TLS verification failed",
            TransportKind::Timeout => "timed out",
            TransportKind::Other => "connection error",
        })
    }
}

/// Every way a PVE API call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PveError {
    /// HTTP 400: a parameter was rejected; `errors` names which and why.
    #[error("parameter verification failed: {0}")]
    ParameterVerification(Box<HttpFailure>),
    /// HTTP 401/403: bad token, or the token lacks a privilege.
    #[error("not authorized: {0}")]
    Auth(Box<HttpFailure>),
    /// The guest, storage, pool or path does not exist.
    #[error("not found: {0}")]
    NotFound(Box<HttpFailure>),
    /// The `digest` sent no longer matches: someone else changed the config.
    #[error("changed concurrently (digest mismatch): {0}")]
    ChecksumMismatch(Box<HttpFailure>),
    /// PVE could not take the config lock in time (another write held it); safe to retry.
    #[error("config lock timeout: {0}")]
    LockTimeout(Box<HttpFailure>),
    /// The guest carries a lock (`clone`, `backup`, `migrate`, ...) that refuses writes.
    #[error("guest is locked ({lock}): {failure}")]
    VmLocked {
        lock: String,
        failure: Box<HttpFailure>,
    },
    /// The cluster lost quorum: /etc/pve is read-only, every write fails.
    #[error("cluster has no quorum: {0}")]
    NoQuorum(Box<HttpFailure>),
    /// HTTP 595: the node the request was proxied to is offline or unreachable.
    #[error("node offline or unreachable: {0}")]
    NodeOffline(Box<HttpFailure>),
    /// Any other refusal.
    #[error("{0}")]
    Api(Box<HttpFailure>),
    /// No HTTP answer at all.
    #[error("{method} {path}: {kind}: {source}")]
    Transport {
        method: Method,
        path: String,
        kind: TransportKind,
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer whose body is not what the endpoint documents.
    #[error("{method} {path}: unexpected response (HTTP {status}): {detail}")]
    InvalidResponse {
        method: Method,
        path: String,
        status: u16,
        detail: String,
    },
    /// A task ended with an error exit status.
    #[error("task {upid} failed: {exitstatus}")]
    TaskFailed { upid: Upid, exitstatus: String },
    /// A task was still running when the caller's deadline passed (it may still finish).
    #[error("task {upid} still running after {waited:?}")]
    TaskDeadline { upid: Upid, waited: Duration },
}

impl PveError {
    /// PVE's answer, for the variants that have one.
    pub fn failure(&self) -> Option<&HttpFailure> {
        match self {
            PveError::ParameterVerification(f)
            | PveError::Auth(f)
            | PveError::NotFound(f)
            | PveError::ChecksumMismatch(f)
            | PveError::LockTimeout(f)
            | PveError::NoQuorum(f)
            | PveError::NodeOffline(f)
            | PveError::Api(f)
            | PveError::VmLocked { failure: f, .. } => Some(f),
            _ => None,
        }
    }

    /// The HTTP status PVE answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PveError::InvalidResponse { status, .. } => Some(*status),
            other => other.failure().map(|f| f.status),
        }
    }

    /// The UPID of the task this error is about, for task errors.
    pub fn upid(&self) -> Option<&Upid> {
        match self {
            PveError::TaskFailed { upid, .. } | PveError::TaskDeadline { upid, .. } => Some(upid),
            _ => None,
        }
    }
}

/// Turn PVE's answer into the variant callers react to.
///
/// The status decides first where it is unambiguous (400, 401/403, 595); PVE answers
/// most other refusals with 500 and a message, so the wording decides the rest. The
/// phrases are the ones PVE's Perl code dies with (checked against PVE 9).
pub(crate) fn classify(f: HttpFailure) -> PveError {
    let msg = f.message.to_ascii_lowercase();
    let f = Box::new(f);
    match f.status {
        400 => return PveError::ParameterVerification(f),
        401 | 403 => return PveError::Auth(f),
        595 => return PveError::NodeOffline(f),
        _ => {}
    }
    if msg.contains("checksum mismatch") || msg.contains("file changed by other user") {
        PveError::ChecksumMismatch(f)
    } else if msg.contains("can't lock file") && msg.contains("got timeout") {
        PveError::LockTimeout(f)
    } else if let Some(lock) = guest_lock(&f.message) {
        PveError::VmLocked { lock, failure: f }
    } else if msg.contains("no quorum") {
        PveError::NoQuorum(f)
    } else if f.status == 404 || msg.contains("does not exist") || msg.contains("no such ") {
        PveError::NotFound(f)
    } else {
        PveError::Api(f)
    }
}

/// `clone` from "VM is locked (clone)" / "CT is locked (backup)".
pub(crate) fn guest_lock(message: &str) -> Option<String> {
    let start = message.find("is locked (")? + "is locked (".len();
    let len = message[start..].find(')')?;
    Some(message[start..start + len].to_string())
}

/// Why a [`PveClient`](super::PveClient) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientBuildError {
    #[error("invalid API token: {0}")]
    Token(String),
    #[error("reading CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA certificates from {origin}: {detail}")]
    BadCertificate { origin: String, detail: String },
    #[error("invalid certificate fingerprint {0:?}: expected 32 hex bytes, e.g. AB:CD:...")]
    Fingerprint(String),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid base URL {0:?}: expected https://HOST[:PORT]")]
    BaseUrl(String),
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, message: &str) -> HttpFailure {
        HttpFailure {
            method: Method::PUT,
            path: "/nodes/pve1/qemu/100/config".into(),
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn classifies_pve_wording() {
        let c = |s, m| classify(failure(s, m));
        assert!(matches!(
            c(500, "checksum mismatch (file change by other user?)"),
            PveError::ChecksumMismatch(_)
        ));
        assert!(matches!(
            c(
                500,
                "detected modified configuration - file changed by other user? Try again."
            ),
            PveError::ChecksumMismatch(_)
        ));
        assert!(matches!(
            c(
                500,
                "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"
            ),
            PveError::LockTimeout(_)
        ));
        match c(500, "VM is locked (clone)") {
            PveError::VmLocked { lock, .. } => assert_eq!(lock, "clone"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c(500, "cluster not ready - no quorum?"),
            PveError::NoQuorum(_)
        ));
        assert!(matches!(
            c(
                500,
                "Configuration file 'nodes/pve1/qemu-server/1.conf' does not exist"
            ),
            PveError::NotFound(_)
        ));
        assert!(matches!(
            c(595, "No route to host"),
            PveError::NodeOffline(_)
        ));
        assert!(matches!(
            c(401, "authentication failure"),
            PveError::Auth(_)
        ));
        assert!(matches!(c(500, "boom"), PveError::Api(_)));
    }

    #[test]
    fn display_keeps_message_and_errors() {
        let mut f = failure(400, "Parameter verification failed.");
        f.errors
            .insert("bogus".into(), "property is not defined\n".into());
        assert_eq!(
            f.to_string(),
            "PUT /nodes/pve1/qemu/100/config: HTTP 400: Parameter verification failed. \
             (bogus: property is not defined)"
        );
    }
}
