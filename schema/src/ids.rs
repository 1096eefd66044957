//! Identifiers PVE restricts, validated once at the edge so the rest of the code can trust them.
//!
//! Each rule mirrors the format PVE's API schema enforces (`pve-vmid`, `pve-node`,
//! `pve-storage-id`, `pve-tag`, SDN ids), so a manifest that validates here is not refused by
//! the API later with a less helpful message.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// The smallest and largest vmid PVE accepts.
pub const VMID_MIN: u32 = 100;
pub const VMID_MAX: u32 = 999_999_999;

/// The tag the agent puts on every guest it owns.
pub const OWNER_TAG: &str = "pve-gitops";

/// A PVE guest id (VM or container), 100..=999999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Vmid(u32);

impl Vmid {
    pub fn new(n: u64) -> Result<Self, String> {
        if (VMID_MIN as u64..=VMID_MAX as u64).contains(&n) {
            Ok(Vmid(n as u32))
        } else {
            Err(format!(
                "vmid {n} is out of range: PVE accepts {VMID_MIN}..={VMID_MAX}"
            ))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The vmid `n` places after this one, if still in range.
    pub fn offset(self, n: usize) -> Result<Self, String> {
        Vmid::new(self.0 as u64 + n as u64)
    }
}

impl<'de> Deserialize<'de> for Vmid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        Vmid::new(n).map_err(de::Error::custom)
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for Vmid {
    fn schema_name() -> Cow<'static, str> {
        "Vmid".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": VMID_MIN, "maximum": VMID_MAX })
    }
}

/// An 802.1Q VLAN id, 1..=4094.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct VlanTag(u16);

impl VlanTag {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl<'de> Deserialize<'de> for VlanTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if (1..=4094).contains(&n) {
            Ok(VlanTag(n as u16))
        } else {
            Err(de::Error::custom(format!(
                "VLAN tag {n} is out of range 1..=4094"
            )))
        }
    }
}

impl JsonSchema for VlanTag {
    fn schema_name() -> Cow<'static, str> {
        "VlanTag".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 1, "maximum": 4094 })
    }
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Rules for a string identifier: a check returning the reason it is invalid.
macro_rules! ident_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $pattern:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(s).map_err(|why| format!("`{s}` is not a valid {}: {why}", $what))?;
                Ok($name(s.to_string()))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern, "description": $what })
            }
        }
    };
}

fn dns_label(s: &str, max: usize, allow_upper: bool) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1 to {max} characters"));
    }
    let ok = |c: char| is_alnum(c) || (allow_upper && c.is_ascii_uppercase());
    if !s.chars().all(|c| ok(c) || c == '-') {
        return Err("only letters, digits and '-' are allowed".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    if !allow_upper && s.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("must be lowercase".into());
    }
    Ok(())
}

ident_type!(
    /// A resource name (`metadata.name`): a lowercase DNS label, because it becomes the VM's
    /// name in PVE, its hostname through cloud-init, and part of snippet file names.
    Name,
    "resource name (lowercase DNS label, max 63)",
    "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    |s| dns_label(s, 63, false)
);

ident_type!(
    /// A PVE node name (`pve-node`).
    NodeName,
    "node name",
    "^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$",
    |s| dns_label(s, 63, true)
);

ident_type!(
    /// A storage id (`pve-storage-id`), e.g. `local-lvm`, `rbd`, `cephfs`.
    StorageId,
    "storage id",
    "^[a-z][-a-z0-9_.]*[a-z0-9]$",
    |s| {
        let mut chars = s.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
            return Err("must start with a lowercase letter".into());
        }
        if s.len() < 2 || !s.chars().last().is_some_and(is_alnum) {
            return Err("must be at least 2 characters and end with a letter or digit".into());
        }
        if !s.chars().all(|c| is_alnum(c) || "-_.".contains(c)) {
            return Err("only lowercase letters, digits, '-', '_' and '.' are allowed".into());
        }
        Ok(())
    }
);

ident_type!(
    /// A PVE tag (`pve-tag`): what `tags` on a guest may hold.
    Tag,
    "PVE tag",
    "^[a-z0-9_][a-z0-9_+.-]*$",
    |s| {
        if !s.chars().next().is_some_and(|c| is_alnum(c) || c == '_') {
            return Err("must start with a lowercase letter, digit or '_'".into());
        }
        if !s.chars().all(|c| is_alnum(c) || "_-+.".contains(c)) {
            return Err("only lowercase letters, digits, '_', '-', '+' and '.' are allowed".into());
        }
        Ok(())
    }
);

ident_type!(
    /// An SDN zone or vnet id: PVE allows at most 8 lowercase letters and digits, starting
    /// with a letter (longer ids are refused by `/cluster/sdn`).
    SdnId,
    "SDN id (letter then letters/digits, max 8)",
    "^[a-z][a-z0-9]{0,7}$",
    |s| {
        if s.is_empty() || s.len() > 8 {
            return Err("must be 1 to 8 characters".into());
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) || !s.chars().all(is_alnum) {
            return Err("must be a lowercase letter followed by lowercase letters or digits".into());
        }
        Ok(())
    }
);

ident_type!(
    /// A network bridge: a host bridge (`vmbr2`) or an SDN vnet id.
    Bridge,
    "bridge name",
    "^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$",
    |s| {
        if s.is_empty() || s.len() > 15 {
            return Err("interface names are 1 to 15 characters".into());
        }
        if !s.starts_with(|c: char| c.is_ascii_alphabetic())
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err("must start with a letter; letters, digits, '_', '.', '-' only".into());
        }
        Ok(())
    }
);

ident_type!(
    /// A resource pool id (`pve-poolid`).
    PoolId,
    "pool id",
    "^[A-Za-z0-9_-]+$",
    |s| {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) {
            return Err("only letters, digits, '_' and '-' are allowed".into());
        }
        Ok(())
    }
);

ident_type!(
    /// A disk slot: bus and index, as PVE names config keys (`scsi0`..`scsi30`,
    /// `virtio0`..`virtio15`, `sata0`..`sata5`, `ide0`..`ide3`).
    DiskSlot,
    "disk slot (scsi0-30, virtio0-15, sata0-5, ide0-3)",
    "^(scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|sata[0-5]|ide[0-3])$",
    |s| {
        let split = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
        let (bus, idx) = s.split_at(split);
        let max = match bus {
            "scsi" => 30,
            "virtio" => 15,
            "sata" => 5,
            "ide" => 3,
            _ => return Err("the bus must be scsi, virtio, sata or ide".into()),
        };
        match idx.parse::<u32>() {
            Ok(n) if n <= max && (idx == "0" || !idx.starts_with('0')) => Ok(()),
            _ => Err(format!("the {bus} bus has slots 0 to {max}")),
        }
    }
);

impl Tag {
    /// Turn any text into a valid tag: lowercase, other characters become `_`.
    pub fn sanitize(text: &str) -> Tag {
        let mut s: String = text
            .to_lowercase()
            .chars()
            .map(|c| {
                if is_alnum(c) || "_-+.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if !s.starts_with(|c: char| is_alnum(c) || c == '_') {
            s.insert(0, '_');
        }
        Tag(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmid_range() {
        assert!(Vmid::new(99).is_err());
        assert!(Vmid::new(100).is_ok());
        assert!(Vmid::new(999_999_999).is_ok());
        assert!(Vmid::new(1_000_000_000).is_err());
    }

    #[test]
    fn names() {
        assert!("worker01".parse::<Name>().is_ok());
        assert!("Worker01".parse::<Name>().is_err());
        assert!("-worker".parse::<Name>().is_err());
        assert!("pve01".parse::<NodeName>().is_ok());
        assert!("vnet101".parse::<SdnId>().is_ok());
        assert!("vnet10101".parse::<SdnId>().is_err());
        assert!("local-lvm".parse::<StorageId>().is_ok());
        assert!("Local".parse::<StorageId>().is_err());
    }

    #[test]
    fn tags_are_sanitized() {
        assert_eq!(
            Tag::sanitize("Provider-Proxmox").as_str(),
            "provider-proxmox"
        );
        assert_eq!(Tag::sanitize("a/b c").as_str(), "a_b_c");
        assert_eq!(Tag::sanitize("-x").as_str(), "_-x");
        assert!(Tag::sanitize("???").as_str().parse::<Tag>().is_ok());
    }
}
