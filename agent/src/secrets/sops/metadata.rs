//! The `sops` section of a document: who the data key is wrapped for, the MAC, and the
//! rules that say which values are encrypted.

use super::rules::Rules;
use super::tree::{Map, Value};
use regex::Regex;

/// The data key wrapped for one age recipient.
#[derive(Debug, Clone)]
pub struct AgeStanza {
    /// `age1…`, `age1pq1…` or `ssh-ed25519 AAAA…`, as sops recorded it.
    pub recipient: String,
    /// The armored age file holding the 32-byte data key.
    pub enc: String,
}

#[derive(Debug)]
pub struct Metadata {
    pub age: Vec<AgeStanza>,
    /// Other key types the data key is wrapped for (`pgp`, `kms`, …), for messages.
    pub other_key_types: Vec<String>,
    /// The additional data of the MAC: `lastmodified` as sops formats it.
    pub lastmodified: String,
    /// The encrypted MAC (`ENC[…]`).
    pub mac: Option<String>,
    pub rules: Rules,
}

/// What is wrong with a metadata section.
pub enum MetadataError {
    Invalid(String),
    Unsupported(String),
}

/// Key types sops can wrap the data key for, besides age.
const OTHER_KEY_TYPES: &[&str] = &["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

impl Metadata {
    pub fn from_value(meta: &Value) -> Result<Metadata, MetadataError> {
        let Value::Map(m) = meta else {
            return Err(invalid(format!("`sops` is a {}, not a map", meta.kind())));
        };
        for unsupported in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
            if !text(m, unsupported)?.unwrap_or_default().is_empty() {
                return Err(MetadataError::Unsupported(format!(
                    "`{unsupported}` (comments decide what is encrypted; comments are not read)"
                )));
            }
        }
        let (keys, age) = match m.get("key_groups") {
            Some(Value::List(groups)) if groups.len() > 1 => {
                return Err(MetadataError::Unsupported(format!(
                    "Shamir secret sharing ({} key groups)",
                    groups.len()
                )))
            }
            Some(Value::List(groups)) if groups.len() == 1 => {
                let Value::Map(g) = &groups[0] else {
                    return Err(invalid("`key_groups[0]` is not a map".into()));
                };
                (g, age_stanzas(g.get("age"))?)
            }
            _ => (m, age_stanzas(m.get("age"))?),
        };
        let other_key_types = OTHER_KEY_TYPES
            .iter()
            .filter(|t| matches!(keys.get(t), Some(Value::List(l)) if !l.is_empty()))
            .map(|t| t.to_string())
            .collect();
        let lastmodified =
            text(m, "lastmodified")?.ok_or_else(|| invalid("no `lastmodified`".into()))?;
        Ok(Metadata {
            age,
            other_key_types,
            lastmodified: go_rfc3339(&lastmodified),
            mac: text(m, "mac")?.filter(|s| !s.is_empty()),
            rules: Rules {
                unencrypted_suffix: text(m, "unencrypted_suffix")?.filter(|s| !s.is_empty()),
                encrypted_suffix: text(m, "encrypted_suffix")?.filter(|s| !s.is_empty()),
                unencrypted_regex: regex(m, "unencrypted_regex")?,
                encrypted_regex: regex(m, "encrypted_regex")?,
                mac_only_encrypted: flag(m, "mac_only_encrypted")?,
            },
        })
    }
}

fn invalid(reason: String) -> MetadataError {
    MetadataError::Invalid(reason)
}

fn text(m: &Map, key: &str) -> Result<Option<String>, MetadataError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(format!(
            "`{key}` is a {}, not a string",
            other.kind()
        ))),
    }
}

/// A boolean; dotenv metadata holds it as the text `true`/`false`.
fn flag(m: &Map, key: &str) -> Result<bool, MetadataError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Str(s)) if s == "true" => Ok(true),
        Some(Value::Str(s)) if s == "false" || s.is_empty() => Ok(false),
        Some(_) => Err(invalid(format!("`{key}` is not true or false"))),
    }
}

fn regex(m: &Map, key: &str) -> Result<Option<Regex>, MetadataError> {
    match text(m, key)?.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(re) => Regex::new(&re)
            .map(Some)
            .map_err(|e| invalid(format!("`{key}` is not a valid regular expression: {e}"))),
    }
}

fn age_stanzas(list: Option<&Value>) -> Result<Vec<AgeStanza>, MetadataError> {
    let items = match list {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::List(items)) => items,
        Some(other) => return Err(invalid(format!("`age` is a {}, not a list", other.kind()))),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Map(entry) = item else {
                return Err(invalid(format!("`age[{i}]` is not a map")));
            };
            let field =
                |k| text(entry, k)?.ok_or_else(|| invalid(format!("`age[{i}]` has no `{k}`")));
            Ok(AgeStanza {
                recipient: field("recipient")?,
                enc: field("enc")?,
            })
        })
        .collect()
}

/// `lastmodified` as sops uses it for the MAC's additional data: sops parses the timestamp
/// and formats it again with Go's RFC 3339 layout, which drops fractional seconds and spells
/// a zero offset `Z`. For the timestamps sops itself writes this is the text as written.
fn go_rfc3339(written: &str) -> String {
    let mut s = written.trim().to_string();
    if let Some(dot) = s.find('.') {
        let end = s[dot + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(s.len(), |i| dot + 1 + i);
        s.replace_range(dot..end, "");
    }
    for zero in ["+00:00", "-00:00"] {
        if let Some(stripped) = s.strip_suffix(zero) {
            s = format!("{stripped}Z");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(yaml: &str) -> Result<Metadata, MetadataError> {
        Metadata::from_value(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn reads_age_stanzas_rules_and_mac() {
        let m = meta(
            "age: [{recipient: age1x, enc: E}]\npgp: [{fp: F}]\nkms: []\nlastmodified: \"2024-03-25T22:08:10Z\"\nmac: ENC[x]\nencrypted_regex: ^data$\nmac_only_encrypted: true\n",
        )
        .ok()
        .unwrap();
        assert_eq!(m.age[0].recipient, "age1x");
        assert_eq!(m.other_key_types, ["pgp"]);
        assert_eq!(m.lastmodified, "2024-03-25T22:08:10Z");
        assert_eq!(m.mac.as_deref(), Some("ENC[x]"));
        assert!(m.rules.encrypted_regex.is_some() && m.rules.mac_only_encrypted);
    }

    #[test]
    fn one_key_group_is_read_and_shamir_is_refused() {
        let m = meta("key_groups: [{age: [{recipient: r, enc: E}]}]\nlastmodified: t\n")
            .ok()
            .unwrap();
        assert_eq!(m.age.len(), 1);
        let Err(MetadataError::Unsupported(e)) =
            meta("key_groups: [{age: []}, {age: []}]\nshamir_threshold: 2\nlastmodified: t\n")
        else {
            panic!()
        };
        assert!(e.contains("Shamir"), "{e}");
        assert!(matches!(
            meta("lastmodified: t\nencrypted_comment_regex: x\n"),
            Err(MetadataError::Unsupported(_))
        ));
        assert!(matches!(
            meta("lastmodified: t\nencrypted_regex: '('\n"),
            Err(MetadataError::Invalid(_))
        ));
    }

    #[test]
    fn lastmodified_as_go_formats_it() {
        assert_eq!(go_rfc3339("2024-03-25T22:08:10Z"), "2024-03-25T22:08:10Z");
        assert_eq!(
            go_rfc3339("2024-03-25T22:08:10.123456Z"),
            "2024-03-25T22:08:10Z"
        );
        assert_eq!(
            go_rfc3339("2024-03-25T22:08:10+00:00"),
            "2024-03-25T22:08:10Z"
        );
        assert_eq!(
            go_rfc3339("2024-03-25T22:08:10+02:00"),
            "2024-03-25T22:08:10+02:00"
        );
    }
}
