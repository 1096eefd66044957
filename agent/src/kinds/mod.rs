//! The kinds VMs are built from and beside: `StorageDownload`, `Template`, `Snippet` and
//! `Container`, one module each (its pure plan and its apply side), and how a pass runs
//! them around the VM plan:
//!
//! 1. [`prepare`] observes what they need ([`view`]) and plans them (no writes);
//! 2. [`before_vms`] runs downloads, then templates (each after the download it imports),
//!    then writes the snippet files this agent is responsible for, and works out which VMs
//!    cannot go ahead: a VM whose template, ISO or snippet file is not in place is skipped
//!    with the reason, and the VM plan's own dependency rules skip what depends on it;
//! 3. after the VMs, [`after_vms`] converges containers.
//!
//! Results go into the same [`Report`] as the VMs', under `Kind/name` keys
//! (`Template/debian-12`, `StorageDownload/talos-iso`, `Snippet/storage-tiers`).

pub mod container;
pub mod download;
pub mod snippet;
pub mod template;
pub mod view;

use crate::apply::{ApplyOptions, Report, Templates};
use crate::plan::{Action, Plan, Policy};
use crate::preflight::PreflightProblem;
use crate::pve::PveClient;
use pve_gitops_schema::manifest::vm::TemplateRef;
use pve_gitops_schema::DesiredState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use view::ClusterView;

/// What a VM needs in place before it is created or started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The declared `Template` it clones (name, vmid).
    Template(String, u32),
    /// A `StorageDownload` volume (an ISO for its CD-ROM) on its node.
    Download(String),
    /// A snippet file (index into [`KindsPlan::snippets`]).
    Snippet(usize),
}

/// The plan for these kinds, made in [`prepare`].
#[derive(Debug, Clone, Default)]
pub struct KindsPlan {
    pub view: ClusterView,
    pub downloads: download::DownloadPlan,
    pub templates: Vec<template::TemplateBuild>,
    pub template_holds: Vec<template::TemplateHold>,
    pub snippets: Vec<snippet::SnippetTarget>,
    pub containers: container::ContainerPlan,
    /// VM name → what it needs.
    pub needs: BTreeMap<String, Vec<Need>>,
    /// The revision, for the snippet contents (rendered per VM).
    pub desired: Arc<DesiredState>,
}

impl KindsPlan {
    /// Nothing to write for these kinds (VM gates aside).
    pub fn is_empty(&self) -> bool {
        self.downloads.steps.is_empty() && self.templates.is_empty() && self.containers.is_empty()
    }
}

/// Observe and plan the kinds. Also drops from `vms` the guests at declared template
/// vmids: a template the agent is building is not a VM to configure or prune.
pub async fn prepare(
    client: &PveClient,
    desired: &DesiredState,
    vms: &mut Vec<crate::plan::actual::ActualVm>,
    policy: &Policy,
) -> anyhow::Result<KindsPlan> {
    let view = view::observe(client, desired).await?;
    let template_vmids: BTreeSet<u32> = desired
        .templates
        .iter()
        .map(|t| t.spec.vmid.get())
        .collect();
    vms.retain(|v| !template_vmids.contains(&v.vmid));
    Ok(plan(desired, view, policy))
}

/// The pure half of [`prepare`].
pub fn plan(desired: &DesiredState, view: ClusterView, policy: &Policy) -> KindsPlan {
    let downloads = download::plan(&desired.storage_downloads, &view);
    let (templates, template_holds) = template::plan(desired, &view);
    let snippets = snippet::plan(desired, &view);
    let containers = container::plan(desired, &view, policy);
    let mut needs: BTreeMap<String, Vec<Need>> = BTreeMap::new();
    for vm in &desired.vms {
        let n = needs.entry(vm.name.to_string()).or_default();
        if let Some(c) = &vm.spec.clone {
            let t = desired.templates.iter().find(|t| match &c.template {
                TemplateRef::Name(name) => &t.name == name,
                TemplateRef::Vmid(v) => t.spec.vmid == *v,
            });
            if let Some(t) = t {
                n.push(Need::Template(t.name.to_string(), t.spec.vmid.get()));
            }
        }
        if let Some(d) = vm.spec.cdrom.as_ref().and_then(|c| c.download.as_ref()) {
            n.push(Need::Download(d.to_string()));
        }
        for (i, s) in snippets.iter().enumerate() {
            if s.vm == vm.name.as_str() {
                n.push(Need::Snippet(i));
            }
        }
    }
    needs.retain(|_, n| !n.is_empty());
    KindsPlan {
        view,
        downloads,
        templates,
        template_holds,
        snippets,
        containers,
        needs,
        desired: Arc::new(desired.clone()),
    }
}

/// Pre-flight problems the kinds resolve: a clone of a template this pass builds is not
/// missing.
pub fn excuse(kinds: &KindsPlan, problems: Vec<PreflightProblem>) -> Vec<PreflightProblem> {
    problems
        .into_iter()
        .filter(|p| match p {
            PreflightProblem::MissingTemplate { vm, .. }
            | PreflightProblem::NotATemplate { vm, .. } => !kinds
                .needs
                .get(vm)
                .is_some_and(|n| n.iter().any(|n| matches!(n, Need::Template(..)))),
            _ => true,
        })
        .collect()
}

/// Run downloads, templates and this agent's snippet writes; return the report so far and
/// the VMs that must wait (name → reason). `templates` gains the templates built.
pub async fn before_vms(
    client: &PveClient,
    kinds: &KindsPlan,
    vm_plan: &Plan,
    templates: &mut Templates,
    options: &ApplyOptions,
) -> (Report, BTreeMap<String, String>) {
    let mut report = Report::default();
    // Downloads, all at once (PVE runs each as its own task).
    let mut failed_downloads: BTreeSet<(String, String)> = BTreeSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    for step in kinds.downloads.steps.iter().cloned() {
        let (client, options) = (client.clone(), options.clone());
        tasks.spawn(async move {
            let result = match options.may_write() {
                Ok(()) => download::run(&client, &step, &options)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (step, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (step, result) = joined.expect("download task panicked");
        let key = format!("StorageDownload/{}", step.name);
        match result {
            Ok(done) => report.done.entry(key).or_default().push(done),
            Err(e) => {
                failed_downloads.insert((step.name.clone(), step.node.clone()));
                let e = format!("{}: {e}", step.node);
                report
                    .failed
                    .entry(key)
                    .and_modify(|m| m.push_str(&format!("; {e}")))
                    .or_insert(e);
            }
        }
    }
    for (name, why) in &kinds.downloads.problems {
        report
            .skipped
            .insert(format!("StorageDownload/{name}"), why.clone());
    }
    // Templates, each once its image is there.
    for b in &kinds.templates {
        let key = format!("Template/{}", b.name);
        if let Some(d) = &b.download {
            if failed_downloads.contains(&(d.clone(), b.node.clone()))
                || kinds.downloads.problems.contains_key(d)
            {
                report
                    .skipped
                    .insert(key, format!("depends on StorageDownload/{d} (not ready)"));
                continue;
            }
        }
        let mut done = Vec::new();
        let result = match options.may_write() {
            Ok(()) => template::run(client, b, options, &mut done)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if !done.is_empty() {
            report.done.insert(key.clone(), done);
        }
        match result {
            Ok(()) => {
                templates.nodes.insert(b.vmid, b.node.clone());
            }
            Err(e) => {
                templates.nodes.remove(&b.vmid);
                report.failed.insert(key, e);
            }
        }
    }
    for h in &kinds.template_holds {
        report
            .skipped
            .insert(format!("Template/{}", h.name), h.reason.clone());
    }
    // Snippet files on this node, and shared ones (the leader is who executes).
    let written = snippet::write_own(
        &kinds.snippets,
        &kinds.desired,
        &options.secrets,
        options.node.as_deref(),
        options.storage_root.as_deref(),
        true,
    );
    let mut failed_snippets = BTreeSet::new();
    for (name, result) in written {
        let key = format!("Snippet/{name}");
        match result {
            Ok(done) => {
                report.done.insert(key, done);
            }
            Err(e) => {
                failed_snippets.insert(name);
                report.failed.insert(key, e);
            }
        }
    }
    let blocked = gate_vms(
        client,
        kinds,
        vm_plan,
        templates,
        &failed_downloads,
        &failed_snippets,
        options,
    )
    .await;
    (report, blocked)
}

/// Whether a VM's actions boot it (and so read its ISO and snippets).
fn boots(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::Create { .. } | Action::Start { .. } | Action::Reboot { .. }
        )
    })
}

/// The VMs of `vm_plan` that must wait, with the reason.
async fn gate_vms(
    client: &PveClient,
    kinds: &KindsPlan,
    vm_plan: &Plan,
    templates: &Templates,
    failed_downloads: &BTreeSet<(String, String)>,
    failed_snippets: &BTreeSet<String>,
    options: &ApplyOptions,
) -> BTreeMap<String, String> {
    let mut blocked = BTreeMap::new();
    // (node, storage) → snippet files there and their sizes, read once.
    let mut listings: BTreeMap<(String, String), Option<BTreeMap<String, u64>>> = BTreeMap::new();
    for wave in &vm_plan.waves {
        for (name, actions) in wave {
            let Some(needs) = kinds.needs.get(name) else {
                continue;
            };
            let Some(node) = kinds.desired.vm(name).map(|v| v.node.to_string()) else {
                continue;
            };
            let creates = actions.iter().any(|a| matches!(a, Action::Create { .. }));
            let mut reasons = Vec::new();
            for need in needs {
                match need {
                    Need::Template(t, vmid) if creates && !templates.nodes.contains_key(vmid) => {
                        reasons.push(format!("Template/{t} is not ready"));
                    }
                    Need::Download(d)
                        if boots(actions)
                            && (failed_downloads.contains(&(d.clone(), node.clone()))
                                || kinds.downloads.problems.contains_key(d)) =>
                    {
                        reasons.push(format!("StorageDownload/{d} is not on {node}"));
                    }
                    Need::Snippet(i) if boots(actions) => {
                        let t = &kinds.snippets[*i];
                        if failed_snippets.contains(&t.snippet) {
                            reasons.push(format!("Snippet/{} was not written", t.snippet));
                            continue;
                        }
                        let Some(want) = snippet::content(t, &kinds.desired, &options.secrets)
                        else {
                            reasons.push(format!(
                                "Snippet/{} needs decrypted secrets (no identity configured)",
                                t.snippet
                            ));
                            continue;
                        };
                        // Written here (this node, or shared storage): in place.
                        let Some(file_node) = &t.node else { continue };
                        if Some(file_node.as_str()) == options.node.as_deref() {
                            continue;
                        }
                        let key = (file_node.clone(), t.storage.clone());
                        if !listings.contains_key(&key) {
                            let found = client
                                .storage_content(file_node, &t.storage, Some("snippets"))
                                .await
                                .ok()
                                .map(|l| {
                                    l.into_iter()
                                        .map(|c| (c.volid, c.size.unwrap_or(0)))
                                        .collect()
                                });
                            listings.insert(key.clone(), found);
                        }
                        let have = listings[&key].as_ref().and_then(|l| l.get(&t.volume));
                        if have != Some(&(want.len() as u64)) {
                            reasons.push(format!(
                                "waiting for {}'s agent to write {} ({})",
                                file_node,
                                t.file,
                                if have.is_some() {
                                    "it is outdated"
                                } else {
                                    "not there yet"
                                }
                            ));
                        }
                    }
                    _ => {}
                }
            }
            if !reasons.is_empty() {
                blocked.insert(name.clone(), reasons.join("; "));
            }
        }
    }
    blocked
}

/// `plan` without the VMs in `blocked`.
pub fn without(plan: &Plan, blocked: &BTreeMap<String, String>) -> Plan {
    let mut out = plan.clone();
    for wave in &mut out.waves {
        wave.retain(|name, _| !blocked.contains_key(name));
    }
    out.waves.retain(|w| !w.is_empty());
    out
}

/// Converge containers (after the VMs: nothing the VMs need comes from them).
pub async fn after_vms(
    client: &PveClient,
    kinds: &KindsPlan,
    options: &ApplyOptions,
    report: &mut Report,
) {
    container::apply(client, &kinds.containers, options, report).await;
}

/// A follower's part: write the node-local snippet files of the VMs on this node.
pub fn write_local_snippets(kinds: &KindsPlan, options: &ApplyOptions) -> Report {
    let mut report = Report::default();
    let written = snippet::write_own(
        &kinds.snippets,
        &kinds.desired,
        &options.secrets,
        options.node.as_deref(),
        options.storage_root.as_deref(),
        false,
    );
    for (name, result) in written {
        match result {
            Ok(done) => {
                report.done.insert(format!("Snippet/{name}"), done);
            }
            Err(e) => {
                tracing::warn!(snippet = %name, "writing snippet files: {e}");
                report.failed.insert(format!("Snippet/{name}"), e);
            }
        }
    }
    report
}
