//! Whole files encrypted with age (`*.age`), armored or binary.

use super::error::SecretError;
use super::identity::Identities;
use super::plaintext::Plaintext;
use std::io::Read;
use std::path::Path;

/// The first bytes of a binary age file.
const BINARY_MAGIC: &[u8] = b"age-encryption.org/";
/// The first line of an armored age file.
const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Recipient stanza types the agent's identities can open.
const SUPPORTED_STANZAS: &[&str] = &["X25519", "ssh-ed25519", "ssh-rsa"];

/// Whether the bytes are an age file (binary or armored).
pub fn is_age(bytes: &[u8]) -> bool {
    let start = bytes.trim_ascii_start();
    start.starts_with(BINARY_MAGIC) || start.starts_with(ARMOR_BEGIN)
}

/// Decrypt a whole age file with the first identity that matches one of its recipients.
pub fn decrypt(path: &Path, bytes: &[u8], ids: &Identities) -> Result<Plaintext, SecretError> {
    if ids.is_empty() {
        return Err(SecretError::NoIdentities);
    }
    decrypt_with(bytes, ids.as_age()).map_err(|e| match e {
        Failure::NoMatch => no_match(path, bytes),
        Failure::Passphrase => SecretError::AgePassphrase { path: path.into() },
        Failure::Malformed(reason) => SecretError::AgeMalformed {
            path: path.into(),
            reason,
        },
        Failure::Tampered => SecretError::AgeTampered { path: path.into() },
    })
}

/// How decrypting age bytes failed, before it is put in terms of the file at hand (SOPS data
/// keys are age files too, and say it differently).
pub(crate) enum Failure {
    NoMatch,
    Passphrase,
    Malformed(String),
    Tampered,
}

/// Decrypt armored or binary age bytes with the given identities.
pub(crate) fn decrypt_with<'a>(
    bytes: &[u8],
    identities: impl Iterator<Item = &'a dyn age::Identity>,
) -> Result<Plaintext, Failure> {
    let reader = age::armor::ArmoredReader::new(bytes);
    let decryptor = age::Decryptor::new_buffered(reader).map_err(classify)?;
    if decryptor.is_scrypt() {
        return Err(Failure::Passphrase);
    }
    let mut stream = decryptor.decrypt(identities).map_err(classify)?;
    let mut buf = Vec::with_capacity(bytes.len());
    let read = stream.read_to_end(&mut buf);
    // Wrapped at once, so a partial plaintext from a failed read is wiped too.
    let plaintext = Plaintext::new(buf);
    // The payload is authenticated chunk by chunk: a read error is a damaged payload.
    read.map_err(|_| Failure::Tampered)?;
    Ok(plaintext)
}

fn classify(e: age::DecryptError) -> Failure {
    use age::DecryptError as E;
    match e {
        E::NoMatchingKeys => Failure::NoMatch,
        E::InvalidMac | E::DecryptionFailed | E::KeyDecryptionFailed => Failure::Tampered,
        E::InvalidHeader => Failure::Malformed("invalid age header".into()),
        E::UnknownFormat => Failure::Malformed("unknown age format version".into()),
        E::Io(io) => Failure::Malformed(io.to_string()),
        other => Failure::Malformed(other.to_string()),
    }
}

/// No identity opened the file: say which recipient types it has, and whether the agent
/// could ever open it.
fn no_match(path: &Path, bytes: &[u8]) -> SecretError {
    let stanzas = stanza_types(bytes);
    if !stanzas.is_empty()
        && stanzas
            .iter()
            .all(|s| !SUPPORTED_STANZAS.contains(&s.as_str()))
    {
        return SecretError::UnsupportedRecipient {
            path: path.into(),
            types: stanzas,
        };
    }
    SecretError::AgeNoMatchingIdentity {
        path: path.into(),
        stanzas,
    }
}

/// The recipient stanza types in an age header (`-> X25519 …` lines), for messages.
pub(crate) fn stanza_types(bytes: &[u8]) -> Vec<String> {
    // The header is text before the payload; 64 KiB holds any real one.
    let mut header = Vec::new();
    let _ = age::armor::ArmoredReader::new(bytes)
        .take(64 * 1024)
        .read_to_end(&mut header);
    let mut types = Vec::new();
    for line in header.split(|&b| b == b'\n') {
        if line.starts_with(b"---") {
            break;
        }
        if let Some(rest) = line.strip_prefix(b"-> ") {
            let kind = rest.split(|&b| b == b' ').next().unwrap_or_default();
            let kind = String::from_utf8_lossy(kind).into_owned();
            // age adds random `…-grease` stanzas so parsers tolerate unknown types.
            if !kind.ends_with("-grease") {
                types.push(kind);
            }
        }
    }
    types
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn encrypt(recipients: &[&dyn age::Recipient], plain: &[u8], armor: bool) -> Vec<u8> {
        let enc = age::Encryptor::with_recipients(recipients.iter().copied()).unwrap();
        let mut out = Vec::new();
        let format = if armor {
            age::armor::Format::AsciiArmor
        } else {
            age::armor::Format::Binary
        };
        let armored = age::armor::ArmoredWriter::wrap_output(&mut out, format).unwrap();
        let mut w = enc.wrap_output(armored).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap().finish().unwrap();
        out
    }

    fn ids(key: &age::x25519::Identity) -> Identities {
        let mut ids = Identities::new();
        ids.push_x25519(Path::new("test.key"), key.clone());
        ids
    }

    #[test]
    fn armored_and_binary_round_trip() {
        let key = age::x25519::Identity::generate();
        for armor in [true, false] {
            let ct = encrypt(&[&key.to_public()], b"s3cret\n", armor);
            assert!(is_age(&ct));
            let pt = decrypt(Path::new("f.age"), &ct, &ids(&key)).unwrap();
            assert_eq!(pt.as_bytes(), b"s3cret\n");
        }
    }

    #[test]
    fn other_key_tampering_and_passphrase_are_told_apart() {
        let key = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let path = Path::new("f.age");
        let ct = encrypt(&[&other.to_public()], b"s3cret", false);
        let e = decrypt(path, &ct, &ids(&key)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.age: no identity opens this file; it is encrypted to 1 recipient(s) of type X25519"
        );

        let mut ct = encrypt(&[&key.to_public()], b"s3cret", false);
        let last = ct.len() - 3;
        ct[last] ^= 1;
        let e = decrypt(path, &ct, &ids(&key)).unwrap_err();
        assert!(matches!(e, SecretError::AgeTampered { .. }), "{e}");

        let pass = age::Encryptor::with_user_passphrase("pw".to_string().into());
        let mut ct = Vec::new();
        let mut w = pass.wrap_output(&mut ct).unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        let e = decrypt(path, &ct, &ids(&key)).unwrap_err();
        assert!(matches!(e, SecretError::AgePassphrase { .. }), "{e}");

        let e = decrypt(path, b"hello", &ids(&key)).unwrap_err();
        assert!(matches!(e, SecretError::AgeMalformed { .. }), "{e}");
        assert!(!is_age(b"hello"));
    }

    #[test]
    fn a_file_only_for_unsupported_recipients_says_so() {
        let key = age::x25519::Identity::generate();
        // A header whose only stanza is a post-quantum hybrid one (age 1.3's mlkem768x25519).
        let header = format!(
            "age-encryption.org/v1\n-> mlkem768x25519 AAAA\nAAAA\n--- {}\n",
            "A".repeat(43)
        );
        let ct = [header.as_bytes(), &[0u8; 32]].concat();
        let e = decrypt(Path::new("pq.age"), &ct, &ids(&key)).unwrap_err();
        match &e {
            SecretError::UnsupportedRecipient { types, .. } => {
                assert_eq!(types, &["mlkem768x25519"])
            }
            _ => panic!("{e}"),
        }
        assert!(e.to_string().contains("unsupported recipient type"), "{e}");
    }
}
