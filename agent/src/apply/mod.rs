//! Executing a plan against the API: waves in order, the VMs of a wave in parallel
//! (bounded globally, per set by `maxParallel`, per source template for clones), each VM's
//! actions in order, then its health gate.
//!
//! A failed VM does not stop unrelated ones: only the VMs that depend on it (directly or
//! through other skipped VMs) are skipped, each with the reason. Deletions are skipped
//! when anything in the pass failed: nothing is destroyed while the cluster is not where
//! the manifests want it.

pub mod cluster;
pub mod firewall;
mod gate;
pub mod pool;
pub mod sdn;
mod steps;
mod vmids;

pub use gate::GateError;
pub use vmids::allocate_vmids;

use crate::lease::WriteGate;
use crate::plan::rollout::Rollout;
use crate::plan::{Action, Plan};
use crate::pve::{PveClient, PveError};
use crate::revision::Secrets;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Where templates are: vmid → node, and template names (from `Template` manifests) → vmid.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub nodes: BTreeMap<u32, String>,
    pub by_name: BTreeMap<String, u32>,
}

/// VMs changed at once on one node when neither the agent's settings nor the datacenter's
/// `max_workers` (datacenter.cfg) say: PVE's own default for its bulk actions.
pub const DEFAULT_PER_NODE: usize = 4;

/// How much runs at once, and the secrets creates set.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// VMs changed at once in the whole cluster (`None`: no bound beyond `per_node`).
    pub parallelism: Option<usize>,
    /// VMs changed at once on one node (the VM's). PVE's own bulk actions (start all,
    /// migrate all) run `max_workers` tasks at once per node, 4 unless the datacenter
    /// sets another number; bounding per node rather than per cluster lets a cluster of
    /// more nodes converge faster. A clone's task runs on its template's node:
    /// `clones_per_template` bounds those. `None`: the datacenter's `max_workers`, which
    /// [`crate::pass::execute`] reads; [`DEFAULT_PER_NODE`] where nothing read it.
    pub per_node: Option<usize>,
    /// Clones of one source template at once (`None`: only `per_node` and `parallelism`
    /// bound them; the clone tasks all run on the template's node).
    /// Storages whose clones hold a lock on the source need 1.
    pub clones_per_template: Option<usize>,
    /// How long one PVE task (clone, start...) may run before its VM is reported failed.
    /// The task itself goes on: a later pass finds the VM locked and waits for it.
    pub task_timeout: Duration,
    /// The revision's decrypted secrets (`cipassword` of new VMs).
    pub secrets: Arc<Secrets>,
    /// The leader election's write gate, asked before every API write; `None` (a
    /// one-shot `apply`, or `run --no-lease`) writes unconditionally.
    pub gate: Option<WriteGate>,
    /// The node this agent runs on: it writes the node-local snippet files of that
    /// node's VMs (`None`: only shared ones).
    pub node: Option<String>,
    /// Stands for `/` when snippet files are written (`None`: `/`); tests give each
    /// simulated node its own directory.
    pub storage_root: Option<std::path::PathBuf>,
    /// Where the `tcpPort` health gate dials instead of the guest's address (tests, whose
    /// guests' addresses are not reachable): with a map, an address missing from it is
    /// never dialled and counts as refused. `None`: the guest's own address.
    pub tcp_probes: Option<Arc<BTreeMap<std::net::SocketAddr, std::net::SocketAddr>>>,
    /// Storage id → shared, when the pass listed the storages already (pre-flight);
    /// `None`: apply lists them itself when a clone goes to another node.
    pub storages_shared: Option<Arc<BTreeMap<String, bool>>>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: None,
            per_node: None,
            clones_per_template: None,
            task_timeout: Duration::from_secs(600),
            secrets: Arc::default(),
            gate: None,
            node: None,
            storage_root: None,
            tcp_probes: None,
            storages_shared: None,
        }
    }
}

impl ApplyOptions {
    /// At most `parallelism` VMs at once in the whole cluster (and per node what
    /// `per_node: None` gives).
    pub fn parallel(parallelism: usize) -> Self {
        ApplyOptions {
            parallelism: Some(parallelism),
            ..Self::default()
        }
    }

    /// May this agent still write (the leader election's gate, if any)?
    pub fn may_write(&self) -> Result<(), ApplyError> {
        match &self.gate {
            Some(gate) if !gate.may_write(std::time::Instant::now()) => Err(ApplyError::NotLeader),
            _ => Ok(()),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per VM name, the actions done (e.g. `create 501`, `configure memory`).
    pub done: BTreeMap<String, Vec<String>>,
    pub failed: BTreeMap<String, String>,
    /// VMs not attempted, and why (a dependency failed; a deletion in a failing pass).
    pub skipped: BTreeMap<String, String>,
}

/// Why one action failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Pve(#[from] PveError),
    #[error("{0} is not in the cluster")]
    MissingTemplate(String),
    #[error("VM {0} disappeared while it was being created")]
    Vanished(u32),
    #[error("VM {0} is still locked ({1}) after its create")]
    StillLocked(u32, String),
    /// The write gate closed (this agent lost the lease or is shutting down): this
    /// write and every later one of the pass are not sent.
    #[error("not the leader any more: the write was not sent")]
    NotLeader,
    #[error("not ready: {0}")]
    Gate(#[from] GateError),
    #[error("a linked clone of template {template} cannot be placed on {node}: the template's disks are on storage only {template_node} sees (use `full: true`, or keep the template on shared storage)")]
    LinkedCloneAcrossNodes {
        template: u32,
        template_node: String,
        node: String,
    },
}

/// What every VM's run shares: the semaphores that bound what runs at once, and the
/// task timeout.
pub(crate) struct Context {
    pub(crate) task_timeout: Duration,
    pub(crate) secrets: Arc<Secrets>,
    gate: Option<WriteGate>,
    /// Storage id → shared: pre-flight's, or read once per apply when a clone goes to
    /// another node.
    shared_storage: tokio::sync::OnceCell<Arc<BTreeMap<String, bool>>>,
    /// Template vmid → the storages its disks are on.
    template_storages: tokio::sync::Mutex<BTreeMap<u32, Vec<String>>>,
    global: Option<Arc<Semaphore>>,
    per_node: usize,
    nodes: Mutex<BTreeMap<String, Arc<Semaphore>>>,
    sets: Mutex<BTreeMap<String, Arc<Semaphore>>>,
    templates: Mutex<BTreeMap<u32, Arc<Semaphore>>>,
    clones_per_template: Option<usize>,
    tcp_probes: Option<Arc<BTreeMap<std::net::SocketAddr, std::net::SocketAddr>>>,
}

impl Context {
    fn new(options: &ApplyOptions) -> Self {
        Context {
            task_timeout: options.task_timeout,
            secrets: options.secrets.clone(),
            gate: options.gate.clone(),
            shared_storage: tokio::sync::OnceCell::new_with(options.storages_shared.clone()),
            template_storages: tokio::sync::Mutex::default(),
            global: options.parallelism.map(bound),
            per_node: options.per_node.unwrap_or(DEFAULT_PER_NODE),
            nodes: Mutex::default(),
            sets: Mutex::default(),
            templates: Mutex::default(),
            clones_per_template: options.clones_per_template,
            tcp_probes: options.tcp_probes.clone(),
        }
    }

    /// Asked right before each API write: may this agent still write? Without a gate
    /// (no leader election) always.
    pub(crate) fn may_write(&self) -> Result<(), ApplyError> {
        match &self.gate {
            Some(gate) if !gate.may_write(std::time::Instant::now()) => Err(ApplyError::NotLeader),
            _ => Ok(()),
        }
    }

    fn keyed<K: Ord + Clone>(
        map: &Mutex<BTreeMap<K, Arc<Semaphore>>>,
        key: &K,
        permits: usize,
    ) -> Arc<Semaphore> {
        map.lock()
            .expect("limits lock")
            .entry(key.clone())
            .or_insert_with(|| bound(permits))
            .clone()
    }

    /// The permits one VM holds while its actions run on `node`: its set's first, then
    /// its node's, then a cluster-wide one (so a VM waiting for a narrower bound does not
    /// hold a wider slot that VMs elsewhere could use).
    async fn vm_permits(&self, rollout: Option<&Rollout>, node: &str) -> Vec<OwnedSemaphorePermit> {
        let mut permits = Vec::new();
        if let Some((set, n)) = rollout.and_then(|r| r.set_limit.as_ref()) {
            let s = Self::keyed(&self.sets, set, *n as usize);
            permits.push(s.acquire_owned().await.expect("semaphore open"));
        }
        let n = Self::keyed(&self.nodes, &node.to_string(), self.per_node);
        permits.push(n.acquire_owned().await.expect("semaphore open"));
        if let Some(g) = &self.global {
            permits.push(g.clone().acquire_owned().await.expect("semaphore open"));
        }
        permits
    }

    /// Whether a clone of `template` lands on shared storage only: on `storage` when the
    /// clone names one, else on the template's own disks' storages. Costs one listing of
    /// the storages (unless pre-flight's are known) and one read of the template's
    /// config, each once per apply.
    pub(crate) async fn clones_to_shared(
        &self,
        client: &PveClient,
        template_node: &str,
        template: u32,
        storage: Option<&str>,
    ) -> Result<bool, PveError> {
        let shared = self
            .shared_storage
            .get_or_try_init(|| async {
                let list = client
                    .cluster_resources(Some(crate::pve::ResourceType::Storage))
                    .await?;
                Ok::<_, PveError>(Arc::new(
                    list.into_iter()
                        .filter_map(|r| r.storage.map(|s| (s, r.shared)))
                        .collect(),
                ))
            })
            .await?;
        if let Some(s) = storage {
            return Ok(shared.get(s).copied().unwrap_or(false));
        }
        let mut known = self.template_storages.lock().await;
        let storages = match known.entry(template) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let config = client.get_vm_config(template_node, template).await?;
                e.insert(
                    config
                        .values()
                        .keys()
                        .filter(|k| is_drive_key(k))
                        .filter_map(|k| config.text(k))
                        .filter_map(|v| drive_storage(&v))
                        .collect(),
                )
            }
        };
        Ok(storages
            .iter()
            .all(|s| shared.get(s).copied().unwrap_or(false)))
    }

    /// A permit to clone from `template`, when clones of one template are limited.
    pub(crate) async fn clone_permit(&self, template: u32) -> Option<OwnedSemaphorePermit> {
        let n = self.clones_per_template?;
        let s = Self::keyed(&self.templates, &template, n);
        Some(s.acquire_owned().await.expect("semaphore open"))
    }
}

/// A semaphore of `n` permits, at least 1 and at most what tokio allows: a bound from
/// the command line or the datacenter's `max_workers` (which PVE does not cap) must not
/// panic the agent.
fn bound(n: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS)))
}

/// Run `plan`.
pub async fn apply(
    client: &PveClient,
    plan: &Plan,
    templates: &Templates,
    options: &ApplyOptions,
) -> Report {
    apply_continuing(client, plan, templates, options, Report::default()).await
}

/// [`apply`], adding to `report`: what already failed or was skipped there (a template a
/// VM needs, say) skips the VMs that depend on it.
pub async fn apply_continuing(
    client: &PveClient,
    plan: &Plan,
    templates: &Templates,
    options: &ApplyOptions,
    mut report: Report,
) -> Report {
    let cx = Arc::new(Context::new(options));
    for wave in &plan.waves {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, actions) in wave {
            let rollout = plan.rollout.get(name).cloned();
            if report.skipped.contains_key(name) {
                continue;
            }
            if let Some(reason) = skip_reason(&report, actions, rollout.as_ref()) {
                count_actions(actions, "skipped");
                report.skipped.insert(name.clone(), reason);
                continue;
            }
            let (client, cx, templates) = (client.clone(), cx.clone(), templates.clone());
            let (name, actions) = (name.clone(), actions.clone());
            // Everything logged for this VM carries its name (RESOURCE in the journal).
            let span = tracing::info_span!("vm", resource = %name);
            tasks.spawn(tracing::Instrument::instrument(
                async move {
                    let outcome =
                        run_vm(&client, &name, &actions, rollout.as_ref(), &templates, &cx).await;
                    (name, outcome)
                },
                span,
            ));
        }
        while let Some(joined) = tasks.join_next().await {
            let (name, (done, err)) = joined.expect("apply task panicked");
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

/// Whether this agent may still write (the leader election's gate, when there is one).
pub(crate) fn may_write(options: &ApplyOptions) -> bool {
    options
        .gate
        .as_ref()
        .is_none_or(|g| g.may_write(std::time::Instant::now()))
}

/// Why a VM is not attempted, if it is not.
fn skip_reason(report: &Report, actions: &[Action], rollout: Option<&Rollout>) -> Option<String> {
    let deletes = actions
        .iter()
        .any(|a| matches!(a, Action::Delete { .. } | Action::Retire { .. }));
    if deletes && !report.failed.is_empty() {
        return Some(format!(
            "not deleted while this pass has failures ({})",
            names(report.failed.keys())
        ));
    }
    let after = rollout.map(|r| &r.after)?;
    let blocked: Vec<&String> = after
        .iter()
        .filter(|d| report.failed.contains_key(*d) || report.skipped.contains_key(*d))
        .collect();
    (!blocked.is_empty()).then(|| format!("depends on {} (not ready)", names(blocked.into_iter())))
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    it.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// One VM: its actions in order, then its health gate when it was (re)started. Returns
/// what was done, and the error that stopped it.
async fn run_vm(
    client: &PveClient,
    name: &str,
    actions: &[Action],
    rollout: Option<&Rollout>,
    templates: &Templates,
    cx: &Context,
) -> (Vec<String>, Option<String>) {
    let node = actions.first().map_or("", Action::node);
    let _permits = cx.vm_permits(rollout, node).await;
    let mut done = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        let span = tracing::info_span!("action", action = action_kind(a));
        let step = steps::run(client, name, a, templates, cx, &mut done);
        match tracing::Instrument::instrument(step, span.clone()).await {
            Ok(()) => {
                crate::telemetry::action_done(action_kind(a), "ok");
                span.in_scope(|| tracing::info!(done = done.last().map(String::as_str), "applied"));
            }
            Err(e) => {
                crate::telemetry::action_done(action_kind(a), "failed");
                count_actions(&actions[i + 1..], "skipped");
                span.in_scope(|| tracing::warn!(error = %e, "action failed"));
                return (done, Some(format!("{}: {e}", describe(a))));
            }
        }
    }
    let booted = actions.iter().find_map(|a| match a {
        Action::Create {
            vmid: Some(vmid),
            node,
            start: true,
            ..
        }
        | Action::Start { vmid, node }
        | Action::Reboot { vmid, node, .. } => Some((*vmid, node.as_str())),
        _ => None,
    });
    if let (Some(gate), Some((vmid, node))) = (rollout.and_then(|r| r.gate.as_ref()), booted) {
        match gate::wait_ready(client, node, vmid, gate, cx.tcp_probes.as_deref()).await {
            Ok(()) => done.push("ready".into()),
            Err(e) => return (done, Some(format!("health gate: {e}"))),
        }
    }
    (done, None)
}

/// An action's kind, as the metrics (`kind=`) and the journal (`ACTION=`) name it.
pub fn action_kind(a: &Action) -> &'static str {
    match a {
        Action::Create { .. } => "create",
        Action::Configure { .. } => "configure",
        Action::Resize { .. } => "resize",
        Action::Migrate { .. } => "migrate",
        Action::Start { .. } => "start",
        Action::Stop { .. } => "stop",
        Action::Reboot { .. } => "reboot",
        Action::Delete { .. } => "delete",
        Action::Retire { .. } => "retire",
    }
}

fn count_actions(actions: &[Action], result: &'static str) {
    for a in actions {
        crate::telemetry::action_done(action_kind(a), result);
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::Create { name, .. } => format!("create {name}"),
        Action::Configure { vmid, .. } => format!("configure {vmid}"),
        Action::Resize { vmid, disk, .. } => format!("resize {vmid} {disk}"),
        Action::Migrate { vmid, to, .. } => format!("migrate {vmid} to {to}"),
        Action::Start { vmid, .. } => format!("start {vmid}"),
        Action::Stop { vmid, .. } => format!("stop {vmid}"),
        Action::Reboot { vmid, .. } => format!("reboot {vmid}"),
        Action::Delete { vmid, .. } => format!("delete {vmid}"),
        Action::Retire { vmid, .. } => format!("retire {vmid}"),
    }
}

/// `scsi0`, `virtio1`, `sata2`, `ide3`, `efidisk0`, `tpmstate0`: keys whose value is a drive.
fn is_drive_key(key: &str) -> bool {
    ["scsi", "virtio", "sata", "ide", "efidisk", "tpmstate"]
        .iter()
        .any(|bus| {
            key.strip_prefix(bus)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The storage a drive value lives on (`local-lvm:vm-1-disk-0,size=4G` → `local-lvm`).
/// `none` (an empty drive) has none; a physical `cdrom` counts as node-local, as PVE
/// counts it when deciding whether a VM can be cloned to another node.
fn drive_storage(value: &str) -> Option<String> {
    let volume = value.split(',').next()?;
    match volume.split_once(':') {
        Some((storage, _)) => Some(storage.to_string()),
        None if volume == "cdrom" => Some("cdrom".into()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounds_of_any_size_give_permits() {
        for n in [0, 1, usize::MAX] {
            let cx = Context::new(&ApplyOptions {
                parallelism: Some(n),
                per_node: Some(n),
                ..ApplyOptions::default()
            });
            assert_eq!(cx.vm_permits(None, "pve1").await.len(), 2, "bound {n}");
        }
    }
}
