//! Drift without noise, table-driven: the perpetual diffs users of the Terraform
//! providers for Proxmox (bpg/proxmox, Telmate/proxmox) and Ansible's proxmox_kvm report,
//! each as PVE's rewrite of a converged VM that must not show as drift, beside real
//! changes that must.

use super::actual::ActualVm;
use super::marker::{self, Marker};
use super::pveconfig::desired_config;
use super::vm::{plan, Finding, Policy};
use pve_gitops_schema::{load, DesiredState, Repository};
use std::collections::{BTreeMap, BTreeSet};

const VM: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9003], bridges: [vmbr2] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: worker01 }
spec:
  vmid: 3001
  node: pve01
  clone: { template: 9003 }
  cpu: { cores: 4 }
  memory: 2G
  agent: true
  startOnBoot: true
  description: Nomad worker.
  tags: [nomad, worker]
  disks: [ { slot: scsi0, storage: rbd, size: 20G, iothread: true, discard: true } ]
  network: [ { bridge: vmbr2, vlan: 20 } ]
  cloudInit:
    storage: cephfs
    drive: ide0
    sshKeys: [ 'ssh-ed25519 AAAAC3Nza admin@example' ]
    ipConfig: [ { ipv4: 192.168.1.81/24, gateway: 192.168.1.1 } ]
    dns: { servers: [192.168.1.1, 192.168.1.2] }
";

fn desired() -> DesiredState {
    let mut repo = Repository::new();
    repo.add("m.yaml", VM);
    load(&repo).unwrap_or_else(|e| panic!("{e}"))
}

/// The VM as PVE shows it once converged, with the record the converging pass wrote.
fn converged(d: &DesiredState) -> ActualVm {
    let vm = &d.vms[0];
    let record = Marker {
        applied: Some(marker::fingerprint(vm, &desired_config(vm, |_| None))),
        ..Marker::default()
    };
    let config: BTreeMap<String, String> = [
        ("name", "worker01"),
        ("cores", "4"),
        ("memory", "2048"),
        ("agent", "1"),
        ("onboot", "1"),
        ("tags", "nomad;pve-gitops;worker"),
        ("scsi0", "rbd:vm-3001-disk-0,discard=on,iothread=1,size=20G"),
        ("net0", "virtio=BC:24:11:5E:7A:01,bridge=vmbr2,tag=20"),
        ("ide0", "cephfs:3001/vm-3001-cloudinit.qcow2,media=cdrom"),
        ("sshkeys", "ssh-ed25519%20AAAAC3Nza%20admin%40example"),
        ("ipconfig0", "ip=192.168.1.81/24,gw=192.168.1.1"),
        ("nameserver", "192.168.1.1 192.168.1.2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "description".to_string(),
        marker::compose("Nomad worker.", &record),
    )])
    .collect();
    ActualVm {
        vmid: 3001,
        name: "worker01".into(),
        node: "pve01".into(),
        running: true,
        template: false,
        tags: BTreeSet::from(["pve-gitops".to_string()]),
        config,
        pending: BTreeMap::new(),
        digest: None,
    }
}

/// Config keys PVE shows differently: a value, or `None` for a key that is gone.
type Edits<'a> = &'a [(&'a str, Option<&'a str>)];

/// The drifted fields a plan reports for the converged VM with `changes` applied.
fn drifted(changes: Edits<'_>) -> Vec<String> {
    let d = desired();
    let mut a = converged(&d);
    for (k, v) in changes {
        match v {
            Some(v) => a.config.insert(k.to_string(), v.to_string()),
            None => a.config.remove(*k),
        };
    }
    let p = plan(&d, &[a], &Policy::default());
    assert!(p.is_empty(), "report mode writes nothing");
    p.findings
        .iter()
        .map(|f| match f {
            Finding::Drift(d) => d.field.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn pve_rewrites_are_not_drift() {
    // (where users met it, what PVE shows)
    let noise: &[(&str, Edits<'_>)] = &[
        ("converged as is", &[]),
        // Telmate#612, #741: the MAC PVE generated, in any case, options reordered.
        (
            "generated MAC",
            &[("net0", Some("virtio=bc:24:11:00:00:99,tag=20,bridge=vmbr2"))],
        ),
        // bpg#322, #1851: tags reordered, other separators, other case.
        ("tag order", &[("tags", Some("worker,Nomad;PVE-GITOPS"))]),
        // bpg#1443: a key with the heredoc's trailing newline; Ansible
        // community.proxmox#200: sshkeys URL-encoded, other escapes.
        (
            "sshkeys encoding",
            &[(
                "sshkeys",
                Some("ssh-ed25519%20AAAAC3Nza%20admin@example%0A"),
            )],
        ),
        // community.proxmox#200: ipconfig spacing and order.
        (
            "ipconfig spacing",
            &[("ipconfig0", Some("gw=192.168.1.1, ip=192.168.1.81/24"))],
        ),
        // Telmate#718: sizes in other units (20480M is 20G).
        (
            "disk size unit",
            &[(
                "scsi0",
                Some("rbd:vm-3001-disk-0,iothread=on,discard=on,size=20480M"),
            )],
        ),
        // Boolean spellings; the agent option's long form.
        (
            "booleans",
            &[
                ("onboot", Some("on")),
                ("agent", Some("enabled=1,fstrim_cloned_disks=1")),
            ],
        ),
        // bpg#1083: the cloud-init drive's volume, as PVE names it.
        (
            "cloud-init drive",
            &[(
                "ide0",
                Some("cephfs:3001/vm-3001-cloudinit.qcow2,media=cdrom,size=4M"),
            )],
        ),
        // Telmate#327, #1530 and PVE's own defaults: keys the manifests do not set.
        (
            "PVE-filled defaults",
            &[
                ("balloon", Some("0")),
                ("efidisk0", Some("rbd:vm-3001-disk-1,efitype=4m,size=528K")),
                ("scsihw", Some("virtio-scsi-single")),
                ("ostype", Some("l26")),
                ("cpu", Some("x86-64-v2-AES")),
                ("smbios1", Some("uuid=6f1c2a7e-0000-4000-8000-000000000001")),
                ("vmgenid", Some("0b6e5c2a-0000-4000-8000-000000000002")),
                ("meta", Some("creation-qemu=9.0.2,ctime=1764050000")),
                ("boot", Some("order=scsi0;ide0;net0")),
            ],
        ),
        // The description as PVE returns it: a trailing newline.
        ("description newline", &[]),
    ];
    for (what, changes) in noise {
        assert_eq!(drifted(changes), Vec::<String>::new(), "{what}");
    }
    let d = desired();
    let mut a = converged(&d);
    let text = a.config["description"].clone();
    a.config.insert("description".into(), format!("{text}\n"));
    assert!(plan(&d, &[a], &Policy::default()).findings.is_empty());
}

#[test]
fn real_changes_are_drift() {
    let cases: &[(Edits<'_>, &[&str])] = &[
        (&[("memory", Some("4096"))], &["memory"]),
        (&[("tags", Some("nomad;pve-gitops"))], &["tags"]),
        (
            &[("net0", Some("virtio=BC:24:11:5E:7A:01,bridge=vmbr2,tag=30"))],
            &["net0"],
        ),
        (&[("onboot", Some("0"))], &["onboot"]),
        (&[("ipconfig0", Some("ip=dhcp"))], &["ipconfig0"]),
        (&[("sshkeys", None)], &["sshkeys"]),
        (
            &[(
                "scsi0",
                Some("rbd:vm-3001-disk-0,discard=ignore,iothread=1,size=20G"),
            )],
            &["scsi0"],
        ),
        (&[("nameserver", Some("1.1.1.1"))], &["nameserver"]),
        (
            &[(
                "description",
                Some("Edited in the GUI.\n\npve-gitops: applied=x"),
            )],
            // Another record: a manifest change as far as the plan knows, so not drift.
            &[],
        ),
    ];
    for (changes, want) in cases {
        let d = desired();
        let mut a = converged(&d);
        for (k, v) in *changes {
            match v {
                Some(v) => a.config.insert(k.to_string(), v.to_string()),
                None => a.config.remove(*k),
            };
        }
        let p = plan(&d, &[a], &Policy::default());
        let got: Vec<&str> = p
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::Drift(d) => Some(d.field.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(got, *want, "{changes:?}");
    }
    // The description edited, the record kept: drift in the operator's text.
    let d = desired();
    let mut a = converged(&d);
    let text = a.config["description"].replace("Nomad worker.", "Edited in the GUI.");
    a.config.insert("description".into(), text);
    assert_eq!(
        plan(&d, &[a], &Policy::default()).findings,
        [Finding::Drift(crate::plan::Drift {
            name: "worker01".into(),
            vmid: Some(3001),
            field: "description".into(),
            desired: "Nomad worker.".into(),
            actual: "Edited in the GUI.".into(),
            healed: false,
        })]
    );
}
