//! One action against the API: create (clone or from scratch, then configure, grow and
//! start), configure, grow a disk, power, delete.
//!
//! Every request that changes the cluster is preceded by `cx.may_write()?`: under
//! leader election a write is sent only while this agent's lease allows it, and once
//! the gate closes the VM's remaining actions fail with [`ApplyError::NotLeader`].

use super::{ApplyError, Context, Templates};
use crate::plan::actual::CREATED_NOTE;
use crate::plan::compare::{diff, Change};
use crate::plan::pveconfig::DesiredConfig;
use crate::plan::vm::disk_size;
use crate::plan::Action;
use crate::pve::{
    encode_sshkeys, CloneOptions, Params, Probed, PveClient, PveError, ResourceType, VmConfig,
};
use pve_gitops_schema::manifest::vm::{CloneSource, TemplateRef};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Run one action of the VM declared as `resource`, noting each step done in `done` as it
/// completes (so a create that fails after its clone still reports the clone).
pub(super) async fn run(
    client: &PveClient,
    resource: &str,
    action: &Action,
    templates: &Templates,
    cx: &Context,
    done: &mut Vec<String>,
) -> Result<(), ApplyError> {
    let did = match action {
        Action::Create {
            name,
            vmid,
            node,
            clone,
            config,
            start,
            disks,
            record,
        } => {
            let vmid = match vmid {
                Some(v) => *v,
                None => client.nextid().await?,
            };
            let new = NewVm { name, vmid, node };
            let made = match clone {
                Some(c) => clone_vm(client, &new, c, templates, cx, done).await?,
                None => {
                    let made = create_empty(client, &new, cx).await?;
                    done.push(format!("create {vmid}"));
                    Some(made)
                }
            };
            configure_new(client, &new, made, config, disks, cx, done).await?;
            if *start {
                cx.may_write()?;
                let upid = client.start_vm(node, vmid).await?;
                client.wait_task(&upid, cx.task_timeout).await?;
                done.push("start".into());
            }
            // Last: only a VM that got this far is recorded as converged.
            cx.may_write()?;
            let p = Params::new().with("description", record.clone());
            client.set_vm_config(node, vmid, &p, &[], None).await?;
            return Ok(());
        }
        Action::Configure {
            vmid,
            node,
            changes,
            digest,
        } => {
            let p = params_with_secrets(changes, resource, cx);
            if p.is_empty() {
                // Only a secret this agent has no value for: nothing to send.
                return Ok(());
            }
            cx.may_write()?;
            client
                .set_vm_config(node, *vmid, &p, &[], digest.as_deref())
                .await?;
            format!("configure {}", sent(&p))
        }
        Action::Resize {
            vmid,
            node,
            disk,
            to,
        } => grow(client, node, *vmid, disk, *to, cx).await?,
        Action::Migrate { vmid, from, to } => {
            migrate(client, *vmid, from, to, cx).await?;
            format!("migrate to {to}")
        }
        Action::Start { vmid, node } => {
            cx.may_write()?;
            let upid = client.start_vm(node, *vmid).await?;
            client.wait_task(&upid, cx.task_timeout).await?;
            "start".into()
        }
        Action::Stop { vmid, node } => {
            cx.may_write()?;
            let upid = client.stop_vm(node, *vmid).await?;
            client.wait_task(&upid, cx.task_timeout).await?;
            "stop".into()
        }
        Action::Reboot { vmid, node, .. } => {
            cx.may_write()?;
            let upid = client.reboot_vm(node, *vmid).await?;
            client.wait_task(&upid, cx.task_timeout).await?;
            "reboot".into()
        }
        Action::Retire {
            vmid,
            node,
            changes,
            digest,
        } => {
            cx.may_write()?;
            client
                .set_vm_config(node, *vmid, &params(changes), &[], digest.as_deref())
                .await?;
            "retire (tagged pve-gitops-orphan, disks kept)".into()
        }
        Action::Delete { vmid, node, .. } => {
            cx.may_write()?;
            let upid = client.delete_vm(node, *vmid, true, true).await?;
            client.wait_task(&upid, cx.task_timeout).await?;
            "delete".into()
        }
    };
    done.push(did);
    Ok(())
}

/// The VM a create makes.
struct NewVm<'a> {
    name: &'a str,
    vmid: u32,
    node: &'a str,
}

/// Clone the template. At most `limits.clones_per_template` clones of one template run
/// at once (storages whose clones lock the source serialize them). Gives the clone's
/// config as its task left it, unless the clone was migrated after (then `None`).
async fn clone_vm(
    client: &PveClient,
    new: &NewVm<'_>,
    source: &CloneSource,
    templates: &Templates,
    cx: &Context,
    done: &mut Vec<String>,
) -> Result<Option<VmConfig>, ApplyError> {
    let tvmid = match &source.template {
        TemplateRef::Vmid(v) => v.get(),
        TemplateRef::Name(n) => *templates
            .by_name
            .get(n.as_str())
            .ok_or_else(|| ApplyError::MissingTemplate(format!("template {n}")))?,
    };
    let tnode = templates
        .nodes
        .get(&tvmid)
        .ok_or_else(|| ApplyError::MissingTemplate(format!("template {tvmid}")))?;
    // PVE clones to another node only when every disk of the clone lands on shared
    // storage; otherwise clone on the template's node and migrate the stopped clone.
    let storage = source.storage.as_ref().map(ToString::to_string);
    let cross_node = tnode != new.node;
    let via_migration = cross_node
        && !cx
            .clones_to_shared(client, tnode, tvmid, storage.as_deref())
            .await?;
    if via_migration && !source.full {
        return Err(ApplyError::LinkedCloneAcrossNodes {
            template: tvmid,
            template_node: tnode.clone(),
            node: new.node.to_string(),
        });
    }
    let mut opts = CloneOptions::new(new.vmid);
    opts.name = Some(new.name.to_string());
    opts.full = Some(source.full);
    opts.storage = storage;
    opts.target = (cross_node && !via_migration).then(|| new.node.to_string());
    // Marks the VM as ours until the configure step sets the ownership tag: a pass that
    // dies in between finds it again and finishes it instead of refusing a stranger.
    opts.description = Some(CREATED_NOTE.to_string());
    let made = {
        let _permit = cx.clone_permit(tvmid).await;
        // After the permit: waiting for it may outlast the lease.
        cx.may_write()?;
        let started = client.clone_vm(tnode, tvmid, &opts).await;
        let lands_on = if via_migration { tnode } else { new.node };
        finish_create(client, new, lands_on, started, cx).await?
    };
    done.push(format!("create {}", new.vmid));
    if via_migration {
        migrate(client, new.vmid, tnode, new.node, cx).await?;
        done.push(format!("migrate to {}", new.node));
        return Ok(None);
    }
    Ok(Some(made))
}

/// Move a stopped VM from `from` to `to`.
async fn migrate(
    client: &PveClient,
    vmid: u32,
    from: &str,
    to: &str,
    cx: &Context,
) -> Result<(), ApplyError> {
    cx.may_write()?;
    let upid = client.migrate_vm(from, vmid, to, false).await?;
    client.wait_task(&upid, cx.task_timeout).await?;
    Ok(())
}

async fn create_empty(
    client: &PveClient,
    new: &NewVm<'_>,
    cx: &Context,
) -> Result<VmConfig, ApplyError> {
    let params = Params::new()
        .with("name", new.name.to_string())
        .with("description", CREATED_NOTE.to_string());
    cx.may_write()?;
    let started = client.create_vm(new.node, new.vmid, &params).await;
    finish_create(client, new, new.node, started, cx).await
}

/// Wait for a create's task and give the new VM's config, read on `node` (where the task
/// leaves it). The config is what tells that the task is over (no `clone`/`create` lock
/// left), so one read serves both the wait and the configure step after it.
///
/// A create is never sent twice: when its request failed in a way that leaves open
/// whether PVE acted on it (a 5xx, a dropped connection), look for the VM before giving
/// up; if it is there under our name, wait for it to be ready.
async fn finish_create(
    client: &PveClient,
    new: &NewVm<'_>,
    node: &str,
    started: Result<crate::pve::Upid, PveError>,
    cx: &Context,
) -> Result<VmConfig, ApplyError> {
    match started {
        Ok(upid) => {
            let unlocked = || async {
                // An error (no config yet: a clone to another node moves it there last):
                // not done, or failed; the task's status tells which.
                match client.get_vm_config(node, new.vmid).await {
                    Ok(config) if config.lock().is_none() => Probed::Done(config),
                    Ok(_) => Probed::Busy,
                    Err(_) => Probed::Unknown,
                }
            };
            Ok(client
                .wait_task_probing(&upid, cx.task_timeout, unlocked)
                .await?)
        }
        Err(e) if maybe_applied(&e) => {
            if !appeared(client, new).await? {
                return Err(e.into());
            }
            tracing::info!(vmid = new.vmid, name = new.name, error = %e, "create answered with an error but the VM exists; continuing with it");
            wait_unlocked(client, new, cx).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether PVE may have acted on a request that answered with `e`.
fn maybe_applied(e: &PveError) -> bool {
    match e {
        PveError::Transport { .. } | PveError::InvalidResponse { .. } => true,
        PveError::Api(f) => f.status >= 500,
        _ => false,
    }
}

/// Whether the VM `new` exists now, under its name.
async fn appeared(client: &PveClient, new: &NewVm<'_>) -> Result<bool, ApplyError> {
    let guests = client.cluster_resources(Some(ResourceType::Vm)).await?;
    Ok(guests
        .iter()
        .any(|r| r.vmid == Some(u64::from(new.vmid)) && r.name.as_deref() == Some(new.name)))
}

/// Wait until the VM's create lock (`clone`, `create`) is gone: its task has finished.
/// Gives the config without the lock.
async fn wait_unlocked(
    client: &PveClient,
    new: &NewVm<'_>,
    cx: &Context,
) -> Result<VmConfig, ApplyError> {
    let deadline = Instant::now() + cx.task_timeout;
    let mut wait = Duration::from_millis(200);
    loop {
        let node = client
            .cluster_resources(Some(ResourceType::Vm))
            .await?
            .into_iter()
            .find(|r| r.vmid == Some(u64::from(new.vmid)))
            .and_then(|r| r.node)
            .ok_or_else(|| ApplyError::Vanished(new.vmid))?;
        let config = client.get_vm_config(&node, new.vmid).await?;
        match config.lock() {
            None => return Ok(config),
            Some(lock) if Instant::now() + wait >= deadline => {
                return Err(ApplyError::StillLocked(new.vmid, lock))
            }
            Some(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Configure what the clone (or the empty VM) does not have yet, and grow its disks to the
/// declared size (a template disk larger than declared is kept: disks never shrink).
/// `made`: the config the create left, when it was read on the VM's node already.
async fn configure_new(
    client: &PveClient,
    new: &NewVm<'_>,
    made: Option<VmConfig>,
    config: &DesiredConfig,
    disks: &[(String, u64)],
    cx: &Context,
    did: &mut Vec<String>,
) -> Result<(), ApplyError> {
    let current = match made {
        Some(c) => c,
        None => client.get_vm_config(new.node, new.vmid).await?,
    };
    let actual: BTreeMap<String, String> = current
        .values()
        .keys()
        .filter_map(|k| current.text(k).map(|v| (k.clone(), v)))
        .collect();
    let p = params_with_secrets(&diff(config, &actual), new.name, cx);
    if !p.is_empty() {
        cx.may_write()?;
        client
            .set_vm_config(new.node, new.vmid, &p, &[], current.digest())
            .await?;
        did.push(format!("configure {}", sent(&p)));
    }
    for (slot, bytes) in disks {
        let have = actual.get(slot).and_then(|v| disk_size(v));
        if have.is_some_and(|h| h < *bytes) {
            did.push(grow(client, new.node, new.vmid, slot, *bytes, cx).await?);
        }
    }
    Ok(())
}

/// Config changes as form parameters. Write-once values without a value (a secret not
/// decrypted here) are left out.
fn params(changes: &[Change]) -> Params {
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

/// [`params`] with the write-once secrets the plan left without a value (`cipassword`)
/// from the revision's decrypted secrets of the VM declared as `resource`. A configure of
/// a VM that exists needs them as much as a create: a create finished by a later pass,
/// and a secret removed behind the agent's back and healed, are configures. A secret
/// with no decrypted value (no identity) stays out.
fn params_with_secrets(changes: &[Change], resource: &str, cx: &Context) -> Params {
    let mut p = params(changes);
    for c in changes.iter().filter(|c| c.to.is_empty()) {
        if let Some(secret) = cx.secrets.get(resource, &c.key).and_then(|v| v.as_str()) {
            p.push(c.key.clone(), secret.to_string());
        }
    }
    p
}

/// The keys sent, for the report: what was written, not what was planned.
fn sent(p: &Params) -> String {
    p.iter().map(|(k, _)| k).collect::<Vec<_>>().join(",")
}

/// Grow `disk` to `bytes` (PVE only grows; the plan never asks for less).
async fn grow(
    client: &PveClient,
    node: &str,
    vmid: u32,
    disk: &str,
    bytes: u64,
    cx: &Context,
) -> Result<String, ApplyError> {
    let size = pve_gitops_schema::units::Bytes(bytes).pve();
    cx.may_write()?;
    let upid = client.resize_disk(node, vmid, disk, &size, None).await?;
    client.wait_optional(upid, cx.task_timeout).await?;
    Ok(format!("resize {disk} to {size}"))
}
