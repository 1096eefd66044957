//! Pinned SSH host keys: the agent connects only to a server whose host key it was told
//! about in advance, never trusting a key on first use.
//!
//! A pin is a `known_hosts` line (`host keytype base64`, the host field is ignored: the pin
//! belongs to this source's URL), a bare public key (`keytype base64`) or a fingerprint as
//! `ssh-keygen -lf` prints it (`SHA256:…`). Several pins may be given, one per line: a server
//! offers one of its host keys, and which one depends on the algorithms both sides prefer,
//! so pinning every key of the server (`ssh-keyscan host`) keeps the pin valid.

use super::error::ParseError;
use ssh_key::{Fingerprint, HashAlg, PublicKey};
use std::str::FromStr;

/// The host keys a source accepts (at least one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKeyPins {
    /// SHA-256 of each accepted key blob, which is what an SSH fingerprint is.
    sha256: Vec<[u8; 32]>,
}

impl HostKeyPins {
    /// Parse pins, one per line; blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut sha256 = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            sha256.push(parse_pin(line).map_err(|message| ParseError::at(i + 1, message))?);
        }
        if sha256.is_empty() {
            return Err(ParseError::at(0, "no host key pinned".to_string()));
        }
        Ok(Self { sha256 })
    }

    /// Whether the key with this SHA-256 fingerprint is pinned.
    pub fn accepts(&self, presented: &[u8; 32]) -> bool {
        self.sha256.iter().any(|p| p == presented)
    }

    /// The pinned fingerprints, for error messages (`SHA256:…, SHA256:…`).
    pub fn expected(&self) -> String {
        self.sha256
            .iter()
            .map(fingerprint)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The fingerprint of a key blob's SHA-256 in OpenSSH's notation (`SHA256:` + unpadded base64).
pub fn fingerprint(sha256: &[u8; 32]) -> String {
    Fingerprint::Sha256(*sha256).to_string()
}

fn parse_pin(line: &str) -> Result<[u8; 32], String> {
    if line.starts_with("SHA256:") {
        let fp = Fingerprint::from_str(line)
            .map_err(|e| format!("`{line}` is not a SHA256 fingerprint: {e}"))?;
        return fp
            .sha256()
            .ok_or_else(|| format!("`{line}` is not a SHA256 fingerprint"));
    }
    if line.starts_with("MD5:") || line.split(':').count() == 16 {
        return Err(
            "MD5 fingerprints are not accepted: pin the SHA256 fingerprint \
                    (`ssh-keygen -lf`) or the key itself"
                .to_string(),
        );
    }
    if line.starts_with('@') {
        return Err(
            "known_hosts markers (@cert-authority, @revoked) are not supported: \
                    pin the server's own host key"
                .to_string(),
        );
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    // `keytype base64 [comment]` or `hosts keytype base64 [comment]`.
    let key_start = if is_key_type(fields[0]) { 0 } else { 1 };
    if fields.len() < key_start + 2 {
        return Err(format!(
            "`{line}` is neither a known_hosts line, a public key nor a SHA256 fingerprint"
        ));
    }
    let key = PublicKey::from_openssh(&fields[key_start..].join(" "))
        .map_err(|e| format!("cannot parse the public key in `{line}`: {e}"))?;
    Ok(key
        .fingerprint(HashAlg::Sha256)
        .sha256()
        .expect("asked for SHA-256"))
}

fn is_key_type(field: &str) -> bool {
    ssh_key::Algorithm::from_str(field).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -t ed25519` output and `ssh-keygen -lf` of it.
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPnMNZAdOzgcEHuW20gVcR9wyvFOZuYKBflowxavkk67";
    const FP: &str = "SHA256:DtRtzr6c2VtIKhz7b0r4P6HElmkBIUM0qhZnX3K508Y";

    fn sha(fp: &str) -> [u8; 32] {
        Fingerprint::from_str(fp).unwrap().sha256().unwrap()
    }

    #[test]
    fn known_hosts_line_key_and_fingerprint_pin_the_same_key() {
        let a = HostKeyPins::parse(&format!("[git.example.org]:2222,10.0.0.1 {KEY}\n")).unwrap();
        let b = HostKeyPins::parse(&format!("{KEY} comment")).unwrap();
        let c = HostKeyPins::parse(&format!("# pinned by init\n{FP}\n")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.accepts(&sha(FP)));
        assert_eq!(a.expected(), FP);
    }

    #[test]
    fn other_keys_are_not_accepted() {
        let pins = HostKeyPins::parse(FP).unwrap();
        assert!(!pins.accepts(&[0u8; 32]));
    }

    #[test]
    fn refuses_md5_markers_garbage_and_empty() {
        let md5 = "16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48";
        assert!(HostKeyPins::parse(md5)
            .unwrap_err()
            .to_string()
            .contains("MD5"));
        let marked = format!("@cert-authority *.example.org {KEY}");
        let err = HostKeyPins::parse(&format!("\n{marked}")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("@cert-authority"), "{err}");
        assert!(HostKeyPins::parse("host ssh-ed25519 notbase64").is_err());
        assert!(HostKeyPins::parse("# nothing\n").is_err());
    }
}
