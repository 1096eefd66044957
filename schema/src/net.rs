//! IP address arithmetic: Terraform's `cidrhost` for IPv4 and IPv6, and the ways a manifest
//! says how a guest gets its address.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The `offset`-th address of `net`, like Terraform's `cidrhost(net, offset)`: offset 0 is the
/// network address, negative offsets count back from the last address (-1 is the broadcast).
pub fn cidrhost(net: IpNet, offset: i64) -> Result<IpAddr, String> {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    // Number of addresses in the subnet, saturating for an IPv6 /0 (2^128 does not fit).
    let size: u128 = if host_bits >= 128 {
        u128::MAX
    } else {
        1u128 << host_bits
    };
    let index: u128 = if offset >= 0 {
        let o = offset as u128;
        if o >= size {
            return Err(format!(
                "offset {offset} is past the end of {net} ({size} addresses)"
            ));
        }
        o
    } else {
        let back = offset.unsigned_abs() as u128;
        if back > size {
            return Err(format!("offset {offset} is before the start of {net}"));
        }
        size - back
    };
    Ok(match net {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) + index as u32)),
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) + index)),
    })
}

/// Whether `addr` is the network or broadcast address of an IPv4 subnet of more than two
/// addresses (a guest given one of those would be unreachable).
pub fn is_reserved_v4(net: Ipv4Net, addr: Ipv4Addr) -> bool {
    net.prefix_len() <= 30 && (addr == net.network() || addr == net.broadcast())
}

/// An address relative to a subnet: `cidrhost(cidr, offset)`. In a VirtualMachineSet template
/// the member's index is added to `offset`, so one line numbers a whole set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostInSubnet<N> {
    /// The subnet, e.g. `192.168.1.0/24` or `fd00:101::/64`.
    pub cidr: N,
    /// Index of the address in the subnet (Terraform's `cidrhost`); negative counts from the end.
    pub offset: i64,
}

/// How an interface gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Assignment {
    Dhcp,
    /// An address with its prefix, `192.168.1.2/24`.
    Static(Ipv4Net),
    Host(HostInSubnet<Ipv4Net>),
}

/// How an interface gets its IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Assignment {
    Dhcp,
    /// Stateless autoconfiguration (router advertisements).
    Auto,
    Static(Ipv6Net),
    Host(HostInSubnet<Ipv6Net>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAssign<N> {
    Text(String),
    Host(HostInSubnet<N>),
}

impl<'de> Deserialize<'de> for Ipv4Assignment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawAssign::<Ipv4Net>::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected `dhcp`, an address like 192.168.1.2/24, or { cidr, offset }",
            )
        })? {
            RawAssign::Host(h) => Ok(Ipv4Assignment::Host(h)),
            RawAssign::Text(t) if t == "dhcp" => Ok(Ipv4Assignment::Dhcp),
            RawAssign::Text(t) => t.parse().map(Ipv4Assignment::Static).map_err(|_| {
                de::Error::custom(format!(
                    "`{t}` is not an IPv4 address with prefix (like 192.168.1.2/24) or `dhcp`"
                ))
            }),
        }
    }
}

impl<'de> Deserialize<'de> for Ipv6Assignment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawAssign::<Ipv6Net>::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected `dhcp`, `auto`, an address like fd00::10/64, or { cidr, offset }",
            )
        })? {
            RawAssign::Host(h) => Ok(Ipv6Assignment::Host(h)),
            RawAssign::Text(t) if t == "dhcp" => Ok(Ipv6Assignment::Dhcp),
            RawAssign::Text(t) if t == "auto" => Ok(Ipv6Assignment::Auto),
            RawAssign::Text(t) => t.parse().map(Ipv6Assignment::Static).map_err(|_| {
                de::Error::custom(format!(
                    "`{t}` is not an IPv6 address with prefix (like fd00::10/64), `dhcp` or `auto`"
                ))
            }),
        }
    }
}

impl Serialize for Ipv4Assignment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ipv4Assignment::Dhcp => s.serialize_str("dhcp"),
            Ipv4Assignment::Static(n) => s.serialize_str(&n.to_string()),
            Ipv4Assignment::Host(h) => h.serialize(s),
        }
    }
}

impl Serialize for Ipv6Assignment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ipv6Assignment::Dhcp => s.serialize_str("dhcp"),
            Ipv6Assignment::Auto => s.serialize_str("auto"),
            Ipv6Assignment::Static(n) => s.serialize_str(&n.to_string()),
            Ipv6Assignment::Host(h) => h.serialize(s),
        }
    }
}

fn assignment_schema(example: &str) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "description": format!("`dhcp`, or an address with prefix such as {example}") },
            { "type": "object", "required": ["cidr", "offset"], "additionalProperties": false,
              "properties": { "cidr": { "type": "string" }, "offset": { "type": "integer" } } }
        ]
    })
}

impl JsonSchema for Ipv4Assignment {
    fn schema_name() -> Cow<'static, str> {
        "Ipv4Assignment".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        assignment_schema("192.168.1.2/24")
    }
}

impl JsonSchema for Ipv6Assignment {
    fn schema_name() -> Cow<'static, str> {
        "Ipv6Assignment".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        assignment_schema("fd00:101::10/64 (or `auto` for SLAAC)")
    }
}

impl Ipv4Assignment {
    /// Resolve to a concrete assignment for member `index` of a set (0 for a single VM).
    pub fn resolve(self, index: usize) -> Result<Self, String> {
        match self {
            Ipv4Assignment::Host(h) => {
                let off = h
                    .offset
                    .checked_add(index as i64)
                    .ok_or("offset overflow")?;
                let IpAddr::V4(a) = cidrhost(IpNet::V4(h.cidr), off)? else {
                    unreachable!("v4 net yields v4 address")
                };
                if is_reserved_v4(h.cidr, a) {
                    return Err(format!(
                        "offset {off} gives {a}, the network or broadcast address of {}",
                        h.cidr.trunc()
                    ));
                }
                Ok(Ipv4Assignment::Static(
                    Ipv4Net::new(a, h.cidr.prefix_len()).expect("prefix from a valid net"),
                ))
            }
            other => Ok(other),
        }
    }

    /// The static address, once resolved.
    pub fn address(&self) -> Option<Ipv4Net> {
        match self {
            Ipv4Assignment::Static(n) => Some(*n),
            _ => None,
        }
    }
}

impl Ipv6Assignment {
    /// Resolve to a concrete assignment for member `index` of a set (0 for a single VM).
    pub fn resolve(self, index: usize) -> Result<Self, String> {
        match self {
            Ipv6Assignment::Host(h) => {
                let off = h
                    .offset
                    .checked_add(index as i64)
                    .ok_or("offset overflow")?;
                let IpAddr::V6(a) = cidrhost(IpNet::V6(h.cidr), off)? else {
                    unreachable!("v6 net yields v6 address")
                };
                Ok(Ipv6Assignment::Static(
                    Ipv6Net::new(a, h.cidr.prefix_len()).expect("prefix from a valid net"),
                ))
            }
            other => Ok(other),
        }
    }

    pub fn address(&self) -> Option<Ipv6Net> {
        match self {
            Ipv6Assignment::Static(n) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for Ipv4Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv4Assignment::Dhcp => f.write_str("dhcp"),
            Ipv4Assignment::Static(n) => n.fmt(f),
            Ipv4Assignment::Host(h) => write!(f, "cidrhost({}, {})", h.cidr, h.offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(net: &str, off: i64) -> Result<String, String> {
        cidrhost(net.parse().unwrap(), off).map(|a| a.to_string())
    }

    #[test]
    fn cidrhost_matches_terraform() {
        assert_eq!(host("192.168.1.0/24", 2).unwrap(), "192.168.1.2");
        assert_eq!(host("192.168.1.0/24", 71).unwrap(), "192.168.1.71");
        assert_eq!(host("192.168.1.0/24", 255).unwrap(), "192.168.1.255");
        assert!(host("192.168.1.0/24", 256)
            .unwrap_err()
            .contains("past the end"));
        assert_eq!(host("192.168.1.0/24", -1).unwrap(), "192.168.1.255");
        assert_eq!(host("192.168.1.0/24", -256).unwrap(), "192.168.1.0");
        assert!(host("192.168.1.0/24", -257).is_err());
        // A host address given as the cidr is truncated to its network, like Terraform.
        assert_eq!(host("192.168.1.77/24", 5).unwrap(), "192.168.1.5");
        assert_eq!(host("10.0.0.0/8", 65536).unwrap(), "10.1.0.0");
        assert_eq!(host("10.0.0.1/32", 0).unwrap(), "10.0.0.1");
        assert!(host("10.0.0.1/32", 1).is_err());
    }

    #[test]
    fn cidrhost_ipv6() {
        assert_eq!(host("fd00:101::/64", 16).unwrap(), "fd00:101::10");
        assert_eq!(host("fd00:101::/64", 0x1_0000).unwrap(), "fd00:101::1:0");
        assert_eq!(
            host("fd00:101::/64", -1).unwrap(),
            "fd00:101::ffff:ffff:ffff:ffff"
        );
        assert!(host("fd00::/127", 2).is_err());
        assert_eq!(host("::/0", i64::MAX).unwrap(), "::7fff:ffff:ffff:ffff");
    }

    #[test]
    fn set_members_count_from_offset() {
        let a: Ipv4Assignment =
            serde_yaml::from_str("{ cidr: 192.168.1.0/24, offset: 81 }").unwrap();
        assert_eq!(a.resolve(2).unwrap().to_string(), "192.168.1.83/24");
        let err = a.resolve(174).unwrap_err();
        assert!(err.contains("broadcast"), "{err}");
        assert!(a.resolve(175).unwrap_err().contains("past the end"));
        let six: Ipv6Assignment =
            serde_yaml::from_str("{ cidr: 'fd00:102::/64', offset: 16 }").unwrap();
        assert_eq!(
            six.resolve(1).unwrap().address().unwrap().to_string(),
            "fd00:102::11/64"
        );
    }

    #[test]
    fn parse_forms() {
        let a: Ipv4Assignment = serde_yaml::from_str("dhcp").unwrap();
        assert_eq!(a, Ipv4Assignment::Dhcp);
        let a: Ipv4Assignment = serde_yaml::from_str("10.0.0.5/24").unwrap();
        assert_eq!(a.to_string(), "10.0.0.5/24");
        assert!(serde_yaml::from_str::<Ipv4Assignment>("10.0.0.5").is_err());
        let b: Ipv6Assignment = serde_yaml::from_str("auto").unwrap();
        assert_eq!(b, Ipv6Assignment::Auto);
    }
}
