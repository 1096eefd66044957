//! The revisions the soak pushes: the bad-input corpus's good cluster directory (three
//! VMs on pve1 with age and SOPS secrets and a snippet) plus `chaos.yaml`, a random walk
//! of single VMs and one `VirtualMachineSet` on pve2/pve3 under a `ClusterPolicy` that
//! prunes. An invalid revision is the current valid one with a corpus case laid over it
//! and a *poison* VM added: the poison is valid on its own, so any write that names it
//! was applied from a revision the agent had to refuse.

use super::Rng;
use crate::support::corpus::{write_good, Case, CLUSTER_DIR};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The corpus base's VMs: (name, vmid, memory MiB, cores).
pub const BASE_VMS: [(&str, u32, u32, Option<u32>); 3] = [
    ("web-1", 801, 1024, Some(2)),
    ("web-2", 802, 1024, Some(2)),
    ("db", 820, 2048, None),
];
/// The template chaos VMs clone, on shared RBD storage so clones go to any node.
pub const TEMPLATE: u32 = 9001;
const FLEET_VMID_START: u32 = 1100;
const FLEET_NODES: [&str; 2] = ["pve2", "pve3"];
pub const POISON: &str = "poison";
const POISON_VMID: u32 = 1990;
const MAX_SOLOS: usize = 6;

/// One declared VM as the cluster must end up with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedVm {
    pub name: String,
    /// `None`: the agent allocates one.
    pub vmid: Option<u32>,
    /// `None`: not checked (the corpus base's VMs live on pve1, set members round-robin).
    pub node: Option<String>,
    pub memory_mib: u32,
    pub cores: Option<u32>,
}

/// The chaos part of a valid revision.
#[derive(Clone, Debug)]
pub struct Desired {
    solos: BTreeMap<String, ExpectedVm>,
    fleet: u32,
    fleet_memory: u32,
    next: u32,
}

impl Desired {
    pub fn initial(rng: &mut Rng) -> Self {
        let mut d = Desired {
            solos: BTreeMap::new(),
            fleet: 2,
            fleet_memory: 512,
            next: 0,
        };
        d.add_solo(rng);
        d.add_solo(rng);
        d
    }

    fn add_solo(&mut self, rng: &mut Rng) -> String {
        let k = self.next;
        self.next += 1;
        let name = format!("solo-{k}");
        let vm = ExpectedVm {
            name: name.clone(),
            vmid: rng.chance(50).then_some(1000 + k),
            node: Some((*rng.pick(&["pve1", "pve2", "pve3"])).to_string()),
            memory_mib: *rng.pick(&[512, 768]),
            cores: Some(*rng.pick(&[1, 2])),
        };
        self.solos.insert(name.clone(), vm);
        name
    }

    /// One random valid change; what it was, for the log.
    pub fn mutate(&mut self, rng: &mut Rng) -> String {
        loop {
            match rng.below(6) {
                0 if self.solos.len() < MAX_SOLOS => return format!("add {}", self.add_solo(rng)),
                1 if !self.solos.is_empty() => {
                    let names: Vec<String> = self.solos.keys().cloned().collect();
                    let name = rng.pick(&names).clone();
                    self.solos.remove(&name);
                    return format!("remove {name}");
                }
                2 | 3 if !self.solos.is_empty() => {
                    let names: Vec<String> = self.solos.keys().cloned().collect();
                    let name = rng.pick(&names).clone();
                    let vm = self.solos.get_mut(&name).unwrap();
                    if rng.chance(50) {
                        vm.memory_mib = if vm.memory_mib == 512 { 768 } else { 512 };
                    } else {
                        vm.cores = Some(if vm.cores == Some(1) { 2 } else { 1 });
                    }
                    return format!("change {name}");
                }
                4 => {
                    let before = self.fleet;
                    self.fleet = match self.fleet {
                        0 => 1,
                        3 => 2,
                        n if rng.chance(50) => n + 1,
                        n => n - 1,
                    };
                    return format!("fleet {before} -> {}", self.fleet);
                }
                5 => {
                    self.fleet_memory = if self.fleet_memory == 512 { 768 } else { 512 };
                    return format!("fleet memory {}", self.fleet_memory);
                }
                _ => {}
            }
        }
    }

    /// Every VM the revision declares, the corpus base's included.
    pub fn expected(&self) -> Vec<ExpectedVm> {
        let mut out: Vec<ExpectedVm> = BASE_VMS
            .iter()
            .map(|(name, vmid, memory, cores)| ExpectedVm {
                name: name.to_string(),
                vmid: Some(*vmid),
                node: Some("pve1".into()),
                memory_mib: *memory,
                cores: *cores,
            })
            .collect();
        out.extend(self.solos.values().cloned());
        out.extend((1..=self.fleet).map(|i| ExpectedVm {
            name: format!("fleet-{i}"),
            vmid: Some(FLEET_VMID_START + i - 1),
            node: None,
            memory_mib: self.fleet_memory,
            cores: Some(1),
        }));
        out
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.expected().into_iter().map(|v| v.name).collect()
    }

    /// `chaos.yaml`.
    pub fn manifests(&self) -> String {
        let mut text = format!(
            "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: {{ name: chaos-prerequisites }}
spec: {{ templates: [{TEMPLATE}], bridges: [vmbr0] }}
---
apiVersion: pve-gitops/v1alpha1
kind: ClusterPolicy
metadata: {{ name: chaos }}
spec:
  prune: {{ enabled: true, disks: true, maxDeleteShare: 100 }}
  reboot: allowed
  drift: {{ mode: heal }}
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: fleet }}
spec:
  replicas: {}
  vmidStart: {FLEET_VMID_START}
  nodes: [{}]
  template:
    clone: {{ template: {TEMPLATE} }}
    cpu: {{ cores: 1 }}
    memory: {}M
    network: [{{ bridge: vmbr0 }}]
",
            self.fleet,
            FLEET_NODES.join(", "),
            self.fleet_memory
        );
        for vm in self.solos.values() {
            text.push_str(&vm_manifest(vm));
        }
        text
    }
}

fn vm_manifest(vm: &ExpectedVm) -> String {
    let vmid = vm
        .vmid
        .map(|v| format!("  vmid: {v}\n"))
        .unwrap_or_default();
    let cores = vm
        .cores
        .map(|c| format!("  cpu: {{ cores: {c} }}\n"))
        .unwrap_or_default();
    format!(
        "---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: {{ name: {} }}
spec:
{vmid}  node: {}
  clone: {{ template: {TEMPLATE} }}
{cores}  memory: {}M
  network: [{{ bridge: vmbr0 }}]
",
        vm.name,
        vm.node.as_deref().unwrap_or("pve2"),
        vm.memory_mib
    )
}

/// Lay the cluster directory of `desired` into the work tree (everything else there goes),
/// broken by `case` with poison VM number `poison` when given.
pub fn write_tree(work: &Path, desired: &Desired, broken: Option<(&Case, u32)>) {
    write_good(work);
    let dir = work.join(CLUSTER_DIR);
    std::fs::write(dir.join("chaos.yaml"), desired.manifests()).unwrap();
    if let Some((case, k)) = broken {
        let poison = ExpectedVm {
            name: format!("{POISON}-{k}"),
            vmid: Some(POISON_VMID),
            node: Some("pve2".into()),
            memory_mib: 512,
            cores: Some(1),
        };
        std::fs::write(dir.join("poison.yaml"), vm_manifest(&poison)).unwrap();
        case.lay_over(&dir);
    }
}
