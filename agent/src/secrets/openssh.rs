//! The public half of an unencrypted OpenSSH private key (`openssh-key-v1`, PROTOCOL.key),
//! and an ed25519 key's seed.
//!
//! The age crate decrypts with SSH keys but does not hand out the public key (to print the
//! recipient) or the seed (to derive the ssh-to-age X25519 identity); both sit in fixed
//! places of the container, read here.

use base64::prelude::{Engine, BASE64_STANDARD};
use zeroize::Zeroizing;

const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const END: &str = "-----END OPENSSH PRIVATE KEY-----";
const MAGIC: &[u8] = b"openssh-key-v1\0";

pub struct OpensshKey {
    /// The public key in SSH wire format (type name, then the key).
    pub public_blob: Vec<u8>,
    /// The key type (`ssh-ed25519`, `ssh-rsa`, …).
    pub kind: String,
    /// For ed25519: the 32-byte seed the private scalar is derived from.
    pub ed25519_seed: Option<Zeroizing<[u8; 32]>>,
}

/// Read an unencrypted OpenSSH private key. The reason of an error never quotes key bytes.
pub fn parse(text: &str) -> Result<OpensshKey, String> {
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != BEGIN)
        .skip(1)
        .take_while(|l| *l != END)
        .collect();
    let raw = Zeroizing::new(
        BASE64_STANDARD
            .decode(body.as_bytes())
            .map_err(|_| "the key is not valid base64".to_string())?,
    );
    let mut r = Reader(raw.strip_prefix(MAGIC).ok_or("not an openssh-key-v1 key")?);
    let cipher = r.string()?;
    let _kdf = r.string()?;
    let _kdf_options = r.string()?;
    if cipher != b"none" {
        return Err("it is protected by a passphrase".into());
    }
    if r.u32()? != 1 {
        return Err("the file holds more than one key".into());
    }
    let public_blob = r.string()?.to_vec();
    let kind = Reader(&public_blob).string()?;
    let kind = String::from_utf8_lossy(kind).into_owned();
    let mut private = Reader(r.string()?);
    let (check1, check2) = (private.u32()?, private.u32()?);
    if check1 != check2 {
        return Err("the private section is damaged".into());
    }
    let ed25519_seed = if kind == "ssh-ed25519" {
        let _kind = private.string()?;
        let _public = private.string()?;
        let keypair = private.string()?;
        if keypair.len() != 64 {
            return Err("the ed25519 private key is not 64 bytes".into());
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&keypair[..32]);
        Some(seed)
    } else {
        None
    };
    Ok(OpensshKey {
        public_blob,
        kind,
        ed25519_seed,
    })
}

/// SSH wire-format fields: big-endian `u32`, and strings prefixed by their `u32` length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or("the key is truncated")?;
        self.0 = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        if self.0.len() < n {
            return Err("the key is truncated".into());
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(s)
    }
}
