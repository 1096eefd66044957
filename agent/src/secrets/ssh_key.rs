//! A node's SSH host key as a decryption identity.
//!
//! An SSH key opens secrets in two ways, and both are offered:
//! - age's own SSH recipient types (`age -R ssh_host_ed25519_key.pub`, stanzas `ssh-ed25519`
//!   and `ssh-rsa`), through the age crate's `ssh` feature;
//! - for ed25519 keys, the X25519 identity derived from the key as `ssh-to-age` and
//!   sops-nix derive it (the X25519 scalar is the first half of SHA-512 of the ed25519
//!   seed, as RFC 8032 defines it), so SOPS documents encrypted to `ssh-to-age` output of the
//!   host's public key open with the host key alone.

use super::error::SecretError;
use super::identity::Entry;
use super::openssh;
use age::ssh::{Identity as SshIdentity, UnsupportedKey};
use base64::prelude::{Engine, BASE64_STANDARD};
use sha2::{Digest, Sha512};
use std::path::Path;
use zeroize::Zeroizing;

const PASSPHRASE: &str =
    "it is protected by a passphrase; a host key has none, and the agent cannot ask";

/// Whether a private key file is an SSH key (OpenSSH format, or PEM RSA).
pub(crate) fn looks_like_ssh_key(text: &str) -> bool {
    let first = text.trim_start().lines().next().unwrap_or("");
    first == "-----BEGIN OPENSSH PRIVATE KEY-----" || first == "-----BEGIN RSA PRIVATE KEY-----"
}

/// The identities of an SSH private key: the native age SSH identity, and for ed25519 the
/// derived X25519 identity too.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, SecretError> {
    let invalid = |reason: String| SecretError::SshKeyInvalid {
        path: path.into(),
        reason,
    };
    let identity = SshIdentity::from_buffer(text.as_bytes(), Some(path.display().to_string()))
        .map_err(|e| invalid(e.to_string()))?;
    match &identity {
        SshIdentity::Unencrypted(_) => {}
        SshIdentity::Encrypted(_) => return Err(invalid(PASSPHRASE.into())),
        SshIdentity::Unsupported(u) => return Err(invalid(unsupported_reason(u))),
    }
    // The legacy PEM RSA form holds no public key line: take it from `<key>.pub` if there.
    let (recipient, seed) = if text
        .trim_start()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    {
        (public_key_file(path), None)
    } else {
        let key = openssh::parse(text).map_err(invalid)?;
        let line = format!("{} {}", key.kind, BASE64_STANDARD.encode(&key.public_blob));
        (Some(line), key.ed25519_seed)
    };
    let mut entries = vec![Entry {
        source: path.to_path_buf(),
        recipient,
        identity: Box::new(identity),
    }];
    if let Some(seed) = seed {
        let x = derive_x25519(seed.as_ref());
        entries.push(Entry {
            source: path.to_path_buf(),
            recipient: Some(x.to_public().to_string()),
            identity: Box::new(x),
        });
    }
    Ok(entries)
}

fn unsupported_reason(u: &UnsupportedKey) -> String {
    match u {
        UnsupportedKey::EncryptedPem | UnsupportedKey::EncryptedSsh(_) => PASSPHRASE.into(),
        UnsupportedKey::Hardware(t) => format!("{t} keys live on a hardware token"),
        UnsupportedKey::Type(t) => format!("{t} keys are not supported (use ed25519 or rsa)"),
        #[allow(unreachable_patterns)] // the enum is non-exhaustive upstream
        other => format!("unsupported key ({other:?})"),
    }
}

/// `ssh-rsa AAAA…` from the `.pub` file next to a key, if there is one.
fn public_key_file(path: &Path) -> Option<String> {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    let text = std::fs::read_to_string(name).ok()?;
    let mut fields = text.split_whitespace();
    Some(format!("{} {}", fields.next()?, fields.next()?))
}

/// The X25519 identity of an ed25519 seed, as ssh-to-age computes it: the clamped first
/// half of SHA-512(seed), spelled `AGE-SECRET-KEY-1…` so the age crate parses it.
fn derive_x25519(seed: &[u8]) -> age::x25519::Identity {
    let digest = Zeroizing::new(Sha512::digest(seed));
    let mut scalar = Zeroizing::new([0u8; 32]);
    scalar.copy_from_slice(&digest[..32]);
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
    let hrp = bech32::Hrp::parse("age-secret-key-").expect("valid human-readable part");
    let text = Zeroizing::new(
        bech32::encode::<bech32::Bech32>(hrp, scalar.as_ref())
            .expect("32 bytes fit in bech32")
            .to_uppercase(),
    );
    text.parse().expect("a bech32 X25519 identity parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sops-nix's public test host key; one of its `secrets.yaml` recipients is the X25519
    /// key ssh-to-age derived from it, so this checks the derivation against real output.
    const ED25519: &str = include_str!("../../tests/data/sops/sops-nix/ssh-ed25519-key");
    const ED25519_PUB: &str = include_str!("../../tests/data/sops/sops-nix/ssh-ed25519-key.pub");

    #[test]
    fn ed25519_key_gives_its_ssh_recipient_and_the_ssh_to_age_recipient() {
        assert!(looks_like_ssh_key(ED25519));
        let entries = parse(Path::new("host"), ED25519).unwrap();
        let recipients: Vec<_> = entries
            .iter()
            .map(|e| e.recipient.clone().unwrap())
            .collect();
        assert_eq!(
            recipients,
            [
                ED25519_PUB.trim(),
                "age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs"
            ]
        );
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END OPENSSH PRIVATE KEY-----\n";
        let Err(e) = parse(Path::new("host"), text) else {
            panic!("garbage accepted")
        };
        let e = e.to_string();
        assert!(e.starts_with("host: not a usable SSH private key"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }
}
