//! A desired VM in PVE's own spelling: the config keys and values `qm config` would show.
//!
//! Each value says how it is compared with what PVE reports ([`Compare`]), because PVE
//! rewrites much of what it is sent: it appends a generated MAC to `net0`, turns
//! `rbd:30` into `rbd:vm-3001-disk-0,size=30G`, URL-encodes `sshkeys`, and never shows
//! `cipassword` in clear.

use pve_gitops_schema::desired::{DesiredState, DesiredVm};
use pve_gitops_schema::manifest::vm::{CdRom, Disk, HostPci, Nic, NicModel, SnippetSource};
use pve_gitops_schema::manifest::ExtraValue;
use pve_gitops_schema::net::{Ipv4Assignment, Ipv6Assignment};
use pve_gitops_schema::snippets::volume_for;
use std::collections::BTreeMap;

/// How a desired value is compared with the value PVE reports for the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The whole value, after trimming.
    Exact,
    /// A comma list `head,k=v,...`: the head by [`Head`], and only the options the desired
    /// value sets (PVE adds its own, like `size=` or a MAC).
    Options(Head),
    /// `;`-separated tags, in any order or separator.
    Tags,
    /// URL-encoded by PVE: compare decoded.
    UrlEncoded,
    /// Set on create, never compared (PVE hides the value: `cipassword`).
    WriteOnce,
}

/// How the first element of an option list is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// No head: every element is `k=v` (`ipconfig0: ip=...,gw=...`).
    None,
    /// The same text.
    Exact,
    /// The storage before `:` (`rbd:30` ~ `rbd:vm-3001-disk-0`).
    Storage,
    /// The model before `=` (`virtio` ~ `virtio=BC:24:11:..`, the MAC PVE generated).
    Model,
}

/// One desired config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredValue {
    /// What to send to PVE.
    pub text: String,
    pub compare: Compare,
}

impl DesiredValue {
    fn exact(text: impl Into<String>) -> Self {
        DesiredValue {
            text: text.into(),
            compare: Compare::Exact,
        }
    }
    fn options(text: impl Into<String>, head: Head) -> Self {
        DesiredValue {
            text: text.into(),
            compare: Compare::Options(head),
        }
    }
}

/// The config keys a VM's manifest sets. Keys it does not set are left to PVE and the
/// template, and never compared.
pub type DesiredConfig = BTreeMap<String, DesiredValue>;

fn bit(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// The PVE config a desired VM implies. `cdrom_volume` resolves a CD-ROM's
/// `StorageDownload` to its volume id (`local:iso/talos.iso`).
pub fn desired_config(
    vm: &DesiredVm,
    cdrom_volume: impl Fn(&CdRom) -> Option<String>,
) -> DesiredConfig {
    let s = &vm.spec;
    let mut c = DesiredConfig::new();
    c.insert("name".into(), DesiredValue::exact(vm.name.as_str()));
    if let Some(cpu) = &s.cpu {
        c.insert("cores".into(), DesiredValue::exact(cpu.cores.to_string()));
        if let Some(n) = cpu.sockets {
            c.insert("sockets".into(), DesiredValue::exact(n.to_string()));
        }
        if let Some(t) = &cpu.model {
            c.insert("cpu".into(), DesiredValue::options(t.clone(), Head::Exact));
        }
        if let Some(n) = cpu.numa {
            c.insert("numa".into(), DesiredValue::exact(bit(n)));
        }
    }
    if let Some(m) = &s.memory {
        c.insert(
            "memory".into(),
            DesiredValue::exact(m.size.mib().to_string()),
        );
        if let Some(b) = m.balloon {
            c.insert("balloon".into(), DesiredValue::exact(b.mib().to_string()));
        }
    }
    for d in &s.disks {
        c.insert(
            d.slot.to_string(),
            DesiredValue::options(disk_value(d), Head::Storage),
        );
    }
    if let Some(cd) = &s.cdrom {
        if let Some(vol) = cd.volume.clone().or_else(|| cdrom_volume(cd)) {
            c.insert(
                cd.slot().to_string(),
                DesiredValue::options(format!("{vol},media=cdrom"), Head::Exact),
            );
        }
    }
    for (i, n) in s.network.iter().enumerate() {
        // A MAC the manifest fixes is compared; one PVE generated is not.
        let head = if n.mac.is_some() {
            Head::Exact
        } else {
            Head::Model
        };
        c.insert(format!("net{i}"), DesiredValue::options(nic_value(n), head));
    }
    if let Some(ci) = &s.cloud_init {
        if let Some(st) = &ci.storage {
            let slot = ci.drive.as_ref().map_or("ide2", |d| d.as_str());
            c.insert(
                slot.to_string(),
                DesiredValue::options(format!("{st}:cloudinit"), Head::Storage),
            );
        }
        if let Some(u) = &ci.user {
            c.insert("ciuser".into(), DesiredValue::exact(u.clone()));
        }
        if ci.password.is_some() {
            // The value is decrypted at apply time; the plan only knows it must be set.
            c.insert(
                "cipassword".into(),
                DesiredValue {
                    text: String::new(),
                    compare: Compare::WriteOnce,
                },
            );
        }
        if !ci.ssh_keys.is_empty() {
            let keys = ci.ssh_keys.join("\n");
            c.insert(
                "sshkeys".into(),
                DesiredValue {
                    text: keys,
                    compare: Compare::UrlEncoded,
                },
            );
        }
        for (i, ip) in ci.ip_config.iter().enumerate() {
            let mut parts = Vec::new();
            match ip.ipv4 {
                Some(Ipv4Assignment::Dhcp) => parts.push("ip=dhcp".to_string()),
                Some(a) => parts.extend(a.address().map(|n| format!("ip={n}"))),
                None => {}
            }
            if let Some(g) = ip.gateway {
                parts.push(format!("gw={g}"));
            }
            match ip.ipv6 {
                Some(Ipv6Assignment::Dhcp) => parts.push("ip6=dhcp".to_string()),
                Some(Ipv6Assignment::Auto) => parts.push("ip6=auto".to_string()),
                Some(a) => parts.extend(a.address().map(|n| format!("ip6={n}"))),
                None => {}
            }
            if let Some(g) = ip.gateway6 {
                parts.push(format!("gw6={g}"));
            }
            if !parts.is_empty() {
                c.insert(
                    format!("ipconfig{i}"),
                    DesiredValue::options(parts.join(","), Head::None),
                );
            }
        }
        if let Some(dns) = &ci.dns {
            if !dns.servers.is_empty() {
                let servers: Vec<String> = dns.servers.iter().map(ToString::to_string).collect();
                c.insert("nameserver".into(), DesiredValue::exact(servers.join(" ")));
            }
            if let Some(d) = &dns.search_domain {
                c.insert("searchdomain".into(), DesiredValue::exact(d.clone()));
            }
        }
        if let Some(u) = ci.upgrade {
            c.insert("ciupgrade".into(), DesiredValue::exact(bit(u)));
        }
    }
    if let Some(a) = s.agent {
        c.insert("agent".into(), DesiredValue::options(bit(a), Head::Exact));
    }
    if let Some(b) = s.start_on_boot {
        c.insert("onboot".into(), DesiredValue::exact(bit(b)));
    }
    let tags: Vec<&str> = vm.tags.iter().map(|t| t.as_str()).collect();
    c.insert(
        "tags".into(),
        DesiredValue {
            text: tags.join(";"),
            compare: Compare::Tags,
        },
    );
    for (i, h) in s.hostpci.iter().enumerate() {
        c.insert(
            format!("hostpci{i}"),
            DesiredValue::options(hostpci_value(h), Head::Exact),
        );
    }
    if let Some(b) = s.bios {
        c.insert(
            "bios".into(),
            DesiredValue::exact(format!("{b:?}").to_lowercase()),
        );
    }
    if let Some(m) = &s.machine {
        c.insert(
            "machine".into(),
            DesiredValue::options(m.clone(), Head::Exact),
        );
    }
    if let Some(p) = s.protection {
        c.insert("protection".into(), DesiredValue::exact(bit(p)));
    }
    if let Some(d) = &s.description {
        c.insert("description".into(), DesiredValue::exact(d.clone()));
    }
    for (k, v) in &s.extra_config {
        let text = match v {
            ExtraValue::Bool(b) => bit(*b).to_string(),
            ExtraValue::Int(i) => i.to_string(),
            ExtraValue::Text(t) => t.clone(),
        };
        c.insert(k.clone(), DesiredValue::exact(text));
    }
    c
}

/// [`desired_config`] with the references only the whole revision resolves: a CD-ROM's
/// `StorageDownload` becomes its volume, and `cloudInit.userData` & co. become `cicustom`
/// (a `Snippet` by the volume its rendered file gets, `volume:` as given).
pub fn resolved_config(vm: &DesiredVm, desired: &DesiredState) -> DesiredConfig {
    let mut c = desired_config(vm, |cd| {
        let name = cd.download.as_ref()?;
        let d = desired.storage_downloads.iter().find(|d| &d.name == name)?;
        Some(crate::kinds::download::volid(&d.spec))
    });
    if let Some(value) = cicustom(vm, desired) {
        c.insert("cicustom".into(), DesiredValue::options(value, Head::None));
    }
    c
}

/// `user=local:snippets/a.yaml,network=...`, or `None` when no custom data is declared.
fn cicustom(vm: &DesiredVm, desired: &DesiredState) -> Option<String> {
    let ci = vm.spec.cloud_init.as_ref()?;
    let mut parts = Vec::new();
    for (field, source) in ci.custom_data() {
        let Some(source) = source else { continue };
        let volume = match source {
            SnippetSource::Volume { volume } => volume.clone(),
            SnippetSource::Snippet { snippet } => {
                let sn = desired.snippets.iter().find(|s| &s.name == snippet)?;
                volume_for(sn, &vm.name)
            }
        };
        let key = field.trim_end_matches("Data");
        parts.push(format!("{key}={volume}"));
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// `rbd:30,iothread=1,discard=on,ssd=1`: the form that allocates a new disk of 30 GiB. For
/// an existing disk only the options are compared; the size is the resize step's business.
fn disk_value(d: &Disk) -> String {
    let gib = d.size.bytes().div_ceil(1 << 30);
    let mut v = format!("{}:{gib}", d.storage);
    if let Some(f) = d.format {
        v.push_str(&format!(",format={}", format!("{f:?}").to_lowercase()));
    }
    if let Some(c) = d.cache {
        v.push_str(&format!(",cache={}", format!("{c:?}").to_lowercase()));
    }
    if let Some(b) = d.iothread {
        v.push_str(&format!(",iothread={}", bit(b)));
    }
    if let Some(b) = d.discard {
        v.push_str(if b { ",discard=on" } else { ",discard=ignore" });
    }
    if let Some(b) = d.ssd {
        v.push_str(&format!(",ssd={}", bit(b)));
    }
    if let Some(b) = d.backup {
        v.push_str(&format!(",backup={}", bit(b)));
    }
    v
}

pub(crate) fn nic_value(n: &Nic) -> String {
    let model = format!("{:?}", n.model.unwrap_or(NicModel::Virtio)).to_lowercase();
    let mut v = match &n.mac {
        Some(mac) => format!("{model}={}", mac.to_uppercase()),
        None => model,
    };
    v.push_str(&format!(",bridge={}", n.bridge));
    if let Some(t) = n.vlan {
        v.push_str(&format!(",tag={}", t.get()));
    }
    if let Some(f) = n.firewall {
        v.push_str(&format!(",firewall={}", bit(f)));
    }
    if let Some(m) = n.mtu {
        v.push_str(&format!(",mtu={m}"));
    }
    v
}

fn hostpci_value(h: &HostPci) -> String {
    let mut parts = Vec::new();
    match (&h.mapping, &h.device) {
        (Some(m), _) => parts.push(format!("mapping={m}")),
        (None, Some(d)) => parts.push(d.clone()),
        (None, None) => {}
    }
    for (k, v) in [
        ("pcie", h.pcie),
        ("x-vga", h.primary_gpu),
        ("rombar", h.rombar),
    ] {
        if let Some(b) = v {
            parts.push(format!("{k}={}", bit(b)));
        }
    }
    if let Some(m) = &h.mdev {
        parts.push(format!("mdev={m}"));
    }
    parts.join(",")
}
