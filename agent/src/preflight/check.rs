//! The pre-flight rules: a pure function of the plan and the cluster facts.
//!
//! What "room" means here:
//! - memory is a hard limit: the VMs the plan starts on a node (new VMs created running,
//!   stopped VMs it starts, memory growth of running VMs) must fit in the node's free
//!   memory (`maxmem - mem`). A VM created stopped uses no memory until started, and
//!   what stops or deletions would free is not counted (they run last, if at all).
//! - vCPUs are overcommitted on every Proxmox cluster, so there is no sum; but one VM
//!   with more vCPUs than its node has threads does not start at all.
//! - new disks must fit on their storage: each declared disk of a create counts its
//!   declared size (a linked clone or a clone of a smaller template disk grows to it),
//!   on the clone's target storage when it names one, else on the disk's own. A shared
//!   storage is one pool, however many nodes list it.

use super::facts::{addresses, is_ip_key, ClusterFacts, GuestFacts, GuestKind, DEFAULT_MEMORY_MIB};
use super::problem::PreflightProblem;
use crate::plan::compare::Change;
use crate::plan::{Action, Plan};
use pve_gitops_schema::manifest::vm::{CloneSource, TemplateRef};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

const MIB: u64 = 1 << 20;

/// Check `plan` against the cluster before anything is written: every problem found, or
/// `Ok` when the plan can be applied.
pub fn check(plan: &Plan, facts: &ClusterFacts) -> Result<(), Vec<PreflightProblem>> {
    let mut c = Checker::new(facts);
    for wave in &plan.waves {
        for (name, actions) in wave {
            c.vm(name, actions);
        }
    }
    let problems = c.finish();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A static address the plan gives a VM.
struct PlannedIp {
    vm: String,
    vmid: Option<u32>,
    key: String,
    ip: IpAddr,
}

/// An amount the plan adds to one place, and the VMs that add it.
#[derive(Default)]
struct Demand {
    bytes: u64,
    vms: BTreeSet<String>,
}

impl Demand {
    fn add(&mut self, bytes: u64, vm: &str) {
        self.bytes += bytes;
        self.vms.insert(vm.to_string());
    }
}

struct Checker<'a> {
    facts: &'a ClusterFacts,
    problems: Vec<PreflightProblem>,
    /// Nodes that must be online, and who needs each.
    nodes: BTreeMap<String, BTreeSet<String>>,
    memory: BTreeMap<String, Demand>,
    /// Per (node, storage) the new disks.
    disks: BTreeMap<(String, String), Demand>,
    planned_ips: Vec<PlannedIp>,
    /// Per (vmid, ipconfigN) a configure rewrites: the addresses it will have.
    rewritten: BTreeMap<(u32, String), Vec<IpAddr>>,
}

impl<'a> Checker<'a> {
    fn new(facts: &'a ClusterFacts) -> Self {
        Checker {
            facts,
            problems: Vec::new(),
            nodes: BTreeMap::new(),
            memory: BTreeMap::new(),
            disks: BTreeMap::new(),
            planned_ips: Vec::new(),
            rewritten: BTreeMap::new(),
        }
    }

    fn vm(&mut self, name: &str, actions: &[Action]) {
        // The memory a configure of this plan gives the VM before its start: a start
        // needs that, not what the VM has now (a clone the last pass made and died before
        // configuring still has its template's memory).
        let configured = actions.iter().find_map(|a| match a {
            Action::Configure { changes, .. } => changes
                .iter()
                .find(|c| c.key == "memory")
                .and_then(|c| mib(&c.to)),
            _ => None,
        });
        for a in actions {
            match a {
                Action::Create { .. } => self.create(name, a),
                Action::Start { vmid, node } => {
                    self.need_node(node, name);
                    if let Some(g) = self.facts.guests.get(vmid) {
                        let bytes = configured.map_or(g.maxmem, |m| m * MIB);
                        self.memory
                            .entry(node.clone())
                            .or_default()
                            .add(bytes, name);
                    }
                }
                Action::Configure {
                    vmid,
                    node,
                    changes,
                    ..
                } => {
                    // A VM the plan starts is counted whole by its start.
                    let runs = self.facts.guests.get(vmid).is_some_and(|g| g.running);
                    self.configure(name, *vmid, node, changes, runs);
                }
                Action::Migrate { from, to, .. } => {
                    // An offline migration needs both ends.
                    self.need_node(from, name);
                    self.need_node(to, name);
                }
                Action::Resize { .. }
                | Action::Retire { .. }
                | Action::Stop { .. }
                | Action::Reboot { .. }
                | Action::Delete { .. } => {}
            }
        }
    }

    fn create(&mut self, name: &str, create: &Action) {
        let Action::Create {
            disks,
            vmid,
            node,
            clone,
            config,
            start,
            ..
        } = create
        else {
            return;
        };
        let (vmid, clone) = (*vmid, clone.as_ref());
        self.need_node(node, name);
        let template = clone.and_then(|c| self.template(name, c));
        if let Some((tvmid, t)) = template {
            self.need_node(&t.node, &format!("{name} (template {tvmid})"));
        }
        let text = |key: &str| config.get(key).map(|v| v.text.as_str());
        let vcpus = match (
            text("cores").and_then(number),
            text("sockets").and_then(number),
        ) {
            (None, None) => template.map_or(1, |(_, t)| t.maxcpu.max(1)),
            (cores, sockets) => cores.unwrap_or(1) * sockets.unwrap_or(1),
        };
        self.vcpus(name, node, vcpus);
        if *start {
            let memory = text("memory")
                .and_then(mib)
                .map(|m| m * MIB)
                .or(template.map(|(_, t)| t.maxmem))
                .unwrap_or(DEFAULT_MEMORY_MIB * MIB);
            self.memory
                .entry(node.to_string())
                .or_default()
                .add(memory, name);
        }
        for (slot, bytes) in disks {
            let storage = clone
                .and_then(|c| c.storage.as_ref().map(ToString::to_string))
                .or_else(|| {
                    text(slot)
                        .and_then(|v| v.split(':').next())
                        .map(str::to_string)
                });
            if let Some(storage) = storage {
                self.disks
                    .entry((node.to_string(), storage))
                    .or_default()
                    .add(*bytes, name);
            }
        }
        for (key, value) in config.iter().filter(|(k, _)| is_ip_key(GuestKind::Vm, k)) {
            for ip in addresses(&value.text) {
                self.planned_ips.push(PlannedIp {
                    vm: name.to_string(),
                    vmid,
                    key: key.clone(),
                    ip,
                });
            }
        }
    }

    fn configure(&mut self, name: &str, vmid: u32, node: &str, changes: &[Change], runs: bool) {
        let change = |key: &str| changes.iter().find(|c| c.key == key);
        if let Some(c) = change("memory") {
            let from = c
                .from
                .as_deref()
                .and_then(mib)
                .unwrap_or(DEFAULT_MEMORY_MIB);
            let growth = mib(&c.to).unwrap_or(from).saturating_sub(from);
            if runs && growth > 0 {
                self.memory
                    .entry(node.to_string())
                    .or_default()
                    .add(growth * MIB, name);
            }
        }
        // Only the changed keys are known here: a lower bound, never a false alarm.
        let cores = change("cores").and_then(|c| number(&c.to));
        let sockets = change("sockets").and_then(|c| number(&c.to));
        if cores.is_some() || sockets.is_some() {
            self.vcpus(name, node, cores.unwrap_or(1) * sockets.unwrap_or(1));
        }
        for c in changes.iter().filter(|c| is_ip_key(GuestKind::Vm, &c.key)) {
            let before = c.from.as_deref().map(addresses).unwrap_or_default();
            let after = addresses(&c.to);
            for ip in after.iter().filter(|ip| !before.contains(ip)) {
                self.planned_ips.push(PlannedIp {
                    vm: name.to_string(),
                    vmid: Some(vmid),
                    key: c.key.clone(),
                    ip: *ip,
                });
            }
            self.rewritten.insert((vmid, c.key.clone()), after);
        }
    }

    fn need_node(&mut self, node: &str, who: &str) {
        self.nodes
            .entry(node.to_string())
            .or_default()
            .insert(who.to_string());
    }

    /// The template a clone resolves to (as apply resolves it), or a problem.
    fn template(&mut self, vm: &str, source: &CloneSource) -> Option<(u32, &'a GuestFacts)> {
        let facts = self.facts;
        let (tvmid, label) = match &source.template {
            TemplateRef::Vmid(v) => (v.get(), v.get().to_string()),
            TemplateRef::Name(n) => match facts.template_names.get(n.as_str()) {
                Some(v) => (*v, format!("{n} ({v})")),
                None => {
                    self.problems.push(PreflightProblem::MissingTemplate {
                        vm: vm.to_string(),
                        template: n.to_string(),
                    });
                    return None;
                }
            },
        };
        match facts.guests.get(&tvmid) {
            None => {
                self.problems.push(PreflightProblem::MissingTemplate {
                    vm: vm.to_string(),
                    template: label,
                });
                None
            }
            Some(g) if !g.template || g.kind != GuestKind::Vm => {
                self.problems.push(PreflightProblem::NotATemplate {
                    vm: vm.to_string(),
                    vmid: tvmid,
                    name: g.name.clone(),
                });
                None
            }
            Some(g) => Some((tvmid, g)),
        }
    }

    fn vcpus(&mut self, vm: &str, node: &str, vcpus: u64) {
        let Some(n) = self
            .facts
            .nodes
            .get(node)
            .filter(|n| n.online && n.maxcpu > 0)
        else {
            return;
        };
        if vcpus > n.maxcpu {
            self.problems.push(PreflightProblem::TooManyCpus {
                vm: vm.to_string(),
                node: node.to_string(),
                vcpus,
                node_cpus: n.maxcpu,
            });
        }
    }

    fn finish(mut self) -> Vec<PreflightProblem> {
        let facts = self.facts;
        for (node, who) in std::mem::take(&mut self.nodes) {
            let needed_by = who.into_iter().collect();
            match facts.nodes.get(&node) {
                None => self
                    .problems
                    .push(PreflightProblem::UnknownNode { node, needed_by }),
                Some(n) if !n.online => self
                    .problems
                    .push(PreflightProblem::NodeOffline { node, needed_by }),
                Some(_) => {}
            }
        }
        let online = |node: &str| facts.nodes.get(node).is_some_and(|n| n.online);
        for (node, d) in std::mem::take(&mut self.memory) {
            let Some(n) = facts.nodes.get(&node).filter(|n| n.online && n.maxmem > 0) else {
                continue;
            };
            if d.bytes > n.free_mem() {
                self.problems.push(PreflightProblem::NotEnoughMemory {
                    node,
                    needed: d.bytes,
                    free: n.free_mem(),
                    total: n.maxmem,
                    vms: d.vms.into_iter().collect(),
                });
            }
        }
        // Per pool: a local storage per node, a shared one once for the cluster.
        let mut pools: BTreeMap<(String, Option<String>), (Demand, u64)> = BTreeMap::new();
        for ((node, storage), d) in std::mem::take(&mut self.disks) {
            if !online(&node) {
                continue;
            }
            let key = (node.clone(), storage.clone());
            match facts.storages.get(&key).filter(|s| s.available) {
                None => self.problems.push(PreflightProblem::StorageUnavailable {
                    node,
                    storage,
                    needed_by: d.vms.into_iter().collect(),
                }),
                Some(s) => {
                    let place = (!s.shared).then_some(node);
                    let (pool, _) = pools
                        .entry((storage, place))
                        .or_insert_with(|| (Demand::default(), s.free()));
                    pool.bytes += d.bytes;
                    pool.vms.extend(d.vms);
                }
            }
        }
        for ((storage, node), (d, free)) in pools {
            if d.bytes > free {
                self.problems.push(PreflightProblem::NotEnoughSpace {
                    storage,
                    node,
                    needed: d.bytes,
                    free,
                    vms: d.vms.into_iter().collect(),
                });
            }
        }
        self.ips();
        self.problems
    }

    fn ips(&mut self) {
        let mut by_ip: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
        for p in &self.planned_ips {
            by_ip.entry(p.ip).or_default().insert(&p.vm);
        }
        for (ip, vms) in by_ip.into_iter().filter(|(_, v)| v.len() > 1) {
            self.problems.push(PreflightProblem::DuplicateIp {
                ip,
                vms: vms.into_iter().map(str::to_string).collect(),
            });
        }
        // Who holds each address once the plan's own address changes are made.
        let mut holders: BTreeMap<IpAddr, Vec<(u32, &str)>> = BTreeMap::new();
        for (vmid, g) in self.facts.guests.iter().filter(|(_, g)| !g.template) {
            for (key, ip) in &g.ips {
                if !self.rewritten.contains_key(&(*vmid, key.clone())) {
                    holders.entry(*ip).or_default().push((*vmid, key));
                }
            }
        }
        for ((vmid, key), ips) in &self.rewritten {
            for ip in ips {
                holders.entry(*ip).or_default().push((*vmid, key));
            }
        }
        for p in &self.planned_ips {
            for (vmid, key) in holders.get(&p.ip).into_iter().flatten() {
                if Some(*vmid) == p.vmid {
                    continue;
                }
                let Some(g) = self.facts.guests.get(vmid) else {
                    continue;
                };
                self.problems.push(PreflightProblem::IpInUse {
                    vm: p.vm.clone(),
                    key: p.key.clone(),
                    ip: p.ip,
                    holder_kind: g.kind,
                    holder_vmid: *vmid,
                    holder_name: g.name.clone(),
                    holder_key: key.to_string(),
                });
            }
        }
    }
}

/// Whether `plan` gives any VM a static address it does not have yet: only then are other
/// guests' configs worth reading.
pub fn declares_new_ips(plan: &Plan) -> bool {
    plan.actions().any(|a| match a {
        Action::Create { config, .. } => config
            .iter()
            .any(|(k, v)| is_ip_key(GuestKind::Vm, k) && !addresses(&v.text).is_empty()),
        Action::Configure { changes, .. } => changes.iter().any(|c| {
            is_ip_key(GuestKind::Vm, &c.key) && {
                let before = c.from.as_deref().map(addresses).unwrap_or_default();
                addresses(&c.to).iter().any(|ip| !before.contains(ip))
            }
        }),
        _ => false,
    })
}

/// A count (`cores: 4`).
fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `memory` in MiB: `2048`, or `current=2048` (PVE 8's property string).
fn mib(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t.strip_prefix("current=").unwrap_or(t);
    t.split(',').next()?.trim().parse().ok()
}
