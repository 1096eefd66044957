//! Planning SDN: declared zones, vnets and subnets against what PVE has staged, to the
//! creates, updates and deletes that make them equal, and whether `PUT /cluster/sdn` must
//! run afterwards.
//!
//! Identity is PVE's: a zone or vnet by its id (the manifest's name), a subnet by its vnet
//! and CIDR (PVE names it `<zone>-<network>-<prefix>`). Only the options the schema
//! declares are managed; an option the manifest leaves out is removed, options the schema
//! does not know (a zone's `dns`, ...) are left as they are.
//!
//! Ownership: zones and subnets have no field an owner mark could live in, so SDN objects
//! are owned through their parent. A declared zone owns the vnets in it, a declared vnet
//! the subnets in it: with pruning on, an undeclared vnet in a declared zone or an
//! undeclared subnet in a declared vnet is deleted; otherwise it is reported. A zone is
//! never deleted by the agent (it cannot tell its own from the operator's).
//!
//! The apply is cluster-wide (PVE has no per-object apply), so it runs when this pass
//! staged something or when an object the manifests own has changes staged but not
//! applied (an earlier pass whose apply failed); pending changes only in objects the
//! manifests do not own are left for their owner.

use pve_gitops_schema::desired::{DesiredState, Named};
use pve_gitops_schema::manifest::sdn::{SdnSubnetSpec, SdnVnetSpec, SdnZoneSpec, ZoneType};
use std::collections::{BTreeMap, BTreeSet};

/// Option values in PVE's spelling, as text. List-valued options are canonical: `nodes`
/// and `peers` sorted and comma-separated, `dhcp-range` entries sorted and `;`-separated.
pub type SdnValues = BTreeMap<String, String>;

/// Options of a zone the agent manages (`type` is set at creation only).
pub const ZONE_KEYS: &[&str] = &[
    "bridge",
    "peers",
    "controller",
    "vrf-vxlan",
    "mtu",
    "nodes",
    "ipam",
    "dhcp",
];
pub const VNET_KEYS: &[&str] = &["zone", "tag", "alias", "vlanaware", "isolate-ports"];
pub const SUBNET_KEYS: &[&str] = &["gateway", "snat", "dhcp-range", "dnszoneprefix"];

/// What kind of SDN object, and where its collection is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SdnTarget {
    Zone,
    Vnet,
    Subnet { vnet: String },
}

/// One SDN object as PVE has it staged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualSdnObject {
    /// PVE's id (`ecoma`, `ecomanet`, `ecoma-10.41.1.0-24`).
    pub id: String,
    /// The staged options; `None` when the object is staged for deletion.
    pub config: Option<SdnValues>,
    /// Zone of a vnet, vnet of a subnet (staged, else running).
    pub parent: Option<String>,
    /// The running config differs from the staged one: an apply is outstanding.
    pub pending: bool,
}

/// The SDN objects PVE has: every zone and vnet, and the subnets of the declared vnets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualSdn {
    pub zones: Vec<ActualSdnObject>,
    pub vnets: Vec<ActualSdnObject>,
    pub subnets: Vec<ActualSdnObject>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdnOp {
    /// Create with these options (`type`, and the vnet's `zone` or subnet's `subnet` CIDR
    /// included).
    Create(SdnValues),
    Update {
        set: SdnValues,
        delete: Vec<String>,
    },
    Delete,
}

/// One staged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdnStep {
    /// Report key: `SdnZone/<name>`, `SdnVnet/<name>`, `SdnSubnet/<name>`.
    pub resource: String,
    pub target: SdnTarget,
    pub id: String,
    pub op: SdnOp,
    /// The resource this one needs first (a vnet's zone, a subnet's vnet): when that
    /// failed, this step is skipped.
    pub after: Option<String>,
}

/// Something reported instead of done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdnFinding {
    /// A zone's type cannot change in place; delete and recreate it by hand.
    ZoneTypeChange {
        resource: String,
        actual: String,
        desired: String,
    },
    /// An undeclared object in a declared parent, kept because pruning is off.
    Orphan { resource: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SdnPlan {
    pub steps: Vec<SdnStep>,
    /// `PUT /cluster/sdn` after the steps.
    pub apply: bool,
    /// Owned resources with staged changes that only the apply completes.
    pub pending: BTreeSet<String>,
    pub findings: Vec<SdnFinding>,
    /// Declared vnet id → the resources it needs (its zone, itself, its subnets), for
    /// deciding which VMs a failure blocks.
    pub vnet_needs: BTreeMap<String, BTreeSet<String>>,
}

impl SdnPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && !self.apply
    }
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.into()
}

fn sorted_list<I: IntoIterator<Item = String>>(items: I, sep: &str) -> String {
    let mut v: Vec<String> = items.into_iter().collect();
    v.sort();
    v.join(sep)
}

/// A zone's options as PVE stores them.
pub fn zone_values(z: &SdnZoneSpec) -> SdnValues {
    let mut v = SdnValues::new();
    let mut put = |k: &str, val: Option<String>| {
        if let Some(val) = val {
            v.insert(k.to_string(), val);
        }
    };
    put("bridge", z.bridge.as_ref().map(|b| b.to_string()));
    put(
        "peers",
        (!z.peers.is_empty()).then(|| sorted_list(z.peers.iter().map(|p| p.to_string()), ",")),
    );
    put("controller", z.controller.clone());
    put("vrf-vxlan", z.vrf_vxlan.map(|n| n.to_string()));
    put("mtu", z.mtu.map(|n| n.to_string()));
    put(
        "nodes",
        (!z.nodes.is_empty()).then(|| sorted_list(z.nodes.iter().map(|n| n.to_string()), ",")),
    );
    put("ipam", z.ipam.clone());
    put("dhcp", z.dhcp.clone());
    v
}

pub fn zone_type(t: ZoneType) -> &'static str {
    match t {
        ZoneType::Simple => "simple",
        ZoneType::Vlan => "vlan",
        ZoneType::Qinq => "qinq",
        ZoneType::Vxlan => "vxlan",
        ZoneType::Evpn => "evpn",
    }
}

pub fn vnet_values(v: &SdnVnetSpec) -> SdnValues {
    let mut out = SdnValues::new();
    out.insert("zone".into(), v.zone.to_string());
    if let Some(t) = v.tag {
        out.insert("tag".into(), t.to_string());
    }
    if let Some(a) = &v.alias {
        out.insert("alias".into(), a.clone());
    }
    if let Some(b) = v.vlan_aware {
        out.insert("vlanaware".into(), flag(b));
    }
    if let Some(b) = v.isolate_ports {
        out.insert("isolate-ports".into(), flag(b));
    }
    out
}

/// One DHCP range as PVE's property string.
pub fn dhcp_range(start: &str, end: &str) -> String {
    format!("start-address={start},end-address={end}")
}

pub fn subnet_values(s: &SdnSubnetSpec) -> SdnValues {
    let mut out = SdnValues::new();
    if let Some(g) = s.gateway {
        out.insert("gateway".into(), g.to_string());
    }
    if let Some(b) = s.snat {
        out.insert("snat".into(), flag(b));
    }
    if !s.dhcp_ranges.is_empty() {
        let ranges = s
            .dhcp_ranges
            .iter()
            .map(|r| dhcp_range(&r.start.to_string(), &r.end.to_string()));
        out.insert("dhcp-range".into(), sorted_list(ranges, ";"));
    }
    if let Some(p) = &s.dns_zone_prefix {
        out.insert("dnszoneprefix".into(), p.clone());
    }
    out
}

/// PVE's id of a subnet: `<zone>-<network>-<prefix>`.
pub fn subnet_id(zone: &str, cidr: &ipnet::IpNet) -> String {
    let net = cidr.trunc();
    format!("{zone}-{}-{}", net.network(), net.prefix_len())
}

/// The options to set and to remove so `actual` becomes `desired` (only `managed` keys).
fn differences(
    desired: &SdnValues,
    actual: &SdnValues,
    managed: &[&str],
) -> (SdnValues, Vec<String>) {
    let set: SdnValues = desired
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete = managed
        .iter()
        .filter(|k| !desired.contains_key(**k) && actual.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    (set, delete)
}

/// One declared object, in PVE's terms.
struct Declared {
    resource: String,
    target: SdnTarget,
    id: String,
    values: SdnValues,
    /// Sent only on create (`type`, a subnet's CIDR).
    create_extra: SdnValues,
    managed: &'static [&'static str],
    after: Option<String>,
}

/// The step for one declared object: create it, update what differs, or nothing.
fn upsert(d: Declared, actual: Option<&ActualSdnObject>) -> Option<SdnStep> {
    let op = match actual.and_then(|a| a.config.as_ref()) {
        None => {
            let mut values = d.values;
            values.extend(d.create_extra);
            SdnOp::Create(values)
        }
        Some(have) => {
            let (set, delete) = differences(&d.values, have, d.managed);
            if set.is_empty() && delete.is_empty() {
                return None;
            }
            SdnOp::Update { set, delete }
        }
    };
    Some(SdnStep {
        resource: d.resource,
        target: d.target,
        id: d.id,
        op,
        after: d.after,
    })
}

/// An undeclared object in a declared parent: its delete with pruning, else a finding.
fn orphan(
    kind: &str,
    o: &ActualSdnObject,
    target: SdnTarget,
    prune: bool,
    plan: &mut SdnPlan,
) -> Option<SdnStep> {
    let resource = format!("{kind}/{}", o.id);
    if o.config.is_none() {
        // Already staged for deletion: the apply finishes it.
        if o.pending {
            plan.pending.insert(resource);
        }
        return None;
    }
    if !prune {
        plan.findings.push(SdnFinding::Orphan { resource });
        return None;
    }
    Some(SdnStep {
        resource,
        target,
        id: o.id.clone(),
        op: SdnOp::Delete,
        after: None,
    })
}

fn find<'a>(list: &'a [ActualSdnObject], id: &str) -> Option<&'a ActualSdnObject> {
    list.iter().find(|o| o.id == id)
}

/// Plan the SDN objects of `desired` against `actual`.
pub fn plan_sdn(desired: &DesiredState, actual: &ActualSdn, prune: bool) -> SdnPlan {
    let mut plan = SdnPlan::default();
    let zones: BTreeSet<&str> = desired.sdn_zones.iter().map(|z| z.name.as_str()).collect();
    let vnets: BTreeMap<&str, &Named<SdnVnetSpec>> = desired
        .sdn_vnets
        .iter()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut owned = BTreeSet::new();

    for z in &desired.sdn_zones {
        let resource = format!("SdnZone/{}", z.name);
        let actual_zone = find(&actual.zones, z.name.as_str());
        owned.insert(("zone", z.name.to_string(), resource.clone()));
        let ztype = zone_type(z.spec.zone_type);
        if let Some(have) = actual_zone
            .and_then(|a| a.config.as_ref())
            .and_then(|c| c.get("type"))
            .filter(|t| t.as_str() != ztype)
        {
            plan.findings.push(SdnFinding::ZoneTypeChange {
                resource,
                actual: have.clone(),
                desired: ztype.into(),
            });
            continue;
        }
        let extra = SdnValues::from([("type".to_string(), ztype.to_string())]);
        let declared = Declared {
            resource,
            target: SdnTarget::Zone,
            id: z.name.to_string(),
            values: zone_values(&z.spec),
            create_extra: extra,
            managed: ZONE_KEYS,
            after: None,
        };
        plan.steps.extend(upsert(declared, actual_zone));
    }
    for v in &desired.sdn_vnets {
        let resource = format!("SdnVnet/{}", v.name);
        owned.insert(("vnet", v.name.to_string(), resource.clone()));
        let zone_resource = zones
            .contains(v.spec.zone.as_str())
            .then(|| format!("SdnZone/{}", v.spec.zone));
        let mut needs: BTreeSet<String> = zone_resource.iter().cloned().collect();
        needs.insert(resource.clone());
        plan.vnet_needs.insert(v.name.to_string(), needs);
        let extra = SdnValues::from([("type".to_string(), "vnet".to_string())]);
        let declared = Declared {
            resource,
            target: SdnTarget::Vnet,
            id: v.name.to_string(),
            values: vnet_values(&v.spec),
            create_extra: extra,
            managed: VNET_KEYS,
            after: zone_resource,
        };
        plan.steps
            .extend(upsert(declared, find(&actual.vnets, v.name.as_str())));
    }
    let mut declared_subnets = BTreeSet::new();
    let mut subnet_steps = Vec::new();
    for s in &desired.sdn_subnets {
        let resource = format!("SdnSubnet/{}", s.name);
        let vnet = s.spec.vnet.as_str();
        // The zone a subnet id names is its vnet's (declared, else as PVE has it).
        let zone = vnets
            .get(vnet)
            .map(|v| v.spec.zone.to_string())
            .or_else(|| find(&actual.vnets, vnet).and_then(|a| a.parent.clone()));
        let Some(zone) = zone else { continue };
        let id = subnet_id(&zone, &s.spec.cidr);
        declared_subnets.insert(id.clone());
        owned.insert(("subnet", id.clone(), resource.clone()));
        if let Some(needs) = plan.vnet_needs.get_mut(vnet) {
            needs.insert(resource.clone());
        }
        let extra = SdnValues::from([
            ("type".to_string(), "subnet".to_string()),
            ("subnet".to_string(), s.spec.cidr.trunc().to_string()),
        ]);
        let actual_subnet = actual
            .subnets
            .iter()
            .find(|a| a.id == id && a.parent.as_deref() == Some(vnet));
        let declared = Declared {
            resource,
            target: SdnTarget::Subnet { vnet: vnet.into() },
            id,
            values: subnet_values(&s.spec),
            create_extra: extra,
            managed: SUBNET_KEYS,
            after: vnets.contains_key(vnet).then(|| format!("SdnVnet/{vnet}")),
        };
        subnet_steps.extend(upsert(declared, actual_subnet));
    }

    // Undeclared children of declared parents: deleted with pruning, else reported.
    let mut deletes = Vec::new();
    for s in &actual.subnets {
        let in_declared_vnet = s.parent.as_deref().is_some_and(|p| vnets.contains_key(p));
        if in_declared_vnet && !declared_subnets.contains(&s.id) {
            let vnet = s.parent.clone().unwrap_or_default();
            deletes.extend(orphan(
                "SdnSubnet",
                s,
                SdnTarget::Subnet { vnet },
                prune,
                &mut plan,
            ));
        }
    }
    let mut vnet_deletes = Vec::new();
    for v in &actual.vnets {
        let in_declared_zone = v.parent.as_deref().is_some_and(|p| zones.contains(p));
        if in_declared_zone && !vnets.contains_key(v.id.as_str()) {
            vnet_deletes.extend(orphan("SdnVnet", v, SdnTarget::Vnet, prune, &mut plan));
        }
    }
    // Parents before children on create; children before parents on delete.
    plan.steps.extend(deletes);
    plan.steps.extend(subnet_steps);
    plan.steps.extend(vnet_deletes);

    for (kind, id, resource) in &owned {
        let list = match *kind {
            "zone" => &actual.zones,
            "vnet" => &actual.vnets,
            _ => &actual.subnets,
        };
        if find(list, id).is_some_and(|o| o.pending) {
            plan.pending.insert(resource.clone());
        }
    }
    plan.pending
        .retain(|r| !plan.steps.iter().any(|s| &s.resource == r));
    plan.apply = !plan.steps.is_empty() || !plan.pending.is_empty();
    plan
}

#[cfg(test)]
#[path = "sdn_tests.rs"]
mod tests;
