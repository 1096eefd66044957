//! One SOPS value: `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]`, AES-256-GCM
//! under the document's data key with the value's key path as additional data.

use super::tree::Value;
use aes_gcm::aead::consts::{U12, U32};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Key};
use base64::prelude::{Engine, BASE64_STANDARD};
use zeroize::Zeroizing;

/// The document's 32-byte AES key.
pub type DataKey = Zeroizing<[u8; 32]>;

const PREFIX: &str = "ENC[AES256_GCM,";
const TAG_LEN: usize = 16;

/// Why a value did not open.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not in the `ENC[…]` form, or a field is invalid. Never quotes the value.
    Malformed(String),
    /// The ciphertext, tag, nonce or additional data do not match: tampered, or moved.
    Authentication,
}

/// Whether a string is in the encrypted form at all.
pub fn is_sealed(s: &str) -> bool {
    s.starts_with(PREFIX)
}

/// Open a sealed value, with `aad` the key path (`a:b:c:`), into a typed value.
pub fn open(sealed: &str, key: &DataKey, aad: &[u8]) -> Result<Value, OpenError> {
    let (kind, plain) = open_bytes(sealed, key, aad)?;
    typed(kind, plain)
}

/// Open a sealed value into its type name and plaintext bytes.
pub fn open_bytes<'a>(
    sealed: &'a str,
    key: &DataKey,
    aad: &[u8],
) -> Result<(&'a str, Zeroizing<Vec<u8>>), OpenError> {
    let fields = parse(sealed)?;
    let mut msg = fields.data;
    msg.extend_from_slice(&fields.tag);
    let payload = Payload { msg: &msg, aad };
    let plain = match fields.iv.len() {
        // sops's nonce size.
        32 => AesGcm::<Aes256, U32>::new(Key::<AesGcm<Aes256, U32>>::from_slice(key.as_ref()))
            .decrypt(aes_gcm::Nonce::<U32>::from_slice(&fields.iv), payload),
        // GCM's usual one, in case a tool writes it.
        12 => AesGcm::<Aes256, U12>::new(Key::<AesGcm<Aes256, U12>>::from_slice(key.as_ref()))
            .decrypt(aes_gcm::Nonce::<U12>::from_slice(&fields.iv), payload),
        n => return Err(malformed(format!("an iv of {n} bytes (sops uses 32)"))),
    }
    .map_err(|_| OpenError::Authentication)?;
    Ok((fields.kind, Zeroizing::new(plain)))
}

struct Fields<'a> {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: &'a str,
}

fn parse(sealed: &str) -> Result<Fields<'_>, OpenError> {
    let body = sealed
        .strip_prefix(PREFIX)
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| {
            malformed("not in the form ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]".into())
        })?;
    let mut parts = body.split(',');
    let mut field = |name: &str| {
        parts
            .next()
            .and_then(|p| p.strip_prefix(name))
            .and_then(|p| p.strip_prefix(':'))
            .ok_or_else(|| malformed(format!("no `{name}:` field where expected")))
    };
    let b64 = |name: &str, text: &str| {
        BASE64_STANDARD
            .decode(text)
            .map_err(|_| malformed(format!("`{name}` is not valid base64")))
    };
    let data = b64("data", field("data")?)?;
    let iv = b64("iv", field("iv")?)?;
    let tag = b64("tag", field("tag")?)?;
    let kind = field("type")?;
    if parts.next().is_some() {
        return Err(malformed("extra fields after `type`".into()));
    }
    if tag.len() != TAG_LEN {
        return Err(malformed(format!(
            "a tag of {} bytes (expected 16)",
            tag.len()
        )));
    }
    Ok(Fields {
        data,
        iv,
        tag,
        kind,
    })
}

/// The plaintext as the value of its `type:`, as sops converts it. Messages never quote the
/// plaintext.
fn typed(kind: &str, plain: Zeroizing<Vec<u8>>) -> Result<Value, OpenError> {
    let text = || {
        std::str::from_utf8(&plain)
            .map_err(|_| malformed(format!("type:{kind} but the plaintext is not UTF-8")))
    };
    let not = |what: &str| malformed(format!("type:{kind} but the plaintext is not {what}"));
    Ok(match kind {
        // `time` holds RFC 3339 text, which is also what the MAC covers.
        "str" | "time" | "comment" => Value::Str(text()?.to_owned()),
        "int" => Value::Int(text()?.parse().map_err(|_| not("an integer"))?),
        "float" => Value::Float(text()?.parse().map_err(|_| not("a number"))?),
        // Go's strconv.ParseBool.
        "bool" => Value::Bool(match text()? {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return Err(not("a boolean")),
        }),
        "bytes" => Value::Bytes(plain.to_vec()),
        other => return Err(malformed(format!("unknown type `{other}`"))),
    })
}

fn malformed(reason: String) -> OpenError {
    OpenError::Malformed(reason)
}

/// Seal a value as sops does (tests only: the agent never writes SOPS documents).
#[cfg(test)]
pub fn seal(plain: &[u8], kind: &str, key: &DataKey, aad: &[u8]) -> String {
    use aes_gcm::aead::AeadCore;
    let iv = AesGcm::<Aes256, U32>::generate_nonce(&mut aes_gcm::aead::OsRng);
    let out = AesGcm::<Aes256, U32>::new(Key::<AesGcm<Aes256, U32>>::from_slice(key.as_ref()))
        .encrypt(&iv, Payload { msg: plain, aad })
        .unwrap();
    let (data, tag) = out.split_at(out.len() - TAG_LEN);
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        BASE64_STANDARD.encode(data),
        BASE64_STANDARD.encode(iv),
        BASE64_STANDARD.encode(tag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        Zeroizing::new([7u8; 32])
    }

    #[test]
    fn round_trip_each_type() {
        let k = key();
        let cases: [(&[u8], &str, Value); 6] = [
            (b"pw", "str", Value::Str("pw".into())),
            (b"7", "int", Value::Int(7)),
            (b"2.5", "float", Value::Float(2.5)),
            (b"True", "bool", Value::Bool(true)),
            (b"False", "bool", Value::Bool(false)),
            (b"\x00\xff", "bytes", Value::Bytes(vec![0, 255])),
        ];
        for (plain, kind, want) in cases {
            let s = seal(plain, kind, &k, b"a:b:");
            assert!(is_sealed(&s));
            assert_eq!(open(&s, &k, b"a:b:").unwrap(), want, "{kind}");
        }
    }

    #[test]
    fn wrong_path_wrong_key_and_bad_form() {
        let k = key();
        let s = seal(b"pw", "str", &k, b"a:b:");
        assert_eq!(open(&s, &k, b"a:c:"), Err(OpenError::Authentication));
        assert_eq!(
            open(&s, &Zeroizing::new([8u8; 32]), b"a:b:"),
            Err(OpenError::Authentication)
        );
        assert!(matches!(
            open("ENC[AES256_GCM,data:x]", &k, b""),
            Err(OpenError::Malformed(_))
        ));
        assert!(matches!(
            open("hunter2", &k, b""),
            Err(OpenError::Malformed(_))
        ));
        let s = seal(b"seven", "int", &k, b"n:");
        let Err(OpenError::Malformed(e)) = open(&s, &k, b"n:") else {
            panic!()
        };
        assert_eq!(e, "type:int but the plaintext is not an integer");
    }
}
