//! The privileges the agent's API token needs, and why: each one is named by the API
//! calls of `crate::pve` that the observe, pre-flight and apply steps make (the check
//! each call does is in PVE's API schema, e.g. `POST /nodes/{node}/qemu/{vmid}/clone`
//! wants `VM.Clone` on the template and `VM.Allocate` on the new VM).
//!
//! Granted on `/` with propagation: the agent creates VMs with ids and on storages the
//! manifests choose, so no narrower path is known in advance.
//!
//! PVE 9 split the guest agent's privileges out of `VM.Monitor` (which it removed) into
//! `VM.GuestAgent.*`; on PVE 8 the guest agent calls need `VM.Monitor` instead.

/// One privilege and the reason the agent holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privilege {
    pub name: &'static str,
    pub why: &'static str,
}

const fn p(name: &'static str, why: &'static str) -> Privilege {
    Privilege { name, why }
}

/// Needed on every PVE version the agent supports.
const COMMON: &[Privilege] = &[
    p(
        "Datastore.AllocateSpace",
        "disks and cloud-init drives of created, cloned and resized VMs",
    ),
    p(
        "Datastore.Audit",
        "storage contents and free space (pre-flight)",
    ),
    p(
        "SDN.Use",
        "bridges and VNets in VM network devices (PVE 8+ checks it)",
    ),
    p(
        "Sys.Audit",
        "node status and time (pre-flight, doctor), task status, firewall reads",
    ),
    p(
        "VM.Allocate",
        "create, clone into, convert to template and delete (prune) VMs",
    ),
    p(
        "VM.Audit",
        "read VM configs, pending changes and status (observe)",
    ),
    p("VM.Clone", "clone VMs from templates"),
    p("VM.Config.CDROM", "cloud-init and ISO drives"),
    p("VM.Config.CPU", "cores, sockets, CPU type"),
    p(
        "VM.Config.Cloudinit",
        "cloud-init user, keys, addresses, password",
    ),
    p("VM.Config.Disk", "disk options and resize"),
    p("VM.Config.HWType", "SCSI controller, machine, BIOS"),
    p("VM.Config.Memory", "memory and balloon"),
    p("VM.Config.Network", "network devices"),
    p(
        "VM.Config.Options",
        "name, tags, description, boot order, agent flag",
    ),
    p("VM.Migrate", "move a stopped VM to its declared node"),
    p("VM.PowerMgmt", "start, stop, shut down and reboot VMs"),
];

/// PVE 9: the guest agent calls.
const PVE9: &[Privilege] = &[
    p(
        "VM.GuestAgent.Audit",
        "guest agent ping and addresses (health gates, inventory)",
    ),
    p(
        "VM.GuestAgent.Unrestricted",
        "`cloud-init status --wait` through the guest agent (health gate)",
    ),
];

/// PVE 8: the same calls.
const PVE8: &[Privilege] = &[p(
    "VM.Monitor",
    "guest agent ping, addresses and `cloud-init status --wait` (PVE 8)",
)];

/// The privileges for a PVE of `major` version (8 or 9; later ones are treated as 9),
/// sorted by name.
pub fn required(major: u32) -> Vec<Privilege> {
    let mut out: Vec<Privilege> = COMMON
        .iter()
        .copied()
        .chain(if major < 9 { PVE8 } else { PVE9 }.iter().copied())
        .collect();
    out.sort_by_key(|p| p.name);
    out
}

/// The names only.
pub fn names(major: u32) -> Vec<&'static str> {
    required(major).iter().map(|p| p.name).collect()
}

/// The major version in PVE's `GET /version` answer (`9.0.3` → 9).
pub fn major_version(version: &str) -> Option<u32> {
    version.split('.').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_administrative_privilege_is_asked_for() {
        for major in [8, 9] {
            let names = names(major);
            for forbidden in [
                "Datastore.Allocate",
                "Permissions.Modify",
                "Sys.Modify",
                "User.Modify",
                "Realm.Allocate",
                "Sys.Console",
                "VM.Console",
            ] {
                assert!(!names.contains(&forbidden), "{forbidden} on PVE {major}");
            }
        }
    }

    #[test]
    fn guest_agent_privileges_follow_the_version() {
        assert!(names(8).contains(&"VM.Monitor"));
        assert!(!names(8).iter().any(|n| n.starts_with("VM.GuestAgent")));
        assert!(names(9).contains(&"VM.GuestAgent.Unrestricted"));
        assert!(!names(9).contains(&"VM.Monitor"));
        assert_eq!(major_version("9.0.3"), Some(9));
        assert_eq!(major_version("8.4.1"), Some(8));
    }
}
