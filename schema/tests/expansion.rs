//! Expansion end to end through `load`: sets become concrete VMs, blueprints become many
//! clusters from one definition.

use pve_gitops_schema::{load, DesiredState, Repository};

const HEAD: &str = "apiVersion: pve-gitops/v1alpha1\n";

fn external() -> String {
    format!("{HEAD}kind: External\nmetadata: {{ name: x }}\nspec: {{ templates: [9003], bridges: [vmbr2, vmbr0] }}\n---\n")
}

fn load_one(text: &str) -> DesiredState {
    let mut repo = Repository::new();
    repo.add("m.yaml", format!("{}{text}", external()));
    match load(&repo) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

fn workers(extra: &str) -> String {
    format!(
        "{HEAD}kind: VirtualMachineSet
metadata: {{ name: worker, labels: {{ role: worker }} }}
spec:
  replicas: 5
  namePattern: \"worker{{{{ number | pad(2) }}}}\"
  vmidStart: 3001
  nodes: [pve01, pve02, pve03]
{extra}  template:
    clone: {{ template: 9003 }}
    memory: 64Gi
    tagsFromLabels: [role]
    network: [ {{ bridge: vmbr2 }} ]
    cloudInit:
      ipConfig:
        - ipv4: {{ cidr: 192.168.1.0/24, offset: 81 }}
          gateway: 192.168.1.1
          ipv6: {{ cidr: 'fd00:101::/64', offset: 0x51 }}
"
    )
}

fn summary(d: &DesiredState) -> Vec<String> {
    d.vms
        .iter()
        .map(|v| {
            let ip = v.spec.cloud_init.as_ref().unwrap().ip_config[0].clone();
            format!(
                "{} {} {} {} {}",
                v.name,
                v.vmid.unwrap(),
                v.node,
                ip.ipv4.unwrap(),
                ip.ipv6.unwrap().address().unwrap()
            )
        })
        .collect()
}

#[test]
fn set_members_get_names_vmids_round_robin_nodes_and_addresses() {
    let d = load_one(&workers(""));
    assert_eq!(
        summary(&d),
        [
            "worker01 3001 pve01 192.168.1.81/24 fd00:101::51/64",
            "worker02 3002 pve02 192.168.1.82/24 fd00:101::52/64",
            "worker03 3003 pve03 192.168.1.83/24 fd00:101::53/64",
            "worker04 3004 pve01 192.168.1.84/24 fd00:101::54/64",
            "worker05 3005 pve02 192.168.1.85/24 fd00:101::55/64",
        ]
    );
    let tags: Vec<&str> = d.vms[0].tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["pve-gitops", "role-worker"]);
}

#[test]
fn excluded_members_leave_the_others_untouched() {
    let d = load_one(&workers("  exclude: [worker02]\n"));
    let names: Vec<&str> = d.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["worker01", "worker03", "worker04", "worker05"]);
    assert_eq!(
        summary(&d)[1],
        "worker03 3003 pve03 192.168.1.83/24 fd00:101::53/64"
    );
}

#[test]
fn overrides_merge_over_the_template_for_one_member() {
    let d = load_one(&workers(
        "  overrides:\n    worker03: { node: pve01, memory: 128Gi, machine: q35, hostpci: [ { mapping: gpu, pcie: true } ], rebuild: '2026-11-25' }\n",
    ));
    let w3 = d.vm("worker03").unwrap();
    assert_eq!(w3.node.as_str(), "pve01");
    assert_eq!(w3.spec.memory.unwrap().size.mib(), 131072);
    assert_eq!(w3.spec.hostpci.len(), 1);
    assert_eq!(w3.spec.rebuild.as_deref(), Some("2026-11-25"));
    // Untouched fields come from the template; other members are unchanged.
    assert_eq!(w3.spec.network.len(), 1);
    let w2 = d.vm("worker02").unwrap();
    assert!(w2.spec.hostpci.is_empty());
    assert_eq!(w2.spec.memory.unwrap().size.mib(), 65536);
}

#[test]
fn scaling_is_a_one_line_change_that_keeps_existing_members() {
    let three = load_one(&workers("").replace("replicas: 5", "replicas: 3"));
    let five = load_one(&workers(""));
    assert_eq!(summary(&three)[..], summary(&five)[..3]);
}

#[test]
fn blueprint_instances_derive_everything_from_an_id() {
    let mut repo = Repository::new();
    repo.add(
        "common.yaml",
        format!(
            "{}{HEAD}kind: SdnZone\nmetadata: {{ name: mesh }}\nspec: {{ type: simple }}\n---\n{HEAD}kind: Blueprint\nmetadata: {{ name: cluster }}\nspec:\n  templateFile: bp/cluster.yaml.j2\n  parameters:\n    id: {{ type: integer, minimum: 101, maximum: 199 }}\n    name: {{ type: string }}\n    workers: {{ type: integer, default: 2 }}\n",
            external()
        ),
    );
    repo.add(
        "bp/cluster.yaml.j2",
        format!(
            "{HEAD}kind: SdnVnet\nmetadata: {{ name: vnet{{{{ id }}}} }}\nspec: {{ zone: mesh }}\n---\n{HEAD}kind: SdnSubnet\nmetadata: {{ name: {{{{ name }}}}-v4 }}\nspec: {{ vnet: vnet{{{{ id }}}}, cidr: 10.0.{{{{ id }}}}.0/24, gateway: 10.0.{{{{ id }}}}.1 }}\n---\n{HEAD}kind: VirtualMachineSet\nmetadata: {{ name: {{{{ name }}}}-wk }}\nspec:\n  replicas: {{{{ workers }}}}\n  vmidStart: {{{{ id * 100 + 21 }}}}\n  nodes: [pve01]\n  template:\n    network: [ {{ bridge: vmbr0, vlan: {{{{ id }}}} }}, {{ bridge: vnet{{{{ id }}}} }} ]\n    cloudInit:\n      ipConfig:\n        - {{}}\n        - ipv4: {{ cidr: 10.0.{{{{ id }}}}.0/24, offset: 21 }}\n          ipv6: {{ cidr: 'fd00:{{{{ id }}}}::/64', offset: 21 }}\n"
        ),
    );
    for (n, id) in [("sol", 101), ("luna", 102), ("terra", 103)] {
        repo.add(
            format!("clusters/{n}.yaml"),
            format!("{HEAD}kind: BlueprintInstance\nmetadata: {{ name: cluster-{id} }}\nspec: {{ blueprint: cluster, values: {{ id: {id}, name: {n} }} }}\n"),
        );
    }
    let d = load(&repo).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<String> = d
        .vms
        .iter()
        .map(|v| {
            let ip = &v.spec.cloud_init.as_ref().unwrap().ip_config[1];
            format!(
                "{} {} vlan{} {} {}",
                v.name,
                v.vmid.unwrap(),
                v.spec.network[0].vlan.unwrap().get(),
                ip.ipv4.unwrap(),
                ip.ipv6.unwrap().address().unwrap()
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "luna-wk-1 10221 vlan102 10.0.102.21/24 fd00:102::15/64",
            "luna-wk-2 10222 vlan102 10.0.102.22/24 fd00:102::16/64",
            "sol-wk-1 10121 vlan101 10.0.101.21/24 fd00:101::15/64",
            "sol-wk-2 10122 vlan101 10.0.101.22/24 fd00:101::16/64",
            "terra-wk-1 10321 vlan103 10.0.103.21/24 fd00:103::15/64",
            "terra-wk-2 10322 vlan103 10.0.103.22/24 fd00:103::16/64",
        ]
    );
    let vnets: Vec<&str> = d.sdn_vnets.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(vnets, ["vnet101", "vnet102", "vnet103"]);

    // Two instances with the same id collide, and the error names the blueprint's line.
    repo.add(
        "clusters/copy.yaml",
        format!("{HEAD}kind: BlueprintInstance\nmetadata: {{ name: copy }}\nspec: {{ blueprint: cluster, values: {{ id: 101, name: sol2 }} }}\n"),
    );
    let err = load(&repo).unwrap_err().to_string();
    // Documents are checked in file order (`copy` before `sol`), guests by name.
    assert!(
        err.contains("bp/cluster.yaml.j2:3:19: duplicate-name: SdnVnet/vnet101 is declared twice (in BlueprintInstance/cluster-101)\n  hint: first declared at bp/cluster.yaml.j2:3:19 (BlueprintInstance/copy)"),
        "{err}"
    );
    assert!(
        err.contains("duplicate-vmid: vmid 10121 of `sol2-wk-1` is already used by `sol-wk-1`"),
        "{err}"
    );
}
