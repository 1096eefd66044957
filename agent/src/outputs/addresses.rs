//! Which of the addresses a guest agent reports is "the VM's address".
//!
//! A guest lists loopback, link-local and the interfaces its software adds (K3s' `cni0`
//! and `flannel.1`, Docker's `docker0`). The address that matters is the one on the VM's
//! own NIC: the interface whose MAC is one of the VM's `netN` MACs, in `netN` order; when
//! the MACs are not known, the first interface with a global address.

use crate::pve::guest_agent::GuestInterface;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The VM's first IPv4 and IPv6 addresses as its guest agent reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestAddresses {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl GuestAddresses {
    /// IPv4 if there is one, else IPv6.
    pub fn first(&self) -> Option<IpAddr> {
        self.ipv4.map(IpAddr::V4).or(self.ipv6.map(IpAddr::V6))
    }
}

/// Pick the addresses from `interfaces`; `macs` are the VM's NIC MACs in `netN` order
/// (any case), empty when unknown.
pub fn pick(interfaces: &[GuestInterface], macs: &[String]) -> GuestAddresses {
    let same_mac = |i: &GuestInterface, mac: &str| {
        i.hardware_address
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(mac))
    };
    let mut order: Vec<&GuestInterface> = Vec::new();
    for mac in macs {
        order.extend(interfaces.iter().filter(|i| same_mac(i, mac)));
    }
    if order.is_empty() {
        order.extend(interfaces.iter().filter(|i| i.name != "lo"));
    }
    let mut out = GuestAddresses::default();
    for ip in order
        .iter()
        .flat_map(|i| &i.ip_addresses)
        .filter_map(|a| a.ip_address.parse::<IpAddr>().ok())
    {
        match ip {
            IpAddr::V4(v4) if out.ipv4.is_none() && global_v4(v4) => out.ipv4 = Some(v4),
            IpAddr::V6(v6) if out.ipv6.is_none() && global_v6(v6) => out.ipv6 = Some(v6),
            _ => {}
        }
    }
    out
}

fn global_v4(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback() || ip.is_link_local() || ip.is_unspecified())
}

fn global_v6(ip: Ipv6Addr) -> bool {
    // fe80::/10 is link-local: reachable only with a scope, useless in an inventory.
    !(ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xffc0) == 0xfe80)
}

/// The MACs of a VM config's `net0`, `net1`, … (`virtio=BC:24:11:…,bridge=…`), in order.
pub fn config_macs(config: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut nets: Vec<(u32, &String)> = config
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("net")?.parse().ok()?, v)))
        .collect();
    nets.sort();
    nets.into_iter()
        .filter_map(|(_, v)| {
            let model = v.split(',').next()?;
            let (_, mac) = model.split_once('=')?;
            (mac.len() == 17).then(|| mac.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::guest_agent::GuestIpAddress;

    fn iface(name: &str, mac: &str, ips: &[&str]) -> GuestInterface {
        GuestInterface {
            name: name.into(),
            hardware_address: Some(mac.into()),
            ip_addresses: ips
                .iter()
                .map(|ip| GuestIpAddress {
                    ip_address: ip.to_string(),
                    ip_address_type: if ip.contains(':') { "ipv6" } else { "ipv4" }.into(),
                    prefix: None,
                })
                .collect(),
        }
    }

    fn k3s_guest() -> Vec<GuestInterface> {
        vec![
            iface("lo", "00:00:00:00:00:00", &["127.0.0.1", "::1"]),
            iface("cni0", "aa:bb:cc:00:00:01", &["10.42.0.1"]),
            iface(
                "eth0",
                "bc:24:11:12:34:56",
                &["fe80::be24:11ff:fe12:3456", "192.168.1.50", "2001:db8::50"],
            ),
        ]
    }

    #[test]
    fn the_nic_with_the_vms_mac_wins_over_interfaces_the_guest_added() {
        let got = pick(&k3s_guest(), &["BC:24:11:12:34:56".into()]);
        assert_eq!(got.ipv4, Some("192.168.1.50".parse().unwrap()));
        assert_eq!(got.ipv6, Some("2001:db8::50".parse().unwrap()));
    }

    #[test]
    fn without_macs_the_first_global_address_of_a_real_interface() {
        let got = pick(&k3s_guest(), &[]);
        assert_eq!(got.ipv4, Some("10.42.0.1".parse().unwrap()));
        assert_eq!(got.first(), Some("10.42.0.1".parse().unwrap()));
        let only_lo = pick(&k3s_guest()[..1], &[]);
        assert_eq!(only_lo, GuestAddresses::default());
    }

    #[test]
    fn macs_come_from_the_net_keys_in_order() {
        let config = [
            ("net1", "virtio=BC:24:11:00:00:02,bridge=vmbr0,tag=101"),
            ("net0", "virtio=BC:24:11:00:00:01,bridge=vnet101"),
            ("net2", "e1000,bridge=vmbr1"),
            ("name", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            config_macs(&config),
            ["BC:24:11:00:00:01", "BC:24:11:00:00:02"]
        );
    }
}
