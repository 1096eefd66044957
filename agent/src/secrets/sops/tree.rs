//! A SOPS document as a tree that keeps its keys in document order.
//!
//! Order matters twice: the MAC is computed over the values in document order, and
//! `secrets decrypt` prints the document as it was written. serde's visitor sees map entries
//! in order, so one `Deserialize` serves YAML and JSON alike.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::fmt;
use zeroize::Zeroize;

/// One node of a document. Scalars are the types SOPS knows (`str`, `int`, `float`, `bool`,
/// `bytes`); `null` is kept but never encrypted.
#[derive(Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Map(Map),
}

/// Map entries in document order. Keys are strings, as SOPS requires.
#[derive(Clone, PartialEq, Default)]
pub struct Map(pub Vec<(String, Value)>);

impl Map {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Take an entry out, keeping the others in order.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Value {
    /// What kind of node this is, for messages (never its content).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// A scalar as the bytes SOPS encrypts and MACs: text as is, integers in decimal, floats
    /// as Go's `strconv.FormatFloat(v, 'f', -1, 64)`, booleans as `True`/`False`. `None` for
    /// null, lists and maps.
    pub fn scalar_bytes(&self) -> Option<Vec<u8>> {
        Some(match self {
            Value::Bool(true) => b"True".to_vec(),
            Value::Bool(false) => b"False".to_vec(),
            Value::Int(i) => i.to_string().into_bytes(),
            Value::Float(f) => go_float(*f).into_bytes(),
            Value::Str(s) => s.as_bytes().to_vec(),
            Value::Bytes(b) => b.clone(),
            Value::Null | Value::List(_) | Value::Map(_) => return None,
        })
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest digits that read back as `v`, never
/// an exponent. Rust's `Display` for `f64` prints exactly that, except for the non-finite values.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

impl Zeroize for Value {
    fn zeroize(&mut self) {
        match self {
            Value::Str(s) => s.zeroize(),
            Value::Bytes(b) => b.zeroize(),
            Value::Int(i) => i.zeroize(),
            Value::Float(f) => f.zeroize(),
            Value::Bool(b) => b.zeroize(),
            Value::List(items) => items.iter_mut().for_each(Zeroize::zeroize),
            Value::Map(m) => m.0.iter_mut().for_each(|(k, v)| {
                k.zeroize();
                v.zeroize();
            }),
            Value::Null => {}
        }
    }
}

/// Shows the shape only: a tree may hold decrypted values.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::List(items) => f.debug_list().entries(items).finish(),
            Value::Map(m) => f
                .debug_map()
                .entries(m.0.iter().map(|(k, v)| (k, v)))
                .finish(),
            other => write!(f, "<{}>", other.kind()),
        }
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map, list, string, number, boolean or null")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        // Go's int is 64-bit: SOPS cannot hold a larger integer either.
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} does not fit in 64 bits")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::default();
        while let Some(key) = access.next_key::<Key>()? {
            if map.get(&key.0).is_some() {
                return Err(de::Error::custom(format!("duplicate key `{}`", key.0)));
            }
            let value = access.next_value()?;
            map.0.push((key.0, value));
        }
        Ok(Value::Map(map))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "YAML tags (`!tag value`) are not supported in SOPS documents",
        ))
    }
}

/// A map key: SOPS supports only string keys (it refuses others too).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key (SOPS supports only string keys)")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key, E> {
                Ok(Key(v))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

/// Writes the document with its keys in order (for `secrets decrypt`). Bytes that are not
/// UTF-8 are written lossily: YAML and JSON have no raw byte strings.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_str(&String::from_utf8_lossy(b)),
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.0.len()))?;
                for (k, v) in &m.0 {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_types_for_yaml_and_json() {
        let y: Value = serde_yaml::from_str("z: 1\na: [x, 2.5, true, null]\nm: {k: v}\n").unwrap();
        let j: Value =
            serde_json::from_str(r#"{"z": 1, "a": ["x", 2.5, true, null], "m": {"k": "v"}}"#)
                .unwrap();
        assert_eq!(y, j);
        let Value::Map(m) = &y else { panic!() };
        let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(
            serde_json::to_string(&y).unwrap(),
            r#"{"z":1,"a":["x",2.5,true,null],"m":{"k":"v"}}"#
        );
    }

    #[test]
    fn refuses_duplicate_and_non_string_keys() {
        let e = serde_json::from_str::<Value>(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key `a`"), "{e}");
        let e = serde_yaml::from_str::<Value>("1: x\n").unwrap_err();
        assert!(e.to_string().contains("string key"), "{e}");
    }

    #[test]
    fn scalar_bytes_match_sops() {
        assert_eq!(Value::Bool(true).scalar_bytes().unwrap(), b"True");
        assert_eq!(Value::Int(-7).scalar_bytes().unwrap(), b"-7");
        assert_eq!(Value::Float(0.1).scalar_bytes().unwrap(), b"0.1");
        assert_eq!(Value::Float(1.0).scalar_bytes().unwrap(), b"1");
        assert_eq!(
            Value::Float(1e21).scalar_bytes().unwrap(),
            b"1000000000000000000000"
        );
        assert_eq!(Value::Float(1e-7).scalar_bytes().unwrap(), b"0.0000001");
        assert_eq!(Value::Float(f64::INFINITY).scalar_bytes().unwrap(), b"+Inf");
        assert_eq!(Value::Null.scalar_bytes(), None);
    }

    #[test]
    fn debug_shows_shape_not_values() {
        let v: Value = serde_yaml::from_str("pw: hunter2\nn: [1]\n").unwrap();
        let d = format!("{v:?}");
        assert_eq!(d, r#"{"pw": <string>, "n": [<int>]}"#);
    }
}
