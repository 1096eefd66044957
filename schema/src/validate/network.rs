//! Addresses and bridges: no static address used twice, gateways and addresses inside their
//! subnets (and inside the SDN subnets of the vnet they attach to), every bridge known.

use super::Context;
use crate::diag::{did_you_mean, Diagnostic, Diagnostics, ErrorKind, Location};
use crate::ids::{Bridge, VlanTag};

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One interface of a guest, as far as addressing is concerned.
struct Iface {
    guest: String,
    bridge: Bridge,
    vlan: Option<VlanTag>,
    bridge_loc: Location,
    /// (address with prefix, where it is written)
    addrs: Vec<(IpNet, Location)>,
    /// (gateway, where it is written)
    gateways: Vec<(IpAddr, Location)>,
}

pub fn check(ctx: &Context<'_>, diags: &mut Diagnostics) {
    let ifaces = interfaces(ctx, diags);
    let vnets: BTreeMap<&str, &crate::manifest::sdn::SdnVnetSpec> = docs_of!(ctx, SdnVnet)
        .map(|(d, v)| (d.name().as_str(), v))
        .collect();
    let mut subnets: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
    for (doc, s) in docs_of!(ctx, SdnSubnet) {
        subnets.entry(s.vnet.as_str()).or_default().push(s.cidr);
        let at = |p: &str| ctx.locator.at(&doc.origin, p);
        if s.cidr.trunc() != s.cidr {
            diags.push(
                Diagnostic::new(
                    ErrorKind::InvalidValue,
                    at("spec.cidr"),
                    format!("subnet `{}` has host bits set", s.cidr),
                )
                .with_hint(format!("write {}", s.cidr.trunc())),
            );
        }
        if let Some(gw) = s.gateway {
            if !s.cidr.contains(&gw) {
                diags.push(Diagnostic::new(
                    ErrorKind::IpOutsideSubnet,
                    at("spec.gateway"),
                    format!("gateway {gw} is outside {}", s.cidr),
                ));
            }
        }
        for (i, r) in s.dhcp_ranges.iter().enumerate() {
            for (f, a) in [("start", r.start), ("end", r.end)] {
                if !s.cidr.contains(&a) {
                    diags.push(Diagnostic::new(
                        ErrorKind::IpOutsideSubnet,
                        at(&format!("spec.dhcpRanges[{i}].{f}")),
                        format!("DHCP range {f} {a} is outside {}", s.cidr),
                    ));
                }
            }
        }
    }
    let external: Vec<&str> = ctx.external.bridges.iter().map(Bridge::as_str).collect();

    let mut used: BTreeMap<IpAddr, (String, Location)> = BTreeMap::new();
    for ifc in &ifaces {
        let b = ifc.bridge.as_str();
        let vnet = vnets.get(b);
        if vnet.is_none() && !external.contains(&b) {
            let mut d = Diagnostic::new(
                ErrorKind::UnresolvedReference,
                ifc.bridge_loc.clone(),
                format!(
                    "bridge `{b}` of {} is neither an SdnVnet nor listed in External.spec.bridges",
                    ifc.guest
                ),
            );
            let candidates = vnets.keys().copied().chain(external.iter().copied());
            if let Some(s) = did_you_mean(b, candidates) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            diags.push(d);
        }
        if let (Some(v), Some(tag)) = (vnet, ifc.vlan) {
            if v.vlan_aware != Some(true) {
                diags.push(Diagnostic::new(
                    ErrorKind::Conflict,
                    ifc.bridge_loc.clone(),
                    format!("{}: VLAN tag {} on vnet `{b}`, which is not vlanAware (the vnet tags traffic itself)", ifc.guest, tag.get()),
                ));
            }
        }
        for (net, loc) in &ifc.addrs {
            if let Some((other, first)) = used.get(&net.addr()) {
                diags.push(
                    Diagnostic::new(
                        ErrorKind::IpCollision,
                        loc.clone(),
                        format!(
                            "{} of {} is also the address of {other}",
                            net.addr(),
                            ifc.guest
                        ),
                    )
                    .with_hint(format!("{other}'s address is set at {first}")),
                );
            } else {
                used.insert(net.addr(), (ifc.guest.clone(), loc.clone()));
            }
            if let Some(subs) = subnets.get(b) {
                let same_family: Vec<&IpNet> = subs
                    .iter()
                    .filter(|s| s.addr().is_ipv4() == net.addr().is_ipv4())
                    .collect();
                if !same_family.is_empty() && !same_family.iter().any(|s| s.contains(&net.addr())) {
                    diags.push(Diagnostic::new(
                        ErrorKind::IpOutsideSubnet,
                        loc.clone(),
                        format!(
                            "{} of {} is outside the subnets of vnet `{b}` ({})",
                            net.addr(),
                            ifc.guest,
                            same_family
                                .iter()
                                .map(|s| s.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        for (gw, loc) in &ifc.gateways {
            let nets: Vec<&IpNet> = ifc
                .addrs
                .iter()
                .map(|(n, _)| n)
                .filter(|n| n.addr().is_ipv4() == gw.is_ipv4())
                .collect();
            if !nets.is_empty() && !nets.iter().any(|n| n.trunc().contains(gw)) {
                diags.push(Diagnostic::new(
                    ErrorKind::IpOutsideSubnet,
                    loc.clone(),
                    format!(
                        "gateway {gw} of {} is outside its subnet {}",
                        ifc.guest,
                        nets[0].trunc()
                    ),
                ));
            }
        }
    }
}

fn interfaces(ctx: &Context<'_>, diags: &mut Diagnostics) -> Vec<Iface> {
    let mut out = Vec::new();
    for vm in &ctx.desired.vms {
        let at = |p: String| vm.source.at(ctx.locator, &p);
        let ipc = vm
            .spec
            .cloud_init
            .as_ref()
            .map(|c| c.ip_config.as_slice())
            .unwrap_or_default();
        if !vm.spec.network.is_empty() && ipc.len() > vm.spec.network.len() {
            diags.push(Diagnostic::new(
                ErrorKind::Conflict,
                at(format!("cloudInit.ipConfig[{}]", vm.spec.network.len())),
                format!(
                    "{}: ipConfig[{}] has no interface net{0}",
                    vm.name,
                    vm.spec.network.len()
                ),
            ));
        }
        for (i, nic) in vm.spec.network.iter().enumerate() {
            let mut ifc = Iface {
                guest: vm.name.to_string(),
                bridge: nic.bridge.clone(),
                vlan: nic.vlan,
                bridge_loc: at(format!("network[{i}].bridge")),
                addrs: Vec::new(),
                gateways: Vec::new(),
            };
            if let Some(c) = ipc.get(i) {
                if let Some(a) = c.ipv4.and_then(|a| a.address()) {
                    ifc.addrs
                        .push((IpNet::V4(a), at(format!("cloudInit.ipConfig[{i}].ipv4"))));
                }
                if let Some(a) = c.ipv6.and_then(|a| a.address()) {
                    ifc.addrs
                        .push((IpNet::V6(a), at(format!("cloudInit.ipConfig[{i}].ipv6"))));
                }
                if let Some(g) = c.gateway {
                    ifc.gateways.push((
                        IpAddr::V4(g),
                        at(format!("cloudInit.ipConfig[{i}].gateway")),
                    ));
                }
                if let Some(g) = c.gateway6 {
                    ifc.gateways.push((
                        IpAddr::V6(g),
                        at(format!("cloudInit.ipConfig[{i}].gateway6")),
                    ));
                }
            }
            out.push(ifc);
        }
    }
    for c in &ctx.desired.containers {
        let at = |p: String| ctx.locator.at(&c.origin, &p);
        for (i, nic) in c.spec.network.iter().enumerate() {
            let mut ifc = Iface {
                guest: c.name.to_string(),
                bridge: nic.bridge.clone(),
                vlan: nic.vlan,
                bridge_loc: at(format!("spec.network[{i}].bridge")),
                addrs: Vec::new(),
                gateways: Vec::new(),
            };
            if let Some(a) = nic.ipv4.and_then(|a| a.address()) {
                ifc.addrs
                    .push((IpNet::V4(a), at(format!("spec.network[{i}].ipv4"))));
            }
            if let Some(a) = nic.ipv6.and_then(|a| a.address()) {
                ifc.addrs
                    .push((IpNet::V6(a), at(format!("spec.network[{i}].ipv6"))));
            }
            if let Some(g) = nic.gateway {
                ifc.gateways
                    .push((IpAddr::V4(g), at(format!("spec.network[{i}].gateway"))));
            }
            if let Some(g) = nic.gateway6 {
                ifc.gateways
                    .push((IpAddr::V6(g), at(format!("spec.network[{i}].gateway6"))));
            }
            out.push(ifc);
        }
    }
    for t in &ctx.desired.templates {
        for (i, nic) in t.spec.network.iter().enumerate() {
            out.push(Iface {
                guest: t.name.to_string(),
                bridge: nic.bridge.clone(),
                vlan: nic.vlan,
                bridge_loc: ctx
                    .locator
                    .at(&t.origin, &format!("spec.network[{i}].bridge")),
                addrs: Vec::new(),
                gateways: Vec::new(),
            });
        }
    }
    out
}
