//! References to secret values. Manifests never hold a secret in plain text: a field that
//! takes one takes a [`SecretRef`] to an age-encrypted file or to a key of a SOPS document.

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer, Serialize};
use std::fmt;

/// Where a secret value lives. Paths are relative to the manifest that names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", untagged)]
pub enum SecretRef {
    /// A whole file encrypted with age (`*.age`, armored or binary): `{ file: secrets/pw.age }`.
    File {
        /// Path of the `.age` file.
        file: String,
    },
    /// One value of a SOPS document: `{ sops: secrets/creds.enc.yaml, key: proxmox.password }`.
    Sops {
        /// Path of the SOPS-encrypted YAML/JSON document.
        sops: String,
        /// Dotted path of the value inside the document.
        key: String,
    },
}

impl SecretRef {
    /// The file the secret is in.
    pub fn path(&self) -> &str {
        match self {
            SecretRef::File { file } => file,
            SecretRef::Sops { sops, .. } => sops,
        }
    }

    pub fn path_mut(&mut self) -> &mut String {
        match self {
            SecretRef::File { file } => file,
            SecretRef::Sops { sops, .. } => sops,
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File { file } => write!(f, "age:{file}"),
            SecretRef::Sops { sops, key } => write!(f, "sops:{sops}#{key}"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            file: Option<String>,
            sops: Option<String>,
            key: Option<String>,
        }
        let raw = Raw::deserialize(d).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("expected struct") || msg.contains("invalid type") {
                de::Error::custom(
                    "a secret must be a reference: { file: <path>.age } or { sops: <path>, key: <dotted.key> }, never a plain value",
                )
            } else {
                e
            }
        })?;
        match raw {
            Raw {
                file: Some(file),
                sops: None,
                key: None,
            } => Ok(SecretRef::File { file }),
            Raw {
                file: None,
                sops: Some(sops),
                key: Some(key),
            } => Ok(SecretRef::Sops { sops, key }),
            Raw {
                sops: Some(_),
                key: None,
                ..
            } => Err(de::Error::missing_field("key")),
            _ => Err(de::Error::custom(
                "a secret reference is either { file: <path>.age } or { sops: <path>, key: <dotted.key> }",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let s: SecretRef = serde_yaml::from_str("{ file: pw.age }").unwrap();
        assert_eq!(s.to_string(), "age:pw.age");
        let s: SecretRef = serde_yaml::from_str("{ sops: c.yaml, key: a.b }").unwrap();
        assert_eq!(s.to_string(), "sops:c.yaml#a.b");
        let e = serde_yaml::from_str::<SecretRef>("hunter2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("never a plain value"), "{e}");
        assert!(serde_yaml::from_str::<SecretRef>("{ file: a, sops: b }").is_err());
        assert!(serde_yaml::from_str::<SecretRef>("{ sops: b }")
            .unwrap_err()
            .to_string()
            .contains("key"));
    }
}
