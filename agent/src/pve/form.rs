//! Request parameters encoded the way PVE's API server reads them.
//!
//! PVE takes `application/x-www-form-urlencoded` bodies (and query strings for GET and
//! DELETE). Two details bite: a literal `+` must be sent as `%2B` (PVE decodes `+` as a
//! space, so `size=+2G` would become ` 2G`), and booleans are `1`/`0`. Arrays are the
//! same name repeated.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986 unreserved characters is escaped (like `encodeURIComponent`).
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Parameter names whose values never appear in `Debug` output (logs, error reports).
const SECRET_KEYS: &[&str] = &["password", "cipassword", "new-password", "secret"];

/// Ordered name/value pairs of one request.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// Add a parameter (builder style).
    pub fn with(mut self, key: impl Into<String>, value: impl ParamValue) -> Self {
        self.push(key, value);
        self
    }

    /// Add a parameter only when there is a value.
    pub fn with_opt<V: ParamValue>(mut self, key: impl Into<String>, value: Option<V>) -> Self {
        if let Some(value) = value {
            self.push(key, value);
        }
        self
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl ParamValue) {
        self.0.push((key.into(), value.to_param()));
    }

    /// An array parameter: the name repeated once per item, as PVE reads arrays.
    pub fn push_list<I, V>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = V>,
        V: ParamValue,
    {
        for value in values {
            self.push(key, value);
        }
    }

    /// Append every pair of `other`.
    pub fn extend(&mut self, other: &Params) {
        self.0.extend(other.0.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of the first pair named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// `a=1&b=%2B2G`: the body of a POST/PUT or the query of a GET/DELETE.
    pub fn encode(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.0.iter())
            .finish()
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.0 {
            if SECRET_KEYS.contains(&k.as_str()) {
                map.entry(k, &"***");
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

/// A value as PVE's API parses it.
pub trait ParamValue {
    fn to_param(self) -> String;
}

impl ParamValue for bool {
    /// PVE's booleans are `1` and `0` (it also reads `true`, but not every endpoint).
    fn to_param(self) -> String {
        if self { "1" } else { "0" }.to_string()
    }
}

macro_rules! display_param {
    ($($t:ty),*) => {$(
        impl ParamValue for $t {
            fn to_param(self) -> String {
                self.to_string()
            }
        }
    )*};
}
display_param!(u8, u16, u32, u64, usize, i32, i64, f64, &str, String, &String);

/// The `sshkeys` value PVE wants: the keys one per line, URL-encoded with `%20` for spaces.
///
/// PVE URL-decodes this parameter itself after the form decoding, so on the wire it ends
/// up encoded twice (`%2520`). Sending it plainly fails PVE's check, and `+` for a space
/// would come back as a literal `+`.
pub fn encode_sshkeys<I, S>(keys: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let joined: Vec<String> = keys
        .into_iter()
        .map(|k| k.as_ref().trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    utf8_percent_encode(&joined.join("\n"), STRICT).to_string()
}

/// One path segment (node, storage, UPID, pool id), escaped so it cannot change the path.
pub fn segment(value: &str) -> String {
    utf8_percent_encode(value, STRICT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_and_booleans() {
        let p = Params::new()
            .with("disk", "scsi0")
            .with("size", "+2G")
            .with("full", true)
            .with("onboot", false)
            .with("name", "a b&c=d");
        assert_eq!(
            p.encode(),
            "disk=scsi0&size=%2B2G&full=1&onboot=0&name=a+b%26c%3Dd"
        );
    }

    #[test]
    fn arrays_repeat_the_name() {
        let mut p = Params::new();
        p.push_list("command", ["cat", "/etc/hostname"]);
        assert_eq!(p.encode(), "command=cat&command=%2Fetc%2Fhostname");
    }

    #[test]
    fn sshkeys_are_double_encoded_on_the_wire() {
        let v = encode_sshkeys(["ssh-ed25519 AAAA+x/y= a@b", " ssh-rsa BBBB c@d\n"]);
        assert_eq!(
            v,
            "ssh-ed25519%20AAAA%2Bx%2Fy%3D%20a%40b%0Assh-rsa%20BBBB%20c%40d"
        );
        let wire = Params::new().with("sshkeys", v).encode();
        assert!(wire.starts_with("sshkeys=ssh-ed25519%2520AAAA%252Bx"));
    }

    #[test]
    fn debug_hides_secrets() {
        let p = Params::new()
            .with("cipassword", "hunter2")
            .with("name", "x");
        let text = format!("{p:?}");
        assert!(!text.contains("hunter2"));
        assert!(text.contains("\"name\": \"x\""));
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(
            segment("UPID:pve1:0001:root@pam!t:"),
            "UPID%3Apve1%3A0001%3Aroot%40pam%21t%3A"
        );
        assert_eq!(segment("../x"), "..%2Fx");
    }
}
