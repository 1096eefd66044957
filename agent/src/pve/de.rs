//! Lenient deserializers for PVE's loosely typed JSON.
//!
//! PVE's API is Perl underneath: a boolean arrives as `1`, `0`, `true` or `"1"`, and a
//! number sometimes as a string (`"memory": "2048"`, `/cluster/nextid` → `"101"`). The
//! typed structs accept each form instead of failing on the next PVE release.

use serde::de::{Deserializer, Error};
use serde::Deserialize;
use serde_json::Value;

/// `1`/`0`/`true`/`false`/`"1"`/`"0"`/absent/null → bool (absent and null are false).
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(false),
        Some(v) => value_flag(&v).ok_or_else(|| D::Error::custom(format!("not a boolean: {v}"))),
    }
}

pub(crate) fn value_flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A number or a numeric string → u64.
pub fn u64_any<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    value_u64(&v).ok_or_else(|| D::Error::custom(format!("not an unsigned integer: {v}")))
}

/// Like [`u64_any`], absent/null → None.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => value_u64(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("not an unsigned integer: {v}"))),
    }
}

/// A number or numeric string → f64; absent/null → None.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("not a number: {s:?}"))),
        Some(v) => Err(D::Error::custom(format!("not a number: {v}"))),
    }
}

/// A number or numeric string → i64; absent/null → None.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| D::Error::custom("integer out of range")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("not an integer: {s:?}"))),
        Some(v) => Err(D::Error::custom(format!("not an integer: {v}"))),
    }
}

pub(crate) fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON scalar as the text PVE would print (`"2048"` and `2048` alike → `2048`).
pub(crate) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "flag")]
        a: bool,
        #[serde(default, deserialize_with = "opt_u64")]
        n: Option<u64>,
    }

    #[test]
    fn lenient_forms() {
        for (json, a, n) in [
            (r#"{"a":1,"n":"7"}"#, true, Some(7)),
            (r#"{"a":"0","n":7}"#, false, Some(7)),
            (r#"{"a":true}"#, true, None),
            (r#"{"n":null}"#, false, None),
        ] {
            let t: T = serde_json::from_str(json).unwrap();
            assert_eq!((t.a, t.n), (a, n), "{json}");
        }
        assert!(serde_json::from_str::<T>(r#"{"a":"maybe"}"#).is_err());
    }
}
