//! Which values of a SOPS document are encrypted: the `*_suffix` and `*_regex` settings of
//! its metadata, applied in the order sops applies them (later rules override earlier ones).

use regex::Regex;

#[derive(Debug, Default)]
pub struct Rules {
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<Regex>,
    pub encrypted_regex: Option<Regex>,
    /// Only encrypted values count in the MAC.
    pub mac_only_encrypted: bool,
}

impl Rules {
    /// Whether the value reached through the map keys `path` is encrypted. A rule matches
    /// when any key on the path matches it, so a rule on a map covers everything below it.
    pub fn is_encrypted(&self, path: &[String]) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix {
            if path.iter().any(|k| k.ends_with(suffix.as_str())) {
                encrypted = false;
            }
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = path.iter().any(|k| k.ends_with(suffix.as_str()));
        }
        if let Some(re) = &self.unencrypted_regex {
            if path.iter().any(|k| re.is_match(k)) {
                encrypted = false;
            }
        }
        if let Some(re) = &self.encrypted_regex {
            encrypted = path.iter().any(|k| re.is_match(k));
        }
        encrypted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split(':').map(String::from).collect()
    }

    #[test]
    fn each_rule_as_sops_applies_it() {
        let none = Rules::default();
        assert!(none.is_encrypted(&path("a:b")));

        let r = Rules {
            unencrypted_suffix: Some("_unencrypted".into()),
            ..Rules::default()
        };
        assert!(r.is_encrypted(&path("a:b")));
        assert!(!r.is_encrypted(&path("a_unencrypted:b")));

        let r = Rules {
            encrypted_suffix: Some("_secret".into()),
            ..Rules::default()
        };
        assert!(!r.is_encrypted(&path("a:b")));
        assert!(r.is_encrypted(&path("db_secret:password")));

        let r = Rules {
            unencrypted_regex: Some(Regex::new("^(name|kind)$").unwrap()),
            ..Rules::default()
        };
        assert!(!r.is_encrypted(&path("metadata:name")));
        assert!(r.is_encrypted(&path("metadata:namespace")));

        let r = Rules {
            encrypted_regex: Some(Regex::new("^(data|stringData)$").unwrap()),
            ..Rules::default()
        };
        assert!(!r.is_encrypted(&path("metadata:name")));
        assert!(r.is_encrypted(&path("stringData:key")));
        // Unanchored as in Go: `data` matches inside `metadata`.
        let r = Rules {
            encrypted_regex: Some(Regex::new("data").unwrap()),
            ..Rules::default()
        };
        assert!(r.is_encrypted(&path("metadata:name")));
    }
}
