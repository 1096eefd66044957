//! Sizes PVE cannot satisfy and settings that contradict each other, per resource.

use super::Context;
use crate::diag::{Diagnostic, Diagnostics, ErrorKind, Location};
use crate::manifest::sdn::ZoneType;
use crate::manifest::storage::DownloadContent;
use crate::manifest::vm::{is_field_path, MAX_REBUILD_TOKEN};
use crate::manifest::Spec;
use std::collections::BTreeMap;

/// PVE's smallest allowed guest memory, in MiB.
const MIN_MEMORY_MIB: u64 = 16;
const MAX_CORES: u32 = 1024;
const MAX_SOCKETS: u32 = 4;
/// `qm` keys the schema manages; setting them through `extraConfig` would fight the schema.
const MANAGED_KEYS: &[(&str, &str)] = &[
    ("name", "metadata.name"),
    ("vmid", "vmid"),
    ("memory", "memory"),
    ("balloon", "memory.balloon"),
    ("cores", "cpu.cores"),
    ("sockets", "cpu.sockets"),
    ("cpu", "cpu.type"),
    ("numa", "cpu.numa"),
    ("tags", "tags"),
    ("onboot", "startOnBoot"),
    ("agent", "agent"),
    ("bios", "bios"),
    ("machine", "machine"),
    ("protection", "protection"),
    ("description", "description"),
    ("cdrom", "cdrom"),
    ("ciuser", "cloudInit.user"),
    ("cipassword", "cloudInit.password"),
    ("sshkeys", "cloudInit.sshKeys"),
    ("cicustom", "cloudInit.userData"),
    ("ciupgrade", "cloudInit.upgrade"),
    ("nameserver", "cloudInit.dns.servers"),
    ("searchdomain", "cloudInit.dns.searchDomain"),
];
const MANAGED_PREFIXES: &[(&str, &str)] = &[
    ("net", "network"),
    ("ipconfig", "cloudInit.ipConfig"),
    ("hostpci", "hostpci"),
    ("scsi", "disks"),
    ("virtio", "disks"),
    ("sata", "disks"),
    ("ide", "disks"),
];

pub fn check(ctx: &Context<'_>, diags: &mut Diagnostics) {
    vms(ctx, diags);
    sets(ctx, diags);
    others(ctx, diags);
}

fn vms(ctx: &Context<'_>, diags: &mut Diagnostics) {
    for vm in &ctx.desired.vms {
        let at = |p: &str| vm.source.at(ctx.locator, p);
        let s = &vm.spec;
        let name = vm.name.as_str();
        if let Some(cpu) = &s.cpu {
            if cpu.cores == 0 || cpu.cores > MAX_CORES {
                diags.push(Diagnostic::new(
                    ErrorKind::ImpossibleSize,
                    at("cpu.cores"),
                    format!("{name}: cores must be 1..={MAX_CORES}, not {}", cpu.cores),
                ));
            }
            if let Some(so) = cpu.sockets.filter(|s| *s == 0 || *s > MAX_SOCKETS) {
                diags.push(Diagnostic::new(
                    ErrorKind::ImpossibleSize,
                    at("cpu.sockets"),
                    format!("{name}: sockets must be 1..={MAX_SOCKETS}, not {so}"),
                ));
            }
        }
        if let Some(m) = &s.memory {
            memory_check(name, m.size.mib(), at("memory"), diags);
            if let Some(b) = m.balloon {
                if b.mib() > m.size.mib() {
                    diags.push(Diagnostic::new(
                        ErrorKind::Conflict,
                        at("memory.balloon"),
                        format!("{name}: balloon minimum {b} exceeds memory {}", m.size),
                    ));
                }
            }
        }
        let mut slots: BTreeMap<&str, usize> = BTreeMap::new();
        let mut mounts: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, d) in s.disks.iter().enumerate() {
            if d.size.bytes() == 0 {
                diags.push(Diagnostic::new(
                    ErrorKind::ImpossibleSize,
                    at(&format!("disks[{i}].size")),
                    format!("{name}: a disk of size 0"),
                ));
            }
            if let Some(first) = slots.insert(d.slot.as_str(), i) {
                diags.push(Diagnostic::new(
                    ErrorKind::Conflict,
                    at(&format!("disks[{i}].slot")),
                    format!("{name}: slot {} is used by disks[{first}] too", d.slot),
                ));
            }
            if let Some(m) = &d.mount {
                if m.path != "swap" && !m.path.starts_with('/') {
                    diags.push(Diagnostic::new(
                        ErrorKind::InvalidValue,
                        at(&format!("disks[{i}].mount.path")),
                        format!(
                            "{name}: mount path `{}` is not absolute (or `swap`)",
                            m.path
                        ),
                    ));
                }
                if let Some(first) = mounts.insert(m.path.as_str(), i) {
                    diags.push(Diagnostic::new(
                        ErrorKind::Conflict,
                        at(&format!("disks[{i}].mount.path")),
                        format!("{name}: `{}` is also the mount of disks[{first}]", m.path),
                    ));
                }
            }
        }
        if let Some(drive) = s.cloud_init.as_ref().and_then(|c| c.drive.as_ref()) {
            if slots.contains_key(drive.as_str()) {
                diags.push(Diagnostic::new(
                    ErrorKind::Conflict,
                    at("cloudInit.drive"),
                    format!("{name}: the cloud-init drive and a disk both use {drive}"),
                ));
            }
        }
        if let Some(cd) = &s.cdrom {
            let slot = cd.slot();
            if slots.contains_key(slot) {
                diags.push(Diagnostic::new(
                    ErrorKind::Conflict,
                    at("cdrom"),
                    format!("{name}: the CD-ROM and a disk both use {slot}"),
                ));
            }
            // The cloud-init drive defaults to ide2 too.
            let ci_drive = s
                .cloud_init
                .as_ref()
                .map(|c| c.drive.as_ref().map_or("ide2", |d| d.as_str()));
            if ci_drive == Some(slot) {
                diags.push(
                    Diagnostic::new(
                        ErrorKind::Conflict,
                        at("cdrom"),
                        format!("{name}: the CD-ROM and the cloud-init drive both use {slot}"),
                    )
                    .with_hint("set `cloudInit.drive: ide0` (or another free slot)"),
                );
            }
        }
        if let Some(t) = &s.rebuild {
            if t.is_empty()
                || t.len() > MAX_REBUILD_TOKEN
                || t.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                diags.push(Diagnostic::new(
                    ErrorKind::InvalidValue,
                    at("rebuild"),
                    format!("{name}: a rebuild token is 1..={MAX_REBUILD_TOKEN} characters without spaces, e.g. a date `2025-06-01`"),
                ));
            }
        }
        if let Some(d) = &s.drift {
            for (i, f) in d.ignore_fields.iter().enumerate() {
                if !is_field_path(f) {
                    diags.push(
                        Diagnostic::new(
                            ErrorKind::InvalidValue,
                            at(&format!("drift.ignoreFields[{i}]")),
                            format!("{name}: `{f}` is not a config field path"),
                        )
                        .with_hint("a `qm` key or `key.option`: `description`, `net0.macaddr`, `powerState`"),
                    );
                }
            }
        }
        for (i, h) in s.hostpci.iter().enumerate() {
            if h.device.is_some() == h.mapping.is_some() {
                diags.push(Diagnostic::new(
                    ErrorKind::Conflict,
                    at(&format!("hostpci[{i}]")),
                    format!("{name}: give exactly one of `device` and `mapping`"),
                ));
            }
            if h.pcie == Some(true) && s.machine.as_deref().is_none_or(|m| !m.contains("q35")) {
                diags.push(
                    Diagnostic::new(
                        ErrorKind::Conflict,
                        at(&format!("hostpci[{i}].pcie")),
                        format!("{name}: PCIe passthrough needs a q35 machine"),
                    )
                    .with_hint("set `machine: q35`"),
                );
            }
        }
        for (k, o) in &s.outputs {
            if o.value.is_some() == o.guest_file.is_some() {
                diags.push(Diagnostic::new(
                    ErrorKind::Conflict,
                    at(&format!("outputs.{k}")),
                    format!("{name}: output `{k}` needs exactly one of `value` and `guestFile`"),
                ));
            }
        }
        if let Some(w) = &s.wait_for {
            let has_v4 = s
                .cloud_init
                .as_ref()
                .and_then(|c| c.ip_config.first())
                .and_then(|c| c.ipv4)
                .and_then(|a| a.address())
                .is_some();
            if w.tcp_port.is_some() && !has_v4 {
                diags.push(Diagnostic::new(
                    ErrorKind::Conflict,
                    at("waitFor.tcpPort"),
                    format!(
                        "{name}: a TCP health check needs a static IPv4 address on ipConfig[0]"
                    ),
                ));
            }
        }
        extra_config(
            name,
            s.extra_config.keys(),
            |k| at(&format!("extraConfig.{k}")),
            diags,
        );
    }
}

fn memory_check(name: &str, mib: u64, loc: Location, diags: &mut Diagnostics) {
    if mib < MIN_MEMORY_MIB {
        diags.push(Diagnostic::new(
            ErrorKind::ImpossibleSize,
            loc,
            format!("{name}: {mib} MiB of memory is below PVE's minimum of {MIN_MEMORY_MIB} MiB"),
        ));
    }
}

fn extra_config<'a>(
    name: &str,
    keys: impl Iterator<Item = &'a String>,
    at: impl Fn(&str) -> Location,
    diags: &mut Diagnostics,
) {
    for k in keys {
        let managed = MANAGED_KEYS
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, f)| *f)
            .or_else(|| {
                MANAGED_PREFIXES
                    .iter()
                    .find(|(p, _)| {
                        k.strip_prefix(p)
                            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                    })
                    .map(|(_, f)| *f)
            });
        if let Some(field) = managed {
            diags.push(
                Diagnostic::new(
                    ErrorKind::Conflict,
                    at(k),
                    format!(
                        "{name}: `{k}` is managed by the schema and cannot be set in extraConfig"
                    ),
                )
                .with_hint(format!("use `{field}`")),
            );
        }
    }
}

fn sets(ctx: &Context<'_>, diags: &mut Diagnostics) {
    for (doc, set) in docs_of!(ctx, VirtualMachineSet) {
        if set.template.vmid.is_some() && set.spec.replicas > 1 {
            diags.push(
                Diagnostic::new(
                    ErrorKind::Conflict,
                    ctx.locator.at(&doc.origin, "spec.template.vmid"),
                    "every member would get the same vmid",
                )
                .with_hint("use `spec.vmidStart`"),
            );
        }
        if set.spec.max_parallel == Some(0) {
            diags.push(Diagnostic::new(
                ErrorKind::InvalidValue,
                ctx.locator.at(&doc.origin, "spec.maxParallel"),
                "maxParallel must be at least 1",
            ));
        }
    }
}

fn others(ctx: &Context<'_>, diags: &mut Diagnostics) {
    for doc in ctx.docs {
        let at = |p: &str| ctx.locator.at(&doc.origin, p);
        let name = doc.name().as_str();
        match &doc.spec {
            Spec::Template(t) => {
                if t.disk_size.is_some_and(|s| s.bytes() == 0) {
                    diags.push(Diagnostic::new(
                        ErrorKind::ImpossibleSize,
                        at("spec.diskSize"),
                        format!("{name}: a disk of size 0"),
                    ));
                }
                if let Some(m) = &t.memory {
                    memory_check(name, m.size.mib(), at("spec.memory"), diags);
                }
                extra_config(
                    name,
                    t.extra_config.keys(),
                    |k| at(&format!("spec.extraConfig.{k}")),
                    diags,
                );
            }
            Spec::Container(c) => {
                if c.cores == Some(0) {
                    diags.push(Diagnostic::new(
                        ErrorKind::ImpossibleSize,
                        at("spec.cores"),
                        format!("{name}: cores must be at least 1"),
                    ));
                }
                if let Some(m) = c.memory {
                    memory_check(name, m.mib(), at("spec.memory"), diags);
                }
                if c.rootfs.size.bytes() == 0 {
                    diags.push(Diagnostic::new(
                        ErrorKind::ImpossibleSize,
                        at("spec.rootfs.size"),
                        format!("{name}: a root filesystem of size 0"),
                    ));
                }
                for (i, mp) in c.mount_points.iter().enumerate() {
                    if !mp.path.starts_with('/') {
                        diags.push(Diagnostic::new(
                            ErrorKind::InvalidValue,
                            at(&format!("spec.mountPoints[{i}].path")),
                            format!("{name}: mount path `{}` is not absolute", mp.path),
                        ));
                    }
                }
            }
            Spec::StorageDownload(d) => {
                if !(d.url.starts_with("https://") || d.url.starts_with("http://")) {
                    diags.push(Diagnostic::new(
                        ErrorKind::InvalidValue,
                        at("spec.url"),
                        format!("`{}` is not an http(s) URL", d.url),
                    ));
                }
                if let Some(c) = &d.checksum {
                    let len = c.algorithm.hex_len();
                    if c.value.len() != len || !c.value.chars().all(|ch| ch.is_ascii_hexdigit()) {
                        diags.push(Diagnostic::new(
                            ErrorKind::InvalidValue,
                            at("spec.checksum.value"),
                            format!("{name}: a {:?} checksum is {len} hex digits", c.algorithm)
                                .to_lowercase(),
                        ));
                    }
                }
                let ok_ext: &[&str] = match d.content {
                    DownloadContent::Iso => &[".iso", ".img"],
                    DownloadContent::Vztmpl => &[".tar.gz", ".tar.xz", ".tar.zst"],
                    DownloadContent::Import => &[".qcow2", ".raw", ".img", ".vmdk", ".ova"],
                };
                if !ok_ext.iter().any(|e| d.file_name.ends_with(e)) {
                    diags.push(
                        Diagnostic::new(ErrorKind::InvalidValue, at("spec.fileName"), format!("{name}: PVE stores {:?} content only as {}", d.content, ok_ext.join(", ")).to_lowercase())
                            .with_hint("for a compressed image set `decompress` and name the decompressed file"),
                    );
                }
            }
            Spec::SdnZone(z) => {
                let missing = match z.zone_type {
                    ZoneType::Vlan | ZoneType::Qinq if z.bridge.is_none() => Some("bridge"),
                    ZoneType::Vxlan if z.peers.is_empty() => Some("peers"),
                    ZoneType::Evpn if z.controller.is_none() => Some("controller"),
                    ZoneType::Evpn if z.vrf_vxlan.is_none() => Some("vrfVxlan"),
                    _ => None,
                };
                if let Some(f) = missing {
                    diags.push(Diagnostic::new(
                        ErrorKind::MissingField,
                        at("spec.type"),
                        format!("a {:?} zone needs `{f}`", z.zone_type).to_lowercase(),
                    ));
                }
                sdn_id(name, at("metadata.name"), diags);
            }
            Spec::SdnVnet(v) => {
                sdn_id(name, at("metadata.name"), diags);
                let zone =
                    docs_of!(ctx, SdnZone).find(|(d, _)| d.name().as_str() == v.zone.as_str());
                if let Some((_, z)) = zone {
                    let range = match z.zone_type {
                        ZoneType::Simple => None,
                        ZoneType::Vlan | ZoneType::Qinq => Some(4094),
                        ZoneType::Vxlan | ZoneType::Evpn => Some(16_777_215),
                    };
                    match (range, v.tag) {
                        (None, Some(_)) => diags.push(Diagnostic::new(
                            ErrorKind::Conflict,
                            at("spec.tag"),
                            "a vnet in a simple zone has no tag",
                        )),
                        (Some(_), None) => diags.push(Diagnostic::new(
                            ErrorKind::MissingField,
                            at("spec"),
                            format!("a vnet in a {:?} zone needs a `tag`", z.zone_type)
                                .to_lowercase(),
                        )),
                        (Some(max), Some(t)) if t == 0 || t > max => diags.push(Diagnostic::new(
                            ErrorKind::InvalidValue,
                            at("spec.tag"),
                            format!("tag {t} is outside 1..={max}"),
                        )),
                        _ => {}
                    }
                }
            }
            Spec::Firewall(f) => {
                if f.target.is_some() {
                    for (field, set) in [
                        ("aliases", !f.aliases.is_empty()),
                        ("ipsets", !f.ipsets.is_empty()),
                        ("securityGroups", !f.security_groups.is_empty()),
                    ] {
                        if set {
                            diags.push(Diagnostic::new(
                                ErrorKind::Conflict,
                                at(&format!("spec.{field}")),
                                format!("`{field}` belong to the cluster firewall, not a guest's"),
                            ));
                        }
                    }
                } else if let Some(o) = &f.options {
                    for opt in o.guest_only_set() {
                        diags.push(Diagnostic::new(
                            ErrorKind::Conflict,
                            at(&format!("spec.options.{opt}")),
                            format!("`{opt}` is a guest firewall option"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

/// SDN ids are also resource names here; PVE allows at most 8 characters, no dashes.
fn sdn_id(name: &str, loc: Location, diags: &mut Diagnostics) {
    if let Err(e) = name.parse::<crate::ids::SdnId>() {
        diags.push(Diagnostic::new(ErrorKind::InvalidIdentifier, loc, e));
    }
}
