//! Table-driven: a desired VM, PVE's config as `qm config` shows it after PVE rewrote what
//! it was sent, and the changes the plan must (or must not) see.

use super::compare::diff;
use super::pveconfig::{desired_config, DesiredConfig};
use pve_gitops_schema::{load, Repository};
use std::collections::BTreeMap;

const VM: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9003], bridges: [vmbr2] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: worker01, labels: { role: worker } }
spec:
  vmid: 3001
  node: pve01
  clone: { template: 9003 }
  cpu: { cores: 12 }
  memory: 64Gi
  agent: true
  tagsFromLabels: [role]
  disks: [ { slot: scsi0, storage: rbd, size: 30G, iothread: true, discard: true, ssd: true } ]
  network: [ { bridge: vmbr2, vlan: 20, firewall: true } ]
  cloudInit:
    storage: cephfs
    drive: ide0
    user: admin
    sshKeys: [ 'ssh-ed25519 AAAAC3Nza admin@example' ]
    ipConfig: [ { ipv4: 192.168.1.81/24, gateway: 192.168.1.1 } ]
    dns: { servers: [192.168.1.1], searchDomain: example.local }
";

fn desired(text: &str) -> DesiredConfig {
    let mut repo = Repository::new();
    repo.add("m.yaml", text);
    let d = load(&repo).unwrap_or_else(|e| panic!("{e}"));
    desired_config(&d.vms[0], |_| None)
}

/// What PVE 9 reports for that VM once cloned and configured: generated MAC, disk volume
/// names, sizes, `media=cdrom`, URL-encoded sshkeys, options in its own order, keys the
/// agent never sets.
fn converged() -> BTreeMap<String, String> {
    [
        ("name", "worker01"),
        ("cores", "12"),
        ("memory", "65536"),
        ("agent", "enabled=1,fstrim_cloned_disks=0"),
        ("tags", "role-worker;pve-gitops"),
        (
            "scsi0",
            "rbd:vm-3001-disk-0,discard=on,iothread=1,size=30G,ssd=1",
        ),
        (
            "net0",
            "virtio=BC:24:11:5E:7A:01,bridge=vmbr2,firewall=1,tag=20",
        ),
        ("ide0", "cephfs:3001/vm-3001-cloudinit.qcow2,media=cdrom"),
        ("ciuser", "admin"),
        ("sshkeys", "ssh-ed25519%20AAAAC3Nza%20admin%40example%0A"),
        ("ipconfig0", "gw=192.168.1.1,ip=192.168.1.81/24"),
        ("nameserver", "192.168.1.1"),
        ("searchdomain", "example.local"),
        ("smbios1", "uuid=6f1c2a7e-0000-4000-8000-000000000001"),
        ("vmgenid", "0b6e5c2a-0000-4000-8000-000000000002"),
        ("meta", "creation-qemu=9.0.2,ctime=1764050000"),
        ("boot", "order=scsi0;ide2;net0"),
        ("digest", "4f2a0c9d1e"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn changed_keys(desired: &DesiredConfig, actual: &BTreeMap<String, String>) -> Vec<String> {
    diff(desired, actual).into_iter().map(|c| c.key).collect()
}

#[test]
fn a_converged_vm_has_no_changes() {
    assert_eq!(
        changed_keys(&desired(VM), &converged()),
        Vec::<String>::new()
    );
}

#[test]
fn each_real_difference_is_one_change_and_pve_noise_is_none() {
    // (what PVE shows for one key, the keys the plan must change)
    let cases: &[(&str, &str, &[&str])] = &[
        ("memory", "32768", &["memory"]),
        ("cores", "4", &["cores"]),
        // Another generated MAC, options reordered, lowercase MAC: the same NIC.
        (
            "net0",
            "virtio=bc:24:11:00:00:02,tag=20,firewall=1,bridge=vmbr2",
            &[],
        ),
        (
            "net0",
            "virtio=BC:24:11:5E:7A:01,bridge=vmbr2,firewall=1,tag=30",
            &["net0"],
        ),
        (
            "net0",
            "e1000=BC:24:11:5E:7A:01,bridge=vmbr2,firewall=1,tag=20",
            &["net0"],
        ),
        // Tags in another order or with other separators are the same tags.
        ("tags", "pve-gitops,role-worker", &[]),
        ("tags", "pve-gitops", &["tags"]),
        // Booleans spelled differently; a disk option really off.
        (
            "scsi0",
            "rbd:vm-3001-disk-0,discard=on,iothread=true,size=30G,ssd=on",
            &[],
        ),
        (
            "scsi0",
            "rbd:vm-3001-disk-0,discard=on,iothread=0,size=30G,ssd=1",
            &["scsi0"],
        ),
        (
            "scsi0",
            "local-lvm:vm-3001-disk-0,discard=on,iothread=1,size=30G,ssd=1",
            &["scsi0"],
        ),
        ("agent", "1", &[]),
        ("agent", "0", &["agent"]),
        (
            "ipconfig0",
            "ip=192.168.1.82/24,gw=192.168.1.1",
            &["ipconfig0"],
        ),
        (
            "sshkeys",
            "ssh-ed25519%20AAAAC3Nza%20other%40example",
            &["sshkeys"],
        ),
        ("ide0", "local-lvm:vm-3001-cloudinit,media=cdrom", &["ide0"]),
    ];
    for (key, value, want) in cases {
        let mut actual = converged();
        actual.insert(key.to_string(), value.to_string());
        assert_eq!(changed_keys(&desired(VM), &actual), *want, "{key}: {value}");
    }
}

#[test]
fn missing_keys_are_changes_and_unset_keys_are_not_compared() {
    let mut actual = converged();
    actual.remove("ciuser");
    actual.remove("smbios1");
    let changes = diff(&desired(VM), &actual);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            changes[0].key.as_str(),
            changes[0].from.as_deref(),
            changes[0].to.as_str()
        ),
        ("ciuser", None, "admin")
    );
}

#[test]
fn pve_spelling_of_what_is_sent() {
    let d = desired(VM);
    let text = |k: &str| d[k].text.clone();
    assert_eq!(text("scsi0"), "rbd:30,iothread=1,discard=on,ssd=1");
    assert_eq!(text("net0"), "virtio,bridge=vmbr2,tag=20,firewall=1");
    assert_eq!(text("ipconfig0"), "ip=192.168.1.81/24,gw=192.168.1.1");
    assert_eq!(text("ide0"), "cephfs:cloudinit");
    assert_eq!(text("tags"), "pve-gitops;role-worker");
    assert_eq!(text("memory"), "65536");
}

#[test]
fn a_hidden_password_is_set_once_and_never_flaps() {
    let text = VM.replace(
        "    user: admin\n",
        "    user: admin\n    password: { file: pw.age }\n",
    );
    let mut repo = Repository::new();
    repo.add("m.yaml", text);
    repo.add(
        "pw.age",
        "-----BEGIN AGE ENCRYPTED FILE-----\nx\n-----END AGE ENCRYPTED FILE-----\n",
    );
    let d = load(&repo).unwrap_or_else(|e| panic!("{e}"));
    let desired = desired_config(&d.vms[0], |_| None);
    let mut actual = converged();
    assert_eq!(changed_keys(&desired, &actual), ["cipassword"]);
    actual.insert("cipassword".into(), "**********".into());
    assert!(changed_keys(&desired, &actual).is_empty());
}

#[test]
fn a_fixed_mac_is_compared() {
    let text = VM.replace(
        "{ bridge: vmbr2, vlan: 20, firewall: true }",
        "{ bridge: vmbr2, vlan: 20, firewall: true, mac: 'bc:24:11:5e:7a:01' }",
    );
    assert!(changed_keys(&desired(&text), &converged()).is_empty());
    let mut actual = converged();
    actual.insert(
        "net0".into(),
        "virtio=BC:24:11:00:00:09,bridge=vmbr2,firewall=1,tag=20".into(),
    );
    assert_eq!(changed_keys(&desired(&text), &actual), ["net0"]);
}

#[test]
fn changes_to_existing_disks_and_nics_keep_the_volume_and_the_mac() {
    let mut actual = converged();
    actual.insert(
        "scsi0".into(),
        "rbd:vm-3001-disk-0,discard=on,iothread=0,size=30G,ssd=1".into(),
    );
    actual.insert(
        "net0".into(),
        "e1000=BC:24:11:5E:7A:01,bridge=vmbr2,firewall=1,tag=30".into(),
    );
    let changes = diff(&desired(VM), &actual);
    let to: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.key.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(
        to,
        [
            (
                "net0",
                "virtio=BC:24:11:5E:7A:01,bridge=vmbr2,firewall=1,tag=20"
            ),
            (
                "scsi0",
                "rbd:vm-3001-disk-0,discard=on,iothread=1,size=30G,ssd=1"
            ),
        ]
    );
}
