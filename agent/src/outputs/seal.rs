//! Sealing secret outputs: age encryption to the repository's recipients.
//!
//! The recipients come from `recipients.txt` in the cluster's directory (one per line,
//! `#` comments: the file `age -R` reads, so the same list encrypts the repository's
//! secrets and receives its outputs), else from the agent's own identity. Both X25519
//! (`age1…`) and SSH (`ssh-ed25519 …`, `ssh-rsa …`) recipients are accepted.

use std::io::Write;
use std::str::FromStr;

/// The file in the cluster's directory that names the recipients of secret outputs.
pub const RECIPIENTS_FILE: &str = "recipients.txt";

/// A recipients file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecipientsError {
    #[error("{file}:{line}: not an age or SSH recipient: {text}")]
    Invalid {
        file: String,
        line: usize,
        text: String,
    },
    #[error("{file}: names no recipient")]
    Empty { file: String },
}

/// The recipients `text` (the content of `file`) lists, in order, validated.
pub fn parse_recipients(file: &str, text: &str) -> Result<Vec<String>, RecipientsError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if recipient(line).is_none() {
            return Err(RecipientsError::Invalid {
                file: file.into(),
                line: i + 1,
                text: line.chars().take(80).collect(),
            });
        }
        if !out.iter().any(|r| r == line) {
            out.push(line.to_string());
        }
    }
    if out.is_empty() {
        return Err(RecipientsError::Empty { file: file.into() });
    }
    Ok(out)
}

fn recipient(text: &str) -> Option<Box<dyn age::Recipient + Send>> {
    if let Ok(r) = age::x25519::Recipient::from_str(text) {
        return Some(Box::new(r));
    }
    age::ssh::Recipient::from_str(text)
        .ok()
        .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
}

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no recipients to encrypt to (add {RECIPIENTS_FILE} or give the agent an identity)")]
    NoRecipients,
    #[error("{0} is not an age or SSH recipient")]
    BadRecipient(String),
    #[error("age encryption failed: {0}")]
    Encrypt(String),
}

/// `plain` encrypted to every one of `recipients`, ASCII-armored (it is committed as text).
pub fn seal(plain: &[u8], recipients: &[String]) -> Result<String, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    let parsed: Vec<Box<dyn age::Recipient + Send>> = recipients
        .iter()
        .map(|r| recipient(r).ok_or_else(|| SealError::BadRecipient(r.clone())))
        .collect::<Result<_, _>>()?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r.as_ref() as &dyn age::Recipient))
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut w = encryptor
        .wrap_output(armor)
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    w.write_all(plain)
        .and_then(|()| w.finish())
        .and_then(|armor| armor.finish())
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    String::from_utf8(out).map_err(|e| SealError::Encrypt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn sealed_values_open_with_each_recipients_identity_only() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let to = vec![a.to_public().to_string(), b.to_public().to_string()];
        let sealed = seal(b"apiVersion: v1\nkind: Config\n", &to).unwrap();
        assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!sealed.contains("kind: Config"));
        for id in [&a, &b] {
            let mut ids = crate::secrets::Identities::new();
            ids.add_age_identities(std::path::Path::new("k"), id.to_string().expose_secret())
                .unwrap();
            let d = crate::secrets::Decryptor::new(ids)
                .decrypt_file(std::path::Path::new("x.age"), sealed.as_bytes())
                .unwrap();
            let whole = d
                .get(&pve_gitops_schema::secret::SecretRef::File {
                    file: "x.age".into(),
                })
                .unwrap();
            assert_eq!(whole.as_bytes(), b"apiVersion: v1\nkind: Config\n");
        }
        let mut ids = crate::secrets::Identities::new();
        ids.add_age_identities(std::path::Path::new("k"), other.to_string().expose_secret())
            .unwrap();
        assert!(crate::secrets::Decryptor::new(ids)
            .decrypt_file(std::path::Path::new("x.age"), sealed.as_bytes())
            .is_err());
    }

    #[test]
    fn recipients_files_are_checked_line_by_line() {
        let a = age::x25519::Identity::generate().to_public().to_string();
        let text = format!(
            "# ops team\n{a}\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJveMY8CRMp0jLhS3JgxaUdmCsWPKKhqRbqWI7YCc92u admin@example\n{a}\n"
        );
        let got = parse_recipients(RECIPIENTS_FILE, &text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], a);
        assert_eq!(
            parse_recipients("r.txt", "age1nope\n"),
            Err(RecipientsError::Invalid {
                file: "r.txt".into(),
                line: 1,
                text: "age1nope".into()
            })
        );
        assert!(matches!(
            parse_recipients("r.txt", "# nobody\n"),
            Err(RecipientsError::Empty { .. })
        ));
        assert!(matches!(seal(b"x", &[]), Err(SealError::NoRecipients)));
    }
}
