//! Unwrapping a SOPS document's data key: the 32-byte AES key, age-encrypted once per
//! recipient under `sops.age[].enc`.

use super::cipher::DataKey;
use super::metadata::Metadata;
use crate::secrets::age_file::{self, Failure};
use crate::secrets::error::SecretError;
use crate::secrets::identity::Identities;
use std::path::Path;
use zeroize::Zeroizing;

/// The data key, opened with the first identity that matches one of the recipients.
pub fn unwrap(path: &Path, meta: &Metadata, ids: &Identities) -> Result<DataKey, SecretError> {
    if ids.is_empty() {
        return Err(SecretError::NoIdentities);
    }
    if meta.age.is_empty() {
        return Err(if meta.other_key_types.is_empty() {
            SecretError::SopsMetadata {
                path: path.into(),
                reason: "the data key is not wrapped for any recipient".into(),
            }
        } else {
            SecretError::SopsNoAgeRecipients {
                path: path.into(),
                others: meta.other_key_types.clone(),
            }
        });
    }
    let mut damaged = None;
    for stanza in &meta.age {
        let damage = |reason: &str| SecretError::SopsDataKey {
            path: path.into(),
            recipient: stanza.recipient.clone(),
            reason: reason.into(),
        };
        match age_file::decrypt_with(stanza.enc.as_bytes(), ids.as_age()) {
            Ok(plain) if plain.len() == 32 => {
                let mut key = Zeroizing::new([0u8; 32]);
                key.copy_from_slice(plain.as_bytes());
                return Ok(key);
            }
            Ok(plain) => damaged = Some(damage(&format!("it holds {} bytes, not 32", plain.len()))),
            Err(Failure::NoMatch | Failure::Passphrase) => {}
            Err(Failure::Tampered) => damaged = Some(damage("it does not authenticate")),
            Err(Failure::Malformed(reason)) => damaged = Some(damage(&reason)),
        }
    }
    if let Some(e) = damaged {
        return Err(e);
    }
    let recipients: Vec<String> = meta.age.iter().map(|s| s.recipient.clone()).collect();
    let unsupported: Vec<String> = recipients
        .iter()
        .filter_map(|r| unsupported_kind(r))
        .collect();
    if unsupported.len() == recipients.len() {
        return Err(SecretError::UnsupportedRecipient {
            path: path.into(),
            types: unsupported,
        });
    }
    Err(SecretError::SopsNoMatchingIdentity {
        path: path.into(),
        recipients,
    })
}

/// The kind of a recipient the agent can never open, or `None` for X25519 and SSH ones.
fn unsupported_kind(recipient: &str) -> Option<String> {
    if recipient.parse::<age::x25519::Recipient>().is_ok()
        || recipient.starts_with("ssh-ed25519 ")
        || recipient.starts_with("ssh-rsa ")
    {
        return None;
    }
    if recipient.starts_with("age1pq1") {
        return Some("post-quantum hybrid (age1pq1…)".into());
    }
    // A bech32 recipient's kind is its human-readable part, before the last `1`.
    let hrp = recipient.rfind('1').map_or(recipient, |i| &recipient[..i]);
    Some(format!("{}…", hrp.chars().take(24).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_kinds() {
        assert_eq!(
            unsupported_kind("age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29"),
            None
        );
        assert_eq!(unsupported_kind("ssh-ed25519 AAAA"), None);
        assert_eq!(
            unsupported_kind("age1pq1ehusfwsvrente8p6"),
            Some("post-quantum hybrid (age1pq1…)".into())
        );
        assert_eq!(
            unsupported_kind("age1yubikey1qwerty"),
            Some("age1yubikey…".into())
        );
    }
}
