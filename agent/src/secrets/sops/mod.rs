//! SOPS documents (YAML, JSON, dotenv) whose data key is wrapped with age, decrypted natively.
//!
//! The steps, as sops takes them:
//! 1. read the document and its `sops` metadata ([`format`], [`metadata`]);
//! 2. unwrap the 32-byte data key with an age identity ([`data_key`]);
//! 3. walk the values in document order: those the metadata's rules say are encrypted
//!    ([`rules`]) are opened with AES-256-GCM, the map keys leading to them (`a:b:c:`; list
//!    items add nothing) as additional data ([`cipher`]); every value goes into the MAC
//!    ([`mac`]);
//! 4. open the stored MAC (additional data: `lastmodified`) and compare.
//!
//! Nothing of the document is handed out before step 4 succeeded.

pub mod cipher;
pub mod data_key;
pub mod dotenv;
pub mod format;
pub mod mac;
pub mod metadata;
pub mod rules;
pub mod tree;

use super::error::SecretError;
use super::identity::Identities;
use super::plaintext::Plaintext;
use cipher::{DataKey, OpenError};
use format::{Format, ParseFailure};
use mac::Mac;
use metadata::{Metadata, MetadataError};
use rules::Rules;
use std::fmt;
use std::path::{Path, PathBuf};
use tree::{Map, Value};
use zeroize::Zeroize;

/// A decrypted and verified SOPS document. Its values are wiped from memory when it is
/// dropped, and `Debug` shows no value.
pub struct SopsDocument {
    path: PathBuf,
    format: Format,
    tree: Map,
}

impl fmt::Debug for SopsDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SopsDocument")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("keys", &self.tree.0.len())
            .finish()
    }
}

impl Drop for SopsDocument {
    fn drop(&mut self) {
        for (_, v) in self.tree.0.iter_mut() {
            v.zeroize();
        }
    }
}

/// Decrypt a SOPS document and verify its MAC. `path` picks the format (by extension) and
/// names the file in errors.
pub fn decrypt(path: &Path, bytes: &[u8], ids: &Identities) -> Result<SopsDocument, SecretError> {
    let format = Format::detect(path, bytes).map_err(|what| SecretError::SopsUnsupported {
        path: path.into(),
        what: what.into(),
    })?;
    let (tree, meta) = format.parse(bytes).map_err(|e| match e {
        ParseFailure::Syntax(reason) => SecretError::Parse {
            path: path.into(),
            format: format.name(),
            reason,
        },
        ParseFailure::NoMetadata => SecretError::SopsMissingMetadata { path: path.into() },
        ParseFailure::Unsupported(what) => SecretError::SopsUnsupported {
            path: path.into(),
            what: what.into(),
        },
    })?;
    // Owned by the document from here on, so every error path below wipes what was opened.
    let mut doc = SopsDocument {
        path: path.to_path_buf(),
        format,
        tree,
    };
    let meta = Metadata::from_value(&meta).map_err(|e| match e {
        MetadataError::Invalid(reason) => SecretError::SopsMetadata {
            path: path.into(),
            reason,
        },
        MetadataError::Unsupported(what) => SecretError::SopsUnsupported {
            path: path.into(),
            what,
        },
    })?;
    let sealed_mac = meta
        .mac
        .clone()
        .ok_or(SecretError::MacMissing { path: path.into() })?;
    let key = data_key::unwrap(path, &meta, ids)?;

    let mut walk = Walk {
        file: path,
        key: &key,
        rules: &meta.rules,
        mac: Mac::new(meta.rules.mac_only_encrypted),
        keys: Vec::new(),
        shown: Vec::new(),
    };
    for (k, v) in doc.tree.0.iter_mut() {
        walk.enter(k, v)?;
    }
    let computed = walk.mac.finish();
    let (_, stored) = cipher::open_bytes(&sealed_mac, &key, meta.lastmodified.as_bytes())
        .map_err(|_| SecretError::MacUndecryptable { path: path.into() })?;
    if !mac::same(&stored, computed.as_bytes()) {
        return Err(SecretError::MacMismatch { path: path.into() });
    }
    Ok(doc)
}

/// The walk over a document's values: opens the encrypted ones and feeds the MAC.
struct Walk<'a> {
    file: &'a Path,
    key: &'a DataKey,
    rules: &'a Rules,
    mac: Mac,
    /// Map keys from the root: the additional data and what the rules look at.
    keys: Vec<String>,
    /// The same path with list indices, for messages (`complex.array[1]`).
    shown: Vec<String>,
}

impl Walk<'_> {
    fn enter(&mut self, key: &str, v: &mut Value) -> Result<(), SecretError> {
        self.keys.push(key.to_owned());
        self.shown.push(key.to_owned());
        let r = self.value(v);
        self.keys.pop();
        self.shown.pop();
        r
    }

    fn value(&mut self, v: &mut Value) -> Result<(), SecretError> {
        match v {
            Value::Map(m) => {
                for (k, child) in m.0.iter_mut() {
                    self.enter(k, child)?;
                }
            }
            Value::List(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    let last = self.shown.pop().unwrap_or_default();
                    self.shown.push(format!("{last}[{i}]"));
                    let r = self.value(child);
                    self.shown.pop();
                    self.shown.push(last);
                    r?;
                }
            }
            // sops skips nulls: never encrypted, not in the MAC.
            Value::Null => {}
            leaf => {
                let encrypted = self.rules.is_encrypted(&self.keys);
                if encrypted {
                    self.open(leaf)?;
                }
                self.mac.add(leaf, encrypted);
            }
        }
        Ok(())
    }

    fn open(&self, leaf: &mut Value) -> Result<(), SecretError> {
        let sealed = match leaf {
            // sops does not encrypt empty strings.
            Value::Str(s) if s.is_empty() => return Ok(()),
            Value::Str(s) if cipher::is_sealed(s) => s,
            _ => {
                return Err(SecretError::ValueNotEncrypted {
                    path: self.file.into(),
                    key: self.shown(),
                })
            }
        };
        let aad = format!("{}:", self.keys.join(":"));
        *leaf = cipher::open(sealed, self.key, aad.as_bytes()).map_err(|e| match e {
            OpenError::Authentication => SecretError::ValueTampered {
                path: self.file.into(),
                key: self.shown(),
            },
            OpenError::Malformed(reason) => SecretError::ValueMalformed {
                path: self.file.into(),
                key: self.shown(),
                reason,
            },
        })?;
        Ok(())
    }

    fn shown(&self) -> String {
        self.shown.join(".")
    }
}

impl SopsDocument {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The decrypted document, keys in document order (without the `sops` section).
    pub fn tree(&self) -> &Map {
        &self.tree
    }

    /// The node at a dotted key path (`proxmox.password`, `complex.array.1`). A map key that
    /// itself contains dots (`tls.crt`) is found too.
    pub fn get(&self, key: &str) -> Result<&Value, SecretError> {
        lookup_map(&self.tree, key).ok_or_else(|| SecretError::KeyNotFound {
            path: self.path.as_path().into(),
            key: key.into(),
        })
    }

    /// The single value at a dotted key path, as text: strings as they are, numbers in
    /// decimal, booleans `true`/`false`, bytes raw.
    pub fn value(&self, key: &str) -> Result<Plaintext, SecretError> {
        let v = self.get(key)?;
        let bytes = match v {
            Value::Bool(b) => b.to_string().into_bytes(),
            other => other.scalar_bytes().ok_or_else(|| SecretError::NotAValue {
                path: self.path.as_path().into(),
                key: key.into(),
                found: other.kind(),
            })?,
        };
        Ok(Plaintext::new(bytes))
    }

    /// The decrypted document in its own format, as `sops -d` prints it.
    pub fn render(&self) -> Result<String, SecretError> {
        self.format
            .render(&self.tree)
            .map_err(|reason| SecretError::WrongKind {
                path: self.path.as_path().into(),
                reason,
            })
    }
}

fn lookup_map<'a>(m: &'a Map, key: &str) -> Option<&'a Value> {
    if let Some(v) = m.get(key) {
        return Some(v);
    }
    m.iter().find_map(|(k, child)| {
        let rest = key.strip_prefix(k)?.strip_prefix('.')?;
        lookup(child, rest)
    })
}

fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(m) => lookup_map(m, key),
        Value::List(items) => {
            let (index, rest) = match key.split_once('.') {
                Some((i, rest)) => (i, Some(rest)),
                None => (key, None),
            };
            let item = items.get(index.parse::<usize>().ok()?)?;
            match rest {
                Some(rest) => lookup(item, rest),
                None => Some(item),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
