//! The actual state the planner compares against, as observation will report it.

use std::collections::{BTreeMap, BTreeSet};

/// A guest as PVE reports it (`/cluster/resources` plus, for candidates, its config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualVm {
    pub vmid: u32,
    pub name: String,
    pub node: String,
    pub running: bool,
    pub template: bool,
    pub tags: BTreeSet<String>,
    /// Current values (what `GET .../config?current=1` shows).
    pub config: BTreeMap<String, String>,
    /// Keys with a pending value (applied at the next reboot) and that value (`None`: the
    /// key is removed at the next reboot).
    pub pending: BTreeMap<String, Option<String>>,
    pub digest: Option<String>,
}

/// The description a VM gets when the agent creates it. Until its first configure sets
/// the ownership tag, this line is what marks the VM as the agent's: a pass that stopped
/// between the clone and the configure finishes the VM instead of refusing it as foreign.
pub const CREATED_NOTE: &str = "Created by pve-gitops.";

impl ActualVm {
    /// Managed by pve-gitops: it carries the ownership tag, the record of what the agent
    /// applied (so a tag removed by hand is drift, not a stranger), or the note of a
    /// create the agent has not finished configuring.
    pub fn owned(&self) -> bool {
        self.tags.contains(pve_gitops_schema::ids::OWNER_TAG)
            || self.config.get("description").is_some_and(|d| {
                d.lines().any(|l| l.trim() == CREATED_NOTE)
                    || super::marker::Marker::parse(d).is_some()
            })
    }

    /// The config PVE will run with after the next reboot: current values with pending
    /// ones over them. Plans compare against this, or a change waiting for a reboot would
    /// be sent again on every pass.
    pub fn effective_config(&self) -> BTreeMap<String, String> {
        let mut c = self.config.clone();
        for (k, v) in &self.pending {
            match v {
                Some(v) => c.insert(k.clone(), v.clone()),
                None => c.remove(k),
            };
        }
        c
    }

    /// The lock PVE holds on the VM (`clone`, `backup`, `migrate`, ...): an operation is
    /// under way and writes would be refused.
    pub fn lock(&self) -> Option<&str> {
        self.config.get("lock").map(String::as_str)
    }

    pub fn protected(&self) -> bool {
        self.config.get("protection").is_some_and(|v| v == "1")
    }
}
