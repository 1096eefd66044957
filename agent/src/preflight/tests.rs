//! The pre-flight rules, table-driven: a plan, a cluster, and the exact messages expected.

use super::*;
use crate::plan::compare::Change;
use crate::plan::pveconfig::{Compare, DesiredConfig, DesiredValue};
use crate::plan::Action;
use std::collections::BTreeMap;

const GIB: u64 = 1 << 30;

fn node(maxcpu: u64) -> NodeFacts {
    NodeFacts {
        online: true,
        mem: 2 * GIB,
        maxmem: 8 * GIB,
        maxcpu,
    }
}

fn guest(name: &str, node: &str, running: bool, mem_gib: u64, ips: &[(&str, &str)]) -> GuestFacts {
    GuestFacts {
        kind: GuestKind::Vm,
        name: name.into(),
        node: node.into(),
        template: false,
        running,
        maxmem: mem_gib * GIB,
        maxcpu: 2,
        ips: ips
            .iter()
            .map(|(k, ip)| (k.to_string(), ip.parse().unwrap()))
            .collect(),
    }
}

/// Three nodes like fakepve's (4 CPUs, 8 GiB, 2 GiB used); local-lvm on each, rbd shared;
/// template 9000 on pve1; VM 120 `legacy` running on pve2 with 192.0.2.50; VM 130 `web`
/// stopped on pve1 (4 GiB) with 192.0.2.60; container 200 `dns` with 192.0.2.53.
fn cluster() -> ClusterFacts {
    let mut f = ClusterFacts::default();
    for n in ["pve1", "pve2", "pve3"] {
        f.nodes.insert(n.into(), node(4));
        for (storage, shared) in [("local-lvm", false), ("rbd", true)] {
            f.storages.insert(
                (n.into(), storage.into()),
                StorageFacts {
                    available: true,
                    shared,
                    used: 0,
                    total: 100 * GIB,
                },
            );
        }
    }
    let mut template = guest("tmpl", "pve1", false, 2, &[("ipconfig0", "192.0.2.9")]);
    template.template = true;
    f.guests.insert(9000, template);
    f.guests.insert(
        120,
        guest("legacy", "pve2", true, 1, &[("ipconfig0", "192.0.2.50")]),
    );
    f.guests.insert(
        130,
        guest("web", "pve1", false, 4, &[("ipconfig0", "192.0.2.60")]),
    );
    let mut ct = guest("dns", "pve3", true, 1, &[("net0", "192.0.2.53")]);
    ct.kind = GuestKind::Container;
    f.guests.insert(200, ct);
    f.template_names.insert("ubuntu".into(), 9000);
    f.template_names.insert("debian".into(), 9001);
    f
}

fn config(pairs: &[(&str, &str)]) -> DesiredConfig {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                DesiredValue {
                    text: v.to_string(),
                    compare: Compare::Exact,
                },
            )
        })
        .collect()
}

/// A running VM created on `node` from `clone` (a YAML `clone:` value, or none).
fn create(node: &str, clone: Option<&str>, pairs: &[(&str, &str)]) -> Action {
    let config = config(pairs);
    let disks = config
        .iter()
        .filter(|(k, _)| k.starts_with("scsi"))
        .map(|(k, v)| {
            let gib: u64 = v.text.split(':').nth(1).unwrap().parse().unwrap();
            (k.clone(), gib * GIB)
        })
        .collect();
    Action::Create {
        disks,
        name: String::new(),
        vmid: None,
        node: node.into(),
        clone: clone.map(|c| serde_yaml::from_str(c).unwrap()),
        config,
        start: true,
        record: String::new(),
    }
}

fn stopped(mut a: Action) -> Action {
    if let Action::Create { start, .. } = &mut a {
        *start = false;
    }
    a
}

fn configure(vmid: u32, node: &str, changes: &[(&str, Option<&str>, &str)]) -> Action {
    Action::Configure {
        vmid,
        node: node.into(),
        changes: changes
            .iter()
            .map(|(k, from, to)| Change {
                key: k.to_string(),
                from: from.map(str::to_string),
                to: to.to_string(),
            })
            .collect(),
        digest: None,
    }
}

/// One wave of VMs, each with its actions.
fn plan(vms: Vec<(&str, Vec<Action>)>) -> Plan {
    let mut p = Plan::default();
    p.waves.push(
        vms.into_iter()
            .map(|(n, a)| (n.to_string(), a))
            .collect::<BTreeMap<_, _>>(),
    );
    p
}

const T9000: Option<&str> = Some("{ template: 9000 }");

struct Case {
    what: &'static str,
    plan: Plan,
    cluster: fn(&mut ClusterFacts),
    want: &'static [&'static str],
}

fn same(_: &mut ClusterFacts) {}

#[test]
fn check_reports_exactly_what_is_missing() {
    let cases = vec![
        Case {
            what: "a clone that fits",
            plan: plan(vec![(
                "k3s",
                vec![create(
                    "pve2",
                    T9000,
                    &[("cores", "4"), ("memory", "4096"), ("scsi0", "local-lvm:30"), ("ipconfig0", "ip=192.0.2.10/24,gw=192.0.2.1")],
                )],
            )]),
            cluster: same,
            want: &[],
        },
        Case {
            what: "template vmid not in the cluster",
            plan: plan(vec![("k3s", vec![create("pve2", Some("{ template: 9100 }"), &[])])]),
            cluster: same,
            want: &["k3s: template 9100 to clone from is not in the cluster"],
        },
        Case {
            what: "template name without a Template manifest",
            plan: plan(vec![("k3s", vec![create("pve2", Some("{ template: alpine }"), &[])])]),
            cluster: same,
            want: &["k3s: template alpine to clone from is not in the cluster"],
        },
        Case {
            what: "template name resolved to a vmid the cluster lacks",
            plan: plan(vec![("k3s", vec![create("pve2", Some("{ template: debian }"), &[])])]),
            cluster: same,
            want: &["k3s: template debian (9001) to clone from is not in the cluster"],
        },
        Case {
            what: "template name resolved to a template that exists",
            plan: plan(vec![("k3s", vec![create("pve2", Some("{ template: ubuntu }"), &[])])]),
            cluster: same,
            want: &[],
        },
        Case {
            what: "clone source is a plain VM",
            plan: plan(vec![("k3s", vec![create("pve2", Some("{ template: 120 }"), &[])])]),
            cluster: same,
            want: &["k3s: clone source 120 (legacy) is not a template"],
        },
        Case {
            what: "target node offline",
            plan: plan(vec![("k3s", vec![create("pve3", T9000, &[])]), ("b", vec![create("pve3", None, &[])])]),
            cluster: |f| f.nodes.get_mut("pve3").unwrap().online = false,
            want: &["node pve3 is offline (needed by b, k3s)"],
        },
        Case {
            what: "the template's node offline",
            plan: plan(vec![("k3s", vec![create("pve2", T9000, &[])])]),
            cluster: |f| f.nodes.get_mut("pve1").unwrap().online = false,
            want: &["node pve1 is offline (needed by k3s (template 9000))"],
        },
        Case {
            what: "starting a VM on an offline node",
            plan: plan(vec![("web", vec![Action::Start { vmid: 130, node: "pve1".into() }])]),
            cluster: |f| f.nodes.get_mut("pve1").unwrap().online = false,
            want: &["node pve1 is offline (needed by web)"],
        },
        Case {
            what: "a migration needs both nodes",
            plan: plan(vec![(
                "web",
                vec![
                    Action::Migrate { vmid: 130, from: "pve1".into(), to: "pve3".into() },
                    Action::Start { vmid: 130, node: "pve3".into() },
                ],
            )]),
            cluster: |f| f.nodes.get_mut("pve1").unwrap().online = false,
            want: &["node pve1 is offline (needed by web)"],
        },
        Case {
            what: "unknown node",
            plan: plan(vec![("k3s", vec![create("pve9", None, &[])])]),
            cluster: same,
            want: &["node pve9 is not in the cluster (needed by k3s)"],
        },
        Case {
            what: "new running VMs on one node add up",
            plan: plan(vec![
                ("a", vec![create("pve1", None, &[("memory", "4096")])]),
                ("b", vec![create("pve1", None, &[("memory", "4096")])]),
                ("c", vec![create("pve2", None, &[("memory", "4096")])]),
            ]),
            cluster: same,
            want: &["node pve1: not enough memory for a, b: needs 8 GiB, 6 GiB free of 8 GiB"],
        },
        Case {
            what: "a VM created stopped takes no memory",
            plan: plan(vec![("a", vec![stopped(create("pve1", None, &[("memory", "16384")]))])]),
            cluster: same,
            want: &[],
        },
        Case {
            what: "a clone without memory runs with the template's",
            plan: plan(vec![
                ("a", vec![create("pve1", T9000, &[])]),
                ("b", vec![create("pve1", T9000, &[])]),
                ("c", vec![create("pve1", T9000, &[])]),
                ("d", vec![create("pve1", T9000, &[])]),
            ]),
            cluster: same,
            want: &["node pve1: not enough memory for a, b, c, d: needs 8 GiB, 6 GiB free of 8 GiB"],
        },
        Case {
            what: "a start adds the VM's memory",
            plan: plan(vec![
                ("web", vec![Action::Start { vmid: 130, node: "pve1".into() }]),
                ("k3s", vec![create("pve1", None, &[("memory", "3072")])]),
            ]),
            cluster: same,
            want: &["node pve1: not enough memory for k3s, web: needs 7 GiB, 6 GiB free of 8 GiB"],
        },
        Case {
            what: "memory growth of a running VM counts",
            plan: plan(vec![("legacy", vec![configure(120, "pve2", &[("memory", Some("1024"), "8192")])])]),
            cluster: same,
            want: &["node pve2: not enough memory for legacy: needs 7 GiB, 6 GiB free of 8 GiB"],
        },
        Case {
            what: "memory growth of a stopped VM does not",
            plan: plan(vec![("web", vec![configure(130, "pve1", &[("memory", Some("4096"), "16384")])])]),
            cluster: same,
            want: &[],
        },
        Case {
            what: "memory growth of a VM the plan starts counts with its memory",
            plan: plan(vec![(
                "web",
                vec![
                    configure(130, "pve1", &[("memory", Some("4096"), "7168")]),
                    Action::Start { vmid: 130, node: "pve1".into() },
                ],
            )]),
            cluster: same,
            want: &["node pve1: not enough memory for web: needs 7 GiB, 6 GiB free of 8 GiB"],
        },
        Case {
            // A clone of an 8 GiB template the last pass made and died before configuring
            // (a crash): its start counts the memory the plan gives it first.
            what: "a VM the plan shrinks and starts counts its new memory",
            plan: plan(vec![(
                "web",
                vec![
                    configure(130, "pve1", &[("memory", Some("8192"), "512")]),
                    Action::Start { vmid: 130, node: "pve1".into() },
                ],
            )]),
            cluster: |f| f.guests.get_mut(&130).unwrap().maxmem = 8 * GIB,
            want: &[],
        },
        Case {
            what: "fractional amounts",
            plan: plan(vec![("a", vec![create("pve1", None, &[("memory", "6656")])])]),
            cluster: same,
            want: &["node pve1: not enough memory for a: needs 6.5 GiB, 6 GiB free of 8 GiB"],
        },
        Case {
            what: "more vCPUs than the node has threads",
            plan: plan(vec![
                ("big", vec![create("pve1", None, &[("cores", "8")])]),
                ("wide", vec![create("pve1", None, &[("cores", "2"), ("sockets", "2")])]),
                ("wider", vec![create("pve2", None, &[("cores", "3"), ("sockets", "2")])]),
            ]),
            cluster: same,
            want: &[
                "big: 8 vCPUs, but node pve1 has 4 CPUs (PVE does not start a VM with more)",
                "wider: 6 vCPUs, but node pve2 has 4 CPUs (PVE does not start a VM with more)",
            ],
        },
        Case {
            what: "vCPUs of a configure",
            plan: plan(vec![("legacy", vec![configure(120, "pve2", &[("cores", Some("2"), "16")])])]),
            cluster: same,
            want: &["legacy: 16 vCPUs, but node pve2 has 4 CPUs (PVE does not start a VM with more)"],
        },
        Case {
            what: "vCPUs are overcommitted across VMs",
            plan: plan(vec![
                ("a", vec![create("pve1", None, &[("cores", "4")])]),
                ("b", vec![create("pve1", None, &[("cores", "4")])]),
            ]),
            cluster: same,
            want: &[],
        },
        Case {
            what: "a local storage per node",
            plan: plan(vec![
                ("a", vec![create("pve1", None, &[("scsi0", "local-lvm:60")])]),
                ("b", vec![create("pve1", None, &[("scsi0", "local-lvm:60")])]),
                ("c", vec![create("pve2", None, &[("scsi0", "local-lvm:60")])]),
            ]),
            cluster: same,
            want: &["storage local-lvm on node pve1: not enough space for a, b: needs 120 GiB, 100 GiB free"],
        },
        Case {
            what: "a shared storage is one pool",
            plan: plan(vec![
                ("a", vec![create("pve1", None, &[("scsi0", "rbd:60")])]),
                ("c", vec![create("pve2", None, &[("scsi0", "rbd:60")])]),
            ]),
            cluster: same,
            want: &["storage rbd (shared): not enough space for a, c: needs 120 GiB, 100 GiB free"],
        },
        Case {
            what: "a linked clone counts the declared size, on the clone's storage",
            plan: plan(vec![(
                "a",
                vec![create("pve1", Some("{ template: 9000, full: false, storage: local-lvm }"), &[("scsi0", "rbd:120")])],
            )]),
            cluster: same,
            want: &["storage local-lvm on node pve1: not enough space for a: needs 120 GiB, 100 GiB free"],
        },
        Case {
            what: "used space counts",
            plan: plan(vec![("a", vec![create("pve1", None, &[("scsi0", "local-lvm:30")])])]),
            cluster: |f| {
                f.storages
                    .get_mut(&("pve1".to_string(), "local-lvm".to_string()))
                    .unwrap()
                    .used = 80 * GIB
            },
            want: &["storage local-lvm on node pve1: not enough space for a: needs 30 GiB, 20 GiB free"],
        },
        Case {
            what: "a storage the node does not have, or cannot activate",
            plan: plan(vec![
                ("a", vec![create("pve1", None, &[("scsi0", "nfs:10")])]),
                ("b", vec![create("pve2", None, &[("scsi0", "rbd:10")])]),
            ]),
            cluster: |f| {
                f.storages
                    .get_mut(&("pve2".to_string(), "rbd".to_string()))
                    .unwrap()
                    .available = false
            },
            want: &[
                "storage nfs is not available on node pve1 (needed by a)",
                "storage rbd is not available on node pve2 (needed by b)",
            ],
        },
        Case {
            what: "an IP configured on another VM",
            plan: plan(vec![("k3s", vec![create("pve1", None, &[("ipconfig0", "ip=192.0.2.50/24,gw=192.0.2.1")])])]),
            cluster: same,
            want: &["k3s: IP 192.0.2.50 (ipconfig0) is already configured on VM 120 (legacy, ipconfig0)"],
        },
        Case {
            what: "an IP configured on a container",
            plan: plan(vec![("k3s", vec![create("pve1", None, &[("ipconfig1", "ip=192.0.2.53/24")])])]),
            cluster: same,
            want: &["k3s: IP 192.0.2.53 (ipconfig1) is already configured on container 200 (dns, net0)"],
        },
        Case {
            what: "a template's IP is no conflict",
            plan: plan(vec![("k3s", vec![create("pve1", None, &[("ipconfig0", "ip=192.0.2.9/24")])])]),
            cluster: same,
            want: &[],
        },
        Case {
            what: "two planned VMs with one IP",
            plan: plan(vec![
                ("a", vec![create("pve1", None, &[("ipconfig0", "ip=192.0.2.10/24")])]),
                ("b", vec![create("pve2", None, &[("ipconfig0", "ip=192.0.2.10/24,ip6=2001:db8::1/64")])]),
            ]),
            cluster: same,
            want: &["IP 192.0.2.10 is declared for more than one VM: a, b"],
        },
        Case {
            what: "an IP change to an address in use",
            plan: plan(vec![("web", vec![configure(130, "pve1", &[("ipconfig0", Some("ip=192.0.2.60/24"), "ip=192.0.2.50/24")])])]),
            cluster: same,
            want: &["web: IP 192.0.2.50 (ipconfig0) is already configured on VM 120 (legacy, ipconfig0)"],
        },
        Case {
            what: "an address the plan moves away is free",
            plan: plan(vec![
                ("legacy", vec![configure(120, "pve2", &[("ipconfig0", Some("ip=192.0.2.50/24"), "ip=192.0.2.51/24")])]),
                ("k3s", vec![create("pve1", None, &[("ipconfig0", "ip=192.0.2.50/24")])]),
            ]),
            cluster: same,
            want: &[],
        },
        Case {
            what: "a gateway change keeps the address taken",
            plan: plan(vec![
                ("legacy", vec![configure(120, "pve2", &[("ipconfig0", Some("ip=192.0.2.50/24"), "ip=192.0.2.50/24,gw=192.0.2.1")])]),
                ("k3s", vec![create("pve1", None, &[("ipconfig0", "ip=192.0.2.50/24")])]),
            ]),
            cluster: same,
            want: &["k3s: IP 192.0.2.50 (ipconfig0) is already configured on VM 120 (legacy, ipconfig0)"],
        },
        Case {
            what: "a VM's own address is no conflict",
            plan: plan(vec![("web", vec![configure(130, "pve1", &[("ipconfig1", None, "ip=192.0.2.60/24")])])]),
            cluster: same,
            want: &[],
        },
        Case {
            what: "every problem at once, in a stable order",
            plan: plan(vec![
                ("a", vec![create("pve1", Some("{ template: 9100 }"), &[("memory", "8192"), ("ipconfig0", "ip=192.0.2.50/24")])]),
                ("b", vec![create("pve3", None, &[("scsi0", "rbd:10")])]),
            ]),
            cluster: |f| f.nodes.get_mut("pve3").unwrap().online = false,
            want: &[
                "a: template 9100 to clone from is not in the cluster",
                "node pve3 is offline (needed by b)",
                "node pve1: not enough memory for a: needs 8 GiB, 6 GiB free of 8 GiB",
                "a: IP 192.0.2.50 (ipconfig0) is already configured on VM 120 (legacy, ipconfig0)",
            ],
        },
    ];
    for case in cases {
        let mut facts = cluster();
        (case.cluster)(&mut facts);
        let got: Vec<String> = match check(&case.plan, &facts) {
            Ok(()) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(got, case.want, "case: {}", case.what);
    }
}

#[test]
fn an_empty_plan_passes_without_facts() {
    assert_eq!(check(&Plan::default(), &ClusterFacts::default()), Ok(()));
}

#[test]
fn only_new_addresses_make_configs_worth_reading() {
    let with = |a: Action| plan(vec![("x", vec![a])]);
    assert!(declares_new_ips(&with(create(
        "pve1",
        None,
        &[("ipconfig0", "ip=192.0.2.7/24")]
    ))));
    assert!(!declares_new_ips(&with(create(
        "pve1",
        None,
        &[("ipconfig0", "ip=dhcp")]
    ))));
    assert!(!declares_new_ips(&with(create(
        "pve1",
        None,
        &[("memory", "1024")]
    ))));
    assert!(declares_new_ips(&with(configure(
        1,
        "pve1",
        &[("ipconfig0", Some("ip=192.0.2.7/24"), "ip=192.0.2.8/24")]
    ))));
    assert!(!declares_new_ips(&with(configure(
        1,
        "pve1",
        &[(
            "ipconfig0",
            Some("ip=192.0.2.7/24"),
            "ip=192.0.2.7/24,gw=192.0.2.1"
        )]
    ))));
    assert!(!declares_new_ips(&Plan::default()));
}
