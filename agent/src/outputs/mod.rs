//! Outputs: what the guests publish to the status branch once they are up.
//!
//! After a pass, the daemon asks the guest agent of every running VM that has one for
//! its addresses (the inventory's `ansible_host`, the `ipv4`/`ipv6` outputs) and reads
//! the files VMs declare as `guestFile` outputs (seed 003's kubeconfig). A `sensitive`
//! output is committed only age-encrypted to the repository's recipients
//! ([`seal`]): its plaintext goes from the guest agent's answer into the encryptor and
//! nowhere else (no log, no status field, no error message).
//!
//! What was read is kept between passes: a VM is asked again only when the pass changed
//! it (or it has no answer yet), so a settled cluster costs no guest-agent calls, and an
//! unchanged secret keeps its ciphertext (age output is randomised: encrypting again
//! would commit new bytes every pass).

pub mod addresses;
pub mod seal;

use crate::pve::PveClient;
use crate::report::status::ClusterStatus;
use crate::report::StatusFiles;
use addresses::GuestAddresses;
use pve_gitops_schema::desired::{DesiredState, DesiredVm};
use pve_gitops_schema::manifest::vm::OutputValue;
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The largest guest file published (PVE's `file-read` returns at most 16 MiB anyway).
const MAX_FILE: usize = 1 << 20;

/// What the guests published, kept by the daemon between passes.
#[derive(Debug, Default)]
pub struct Outputs {
    guests: BTreeMap<String, Guest>,
}

#[derive(Debug, Default)]
struct Guest {
    vmid: u32,
    addresses: Option<GuestAddresses>,
    /// Output name → the file's published form.
    files: BTreeMap<String, Published>,
    /// Output name → why it is not there (yet).
    missing: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
enum Published {
    Plain(String),
    Sealed {
        /// SHA-256 of the plaintext, in memory only: an unchanged secret keeps its
        /// ciphertext.
        digest: [u8; 32],
        recipients: Vec<String>,
        armored: String,
    },
}

impl Outputs {
    /// Ask the guests what changed (see the module doc), then put the guest agents'
    /// addresses into `status` (a VM's `ip`). `changed`: the VMs this pass created or
    /// changed. `recipients`: who sealed outputs are encrypted to.
    pub async fn refresh(
        &mut self,
        client: &PveClient,
        desired: &DesiredState,
        status: &mut ClusterStatus,
        changed: &BTreeSet<String>,
        recipients: &[String],
    ) {
        self.guests
            .retain(|name, _| desired.vms.iter().any(|v| v.name.as_str() == name));
        for vm in &desired.vms {
            let name = vm.name.as_str();
            let Some(r) = status
                .resources
                .iter_mut()
                .find(|r| r.kind == "VirtualMachine" && r.name == name)
            else {
                continue;
            };
            let (Some(vmid), Some(node)) = (r.vmid, r.node.clone()) else {
                continue;
            };
            let guest = self.guests.entry(name.to_string()).or_default();
            if guest.vmid != vmid {
                *guest = Guest {
                    vmid,
                    ..Guest::default()
                };
            }
            let agent = vm.spec.agent == Some(true);
            if r.state == "running" && agent {
                let ask = changed.contains(name) || guest.addresses.is_none();
                if ask {
                    if let Some(a) = read_addresses(client, &node, vmid).await {
                        guest.addresses = Some(a);
                    }
                }
                read_files(client, vm, &node, guest, changed.contains(name), recipients).await;
            }
            if let Some(ip) = guest.addresses.and_then(|a| a.first()) {
                r.ip = Some(ip.to_string());
            }
        }
    }

    /// Whether a running VM's declared output is still missing: the daemon then does not
    /// settle, so the next pass asks again.
    pub fn incomplete(&self) -> bool {
        self.guests.values().any(|g| !g.missing.is_empty())
    }

    /// `outputs.yaml` and the files it points to, for the VMs that declare outputs.
    pub fn files(&self, desired: &DesiredState, status: &ClusterStatus) -> StatusFiles {
        let mut files = StatusFiles::new();
        let mut doc = Mapping::new();
        for vm in desired.vms.iter().filter(|v| !v.spec.outputs.is_empty()) {
            let name = vm.name.as_str();
            let resource = status
                .resources
                .iter()
                .find(|r| r.kind == "VirtualMachine" && r.name == name);
            let guest = self.guests.get(name);
            let mut values = Mapping::new();
            for (key, output) in &vm.spec.outputs {
                let value: Option<Value> = match output.value {
                    Some(OutputValue::Vmid) => resource.and_then(|r| r.vmid).map(Value::from),
                    Some(OutputValue::Node) => Some(vm.node.to_string().into()),
                    Some(OutputValue::Ipv4) => guest
                        .and_then(|g| g.addresses?.ipv4)
                        .map(|ip| ip.to_string())
                        .or_else(|| static_ip(vm, true))
                        .map(Value::from),
                    Some(OutputValue::Ipv6) => guest
                        .and_then(|g| g.addresses?.ipv6)
                        .map(|ip| ip.to_string())
                        .or_else(|| static_ip(vm, false))
                        .map(Value::from),
                    None => guest.and_then(|g| g.files.get(key)).map(|p| {
                        let (path, content) = file_of(name, key, p);
                        let mut m = Mapping::new();
                        m.insert("file".into(), path.clone().into());
                        if let Published::Sealed { recipients, .. } = p {
                            let list: Vec<Value> =
                                recipients.iter().map(|r| r.clone().into()).collect();
                            m.insert("encryptedTo".into(), Value::Sequence(list));
                        }
                        files.insert(path, content);
                        Value::Mapping(m)
                    }),
                };
                if let Some(v) = value {
                    values.insert(key.clone().into(), v);
                }
            }
            if let Some(missing) = guest.filter(|g| !g.missing.is_empty()) {
                let m: Mapping = missing
                    .missing
                    .iter()
                    .map(|(k, why)| (k.clone().into(), why.clone().into()))
                    .collect();
                values.insert("missing".into(), Value::Mapping(m));
            }
            doc.insert(name.into(), Value::Mapping(values));
        }
        if !doc.is_empty() {
            files.insert(
                "outputs.yaml".into(),
                serde_yaml::to_string(&doc).expect("outputs serialize"),
            );
        }
        files
    }
}

/// The path of a published file on the status branch, and its content.
fn file_of(vm: &str, key: &str, p: &Published) -> (String, String) {
    match p {
        Published::Plain(text) => (format!("outputs/{vm}/{key}"), text.clone()),
        Published::Sealed { armored, .. } => (format!("outputs/{vm}/{key}.age"), armored.clone()),
    }
}

/// The VM's first declared static address of that family.
fn static_ip(vm: &DesiredVm, v4: bool) -> Option<String> {
    let ip = crate::plan::rollout::first_static_ip(vm)?;
    (ip.is_ipv4() == v4).then(|| ip.to_string())
}

/// The guest agent's addresses, matched to the VM's NICs by MAC. `None` while the agent
/// does not answer (booting, stopped, not installed).
async fn read_addresses(client: &PveClient, node: &str, vmid: u32) -> Option<GuestAddresses> {
    let interfaces = match client.agent_network_interfaces(node, vmid).await {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!(vmid, "guest agent addresses: {e}");
            return None;
        }
    };
    let macs = match client.get_vm_config(node, vmid).await {
        Ok(c) => {
            let texts: BTreeMap<String, String> = c
                .values()
                .keys()
                .filter_map(|k| Some((k.clone(), c.text(k)?)))
                .collect();
            addresses::config_macs(&texts)
        }
        Err(_) => Vec::new(),
    };
    Some(addresses::pick(&interfaces, &macs))
}

/// Read the VM's `guestFile` outputs that are not published yet, or all of them when the
/// pass changed the VM; seal the sensitive ones.
async fn read_files(
    client: &PveClient,
    vm: &DesiredVm,
    node: &str,
    guest: &mut Guest,
    changed: bool,
    recipients: &[String],
) {
    for (key, output) in &vm.spec.outputs {
        let Some(path) = &output.guest_file else {
            continue;
        };
        let recipients_moved = matches!(
            guest.files.get(key),
            Some(Published::Sealed { recipients: r, .. }) if r != recipients
        );
        if guest.files.contains_key(key) && !changed && !recipients_moved {
            continue;
        }
        let file = match client.agent_file_read(node, guest.vmid, path).await {
            Ok(f) if f.truncated || f.content.len() > MAX_FILE => {
                guest.missing.insert(
                    key.clone(),
                    format!("{path} is larger than {MAX_FILE} bytes"),
                );
                continue;
            }
            Ok(f) => f,
            Err(e) => {
                // PVE's message names the path and the guest's error, never the content.
                guest
                    .missing
                    .insert(key.clone(), format!("reading {path}: {e}"));
                continue;
            }
        };
        let content = zeroize::Zeroizing::new(file.content);
        let published = if output.sensitive {
            let digest: [u8; 32] = Sha256::digest(content.as_bytes()).into();
            match guest.files.get(key) {
                Some(
                    p @ Published::Sealed {
                        digest: d,
                        recipients: r,
                        ..
                    },
                ) if *d == digest && r == recipients => p.clone(),
                _ => match seal::seal(content.as_bytes(), recipients) {
                    Ok(armored) => Published::Sealed {
                        digest,
                        recipients: recipients.to_vec(),
                        armored,
                    },
                    Err(e) => {
                        guest.missing.insert(key.clone(), e.to_string());
                        guest.files.remove(key);
                        continue;
                    }
                },
            }
        } else {
            Published::Plain(content.to_string())
        };
        guest.missing.remove(key);
        guest.files.insert(key.clone(), published);
    }
}
