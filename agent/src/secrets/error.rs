//! Everything that can go wrong while loading identities or decrypting a secret.
//!
//! Each message names the file and, inside a SOPS document, the key path, so an operator
//! knows where to look. No message ever carries plaintext or key material: errors travel
//! into logs and into the status branch, which are not secret.

use std::fmt;
use std::path::{Path, PathBuf};

/// A path as it appears in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePath(pub PathBuf);

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

impl From<&Path> for FilePath {
    fn from(p: &Path) -> Self {
        FilePath(p.to_path_buf())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: FilePath,
        source: std::io::Error,
    },

    // --- identities -----------------------------------------------------------------------
    #[error(
        "{path}: private key is accessible by group or others (mode {mode:04o}); \
         it must be readable by its owner only: chmod 600 {path}"
    )]
    IdentityPermissions { path: FilePath, mode: u32 },
    #[error("{path}: line {line} is not an age identity (expected AGE-SECRET-KEY-1…)")]
    IdentityInvalid { path: FilePath, line: usize },
    #[error(
        "{path}: line {line}: {kind} identities are not supported by the age library this agent \
         is built with; use an X25519 identity (age-keygen) or an SSH ed25519/rsa key"
    )]
    IdentityUnsupported {
        path: FilePath,
        line: usize,
        kind: &'static str,
    },
    #[error("{path}: no identity in the file")]
    IdentityEmpty { path: FilePath },
    #[error("{path}: not a usable SSH private key: {reason}")]
    SshKeyInvalid { path: FilePath, reason: String },
    #[error("no identity to decrypt with: give an age identity file or an SSH host key")]
    NoIdentities,

    // --- whole age files ------------------------------------------------------------------
    #[error("{path}: not an age file ({reason})")]
    AgeMalformed { path: FilePath, reason: String },
    #[error(
        "{path}: is encrypted with a passphrase; the agent decrypts only files encrypted to \
         recipients (age -r <cluster recipient>)"
    )]
    AgePassphrase { path: FilePath },
    #[error(
        "{path}: no identity opens this file; it is encrypted to {} recipient(s) of type {}",
        stanzas.len(), stanzas.join(", ")
    )]
    AgeNoMatchingIdentity {
        path: FilePath,
        stanzas: Vec<String>,
    },
    #[error(
        "{path}: age file failed authentication: it was corrupted, truncated or tampered with"
    )]
    AgeTampered { path: FilePath },

    // --- shared by age files and SOPS documents --------------------------------------------
    #[error(
        "{path}: encrypted only to recipient types this agent cannot decrypt ({}); \
         unsupported recipient type: re-encrypt to an X25519 (age1…) or SSH recipient",
        types.join(", ")
    )]
    UnsupportedRecipient { path: FilePath, types: Vec<String> },

    // --- SOPS documents -------------------------------------------------------------------
    #[error("{path}: cannot parse as {format}: {reason}")]
    Parse {
        path: FilePath,
        format: &'static str,
        reason: String,
    },
    #[error("{path}: not a SOPS document: there is no top-level `sops` metadata section")]
    SopsMissingMetadata { path: FilePath },
    #[error("{path}: SOPS metadata: {reason}")]
    SopsMetadata { path: FilePath, reason: String },
    #[error("{path}: SOPS documents in {what} are not supported")]
    SopsUnsupported { path: FilePath, what: String },
    #[error(
        "{path}: the document has no age recipients (its data key is only wrapped for {}); \
         re-encrypt it with an age recipient",
        others.join(", ")
    )]
    SopsNoAgeRecipients { path: FilePath, others: Vec<String> },
    #[error(
        "{path}: no identity opens the data key; the document is encrypted to: {}",
        recipients.join(", ")
    )]
    SopsNoMatchingIdentity {
        path: FilePath,
        recipients: Vec<String>,
    },
    #[error("{path}: the data key wrapped for {recipient} is damaged: {reason}")]
    SopsDataKey {
        path: FilePath,
        recipient: String,
        reason: String,
    },
    #[error(
        "{path}: value at `{key}` failed authentication: its ciphertext was changed, or it was \
         moved or its key renamed since sops encrypted it"
    )]
    ValueTampered { path: FilePath, key: String },
    #[error("{path}: value at `{key}` is not a valid SOPS encrypted value: {reason}")]
    ValueMalformed {
        path: FilePath,
        key: String,
        reason: String,
    },
    #[error(
        "{path}: value at `{key}` is stored in clear text, but the document's sops rules say it \
         must be encrypted"
    )]
    ValueNotEncrypted { path: FilePath, key: String },
    #[error("{path}: no MAC in the sops metadata; refusing a document whose integrity cannot be checked")]
    MacMissing { path: FilePath },
    #[error(
        "{path}: the stored MAC cannot be decrypted: `sops.mac` or `sops.lastmodified` was \
         changed, or the file was damaged"
    )]
    MacUndecryptable { path: FilePath },
    #[error(
        "{path}: MAC mismatch: values were added, removed, reordered or changed since sops wrote \
         the file; nothing from it is used"
    )]
    MacMismatch { path: FilePath },

    // --- looking values up ----------------------------------------------------------------
    #[error("{path}: no value at `{key}`")]
    KeyNotFound { path: FilePath, key: String },
    #[error("{path}: `{key}` is a {found}, not a single value")]
    NotAValue {
        path: FilePath,
        key: String,
        found: &'static str,
    },
    #[error("{path}: {reason}")]
    WrongKind { path: FilePath, reason: String },
}

impl SecretError {
    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        SecretError::Read {
            path: path.into(),
            source,
        }
    }
}
