//! `Container`: LXC guests, with the VMs' safety rules — only guests carrying the
//! ownership tag (or the agent's create note) are changed, one that is declared but not
//! ours is reported and left alone, and an owned container no longer declared is deleted
//! only with pruning on and protection off.
//!
//! A container's config is compared key by key as for VMs ([`crate::plan::compare`]):
//! `rootfs`/`mpN` by storage and options (sizes grow through `resize`), `netN` by the
//! options declared (PVE adds `hwaddr` and `type`). What only a create can set
//! (`ostemplate`, `unprivileged`, the root password and SSH keys) is not compared.

use super::view::{ActualCt, ClusterView};
use crate::apply::{ApplyOptions, Report};
use crate::plan::actual::CREATED_NOTE;
use crate::plan::compare::{diff, Change};
use crate::plan::pveconfig::{Compare, DesiredConfig, DesiredValue, Head};
use crate::plan::vm::disk_size;
use crate::plan::Policy;
use crate::pve::{Params, PveClient, PveError};
use pve_gitops_schema::desired::{DesiredContainer, DesiredState};
use pve_gitops_schema::manifest::container::{ContainerNic, ContainerSpec};
use pve_gitops_schema::manifest::{ExtraValue, PowerState};
use pve_gitops_schema::net::{Ipv4Assignment, Ipv6Assignment};
use std::collections::{BTreeMap, BTreeSet};

/// One step for one container.
#[derive(Debug, Clone, PartialEq)]
pub enum CtAction {
    Create {
        vmid: u32,
        node: String,
        ostemplate: String,
        /// Create-only parameters (`unprivileged`, `ssh-public-keys`, `pool`).
        create: Vec<(String, String)>,
        config: DesiredConfig,
        start: bool,
    },
    Configure {
        vmid: u32,
        node: String,
        changes: Vec<Change>,
        digest: Option<String>,
    },
    Resize {
        vmid: u32,
        node: String,
        disk: String,
        to: u64,
    },
    Start {
        vmid: u32,
        node: String,
    },
    Stop {
        vmid: u32,
        node: String,
    },
    Delete {
        vmid: u32,
        node: String,
    },
}

/// Per container name (`Container/<name>` in the report), its steps, and the containers
/// left alone with the reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerPlan {
    pub steps: BTreeMap<String, Vec<CtAction>>,
    pub holds: BTreeMap<String, String>,
}

impl ContainerPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

fn exact(text: impl Into<String>) -> DesiredValue {
    DesiredValue {
        text: text.into(),
        compare: Compare::Exact,
    }
}

fn options(text: impl Into<String>, head: Head) -> DesiredValue {
    DesiredValue {
        text: text.into(),
        compare: Compare::Options(head),
    }
}

fn bit(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn gib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 30).max(1)
}

/// `name=eth0,bridge=vmbr0,tag=20,ip=192.0.2.5/24,gw=192.0.2.1`
fn nic_value(i: usize, n: &ContainerNic) -> String {
    let name = n
        .name
        .as_ref()
        .map_or(format!("eth{i}"), ToString::to_string);
    let mut v = format!("name={name},bridge={}", n.bridge);
    if let Some(t) = n.vlan {
        v.push_str(&format!(",tag={}", t.get()));
    }
    if let Some(f) = n.firewall {
        v.push_str(&format!(",firewall={}", bit(f)));
    }
    match n.ipv4 {
        Some(Ipv4Assignment::Dhcp) => v.push_str(",ip=dhcp"),
        Some(a) => {
            if let Some(addr) = a.address() {
                v.push_str(&format!(",ip={addr}"));
            }
        }
        None => {}
    }
    if let Some(g) = n.gateway {
        v.push_str(&format!(",gw={g}"));
    }
    match n.ipv6 {
        Some(Ipv6Assignment::Dhcp) => v.push_str(",ip6=dhcp"),
        Some(Ipv6Assignment::Auto) => v.push_str(",ip6=auto"),
        Some(a) => {
            if let Some(addr) = a.address() {
                v.push_str(&format!(",ip6={addr}"));
            }
        }
        None => {}
    }
    if let Some(g) = n.gateway6 {
        v.push_str(&format!(",gw6={g}"));
    }
    if let Some(m) = n.mtu {
        v.push_str(&format!(",mtu={m}"));
    }
    v
}

/// The config keys a container's manifest sets.
pub fn desired_config(ct: &DesiredContainer) -> DesiredConfig {
    let s: &ContainerSpec = &ct.spec;
    let mut c = DesiredConfig::new();
    let hostname = s.hostname.clone().unwrap_or_else(|| ct.name.to_string());
    c.insert("hostname".into(), exact(hostname));
    if let Some(n) = s.cores {
        c.insert("cores".into(), exact(n.to_string()));
    }
    if let Some(m) = s.memory {
        c.insert("memory".into(), exact(m.mib().to_string()));
    }
    if let Some(m) = s.swap {
        c.insert("swap".into(), exact(m.mib().to_string()));
    }
    c.insert(
        "rootfs".into(),
        options(
            format!("{}:{}", s.rootfs.storage, gib(s.rootfs.size.bytes())),
            Head::Storage,
        ),
    );
    for (i, m) in s.mount_points.iter().enumerate() {
        let mut v = format!("{}:{},mp={}", m.storage, gib(m.size.bytes()), m.path);
        if let Some(b) = m.backup {
            v.push_str(&format!(",backup={}", bit(b)));
        }
        c.insert(format!("mp{i}"), options(v, Head::Storage));
    }
    for (i, n) in s.network.iter().enumerate() {
        c.insert(format!("net{i}"), options(nic_value(i, n), Head::None));
    }
    if let Some(dns) = &s.dns {
        if !dns.servers.is_empty() {
            let servers: Vec<String> = dns.servers.iter().map(ToString::to_string).collect();
            c.insert("nameserver".into(), exact(servers.join(" ")));
        }
        if let Some(d) = &dns.search_domain {
            c.insert("searchdomain".into(), exact(d.clone()));
        }
    }
    if let Some(f) = &s.features {
        let mut parts = Vec::new();
        for (k, v) in [
            ("nesting", f.nesting),
            ("keyctl", f.keyctl),
            ("fuse", f.fuse),
        ] {
            if let Some(b) = v {
                parts.push(format!("{k}={}", bit(b)));
            }
        }
        if !parts.is_empty() {
            c.insert("features".into(), options(parts.join(","), Head::None));
        }
    }
    if let Some(b) = s.start_on_boot {
        c.insert("onboot".into(), exact(bit(b)));
    }
    if let Some(b) = s.protection {
        c.insert("protection".into(), exact(bit(b)));
    }
    let tags: Vec<&str> = ct.tags.iter().map(|t| t.as_str()).collect();
    c.insert(
        "tags".into(),
        DesiredValue {
            text: tags.join(";"),
            compare: Compare::Tags,
        },
    );
    for (k, v) in &s.extra_config {
        let text = match v {
            ExtraValue::Bool(b) => bit(*b).to_string(),
            ExtraValue::Int(i) => i.to_string(),
            ExtraValue::Text(t) => t.clone(),
        };
        c.insert(k.clone(), exact(text));
    }
    c
}

/// The OS template volume.
fn ostemplate(ct: &DesiredContainer, desired: &DesiredState) -> Option<String> {
    if let Some(v) = &ct.spec.os_template.volume {
        return Some(v.clone());
    }
    let name = ct.spec.os_template.download.as_ref()?;
    let d = desired.storage_downloads.iter().find(|d| &d.name == name)?;
    Some(super::download::volid(&d.spec))
}

/// Plan every declared container, and the owned ones no longer declared.
pub fn plan(desired: &DesiredState, view: &ClusterView, policy: &Policy) -> ContainerPlan {
    let mut out = ContainerPlan::default();
    let mut matched = BTreeSet::new();
    let mut used = view.used_vmids.clone();
    for ct in &desired.containers {
        let name = ct.name.to_string();
        let found = view.containers.iter().find(|a| match ct.spec.vmid {
            Some(v) => a.vmid == v.get(),
            None => a.name == ct.spec.hostname.clone().unwrap_or_else(|| name.clone()),
        });
        if let Some(a) = found {
            matched.insert(a.vmid);
        }
        match found {
            None => {
                let Some(os) = ostemplate(ct, desired) else {
                    out.holds.insert(
                        name,
                        "its osTemplate is not a volume or a declared StorageDownload".into(),
                    );
                    continue;
                };
                let vmid = match ct.spec.vmid {
                    Some(v) => v.get(),
                    None => {
                        let next = (100..).find(|v| !used.contains(v)).expect("a free vmid");
                        used.insert(next);
                        next
                    }
                };
                out.steps.insert(name, vec![create(ct, vmid, os)]);
            }
            Some(a) if !a.owned => {
                out.holds.insert(
                    name,
                    format!("CT {} exists and is not managed by pve-gitops", a.vmid),
                );
            }
            Some(a) => {
                let steps = update(ct, a);
                if !steps.is_empty() {
                    out.steps.insert(name, steps);
                }
            }
        }
    }
    for a in view
        .containers
        .iter()
        .filter(|a| a.owned && !matched.contains(&a.vmid))
    {
        let protected = a.config.get("protection").is_some_and(|p| p == "1");
        if !policy.prune || protected {
            out.holds.insert(
                a.name.clone(),
                format!(
                    "CT {} is no longer declared; kept ({})",
                    a.vmid,
                    if protected {
                        "protected"
                    } else {
                        "pruning is off"
                    }
                ),
            );
            continue;
        }
        let mut steps = Vec::new();
        if a.running {
            steps.push(CtAction::Stop {
                vmid: a.vmid,
                node: a.node.clone(),
            });
        }
        steps.push(CtAction::Delete {
            vmid: a.vmid,
            node: a.node.clone(),
        });
        out.steps.insert(a.name.clone(), steps);
    }
    out
}

fn create(ct: &DesiredContainer, vmid: u32, ostemplate: String) -> CtAction {
    let s = &ct.spec;
    let mut create = vec![(
        "unprivileged".to_string(),
        bit(s.unprivileged.unwrap_or(true)).to_string(),
    )];
    if !s.ssh_keys.is_empty() {
        create.push(("ssh-public-keys".into(), s.ssh_keys.join("\n")));
    }
    if let Some(p) = &s.pool {
        create.push(("pool".into(), p.to_string()));
    }
    CtAction::Create {
        vmid,
        node: s.node.to_string(),
        ostemplate,
        create,
        config: desired_config(ct),
        start: s.power_state.unwrap_or_default() == PowerState::Running,
    }
}

fn update(ct: &DesiredContainer, a: &ActualCt) -> Vec<CtAction> {
    let mut out = Vec::new();
    let config = desired_config(ct);
    let mut sizes = vec![("rootfs".to_string(), ct.spec.rootfs.size.bytes())];
    sizes.extend(
        ct.spec
            .mount_points
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("mp{i}"), m.size.bytes())),
    );
    let changes: Vec<Change> = diff(&config, &a.config)
        .into_iter()
        // A new mount point is allocated by the config write; an existing one never
        // changes volume through it.
        .filter(|c| !(c.key == "rootfs" || c.from.is_some() && c.key.starts_with("mp")))
        .collect();
    if !changes.is_empty() {
        out.push(CtAction::Configure {
            vmid: a.vmid,
            node: a.node.clone(),
            changes,
            digest: a.digest.clone(),
        });
    }
    for (disk, want) in sizes {
        let have = a.config.get(&disk).and_then(|v| disk_size(v));
        if have.is_some_and(|h| h < want) {
            out.push(CtAction::Resize {
                vmid: a.vmid,
                node: a.node.clone(),
                disk,
                to: want,
            });
        }
    }
    let want_running = ct.spec.power_state.unwrap_or_default() == PowerState::Running;
    match (want_running, a.running) {
        (true, false) => out.push(CtAction::Start {
            vmid: a.vmid,
            node: a.node.clone(),
        }),
        (false, true) => out.push(CtAction::Stop {
            vmid: a.vmid,
            node: a.node.clone(),
        }),
        _ => {}
    }
    out
}

/// Run the container plan into `report` (`Container/<name>` keys). Deletions wait, like
/// VM deletions, for a pass without failures.
pub async fn apply(
    client: &PveClient,
    plan: &ContainerPlan,
    options: &ApplyOptions,
    report: &mut Report,
) {
    for (name, why) in &plan.holds {
        report
            .skipped
            .insert(format!("Container/{name}"), why.clone());
    }
    for (name, steps) in &plan.steps {
        let key = format!("Container/{name}");
        let deletes = steps.iter().any(|s| matches!(s, CtAction::Delete { .. }));
        if deletes && !report.failed.is_empty() {
            report
                .skipped
                .insert(key, "not deleted while this pass has failures".into());
            continue;
        }
        let mut done = Vec::new();
        for step in steps {
            let result = match options.may_write() {
                Ok(()) => run(client, name, step, options).await,
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(d) => done.push(d),
                Err(e) => {
                    report.failed.insert(key.clone(), e);
                    break;
                }
            }
        }
        if !done.is_empty() {
            report.done.insert(key, done);
        }
    }
}

fn to_params(changes: &[(String, String)]) -> Params {
    changes
        .iter()
        .fold(Params::new(), |p, (k, v)| p.with(k.clone(), v.clone()))
}

async fn run(
    client: &PveClient,
    name: &str,
    step: &CtAction,
    options: &ApplyOptions,
) -> Result<String, String> {
    let timeout = options.task_timeout;
    let r: Result<String, PveError> = async {
        Ok(match step {
            CtAction::Create {
                vmid,
                node,
                ostemplate,
                create,
                config,
                start,
            } => {
                let mut p = to_params(create)
                    .with("ostemplate", ostemplate.as_str())
                    .with("description", CREATED_NOTE);
                for (k, v) in config {
                    p.push(k.clone(), v.text.clone());
                }
                if let Some(pw) = options
                    .secrets
                    .get(name, "password")
                    .and_then(|v| v.as_str())
                {
                    p.push("password", pw.to_string());
                }
                let upid = client.create_ct(node, *vmid, &p).await?;
                client.wait_task(&upid, timeout).await?;
                if *start {
                    let upid = client.ct_power(node, *vmid, "start").await?;
                    client.wait_task(&upid, timeout).await?;
                    format!("create {vmid}, start")
                } else {
                    format!("create {vmid}")
                }
            }
            CtAction::Configure {
                vmid,
                node,
                changes,
                digest,
            } => {
                let p = changes
                    .iter()
                    .fold(Params::new(), |p, c| p.with(c.key.clone(), c.to.clone()));
                client
                    .set_ct_config(node, *vmid, &p, digest.as_deref())
                    .await?;
                let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                format!("configure {}", keys.join(","))
            }
            CtAction::Resize {
                vmid,
                node,
                disk,
                to,
            } => {
                let size = pve_gitops_schema::units::Bytes(*to).pve();
                let upid = client.resize_ct_disk(node, *vmid, disk, &size).await?;
                client.wait_optional(upid, timeout).await?;
                format!("resize {disk} to {size}")
            }
            CtAction::Start { vmid, node } => {
                let upid = client.ct_power(node, *vmid, "start").await?;
                client.wait_task(&upid, timeout).await?;
                "start".into()
            }
            CtAction::Stop { vmid, node } => {
                let upid = client.ct_power(node, *vmid, "stop").await?;
                client.wait_task(&upid, timeout).await?;
                "stop".into()
            }
            CtAction::Delete { vmid, node } => {
                let upid = client.delete_ct(node, *vmid).await?;
                client.wait_task(&upid, timeout).await?;
                "delete".into()
            }
        })
    }
    .await;
    r.map_err(|e| e.to_string())
}
