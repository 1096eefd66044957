//! The status written back to the repository: per cluster directory on the status
//! branch, `STATUS.md` (a table for people), `status.yaml` (for programs, see
//! [`status::ClusterStatus`]), `inventory.yaml` (Ansible), while a revision is
//! refused `errors.md`, and while something drifted `drift.md`.
//!
//! Rendering is pure and deterministic (no clock): the same cluster gives the same bytes,
//! so the branch gets a commit only when something changed.

pub mod branch;
pub mod inventory;
pub mod local;
pub mod markdown;
pub mod objects;
pub mod status;

use status::{ClusterStatus, Counts};
use std::collections::BTreeMap;

/// The files of one cluster's status: path within the cluster directory (`/`-separated,
/// e.g. `plans/plan-topic.md`) → content. A file absent from the map is removed from the
/// branch (`errors.md` once fixed, a preview once its branch is deleted).
pub type StatusFiles = BTreeMap<String, String>;

/// Every file of `status`.
pub fn files(
    status: &ClusterStatus,
    inventory: Option<&pve_gitops_schema::manifest::misc::InventorySpec>,
) -> StatusFiles {
    let mut out = StatusFiles::new();
    out.insert("STATUS.md".into(), markdown::status_md(status));
    out.insert(
        "status.yaml".into(),
        serde_yaml::to_string(status).expect("status serializes"),
    );
    out.insert(
        "inventory.yaml".into(),
        inventory::ansible(status, inventory),
    );
    if let Some(e) = markdown::errors_md(status) {
        out.insert("errors.md".into(), e);
    }
    if let Some(d) = markdown::drift_md(status) {
        out.insert("drift.md".into(), d);
    }
    out
}

/// The commit message of a status update: `apply <short>: N created, N updated, N
/// deleted, N failed` (or `reject <short>: N errors`) with `Applied-Commit:`, `Cluster:`
/// and `Node:` trailers.
pub fn commit_message(status: &ClusterStatus, node: &str) -> String {
    let short = |r: &str| r.chars().take(7).collect::<String>();
    let subject = match (&status.rejected, &status.applied_revision) {
        (None, _) if status.waiting.is_some() => {
            let w = status.waiting.as_ref().expect("checked");
            format!(
                "wait {}: {} guest{} to change when the sync window opens{}",
                short(&w.revision),
                w.changes,
                if w.changes == 1 { "" } else { "s" },
                w.next_open
                    .as_ref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            )
        }
        (Some(r), _) => format!(
            "reject {}: {} error{}",
            short(&r.revision),
            r.errors.len(),
            if r.errors.len() == 1 { "" } else { "s" }
        ),
        (None, Some(a)) => {
            let Counts {
                created,
                updated,
                deleted,
                failed,
            } = status.counts;
            format!(
                "apply {}: {created} created, {updated} updated, {deleted} deleted, {failed} failed",
                short(a)
            )
        }
        (None, None) => "status".to_string(),
    };
    let mut msg = format!("{subject}\n\n");
    if let Some(a) = &status.applied_revision {
        msg.push_str(&format!("Applied-Commit: {a}\n"));
    }
    if let Some(r) = &status.rejected {
        msg.push_str(&format!("Rejected-Commit: {}\n", r.revision));
    }
    if let Some(w) = &status.waiting {
        msg.push_str(&format!("Waiting-Commit: {}\n", w.revision));
    }
    msg.push_str(&format!("Cluster: {}\nNode: {node}\n", status.cluster));
    msg
}

#[cfg(test)]
mod tests;
