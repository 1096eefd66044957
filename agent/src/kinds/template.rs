//! `Template`: a VM template built from a cloud image, as `qm create --scsi0
//! <storage>:0,import-from=<image>` + `qm template` do by hand.
//!
//! The template is rebuilt only when its definition changes: the agent writes a hash of
//! everything it was built from (the spec, the image volume, the download's URL and
//! checksum) into the description (`pve-gitops-definition: <hash>`), and compares it on
//! every pass. A rebuild destroys the old template first — full clones made from it keep
//! their own disks; linked clones make PVE refuse, and the template is reported failed.
//! A guest at the vmid that is not the agent's is never touched.

use super::download::volid as download_volid;
use super::view::{ClusterView, DEFINITION_PREFIX};
use crate::apply::ApplyOptions;
use crate::plan::actual::CREATED_NOTE;
use crate::plan::pveconfig::nic_value;
use crate::plan::vm::disk_size;
use crate::pve::{Params, PveClient, PveError};
use pve_gitops_schema::desired::{DesiredState, Named};
use pve_gitops_schema::ids::OWNER_TAG;
use pve_gitops_schema::manifest::template::TemplateSpec;
use pve_gitops_schema::manifest::ExtraValue;
use sha2::{Digest, Sha256};

/// One template to (re)build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateBuild {
    pub name: String,
    pub vmid: u32,
    pub node: String,
    /// The create request's parameters, in order.
    pub params: Vec<(String, String)>,
    /// Grow the imported disk to (slot, bytes) before it becomes a template.
    pub grow: Option<(String, u64)>,
    /// The `StorageDownload` the image comes from, if any: the build waits for it.
    pub download: Option<String>,
    /// The owned guest to destroy first (its node), when this is a rebuild.
    pub replaces: Option<String>,
    pub definition: String,
}

/// Why a declared template is left as it is, when that is not because it is up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateHold {
    pub name: String,
    pub reason: String,
}

/// The volume the boot disk is imported from.
fn image_volume(
    t: &Named<TemplateSpec>,
    desired: &DesiredState,
) -> Option<(String, Option<String>)> {
    if let Some(v) = &t.spec.image.volume {
        return Some((v.clone(), None));
    }
    let name = t.spec.image.download.as_ref()?;
    let d = desired.storage_downloads.iter().find(|d| &d.name == name)?;
    Some((download_volid(&d.spec), Some(d.name.to_string())))
}

/// A short hash of everything the template is built from.
pub fn definition(t: &Named<TemplateSpec>, desired: &DesiredState) -> String {
    let download = t.spec.image.download.as_ref().and_then(|n| {
        desired
            .storage_downloads
            .iter()
            .find(|d| &d.name == n)
            .map(|d| {
                (
                    d.spec.url.clone(),
                    d.spec.checksum.as_ref().map(|c| c.value.clone()),
                )
            })
    });
    let text = serde_json::to_string(&(&t.name, &t.spec, image_volume(t, desired), download))
        .expect("a template spec serializes");
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn bit(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// The create parameters of a template (PVE 8.2+ `import-from` syntax).
pub fn build(t: &Named<TemplateSpec>, desired: &DesiredState) -> Option<TemplateBuild> {
    let s = &t.spec;
    let (image, download) = image_volume(t, desired)?;
    let def = definition(t, desired);
    let slot = s
        .disk_slot
        .as_ref()
        .map_or("scsi0", |d| d.as_str())
        .to_string();
    let mut p: Vec<(String, String)> = vec![("name".into(), t.name.to_string())];
    let mut description = s.description.clone().unwrap_or_default();
    if !description.is_empty() {
        description.push('\n');
    }
    description.push_str(&format!("{CREATED_NOTE}\n{DEFINITION_PREFIX}{def}"));
    p.push(("description".into(), description));
    let mut tags: Vec<String> = s.tags.iter().map(ToString::to_string).collect();
    tags.push(OWNER_TAG.to_string());
    tags.sort();
    tags.dedup();
    p.push(("tags".into(), tags.join(";")));
    p.push((slot.clone(), format!("{}:0,import-from={image}", s.storage)));
    if slot.starts_with("scsi") && !s.extra_config.contains_key("scsihw") {
        p.push(("scsihw".into(), "virtio-scsi-single".into()));
    }
    p.push(("boot".into(), format!("order={slot}")));
    let ci = s.cloud_init_storage.as_ref().unwrap_or(&s.storage);
    p.push(("ide2".into(), format!("{ci}:cloudinit")));
    if s.serial_console.unwrap_or(true) {
        p.push(("serial0".into(), "socket".into()));
        p.push(("vga".into(), "serial0".into()));
    }
    p.push(("agent".into(), bit(s.agent.unwrap_or(true))));
    if let Some(cpu) = &s.cpu {
        p.push(("cores".into(), cpu.cores.to_string()));
        if let Some(n) = cpu.sockets {
            p.push(("sockets".into(), n.to_string()));
        }
        if let Some(m) = &cpu.model {
            p.push(("cpu".into(), m.clone()));
        }
        if let Some(n) = cpu.numa {
            p.push(("numa".into(), bit(n)));
        }
    }
    if let Some(m) = &s.memory {
        p.push(("memory".into(), m.size.mib().to_string()));
        if let Some(b) = m.balloon {
            p.push(("balloon".into(), b.mib().to_string()));
        }
    }
    for (i, n) in s.network.iter().enumerate() {
        p.push((format!("net{i}"), nic_value(n)));
    }
    if let Some(b) = s.bios {
        p.push(("bios".into(), format!("{b:?}").to_lowercase()));
    }
    if let Some(m) = &s.machine {
        p.push(("machine".into(), m.clone()));
    }
    for (k, v) in &s.extra_config {
        let text = match v {
            ExtraValue::Bool(b) => bit(*b),
            ExtraValue::Int(i) => i.to_string(),
            ExtraValue::Text(t) => t.clone(),
        };
        p.push((k.clone(), text));
    }
    Some(TemplateBuild {
        name: t.name.to_string(),
        vmid: s.vmid.get(),
        node: s.node.to_string(),
        params: p,
        grow: s.disk_size.map(|d| (slot, d.bytes())),
        download,
        replaces: None,
        definition: def,
    })
}

/// Which declared templates to build or rebuild, and which to leave with a reason.
pub fn plan(desired: &DesiredState, view: &ClusterView) -> (Vec<TemplateBuild>, Vec<TemplateHold>) {
    let (mut builds, mut holds) = (Vec::new(), Vec::new());
    for t in &desired.templates {
        let hold = |reason: String| TemplateHold {
            name: t.name.to_string(),
            reason,
        };
        let Some(mut b) = build(t, desired) else {
            holds.push(hold(
                "its image is neither a volume nor a declared StorageDownload".into(),
            ));
            continue;
        };
        match view.at_template_vmids.get(&b.vmid) {
            None => builds.push(b),
            Some(g) if !g.owned || g.kind != "qemu" => holds.push(hold(format!(
                "vmid {} is taken by {} `{}`, not managed by pve-gitops: left alone",
                b.vmid, g.kind, g.name
            ))),
            Some(g) if g.template && g.definition.as_deref() == Some(b.definition.as_str()) => {}
            Some(g) if g.lock.is_some() => holds.push(hold(format!(
                "vmid {} is locked ({}): rebuilt on a later pass",
                b.vmid,
                g.lock.as_deref().unwrap_or_default()
            ))),
            Some(g) if g.protected => holds.push(hold(format!(
                "its definition changed but vmid {} is protected: not rebuilt",
                b.vmid
            ))),
            Some(g) => {
                b.replaces = Some(g.node.clone());
                builds.push(b);
            }
        }
    }
    (builds, holds)
}

/// Build one template: destroy the old one (a rebuild), create with the imported disk,
/// grow the disk, convert. Returns the steps done.
pub async fn run(
    client: &PveClient,
    b: &TemplateBuild,
    options: &ApplyOptions,
    done: &mut Vec<String>,
) -> Result<(), PveError> {
    let timeout = options.task_timeout;
    if let Some(node) = &b.replaces {
        let upid = client.delete_vm(node, b.vmid, true, true).await?;
        client.wait_task(&upid, timeout).await?;
        done.push(format!("destroy old {}", b.vmid));
    }
    let params = b
        .params
        .iter()
        .fold(Params::new(), |p, (k, v)| p.with(k.clone(), v.clone()));
    let upid = client.create_vm(&b.node, b.vmid, &params).await?;
    client.wait_task(&upid, timeout).await?;
    done.push(format!("create {}", b.vmid));
    if let Some((slot, bytes)) = &b.grow {
        let config = client.get_vm_config(&b.node, b.vmid).await?;
        let have = config.text(slot).and_then(|v| disk_size(&v)).unwrap_or(0);
        if have < *bytes {
            let size = pve_gitops_schema::units::Bytes(*bytes).pve();
            let upid = client
                .resize_disk(&b.node, b.vmid, slot, &size, None)
                .await?;
            client.wait_optional(upid, timeout).await?;
            done.push(format!("resize {slot} to {size}"));
        }
    }
    let upid = client.convert_to_template(&b.node, b.vmid).await?;
    client.wait_optional(upid, timeout).await?;
    done.push("template".into());
    Ok(())
}
