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
    /// `GET .../config`, current values.
    pub config: BTreeMap<String, String>,
    /// Keys with a pending value (applied at the next reboot) and that value (`None`: the
    /// key is removed at the next reboot).
    pub pending: BTreeMap<String, Option<String>>,
    pub digest: Option<String>,
}

impl ActualVm {
    /// Managed by pve-gitops: it carries the ownership tag.
    pub fn owned(&self) -> bool {
        self.tags.contains(pve_gitops_schema::ids::OWNER_TAG)
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

    pub fn protected(&self) -> bool {
        self.config.get("protection").is_some_and(|v| v == "1")
    }
}
