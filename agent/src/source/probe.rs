//! What an SSH remote's host key is, before anything is pinned: `pve-gitops init` shows
//! it to the operator to confirm (as `ssh` does on a first connection, but never
//! silently). The connection is dropped as soon as the server has shown its key, before
//! any authentication, so no credential is needed or sent.
//!
//! The key is the one libssh2 negotiates, which is the one the agent will be shown on
//! every later connection, so pinning it keeps working.

use super::error::Error;
use super::hostkey::fingerprint;
use super::url::{RemoteUrl, Transport};
use git2::{CertificateCheckStatus, Direction, RemoteCallbacks};
use std::cell::Cell;

/// The `SHA256:…` fingerprint of the host key the SSH remote `url` presents.
pub fn host_key_fingerprint(url: &str) -> Result<String, Error> {
    let remote_url = RemoteUrl::parse(url).map_err(|message| Error::Config {
        url: super::url::redact(url),
        message,
    })?;
    let url = remote_url.to_string();
    if remote_url.transport() != Transport::Ssh {
        return Err(Error::Config {
            url,
            message: "only an SSH remote has a host key to pin".into(),
        });
    }
    let seen: Cell<Option<[u8; 32]>> = Cell::new(None);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.certificate_check(|cert, _host| {
        seen.set(cert.as_hostkey().and_then(|k| k.hash_sha256()).copied());
        // Stop here: nothing is trusted until the operator has confirmed the key.
        Err::<CertificateCheckStatus, _>(git2::Error::from_str("host key recorded"))
    });
    let mut remote =
        git2::Remote::create_detached(remote_url.as_str()).map_err(|e| Error::Config {
            url: url.clone(),
            message: e.message().to_string(),
        })?;
    let result = remote
        .connect_auth(Direction::Fetch, Some(callbacks), None)
        .map(|_| ());
    match (seen.get(), result) {
        (Some(sha), _) => Ok(fingerprint(&sha)),
        (None, Err(e)) => Err(Error::Unreachable {
            url,
            action: "reading the host key".into(),
            message: super::timeout::describe(&e),
            last_fetched: None,
        }),
        (None, Ok(())) => Err(Error::Unreachable {
            url,
            action: "reading the host key".into(),
            message: "the server presented no SHA-256 host key".into(),
            last_fetched: None,
        }),
    }
}
