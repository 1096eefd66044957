//! Guest configuration as PVE returns it.
//!
//! A VM config is an open-ended map (`cores`, `net0`, `scsi0`, `ipconfig0`, any `qm`
//! option): the schema crate and the planner decide what the keys mean, so here it stays
//! a map, with the `digest` split out because it is not configuration but the version
//! to send back for optimistic concurrency.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::de;

/// `GET /nodes/{node}/qemu/{vmid}/config`: the values and their digest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VmConfig {
    values: BTreeMap<String, Value>,
    digest: Option<String>,
}

impl VmConfig {
    pub fn new(mut values: BTreeMap<String, Value>) -> Self {
        let digest = values.remove("digest").and_then(|d| de::value_text(&d));
        VmConfig { values, digest }
    }

    /// The version of this config: pass it to `set_vm_config` so PVE refuses the
    /// write if someone changed the config since it was read.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// A value as text, whether PVE sent a string or a number (`memory` is sometimes one,
    /// sometimes the other).
    pub fn text(&self, key: &str) -> Option<String> {
        self.values.get(key).and_then(de::value_text)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Every key/value but the digest, sorted by key.
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.values
    }

    pub fn into_values(self) -> BTreeMap<String, Value> {
        self.values
    }

    pub fn is_template(&self) -> bool {
        self.values
            .get("template")
            .and_then(de::value_flag)
            .unwrap_or(false)
    }

    /// The guest lock (`clone`, `backup`, `migrate`, ...), if any.
    pub fn lock(&self) -> Option<String> {
        self.text("lock")
    }
}

impl<'de> Deserialize<'de> for VmConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(VmConfig::new(BTreeMap::deserialize(d)?))
    }
}

/// One key of `GET /nodes/{node}/qemu/{vmid}/pending`: the running value and what the
/// next start will use. Hot-pluggable changes apply at once; the rest wait here.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PendingEntry {
    pub key: String,
    /// The current value, if the key is set.
    #[serde(default)]
    pub value: Option<Value>,
    /// The value after the next start, if it changes.
    #[serde(default)]
    pub pending: Option<Value>,
    /// The key is removed at the next start.
    #[serde(default, deserialize_with = "de::flag")]
    pub delete: bool,
}

impl PendingEntry {
    /// True if a restart would change this key.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some() || self.delete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_split_out() {
        let cfg: VmConfig = serde_json::from_str(
            r#"{"cores":2,"memory":"2048","template":1,"lock":"clone","digest":"abc"}"#,
        )
        .unwrap();
        assert_eq!(cfg.digest(), Some("abc"));
        assert!(!cfg.contains("digest"));
        assert_eq!(cfg.text("memory").as_deref(), Some("2048"));
        assert_eq!(cfg.text("cores").as_deref(), Some("2"));
        assert!(cfg.is_template());
        assert_eq!(cfg.lock().as_deref(), Some("clone"));
    }

    #[test]
    fn pending_entries() {
        let p: Vec<PendingEntry> = serde_json::from_str(
            r#"[{"key":"cores","value":2,"pending":"4"},{"key":"x","value":1,"delete":1},{"key":"name","value":"a"}]"#,
        )
        .unwrap();
        assert!(p[0].is_pending() && p[1].is_pending() && !p[2].is_pending());
    }
}
