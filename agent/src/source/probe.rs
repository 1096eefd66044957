//! What an SSH remote's host key is, before anything is pinned: `pve-gitops init` shows
//! it to the operator to confirm (as `ssh` does on a first connection, but never
//! silently). The connection is dropped as soon as the server has shown its key, before
//! any authentication, so no credential is needed or sent.
//!
//! The key is the one libssh2 negotiates, which is the one the agent will be shown on
//! every later connection, so pinning it keeps working.

use super::error::Error;
use super::hostkey::fingerprint;
use super::ssh::{handshake, host_key_sha256, Target};
use super::url::{RemoteUrl, Transport};

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
    let target = Target::parse(remote_url.as_str()).map_err(|message| Error::Config {
        url: url.clone(),
        message,
    })?;
    let unreachable = |message: String| Error::Unreachable {
        url: url.clone(),
        action: "reading the host key".into(),
        message,
        last_fetched: None,
    };
    // Dropped right after: nothing is trusted until the operator has confirmed the key.
    let session = handshake(&target).map_err(unreachable)?;
    host_key_sha256(&session)
        .map(|sha| fingerprint(&sha))
        .ok_or_else(|| unreachable("the server presented no SHA-256 host key".into()))
}
