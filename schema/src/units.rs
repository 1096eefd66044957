//! Sizes and durations written the way PVE users write them.
//!
//! PVE's units are binary: `8G` in `qm` means 8 GiB, so `8G` and `8Gi` mean the same here.
//! Decimal suffixes (`8GB`) are rejected rather than guessed, because a silent 7 % difference
//! in a disk size becomes a refused shrink later. Bare numbers follow PVE's own convention for
//! the field: memory in MiB (`memory: 8192`), disks in GiB (`size: 32`).

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

const KIB: u64 = 1024;
const MIB: u64 = KIB * 1024;
const GIB: u64 = MIB * 1024;
const TIB: u64 = GIB * 1024;

/// A size in bytes, parsed from PVE-style text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

impl Bytes {
    pub fn mib(self) -> u64 {
        self.0 / MIB
    }

    /// Parse `30G`, `512M`, `64Gi`, `1.5T`, with `bare_unit` the multiplier of a bare number.
    pub fn parse_with_default(text: &str, bare_unit: u64) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(format!(
                "`{text}` is not a size: expected a number such as 8G or 512M"
            ));
        }
        let mult = match unit.trim() {
            "" => bare_unit,
            "K" | "Ki" | "KiB" | "k" => KIB,
            "M" | "Mi" | "MiB" => MIB,
            "G" | "Gi" | "GiB" => GIB,
            "T" | "Ti" | "TiB" => TIB,
            "B" => 1,
            u @ ("KB" | "MB" | "GB" | "TB" | "kB") => {
                return Err(format!(
                    "`{text}`: decimal unit `{u}` is ambiguous; PVE sizes are binary, write {num}{} or {num}{}i",
                    &u[..1].to_uppercase(),
                    &u[..1].to_uppercase()
                ))
            }
            u => return Err(format!("`{text}`: unknown unit `{u}` (use K, M, G or T)")),
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a size: `{num}` is not a number"))?;
        let bytes = value * mult as f64;
        if bytes > u64::MAX as f64 {
            return Err(format!("`{text}` is too large"));
        }
        if bytes.fract() != 0.0 {
            return Err(format!("`{text}` is not a whole number of bytes"));
        }
        Ok(Bytes(bytes as u64))
    }

    /// The shortest exact PVE spelling (`30G`, `512M`, `1536M`).
    pub fn pve(self) -> String {
        for (unit, suffix) in [(TIB, "T"), (GIB, "G"), (MIB, "M"), (KIB, "K")] {
            if self.0 >= unit && self.0 % unit == 0 {
                return format!("{}{}", self.0 / unit, suffix);
            }
        }
        self.0.to_string()
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pve())
    }
}

/// Deserialize a size from an integer (in `bare_unit`) or a string.
fn de_size<'de, D: Deserializer<'de>>(d: D, bare_unit: u64, what: &str) -> Result<Bytes, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)
        .map_err(|_| de::Error::custom(format!("expected a {what} such as 8G, 512M or a number")))?
    {
        Raw::Int(n) => n
            .checked_mul(bare_unit)
            .map(Bytes)
            .ok_or_else(|| de::Error::custom("size too large")),
        Raw::Text(t) => Bytes::parse_with_default(&t, bare_unit).map_err(de::Error::custom),
    }
}

macro_rules! size_type {
    ($name:ident, $bare:expr, $what:literal, $doc:literal, $pattern_doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub Bytes);

        impl $name {
            pub fn bytes(self) -> u64 {
                self.0 .0
            }
            pub fn mib(self) -> u64 {
                self.0.mib()
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                de_size(d, $bare, $what).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0.pve())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Bytes::parse_with_default(s, $bare).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "description": $pattern_doc,
                    "anyOf": [
                        { "type": "integer", "minimum": 0 },
                        { "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*(K|Ki|KiB|M|Mi|MiB|G|Gi|GiB|T|Ti|TiB|B)?$" }
                    ]
                })
            }
        }
    };
}

size_type!(
    MemorySize,
    MIB,
    "memory size",
    "Guest memory. A bare number is MiB, as in `qm set --memory 8192`.",
    "Memory: a number of MiB (8192) or a binary size (8G, 8Gi, 512M)."
);
size_type!(
    DiskSize,
    GIB,
    "disk size",
    "Disk size. A bare number is GiB, as in `qm set --scsi0 local-lvm:32`.",
    "Disk size: a number of GiB (32) or a binary size (30G, 64Gi, 512M)."
);

/// A duration such as `30s`, `10m`, `1h 30m` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Duration)
            .map_err(|e| de::Error::custom(format!("`{s}` is not a duration like 30s or 10m: {e}")))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "description": "A duration such as 30s, 10m or 1h 30m." })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        let m = |s: &str| s.parse::<MemorySize>().map(|m| m.mib());
        assert_eq!(m("8192"), Ok(8192));
        assert_eq!(m("8G"), Ok(8192));
        assert_eq!(m("8Gi"), Ok(8192));
        assert_eq!(m("64Gi"), Ok(65536));
        assert_eq!(m("512M"), Ok(512));
        assert_eq!(m("1.5G"), Ok(1536));
        assert!(m("8GB").unwrap_err().contains("ambiguous"));
        assert!(m("8X").unwrap_err().contains("unknown unit"));
        assert!(m("G").is_err());
        assert_eq!(
            m("999999999999T").unwrap_err(),
            "`999999999999T` is too large"
        );
        assert!(m("0.3K").unwrap_err().contains("whole number"));
    }

    #[test]
    fn disk_units_and_canonical_form() {
        let d = |s: &str| s.parse::<DiskSize>().unwrap();
        assert_eq!(d("32").to_string(), "32G");
        assert_eq!(d("30G").to_string(), "30G");
        assert_eq!(d("1024G").to_string(), "1T");
        assert_eq!(d("1536M").to_string(), "1536M");
        assert_eq!(d("0.5T").to_string(), "512G");
    }

    #[test]
    fn bare_integers_in_yaml() {
        #[derive(Deserialize)]
        struct T {
            m: MemorySize,
            d: DiskSize,
        }
        let t: T = serde_yaml::from_str("m: 2048\nd: 8").unwrap();
        assert_eq!(t.m.mib(), 2048);
        assert_eq!(t.d.bytes(), 8 * GIB);
    }
}
