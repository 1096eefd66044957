//! A decrypted secret value: wiped from memory when dropped, never shown by `Debug`.

use std::fmt;
use zeroize::Zeroizing;

/// Plaintext bytes of one secret (a whole `.age` file or one SOPS value).
///
/// `Debug` prints only the length, so a secret that ends up in a `{:?}` (a log line, a
/// panic message, a test failure) does not leak. Read it with [`Plaintext::as_bytes`],
/// [`Plaintext::as_str`] or [`Plaintext::line`].
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, or `None` if it is not UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The value as one line of text: the text without one trailing `\n` (or `\r\n`).
    ///
    /// Files made with `echo … | age` or `openssl passwd | age` end with a newline that is
    /// not part of a password or token.
    pub fn line(&self) -> Option<&str> {
        let s = self.as_str()?;
        let s = s.strip_suffix('\n').unwrap_or(s);
        Some(s.strip_suffix('\r').unwrap_or(s))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value_and_line_drops_one_newline() {
        let p = Plaintext::new(b"hunter2\n".to_vec());
        assert_eq!(format!("{p:?}"), "Plaintext(<8 bytes redacted>)");
        assert_eq!(p.line(), Some("hunter2"));
        assert_eq!(p.as_str(), Some("hunter2\n"));
        assert_eq!(Plaintext::new(b"a\r\n\n".to_vec()).line(), Some("a\r\n"));
        assert_eq!(Plaintext::new(vec![0xff]).line(), None);
    }
}
