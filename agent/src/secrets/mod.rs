//! Secrets in the repository, decrypted natively: whole files encrypted with age (`*.age`)
//! and SOPS documents whose data key is wrapped with age.
//!
//! ```no_run
//! use pve_gitops::secrets::{Decryptor, Identities, DEFAULT_AGE_KEY};
//! use pve_gitops_schema::secret::SecretRef;
//! # fn main() -> Result<(), pve_gitops::secrets::SecretError> {
//! let decryptor = Decryptor::new(Identities::load(DEFAULT_AGE_KEY.as_ref())?);
//! let r = SecretRef::Sops { sops: "secrets/talos.enc.yaml".into(), key: "cluster.secret".into() };
//! let path = std::path::Path::new("clusters/prod").join(r.path());
//! let bytes = std::fs::read(&path).unwrap();
//! let secret = decryptor.decrypt_file(&path, &bytes)?.get(&r)?;
//! # let _ = secret;
//! # Ok(()) }
//! ```
//!
//! Plaintext lives only in memory ([`Plaintext`], [`SopsDocument`] wipe it when dropped and
//! never show it through `Debug`), and no error message carries plaintext or key material.

pub mod age_file;
pub mod error;
pub mod identity;
mod openssh;
pub mod plaintext;
pub mod sops;
mod ssh_key;

pub use error::SecretError;
pub use identity::{Identities, DEFAULT_AGE_KEY};
pub use plaintext::Plaintext;
pub use sops::format::Format;
pub use sops::SopsDocument;

use pve_gitops_schema::secret::SecretRef;
use std::path::Path;

/// Decrypts secret files with a fixed set of identities.
#[derive(Debug)]
pub struct Decryptor {
    identities: Identities,
}

/// A decrypted file: what a [`SecretRef`] points into.
#[derive(Debug)]
pub enum Decrypted {
    /// A whole age file.
    Age {
        path: std::path::PathBuf,
        plaintext: Plaintext,
    },
    /// A verified SOPS document.
    Sops(SopsDocument),
}

impl Decryptor {
    pub fn new(identities: Identities) -> Self {
        Decryptor { identities }
    }

    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// Decrypt a file's bytes: an age file (binary or armored, told by its first bytes) or a
    /// SOPS document (format by extension, else content). `path` names it in errors.
    pub fn decrypt_file(&self, path: &Path, bytes: &[u8]) -> Result<Decrypted, SecretError> {
        if age_file::is_age(bytes) {
            let plaintext = age_file::decrypt(path, bytes, &self.identities)?;
            Ok(Decrypted::Age {
                path: path.to_path_buf(),
                plaintext,
            })
        } else {
            Ok(Decrypted::Sops(sops::decrypt(
                path,
                bytes,
                &self.identities,
            )?))
        }
    }

    /// Read and decrypt a file.
    pub fn read_file(&self, path: &Path) -> Result<Decrypted, SecretError> {
        let bytes = std::fs::read(path).map_err(|e| SecretError::read(path, e))?;
        self.decrypt_file(path, &bytes)
    }
}

impl Decrypted {
    pub fn path(&self) -> &Path {
        match self {
            Decrypted::Age { path, .. } => path,
            Decrypted::Sops(doc) => doc.path(),
        }
    }

    /// The value a reference names: the whole plaintext for `{ file }`, the value at `key`
    /// for `{ sops, key }`. A reference of the other kind is an error, so a SOPS document
    /// is never handed out whole as if it were one secret.
    ///
    /// A `{ file }` value is returned as stored; most files end with a newline that is not
    /// part of a password or token: see [`Plaintext::line`].
    pub fn get(&self, reference: &SecretRef) -> Result<Plaintext, SecretError> {
        match (self, reference) {
            (Decrypted::Age { plaintext, .. }, SecretRef::File { .. }) => Ok(plaintext.clone()),
            (Decrypted::Sops(doc), SecretRef::Sops { key, .. }) => doc.value(key),
            (Decrypted::Age { path, .. }, SecretRef::Sops { .. }) => Err(SecretError::WrongKind {
                path: path.as_path().into(),
                reason: "is an age file, referenced as a SOPS document: use { file: … }".into(),
            }),
            (Decrypted::Sops(doc), SecretRef::File { .. }) => Err(SecretError::WrongKind {
                path: doc.path().into(),
                reason: "is a SOPS document, referenced as an age file: use { sops: …, key: … }"
                    .into(),
            }),
        }
    }

    /// The plaintext as `secrets decrypt` prints it: an age file's bytes, or the SOPS
    /// document in its own format (like `sops -d`).
    pub fn render(&self) -> Result<Vec<u8>, SecretError> {
        match self {
            Decrypted::Age { plaintext, .. } => Ok(plaintext.as_bytes().to_vec()),
            Decrypted::Sops(doc) => Ok(doc.render()?.into_bytes()),
        }
    }
}
