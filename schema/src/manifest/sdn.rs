//! Software-defined networking: zones, vnets, subnets (applied together by `PUT /cluster/sdn`).

use crate::ids::{Bridge, NodeName, SdnId};
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SdnZoneSpec {
    #[serde(rename = "type")]
    pub zone_type: ZoneType,
    /// Bridge for `vlan` and `qinq` zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<Bridge>,
    /// Peer addresses for `vxlan` zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IpAddr>,
    /// EVPN controller id for `evpn` zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// VRF VXLAN id for `evpn` zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf_vxlan: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Restrict the zone to these nodes; default all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<String>,
    /// Automatic DHCP (`dnsmasq`) for subnets with `dhcpRanges`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZoneType {
    Simple,
    Vlan,
    Qinq,
    Vxlan,
    Evpn,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SdnVnetSpec {
    pub zone: SdnId,
    /// VLAN id (vlan/qinq zones) or VXLAN id (vxlan/evpn zones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_aware: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate_ports: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SdnSubnetSpec {
    pub vnet: SdnId,
    #[schemars(with = "String")]
    pub cidr: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Source NAT for traffic leaving the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dhcp_ranges: Vec<DhcpRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_zone_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DhcpRange {
    pub start: IpAddr,
    pub end: IpAddr,
}
