//! The SOPS message authentication code: SHA-512 over the plaintext of the document's values
//! in document order, as upper-case hex, stored encrypted under the data key.
//!
//! It is what makes removing, adding or reordering values detectable (each value's own
//! AES-GCM tag only covers that value and its key path).

use super::tree::Value;
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

/// With `mac_only_encrypted`, sops first hashes these bytes, so such a MAC can never equal
/// one over all values (sops.go, `MACOnlyEncryptedInitialization`).
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

pub struct Mac {
    hash: Sha512,
    only_encrypted: bool,
}

impl Mac {
    pub fn new(only_encrypted: bool) -> Self {
        let mut hash = Sha512::new();
        if only_encrypted {
            hash.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        Mac {
            hash,
            only_encrypted,
        }
    }

    /// Count one leaf value (after decryption). Null values never count.
    pub fn add(&mut self, value: &Value, encrypted: bool) {
        if self.only_encrypted && !encrypted {
            return;
        }
        if let Some(mut bytes) = value.scalar_bytes() {
            self.hash.update(&bytes);
            bytes.zeroize();
        }
    }

    /// The MAC as sops stores it (before encryption): upper-case hex.
    pub fn finish(self) -> String {
        self.hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }
}

/// Compare two MACs without an early exit.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_only_encrypted_differ_and_nulls_do_not_count() {
        let empty = Mac::new(false).finish();
        assert_eq!(empty.len(), 128);
        assert!(empty.starts_with("CF83E1357EEFB8BD"), "{empty}");
        let mut m = Mac::new(false);
        m.add(&Value::Null, true);
        assert_eq!(m.finish(), empty);
        assert_ne!(Mac::new(true).finish(), empty);
        let mut m = Mac::new(true);
        m.add(&Value::Str("clear".into()), false);
        assert_eq!(m.finish(), Mac::new(true).finish());
        assert!(same(b"AB", b"AB") && !same(b"AB", b"AC") && !same(b"AB", b"ABC"));
    }
}
