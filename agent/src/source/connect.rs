//! Talking to the remote: the callbacks libgit2 asks for credentials and for the server's
//! identity, and the translation of libgit2's failures into [`Error`]s.
//!
//! libgit2 only lets a callback fail with a string, so a callback that refuses (a host key
//! that is not pinned, an unreadable key file) leaves its typed error in [`Session`], and
//! [`Session::error`] hands that back instead of libgit2's generic message.

use super::error::Error;
use super::hostkey::{fingerprint, HostKeyPins};
use super::tls::CaTrust;
use super::url::RemoteUrl;
use super::Credentials;
use git2::{
    CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, Oid, RemoteCallbacks,
};
use std::cell::{Cell, RefCell};

/// User name for SSH (when the URL has none) and HTTPS token authentication. Forges accept
/// any user name with a token; SSH servers for git conventionally use `git`.
const DEFAULT_USER: &str = "git";

/// One operation's view of the remote's security settings.
pub(crate) struct Session<'a> {
    pub url: &'a RemoteUrl,
    credentials: &'a Credentials,
    host_keys: Option<&'a HostKeyPins>,
    /// HTTPS: verify the server against this CA file instead of the system's store.
    ca: Option<&'a CaTrust>,
    /// The typed error of a callback that refused.
    failure: RefCell<Option<Error>>,
    /// The host whose TLS certificate libgit2 last showed, for its refusal.
    tls_host: RefCell<Option<String>>,
    /// Whether the configured credential was already offered: libgit2 asks again after the
    /// server rejects it, and offering it again would loop forever.
    offered: Cell<bool>,
}

impl<'a> Session<'a> {
    pub fn new(
        url: &'a RemoteUrl,
        credentials: &'a Credentials,
        host_keys: Option<&'a HostKeyPins>,
        ca: Option<&'a CaTrust>,
    ) -> Self {
        Self {
            url,
            credentials,
            host_keys,
            ca,
            failure: RefCell::new(None),
            tls_host: RefCell::new(None),
            offered: Cell::new(false),
        }
    }

    /// Callbacks for one libgit2 call (each call takes its own set).
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        cb.credentials(|_url, user, allowed| self.credential(user, allowed));
        cb.certificate_check(|cert, host| {
            match (cert.as_hostkey(), cert.as_x509(), self.ca) {
                (Some(key), _, _) => self.check_host_key(host, key.hash_sha256()),
                (None, Some(x509), Some(ca)) => self.check_tls(ca, x509.data(), host),
                // TLS without a CA file: libgit2 has verified the certificate chain and
                // host name against the system's store with OpenSSL; its verdict stands.
                _ => {
                    *self.tls_host.borrow_mut() = Some(host.to_string());
                    Ok(CertificateCheckStatus::CertificatePassthrough)
                }
            }
        });
        cb
    }

    fn credential(&self, user: Option<&str>, allowed: CredentialType) -> Result<Cred, git2::Error> {
        let user = user.unwrap_or(DEFAULT_USER);
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        if self.offered.replace(true) {
            return Err(self.fail(self.auth_error("the remote rejected the configured credential")));
        }
        match self.credentials {
            Credentials::SshKey { private_key } if allowed.contains(CredentialType::SSH_KEY) => {
                // Checked here so a missing file is reported as such, not as a failed login.
                if let Err(source) = std::fs::File::open(private_key) {
                    return Err(self.fail(Error::Credential {
                        url: self.url.to_string(),
                        path: private_key.clone(),
                        source,
                    }));
                }
                Cred::ssh_key(user, None, private_key, None)
            }
            Credentials::Token { file }
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                match std::fs::read_to_string(file) {
                    Ok(token) => Cred::userpass_plaintext(user, token.trim()),
                    Err(source) => Err(self.fail(Error::Credential {
                        url: self.url.to_string(),
                        path: file.clone(),
                        source,
                    })),
                }
            }
            _ => Err(self.fail(self.auth_error(&format!(
                "the remote asks for credentials ({}) that are not configured",
                describe(allowed)
            )))),
        }
    }

    fn check_host_key(
        &self,
        host: &str,
        presented: Option<&[u8; 32]>,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        let Some(pins) = self.host_keys else {
            // `Source::open` requires pins for SSH; this is the last line of defence.
            return Err(self.fail(Error::Config {
                url: self.url.to_string(),
                message: "no host key pinned for an SSH remote".to_string(),
            }));
        };
        match presented {
            Some(sha) if pins.accepts(sha) => Ok(CertificateCheckStatus::CertificateOk),
            got => Err(self.fail(Error::HostKeyMismatch {
                url: self.url.to_string(),
                host: host.to_string(),
                expected: pins.expected(),
                got: got.map_or_else(|| "no SHA-256 fingerprint".to_string(), fingerprint),
            })),
        }
    }

    /// The CA file decides, whatever OpenSSL made of the system's store.
    fn check_tls(
        &self,
        ca: &CaTrust,
        der: &[u8],
        host: &str,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        match ca.verify(der, host) {
            Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
            Err(message) => Err(self.fail(Error::Tls {
                url: self.url.to_string(),
                host: host.to_string(),
                message,
            })),
        }
    }

    fn auth_error(&self, message: &str) -> Error {
        Error::Auth {
            url: self.url.to_string(),
            action: String::new(),
            message: message.to_string(),
        }
    }

    /// Keep `error` for [`Session::error`] and give libgit2 something to abort with.
    fn fail(&self, error: Error) -> git2::Error {
        let message = error.to_string();
        *self.failure.borrow_mut() = Some(error);
        git2::Error::from_str(&message)
    }

    /// The error to report for a failed libgit2 call made while `action` (e.g. "fetching
    /// branch `main`"): a callback's own refusal if there was one, else libgit2's failure
    /// classified.
    pub fn error(&self, err: git2::Error, action: &str, last_fetched: Option<Oid>) -> Error {
        let url = self.url.to_string();
        match self.failure.borrow_mut().take() {
            Some(Error::Auth { message, .. }) => Error::Auth {
                url,
                action: action.to_string(),
                message,
            },
            Some(e) => e,
            // Before the TLS arm: a stall after the handshake is an SSL-class error too.
            None if super::timeout::ran_out(&err) => Error::Unreachable {
                url,
                action: action.to_string(),
                message: super::timeout::describe(&err),
                last_fetched,
            },
            // OpenSSL's verdict on a certificate shown to the callback (libgit2 reports
            // it as an SSL-class error, or GIT_ECERTIFICATE).
            None if self.tls_host.borrow().is_some()
                && (err.code() == ErrorCode::Certificate || err.class() == ErrorClass::Ssl) =>
            {
                Error::Tls {
                    url,
                    host: self.tls_host.borrow().clone().unwrap_or_default(),
                    message: format!(
                        "{} (checked against the system's CA store; for a server behind a \
                     private CA, configure that CA's certificate: repo.caFile, --git-ca-file)",
                        err.message()
                    ),
                }
            }
            None if err.code() == ErrorCode::Auth => Error::Auth {
                url,
                action: action.to_string(),
                message: err.message().to_string(),
            },
            None => Error::Unreachable {
                url,
                action: action.to_string(),
                message: err.message().to_string(),
                last_fetched,
            },
        }
    }
}

fn describe(allowed: CredentialType) -> String {
    let mut kinds = Vec::new();
    if allowed.contains(CredentialType::SSH_KEY) {
        kinds.push("SSH key");
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        kinds.push("user name and token");
    }
    if kinds.is_empty() {
        kinds.push("an unsupported kind");
    }
    kinds.join(" or ")
}
