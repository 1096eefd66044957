//! What the agent last applied to a VM, recorded in the VM itself.
//!
//! The last line of a managed VM's description reads
//! `pve-gitops: applied=<fingerprint> [rebuild=<token>] [prune=yes|no]`. It lives in the
//! VM's config file, which pmxcfs replicates to every node: an agent that takes over
//! after a leader failover, or restarts with an empty state directory, reads the same
//! record, so it neither mistakes drift for a manifest change nor rebuilds a VM twice.
//!
//! - `applied`: a fingerprint of the VM's declared state (config keys, node, power state,
//!   disk sizes) when it was last converged. The current manifests giving the same
//!   fingerprint means any difference now was made behind the agent's back: drift.
//!   A different one means the manifests changed: the VM is converged again as a whole
//!   (as Argo CD syncs a whole object when git changes), drift included.
//! - `rebuild`: the `rebuild` token the VM was last (re)built for.
//! - `prune`: the VM's own `prune` setting, kept so it still counts once the manifest
//!   that declared it is gone.

use super::actual::CREATED_NOTE;
use super::pveconfig::DesiredConfig;
use pve_gitops_schema::desired::DesiredVm;
use pve_gitops_schema::manifest::PowerState;
use sha2::{Digest, Sha256};

const PREFIX: &str = "pve-gitops:";

/// The record, as parsed from or written to the description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marker {
    /// `None`: never converged by this agent (or pruned and kept: see `Retire`).
    pub applied: Option<String>,
    pub rebuild: Option<String>,
    pub prune: Option<bool>,
}

impl Marker {
    /// The record in `description`, if it has one.
    pub fn parse(description: &str) -> Option<Marker> {
        let line = description
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(PREFIX))?;
        let mut m = Marker::default();
        for item in line.split_whitespace() {
            match item.split_once('=') {
                Some(("applied", v)) => m.applied = Some(v.to_string()),
                Some(("rebuild", v)) => m.rebuild = Some(v.to_string()),
                Some(("prune", v)) => m.prune = Some(v == "yes"),
                _ => {}
            }
        }
        Some(m)
    }

    /// The line written to the description.
    pub fn line(&self) -> String {
        let mut l = PREFIX.to_string();
        if let Some(a) = &self.applied {
            l.push_str(&format!(" applied={a}"));
        }
        if let Some(r) = &self.rebuild {
            l.push_str(&format!(" rebuild={r}"));
        }
        if let Some(p) = self.prune {
            l.push_str(if p { " prune=yes" } else { " prune=no" });
        }
        l
    }
}

/// The description as its author wrote it: without the record and the create note.
pub fn user_text(description: &str) -> String {
    description
        .lines()
        .filter(|l| {
            let l = l.trim();
            !l.starts_with(PREFIX) && l != CREATED_NOTE
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// A description of `user` text with `marker` as its last line.
pub fn compose(user: &str, marker: &Marker) -> String {
    let user = user.trim();
    if user.is_empty() {
        marker.line()
    } else {
        format!("{user}\n\n{}", marker.line())
    }
}

/// The fingerprint of what a VM declares, as far as the plan converges it. Stable across
/// agents and restarts (SHA-256, not std's per-process hasher); 16 hex digits.
pub fn fingerprint(vm: &DesiredVm, config: &DesiredConfig) -> String {
    let mut h = Sha256::new();
    for (k, v) in config {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.text.as_bytes());
        h.update([0]);
    }
    h.update(format!("node={}\0", vm.node).as_bytes());
    let power = vm.spec.power_state.unwrap_or_default() == PowerState::Running;
    h.update(format!("running={power}\0").as_bytes());
    for d in &vm.spec.disks {
        h.update(format!("{}.size={}\0", d.slot, d.size.bytes()).as_bytes());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_through_a_description_with_user_text() {
        let m = Marker {
            applied: Some("0123456789abcdef".into()),
            rebuild: Some("2025-06-01".into()),
            prune: Some(false),
        };
        let d = compose("Consul server.\nOwner: ops", &m);
        assert_eq!(
            d,
            "Consul server.\nOwner: ops\n\npve-gitops: applied=0123456789abcdef rebuild=2025-06-01 prune=no"
        );
        // PVE hands the description back with a trailing newline.
        assert_eq!(Marker::parse(&format!("{d}\n")), Some(m));
        assert_eq!(user_text(&d), "Consul server.\nOwner: ops");
        assert_eq!(user_text(&format!("{CREATED_NOTE}\n")), "");
        assert_eq!(Marker::parse("just notes"), None);
        assert_eq!(
            Marker::parse("pve-gitops:"),
            Some(Marker::default()),
            "a record without a fingerprint: kept, never converged"
        );
    }
}
