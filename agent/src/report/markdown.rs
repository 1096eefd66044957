//! `STATUS.md` and `errors.md`: the status as a person reads it in a forge's file view.

use super::status::{ClusterStatus, Sync};
use std::fmt::Write;

/// A table of every resource, with counts and any refused revision on top.
pub fn status_md(s: &ClusterStatus) -> String {
    let mut out = format!("# {}\n\n", s.cluster);
    match &s.applied_revision {
        Some(r) => {
            let _ = writeln!(out, "Applied revision: `{r}`  ");
        }
        None => out.push_str("No revision applied yet.  \n"),
    }
    if let Some(l) = &s.leader {
        let _ = writeln!(out, "Leader: {} (term {})  ", l.node, l.term);
    }
    let c = &s.counts;
    let _ = writeln!(
        out,
        "Last apply: {} created, {} updated, {} deleted, {} failed\n",
        c.created, c.updated, c.deleted, c.failed
    );
    if let Some(r) = &s.rejected {
        let _ = writeln!(
            out,
            "> **Revision `{}` was rejected** ({} error{}); nothing from it was applied. See [errors.md](errors.md).\n",
            r.revision,
            r.errors.len(),
            if r.errors.len() == 1 { "" } else { "s" }
        );
    }
    if let Some(w) = &s.waiting {
        let _ = writeln!(
            out,
            "> **Revision `{}` waits for a sync window**: {} guest{} to change{}. The cluster stays as applied until then.\n",
            w.revision,
            w.changes,
            if w.changes == 1 { "" } else { "s" },
            w.next_open
                .as_ref()
                .map(|t| format!("; the next window opens at {t}"))
                .unwrap_or_else(|| "; no window is scheduled".into())
        );
    }
    if let Some(why) = &s.prune_refused {
        let _ = writeln!(out, "> **Pruning refused:** {why}.\n");
    }
    if !s.drift.is_empty() {
        let reported = s.drift.iter().filter(|d| d.action == "reported").count();
        let _ = writeln!(
            out,
            "Drift: {} field{} changed outside pve-gitops, {} healed, {} reported. See [drift.md](drift.md).\n",
            s.drift.len(),
            if s.drift.len() == 1 { "" } else { "s" },
            s.drift.len() - reported,
            reported
        );
    }
    let not_synced = s
        .resources
        .iter()
        .filter(|r| !matches!(r.sync, Sync::InSync | Sync::Changed))
        .count();
    let _ = writeln!(
        out,
        "{} resources, {} need attention.\n",
        s.resources.len(),
        not_synced
    );
    out.push_str("| resource | node | vmid | IP | state | sync | message |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for r in &s.resources {
        let _ = writeln!(
            out,
            "| {}/{} | {} | {} | {} | {} | {} | {} |",
            r.kind,
            cell(&r.name),
            cell(r.node.as_deref().unwrap_or("")),
            r.vmid.map(|v| v.to_string()).unwrap_or_default(),
            cell(r.ip.as_deref().unwrap_or("")),
            r.state,
            r.sync.as_str(),
            cell(r.message.as_deref().unwrap_or("")),
        );
    }
    out
}

/// The problems of a refused revision, one per line, locations first.
pub fn errors_md(s: &ClusterStatus) -> Option<String> {
    let r = s.rejected.as_ref()?;
    let mut out = format!(
        "# Revision `{}` rejected\n\nNothing from this revision was applied; the cluster stays at {}.\n\n```\n",
        r.revision,
        s.applied_revision
            .as_deref()
            .map_or("its previous state".to_string(), |a| format!("`{a}`"))
    );
    for e in &r.errors {
        out.push_str(e);
        out.push('\n');
    }
    out.push_str("```\n");
    Some(out)
}

/// `drift.md`: every field changed behind the agent's back, with the declared and the
/// found value; `None` when there is no drift.
pub fn drift_md(s: &ClusterStatus) -> Option<String> {
    if s.drift.is_empty() {
        return None;
    }
    let mut out = format!(
        "# Drift in {}\n\nFields changed outside pve-gitops since they were applied. `reported`: left as found (drift mode `report`); `healed`: set back to the manifests' value in this pass.\n\n",
        s.cluster
    );
    out.push_str("| resource | vmid | field | desired | actual | action |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for d in &s.drift {
        let _ = writeln!(
            out,
            "| {}/{} | {} | {} | {} | {} | {} |",
            d.kind,
            cell(&d.name),
            d.vmid.map(|v| v.to_string()).unwrap_or_default(),
            cell(&d.field),
            cell(&d.desired),
            cell(&d.actual),
            d.action
        );
    }
    Some(out)
}

/// Text safe inside a Markdown table cell: no pipes or line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}
