//! Rendering `Snippet`s: one file per (snippet, VM) pair, from a minijinja template that sees
//! the VM, every other VM and set (for `retry_join`-style lists and zone files), the snippet's
//! variables and its secrets.
//!
//! Validation renders with [`Placeholders`] so template errors are caught before anything is
//! applied; the agent renders again with decrypted secrets when it writes the files.

use crate::desired::{DesiredState, DesiredVm, Named, SnippetFile};
use crate::diag::{Diagnostic, Diagnostics, ErrorKind, Location};
use crate::ids::Name;
use crate::manifest::snippet::SnippetSpec;
use crate::manifest::vm::SnippetSource;
use crate::manifest::Locator;
use crate::repo::Repository;
use crate::secret::SecretRef;
use serde::Serialize;
use std::collections::BTreeMap;

/// Where secret values come from when rendering.
pub trait SecretSource {
    fn reveal(&self, secret: &SecretRef) -> Result<String, String>;
}

/// Renders each secret as `<secret:age:path>` / `<secret:sops:path#key>`: for validation and
/// `pve-gitops render`, which must never see plaintext.
pub struct Placeholders;

impl SecretSource for Placeholders {
    fn reveal(&self, secret: &SecretRef) -> Result<String, String> {
        Ok(format!("<secret:{secret}>"))
    }
}

/// What a template sees of a VM.
#[derive(Debug, Clone, Serialize)]
pub struct VmView {
    pub name: String,
    pub vmid: Option<u32>,
    pub node: String,
    /// First static IPv4 address, without prefix (`192.168.1.71`).
    pub ipv4: Option<String>,
    /// With prefix (`192.168.1.71/24`).
    pub ipv4_cidr: Option<String>,
    pub ipv6: Option<String>,
    pub ipv6_cidr: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub set: Option<String>,
    pub index: usize,
    pub number: usize,
    pub disks: Vec<DiskView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskView {
    pub slot: String,
    pub storage: String,
    pub size: String,
    /// Stable device path in the guest for SCSI disks (QEMU names them by drive id).
    pub by_id: Option<String>,
    pub mount_path: Option<String>,
    pub filesystem: Option<String>,
}

impl VmView {
    pub fn of(vm: &DesiredVm) -> Self {
        let ipc = vm
            .spec
            .cloud_init
            .as_ref()
            .and_then(|c| c.ip_config.first());
        let v4 = ipc.and_then(|c| c.ipv4).and_then(|a| a.address());
        let v6 = ipc.and_then(|c| c.ipv6).and_then(|a| a.address());
        VmView {
            name: vm.name.to_string(),
            vmid: vm.vmid.map(|v| v.get()),
            node: vm.node.to_string(),
            ipv4: v4.map(|a| a.addr().to_string()),
            ipv4_cidr: v4.map(|a| a.to_string()),
            ipv6: v6.map(|a| a.addr().to_string()),
            ipv6_cidr: v6.map(|a| a.to_string()),
            labels: vm.labels.clone(),
            set: vm.member_of.as_ref().map(|m| m.set.to_string()),
            index: vm.member_of.as_ref().map_or(0, |m| m.index),
            number: vm.member_of.as_ref().map_or(1, |m| m.index + 1),
            disks: vm
                .spec
                .disks
                .iter()
                .map(|d| DiskView {
                    slot: d.slot.to_string(),
                    storage: d.storage.to_string(),
                    size: d.size.to_string(),
                    by_id: d.slot.as_str().starts_with("scsi").then(|| {
                        format!("/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-{}", d.slot)
                    }),
                    mount_path: d.mount.as_ref().map(|m| m.path.clone()),
                    filesystem: d.mount.as_ref().and_then(|m| m.filesystem.clone()),
                })
                .collect(),
        }
    }
}

/// The volume a VM's `cicustom` points at for a snippet.
pub fn volume_for(snippet: &Named<SnippetSpec>, vm: &Name) -> String {
    format!(
        "{}:snippets/pve-gitops-{}-{}.yaml",
        snippet.spec.storage, vm, snippet.name
    )
}

/// Render every snippet for every VM that uses it.
pub fn render_all(
    desired: &DesiredState,
    repo: &Repository,
    locator: &Locator,
    secrets: &dyn SecretSource,
    diags: &mut Diagnostics,
) -> Vec<SnippetFile> {
    let env = crate::templating::environment();
    let views: BTreeMap<String, VmView> = desired
        .vms
        .iter()
        .map(|v| (v.name.to_string(), VmView::of(v)))
        .collect();
    let mut sets: BTreeMap<String, Vec<&VmView>> = BTreeMap::new();
    for vm in &desired.vms {
        if let Some(m) = &vm.member_of {
            sets.entry(m.set.to_string())
                .or_default()
                .push(&views[vm.name.as_str()]);
        }
    }
    for members in sets.values_mut() {
        members.sort_by_key(|v| v.index);
    }
    let mut out = Vec::new();
    let mut failed: Vec<&Name> = Vec::new(); // report a broken template once, not per VM
    for vm in &desired.vms {
        let Some(ci) = &vm.spec.cloud_init else {
            continue;
        };
        for src in ci.custom_data().into_iter().filter_map(|(_, s)| s) {
            let SnippetSource::Snippet { snippet } = src else {
                continue;
            };
            let Some(sn) = desired.snippets.iter().find(|s| &s.name == snippet) else {
                continue;
            };
            if failed.contains(&&sn.name) {
                continue;
            }
            let (text, loc_of_line): (Option<&str>, Box<dyn Fn(usize) -> Location>) =
                match (&sn.spec.template_file, &sn.spec.template) {
                    (Some(f), None) => {
                        // Already repository-relative (see `load`).
                        let path = f.clone();
                        (
                            repo.text(&path),
                            Box::new(move |line| Location::new(&path, line, 1)),
                        )
                    }
                    (None, Some(t)) => {
                        let start = locator.at(&sn.origin, "spec.template");
                        (
                            Some(t.as_str()),
                            Box::new(move |line| Location::new(&start.file, start.line + line, 1)),
                        )
                    }
                    _ => {
                        failed.push(&sn.name);
                        diags.push(Diagnostic::new(
                            ErrorKind::Conflict,
                            locator.at(&sn.origin, "spec"),
                            format!(
                                "Snippet/{}: give exactly one of `template` and `templateFile`",
                                sn.name
                            ),
                        ));
                        continue;
                    }
                };
            let Some(text) = text else { continue }; // a missing file is reported by the reference checks
            let mut revealed = BTreeMap::new();
            for (k, s) in &sn.spec.secrets {
                match secrets.reveal(s) {
                    Ok(v) => {
                        revealed.insert(k.clone(), v);
                    }
                    Err(e) => diags.push(Diagnostic::new(
                        ErrorKind::InvalidValue,
                        locator.at(&sn.origin, &format!("spec.secrets.{k}")),
                        e,
                    )),
                }
            }
            let ctx = minijinja::context! {
                vm => minijinja::Value::from(minijinja::value::Serde(&views[vm.name.as_str()])),
                vms => minijinja::Value::from(minijinja::value::Serde(&views)),
                sets => minijinja::Value::from(minijinja::value::Serde(&sets)),
                vars => minijinja::Value::from(minijinja::value::Serde(&sn.spec.variables)),
                secrets => minijinja::Value::from(minijinja::value::Serde(&revealed)),
            };
            match env.render_str(text, ctx) {
                Ok(content) => out.push(SnippetFile {
                    snippet: sn.name.clone(),
                    vm: vm.name.clone(),
                    volume: volume_for(sn, &vm.name),
                    content,
                }),
                Err(e) => {
                    failed.push(&sn.name);
                    let (msg, line) = crate::templating::describe(&e);
                    diags.push(Diagnostic::new(
                        ErrorKind::Template,
                        loc_of_line(line.unwrap_or(1)),
                        format!("Snippet/{} does not render for {}: {msg}", sn.name, vm.name),
                    ));
                }
            }
        }
    }
    out
}
