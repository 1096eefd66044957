//! Executing a plan against the API: waves in order, the VMs of a wave in parallel (bounded),
//! each VM's actions in order. A failed VM does not stop unrelated ones; VMs in later waves
//! are skipped when something they may depend on failed.

use crate::plan::compare::diff;
use crate::plan::{Action, Plan};
use crate::pve::{encode_sshkeys, CloneOptions, Params, PveClient, PveError};
use pve_gitops_schema::ids::VMID_MIN;
use pve_gitops_schema::manifest::vm::TemplateRef;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long one task (clone, start...) may run before the VM is reported failed.
const TASK_TIMEOUT: Duration = Duration::from_secs(600);

/// Where templates are: vmid → node, and template names (from `Template` manifests) → vmid.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub nodes: BTreeMap<u32, String>,
    pub by_name: BTreeMap<String, u32>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per VM name, the actions done (e.g. `create 501`, `configure memory`).
    pub done: BTreeMap<String, Vec<String>>,
    pub failed: BTreeMap<String, String>,
    /// VMs not attempted because an earlier wave failed.
    pub skipped: Vec<String>,
}

/// Give every create without a vmid a free one, before anything runs: parallel creates
/// asking `/cluster/nextid` would all get the same answer. Free means not used in the
/// cluster and not declared by another create of this plan.
pub fn allocate_vmids(plan: &mut Plan, used: &BTreeSet<u32>) {
    let mut taken: BTreeSet<u32> = used.clone();
    taken.extend(plan.actions().filter_map(|a| match a {
        Action::Create { vmid: Some(v), .. } => Some(*v),
        _ => None,
    }));
    let mut next = VMID_MIN;
    for wave in &mut plan.waves {
        for action in wave.values_mut().flatten() {
            if let Action::Create {
                vmid: vmid @ None, ..
            } = action
            {
                while taken.contains(&next) {
                    next += 1;
                }
                *vmid = Some(next);
                taken.insert(next);
            }
        }
    }
}

/// Run `plan`, at most `parallelism` VMs at once.
pub async fn apply(
    client: &PveClient,
    plan: &Plan,
    templates: &Templates,
    parallelism: usize,
) -> Report {
    let mut report = Report::default();
    let limit = Arc::new(Semaphore::new(parallelism.max(1)));
    for wave in &plan.waves {
        if !report.failed.is_empty() {
            report.skipped.extend(wave.keys().cloned());
            continue;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (name, actions) in wave {
            let (client, limit, templates) = (client.clone(), limit.clone(), templates.clone());
            let (name, actions) = (name.clone(), actions.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                let mut done = Vec::new();
                for a in &actions {
                    match run(&client, a, &templates).await {
                        Ok(what) => done.push(what),
                        Err(e) => return (name, done, Some(format!("{}: {e}", describe(a)))),
                    }
                }
                (name, done, None)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (name, done, err) = joined.expect("apply task panicked");
            if !done.is_empty() {
                report.done.insert(name.clone(), done);
            }
            if let Some(e) = err {
                report.failed.insert(name, e);
            }
        }
    }
    report
}

fn describe(a: &Action) -> String {
    match a {
        Action::Create { name, .. } => format!("create {name}"),
        Action::Configure { vmid, .. } => format!("configure {vmid}"),
        Action::Resize { vmid, disk, .. } => format!("resize {vmid} {disk}"),
        Action::Start { vmid, .. } => format!("start {vmid}"),
        Action::Stop { vmid, .. } => format!("stop {vmid}"),
        Action::Reboot { vmid, .. } => format!("reboot {vmid}"),
        Action::Delete { vmid, .. } => format!("delete {vmid}"),
    }
}

/// Config changes as form parameters. Write-once values without a value (a secret not
/// decrypted here) are left out.
fn params(changes: &[crate::plan::compare::Change]) -> Params {
    changes
        .iter()
        .filter(|c| !c.to.is_empty())
        .fold(Params::new(), |p, c| {
            // PVE wants sshkeys URL-encoded itself (so they are encoded twice on the wire).
            let value = if c.key == "sshkeys" {
                encode_sshkeys(c.to.lines())
            } else {
                c.to.clone()
            };
            p.with(c.key.clone(), value)
        })
}

async fn run(
    client: &PveClient,
    action: &Action,
    templates: &Templates,
) -> Result<String, ApplyError> {
    match action {
        Action::Create {
            name,
            vmid,
            node,
            clone,
            config,
            start,
            disks,
        } => {
            let vmid = match vmid {
                Some(v) => *v,
                None => client.nextid().await?,
            };
            let mut did = vec![format!("create {vmid}")];
            if let Some(c) = clone {
                let tvmid = match &c.template {
                    TemplateRef::Vmid(v) => v.get(),
                    TemplateRef::Name(n) => *templates
                        .by_name
                        .get(n.as_str())
                        .ok_or_else(|| missing(&format!("template {n}")))?,
                };
                let tnode = templates
                    .nodes
                    .get(&tvmid)
                    .ok_or_else(|| missing(&format!("template {tvmid}")))?;
                let mut opts = CloneOptions::new(vmid);
                opts.name = Some(name.clone());
                opts.full = Some(c.full);
                opts.storage = c.storage.as_ref().map(ToString::to_string);
                opts.target = (tnode != node).then(|| node.clone());
                let upid = client.clone_vm(tnode, tvmid, &opts).await?;
                client.wait_task(&upid, TASK_TIMEOUT).await?;
            } else {
                let upid = client
                    .create_vm(node, vmid, &Params::new().with("name", name.clone()))
                    .await?;
                client.wait_task(&upid, TASK_TIMEOUT).await?;
            }
            // Configure what the clone (or the empty VM) does not have yet.
            let current = client.get_vm_config(node, vmid).await?;
            let actual: BTreeMap<String, String> = current
                .values()
                .keys()
                .filter_map(|k| current.text(k).map(|v| (k.clone(), v)))
                .collect();
            let changes = diff(config, &actual);
            if !changes.is_empty() {
                client
                    .set_vm_config(node, vmid, &params(&changes), &[], current.digest())
                    .await?;
                did.push(format!("configure {}", keys(&changes)));
            }
            // A clone has the template's disks: grow them to the declared size (a template
            // disk larger than declared is kept; shrinking is never done).
            for (slot, bytes) in disks {
                let have = actual.get(slot).and_then(|v| crate::plan::vm::disk_size(v));
                if have.is_some_and(|h| h < *bytes) {
                    did.push(grow(client, node, vmid, slot, *bytes).await?);
                }
            }
            if *start {
                let upid = client.start_vm(node, vmid).await?;
                client.wait_task(&upid, TASK_TIMEOUT).await?;
                did.push("start".into());
            }
            Ok(did.join(", "))
        }
        Action::Configure {
            vmid,
            node,
            changes,
            digest,
        } => {
            client
                .set_vm_config(node, *vmid, &params(changes), &[], digest.as_deref())
                .await?;
            Ok(format!("configure {}", keys(changes)))
        }
        Action::Resize {
            vmid,
            node,
            disk,
            to,
        } => grow(client, node, *vmid, disk, *to).await,
        Action::Start { vmid, node } => {
            let upid = client.start_vm(node, *vmid).await?;
            client.wait_task(&upid, TASK_TIMEOUT).await?;
            Ok("start".into())
        }
        Action::Stop { vmid, node } => {
            let upid = client.stop_vm(node, *vmid).await?;
            client.wait_task(&upid, TASK_TIMEOUT).await?;
            Ok("stop".into())
        }
        Action::Reboot { vmid, node, .. } => {
            let upid = client.reboot_vm(node, *vmid).await?;
            client.wait_task(&upid, TASK_TIMEOUT).await?;
            Ok("reboot".into())
        }
        Action::Delete { vmid, node, .. } => {
            let upid = client.delete_vm(node, *vmid, true, true).await?;
            client.wait_task(&upid, TASK_TIMEOUT).await?;
            Ok("delete".into())
        }
    }
}

/// Why one action failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Pve(#[from] PveError),
    #[error("{0} is not in the cluster")]
    MissingTemplate(String),
}

/// The changed keys, for the report.
fn keys(changes: &[crate::plan::compare::Change]) -> String {
    changes
        .iter()
        .map(|c| c.key.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Grow `disk` to `bytes` (PVE only grows; the plan never asks for less).
async fn grow(
    client: &PveClient,
    node: &str,
    vmid: u32,
    disk: &str,
    bytes: u64,
) -> Result<String, ApplyError> {
    let size = pve_gitops_schema::units::Bytes(bytes).pve();
    let upid = client.resize_disk(node, vmid, disk, &size, None).await?;
    client.wait_optional(upid, TASK_TIMEOUT).await?;
    Ok(format!("resize {disk} to {size}"))
}

fn missing(what: &str) -> ApplyError {
    ApplyError::MissingTemplate(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::pveconfig::DesiredConfig;

    fn create(name: &str, vmid: Option<u32>) -> Vec<Action> {
        vec![Action::Create {
            disks: Vec::new(),
            name: name.into(),
            vmid,
            node: "pve1".into(),
            clone: None,
            config: DesiredConfig::new(),
            start: false,
        }]
    }

    /// Parallel creates must not race for one `/cluster/nextid`: each gets its own free id,
    /// skipping ids in use and ids other creates declare.
    #[test]
    fn allocation_skips_used_and_declared_vmids() {
        let mut plan = Plan::default();
        plan.waves.push(BTreeMap::from([
            ("a".to_string(), create("a", None)),
            ("b".to_string(), create("b", Some(102))),
            ("c".to_string(), create("c", None)),
        ]));
        plan.waves
            .push(BTreeMap::from([("d".to_string(), create("d", None))]));
        allocate_vmids(&mut plan, &BTreeSet::from([100, 103]));
        let ids: Vec<Option<u32>> = plan
            .actions()
            .map(|a| match a {
                Action::Create { vmid, .. } => *vmid,
                _ => None,
            })
            .collect();
        assert_eq!(ids, [Some(101), Some(102), Some(104), Some(105)]);
    }
}
