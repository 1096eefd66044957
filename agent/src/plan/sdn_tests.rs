//! Table-driven: declared SDN objects against what PVE has staged, and the steps.

use super::*;
use pve_gitops_schema::{load, Repository};

const SDN: &str = "apiVersion: pve-gitops/v1alpha1
kind: SdnZone
metadata: { name: ecoma }
spec: { type: simple, ipam: pve, nodes: [pve2, pve1] }
---
apiVersion: pve-gitops/v1alpha1
kind: SdnVnet
metadata: { name: ecomanet }
spec: { zone: ecoma, alias: Ecoma nodes }
---
apiVersion: pve-gitops/v1alpha1
kind: SdnSubnet
metadata: { name: ecoma-nodes }
spec:
  vnet: ecomanet
  cidr: 10.41.1.0/24
  gateway: 10.41.1.1
  snat: true
  dhcpRanges: [ { start: 10.41.1.100, end: 10.41.1.200 } ]
";

fn desired() -> DesiredState {
    let mut repo = Repository::new();
    repo.add("m.yaml", SDN);
    load(&repo).unwrap_or_else(|e| panic!("{e}"))
}

fn obj(id: &str, parent: Option<&str>, pairs: &[(&str, &str)], pending: bool) -> ActualSdnObject {
    ActualSdnObject {
        id: id.into(),
        config: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        parent: parent.map(str::to_string),
        pending,
    }
}

/// PVE's staged state once the manifest above was applied.
fn converged() -> ActualSdn {
    ActualSdn {
        zones: vec![obj(
            "ecoma",
            None,
            &[("type", "simple"), ("ipam", "pve"), ("nodes", "pve1,pve2")],
            false,
        )],
        vnets: vec![obj(
            "ecomanet",
            Some("ecoma"),
            &[
                ("type", "vnet"),
                ("zone", "ecoma"),
                ("alias", "Ecoma nodes"),
            ],
            false,
        )],
        subnets: vec![obj(
            "ecoma-10.41.1.0-24",
            Some("ecomanet"),
            &[
                ("type", "subnet"),
                ("vnet", "ecomanet"),
                ("gateway", "10.41.1.1"),
                ("snat", "1"),
                (
                    "dhcp-range",
                    "start-address=10.41.1.100,end-address=10.41.1.200",
                ),
            ],
            false,
        )],
    }
}

fn ops(p: &SdnPlan) -> Vec<(String, String)> {
    p.steps
        .iter()
        .map(|s| {
            let op = match &s.op {
                SdnOp::Create(_) => "create".to_string(),
                SdnOp::Update { set, delete } => format!(
                    "update {}{}",
                    set.keys().cloned().collect::<Vec<_>>().join(","),
                    if delete.is_empty() {
                        String::new()
                    } else {
                        format!(" -{}", delete.join(","))
                    }
                ),
                SdnOp::Delete => "delete".to_string(),
            };
            (s.resource.clone(), op)
        })
        .collect()
}

#[test]
fn from_empty_everything_is_created_parents_first_then_applied() {
    let p = plan_sdn(&desired(), &ActualSdn::default(), false);
    assert_eq!(
        ops(&p),
        [
            ("SdnZone/ecoma".into(), "create".into()),
            ("SdnVnet/ecomanet".into(), "create".into()),
            ("SdnSubnet/ecoma-nodes".into(), "create".into()),
        ]
    );
    assert!(p.apply);
    let SdnOp::Create(subnet) = &p.steps[2].op else {
        panic!()
    };
    assert_eq!(subnet["subnet"], "10.41.1.0/24");
    assert_eq!(subnet["type"], "subnet");
    assert_eq!(p.steps[2].id, "ecoma-10.41.1.0-24");
    assert_eq!(p.steps[2].after.as_deref(), Some("SdnVnet/ecomanet"));
    assert_eq!(
        p.vnet_needs["ecomanet"],
        BTreeSet::from([
            "SdnZone/ecoma".to_string(),
            "SdnVnet/ecomanet".to_string(),
            "SdnSubnet/ecoma-nodes".to_string()
        ])
    );
}

#[test]
fn converged_and_applied_is_empty() {
    let p = plan_sdn(&desired(), &converged(), false);
    assert!(p.is_empty(), "{p:?}");
    assert!(p.findings.is_empty());
}

#[test]
fn table_of_changes() {
    type Edit = fn(&mut ActualSdn);
    /// What, the change to PVE's state, the steps (resource, op), whether to apply.
    type Case = (
        &'static str,
        Edit,
        &'static [(&'static str, &'static str)],
        bool,
    );
    let cases: &[Case] = &[
        (
            "one subnet option differs: only that subnet, only that key",
            |a| {
                a.subnets[0]
                    .config
                    .as_mut()
                    .unwrap()
                    .insert("gateway".into(), "10.41.1.254".into());
            },
            &[("SdnSubnet/ecoma-nodes", "update gateway")],
            true,
        ),
        (
            "an option the manifest leaves out is removed",
            |a| {
                a.zones[0]
                    .config
                    .as_mut()
                    .unwrap()
                    .insert("mtu".into(), "1400".into());
            },
            &[("SdnZone/ecoma", "update  -mtu")],
            true,
        ),
        (
            "an option the schema does not manage is left alone",
            |a| {
                a.zones[0]
                    .config
                    .as_mut()
                    .unwrap()
                    .insert("dns".into(), "powerdns".into());
            },
            &[],
            false,
        ),
        (
            "staged but not applied: only the apply",
            |a| a.vnets[0].pending = true,
            &[],
            true,
        ),
        (
            "pending changes in a foreign zone are not ours to apply",
            |a| {
                a.zones
                    .push(obj("other", None, &[("type", "simple")], true))
            },
            &[],
            false,
        ),
        (
            "a foreign subnet in our vnet is reported, not deleted (no pruning)",
            |a| {
                a.subnets.push(obj(
                    "ecoma-10.9.0.0-24",
                    Some("ecomanet"),
                    &[("vnet", "ecomanet")],
                    false,
                ))
            },
            &[],
            false,
        ),
        (
            "our subnet staged for deletion by hand is recreated",
            |a| {
                a.subnets[0].config = None;
                a.subnets[0].pending = true;
            },
            &[("SdnSubnet/ecoma-nodes", "create")],
            true,
        ),
    ];
    for (what, edit, want, apply) in cases {
        let mut actual = converged();
        edit(&mut actual);
        let p = plan_sdn(&desired(), &actual, false);
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(r, o)| (r.to_string(), o.to_string()))
            .collect();
        assert_eq!(ops(&p), want, "{what}");
        assert_eq!(p.apply, *apply, "{what}: {p:?}");
    }
}

#[test]
fn pruning_deletes_children_of_declared_parents_children_first() {
    let mut actual = converged();
    actual
        .vnets
        .push(obj("oldnet", Some("ecoma"), &[("zone", "ecoma")], false));
    actual.subnets.push(obj(
        "ecoma-10.9.0.0-24",
        Some("ecomanet"),
        &[("vnet", "ecomanet")],
        false,
    ));
    // A zone nobody declares is never touched.
    actual
        .zones
        .push(obj("other", None, &[("type", "simple")], false));
    let kept = plan_sdn(&desired(), &actual, false);
    assert!(kept.steps.is_empty());
    assert_eq!(kept.findings.len(), 2, "{:?}", kept.findings);
    let pruned = plan_sdn(&desired(), &actual, true);
    assert_eq!(
        ops(&pruned),
        [
            ("SdnSubnet/ecoma-10.9.0.0-24".into(), "delete".into()),
            ("SdnVnet/oldnet".into(), "delete".into()),
        ]
    );
    assert!(pruned.apply);
}

#[test]
fn zone_type_change_is_reported_not_attempted() {
    let mut actual = converged();
    actual.zones[0]
        .config
        .as_mut()
        .unwrap()
        .insert("type".into(), "vlan".into());
    let p = plan_sdn(&desired(), &actual, false);
    assert!(p.steps.is_empty());
    assert!(matches!(
        &p.findings[0],
        SdnFinding::ZoneTypeChange { actual, .. } if actual == "vlan"
    ));
}

#[test]
fn ipv6_subnet_ids_are_pves() {
    let cidr: ipnet::IpNet = "fd00:101::/64".parse().unwrap();
    assert_eq!(subnet_id("talos", &cidr), "talos-fd00:101::-64");
    let cidr: ipnet::IpNet = "10.0.101.7/24".parse().unwrap();
    assert_eq!(subnet_id("talos", &cidr), "talos-10.0.101.0-24");
}
