//! How a plan is rolled out: which VMs wait for which (`dependsOn`), in what waves, how
//! many members of a set change at once (`maxParallel`), and which health gate a VM must
//! pass before its dependents start (`waitFor`).

use pve_gitops_schema::desired::{DesiredState, DesiredVm};
use pve_gitops_schema::manifest::Kind;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// How long a health gate waits when the manifest gives no `timeout`.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(300);

/// Scheduling facts of one planned VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rollout {
    /// VMs (by name) this one depends on, directly. When one of them fails or is skipped,
    /// this one is skipped: it may need what they provide.
    pub after: BTreeSet<String>,
    /// Checked after this VM's actions, before any dependent starts.
    pub gate: Option<Gate>,
    /// The set this VM belongs to and how many of its members may change at once.
    pub set_limit: Option<(String, u32)>,
}

/// A health gate: what must answer before the VM counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The QEMU guest agent answers `ping`.
    pub guest_agent: bool,
    /// `cloud-init status --wait` exits successfully inside the guest.
    pub cloud_init: bool,
    /// A TCP port on the VM's first static address accepts connections.
    pub tcp: Option<(IpAddr, u16)>,
    pub timeout: Duration,
}

/// The direct dependencies of every declared VM, by name: `VirtualMachine/x` is x, a
/// `VirtualMachineSet/x` is all of its members. Other kinds order nothing between VMs.
pub fn dependencies(desired: &DesiredState) -> BTreeMap<&str, BTreeSet<&str>> {
    desired
        .vms
        .iter()
        .map(|vm| {
            let deps = vm
                .depends_on
                .iter()
                .flat_map(|r| {
                    desired.vms.iter().filter(move |o| match r.kind {
                        Kind::VirtualMachine => o.name == r.name,
                        Kind::VirtualMachineSet => {
                            o.member_of.as_ref().is_some_and(|m| m.set == r.name)
                        }
                        _ => false,
                    })
                })
                .map(|o| o.name.as_str())
                .collect();
            (vm.name.as_str(), deps)
        })
        .collect()
}

/// VM names by wave: a VM comes after every VM it depends on. Validation has already
/// refused cycles; a cycle here would put its members in wave 0 rather than loop.
pub fn waves(desired: &DesiredState) -> Vec<Vec<String>> {
    let deps = dependencies(desired);
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    fn depth<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        level: &mut BTreeMap<&'a str, usize>,
        guard: usize,
    ) -> usize {
        if let Some(l) = level.get(n) {
            return *l;
        }
        let l = if guard > deps.len() {
            0
        } else {
            deps.get(n).map_or(0, |ds| {
                ds.iter()
                    .map(|d| depth(d, deps, level, guard + 1) + 1)
                    .max()
                    .unwrap_or(0)
            })
        };
        level.insert(n, l);
        l
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    for vm in &desired.vms {
        let l = depth(vm.name.as_str(), &deps, &mut level, 0);
        if out.len() <= l {
            out.resize(l + 1, Vec::new());
        }
        out[l].push(vm.name.to_string());
    }
    out
}

/// The rollout facts of one VM; `after` comes from [`dependencies`].
pub fn rollout(vm: &DesiredVm, after: BTreeSet<String>) -> Rollout {
    let gate = vm.spec.wait_for.as_ref().and_then(|w| {
        let tcp = w
            .tcp_port
            .and_then(|port| first_static_ip(vm).map(|ip| (ip, port)));
        (w.guest_agent || w.cloud_init || tcp.is_some()).then(|| Gate {
            guest_agent: w.guest_agent,
            cloud_init: w.cloud_init,
            tcp,
            timeout: w.timeout.map_or(DEFAULT_GATE_TIMEOUT, |d| d.0),
        })
    });
    let set_limit = vm
        .member_of
        .as_ref()
        .and_then(|m| m.max_parallel.map(|n| (m.set.to_string(), n.max(1))));
    Rollout {
        after,
        gate,
        set_limit,
    }
}

/// The VM's first declared static address (its desired `ipconfig0`), if any.
pub fn first_static_ip(vm: &DesiredVm) -> Option<IpAddr> {
    super::pveconfig::desired_config(vm, |_| None)
        .get("ipconfig0")
        .and_then(|v| static_ip(&v.text))
}

/// The address in an `ipconfigN` value (`ip=192.0.2.10/24,gw=...`), if static.
pub fn static_ip(ipconfig: &str) -> Option<IpAddr> {
    ipconfig
        .split(',')
        .filter_map(|o| o.strip_prefix("ip=").or_else(|| o.strip_prefix("ip6=")))
        .find_map(|v| v.split('/').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_ip_reads_v4_then_v6_and_skips_dhcp() {
        assert_eq!(
            static_ip("ip=192.0.2.10/24,gw=192.0.2.1"),
            Some("192.0.2.10".parse().unwrap())
        );
        assert_eq!(
            static_ip("ip=dhcp,ip6=2001:db8::5/64"),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(static_ip("ip=dhcp,ip6=auto"), None);
    }
}
