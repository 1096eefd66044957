//! Plan previews: for a branch other than the one applied (`plan/*` by default, set by
//! `ClusterPolicy.spec.planPreviews`), the leader plans its manifests against the live
//! cluster without applying anything, and the status branch carries the result as
//! `<cluster>/plans/<branch with / as ->.md`. A reviewer sees what a merge would do
//! before it happens; deleting the branch removes its preview.
//!
//! Pure: matching branch names and rendering the preview. The daemon does the I/O.

use crate::plan::{Action, Plan};
use crate::preflight::PreflightProblem;
use std::fmt::Write;

/// Whether `branch` matches `pattern`, where `*` stands for any run of characters
/// except `/` (so `plan/*` matches `plan/topic` but not `plan/a/b`).
pub fn matches(pattern: &str, branch: &str) -> bool {
    fn go(p: &[u8], b: &[u8]) -> bool {
        match p.split_first() {
            None => b.is_empty(),
            Some((b'*', rest)) => {
                // Try every split point up to the next `/`.
                let stop = b.iter().position(|&c| c == b'/').unwrap_or(b.len());
                (0..=stop).any(|i| go(rest, &b[i..]))
            }
            Some((c, rest)) => b.first() == Some(c) && go(rest, &b[1..]),
        }
    }
    go(pattern.as_bytes(), branch.as_bytes())
}

/// The preview's path in the cluster's status directory: `plans/plan-topic.md` for
/// `plan/topic` (a flat directory, so a forge lists every preview at once).
pub fn path(branch: &str) -> String {
    format!("plans/{}.md", branch.replace('/', "-"))
}

/// Guests a plan creates, changes and deletes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
}

/// Count each guest once: created if any step creates it, deleted if any deletes it,
/// updated otherwise.
pub fn counts(plan: &Plan) -> Counts {
    let mut c = Counts::default();
    for actions in plan.waves.iter().flat_map(|w| w.values()) {
        if actions.iter().any(|a| matches!(a, Action::Create { .. })) {
            c.create += 1;
        } else if actions.iter().any(|a| matches!(a, Action::Delete { .. })) {
            c.delete += 1;
        } else if !actions.is_empty() {
            c.update += 1;
        }
    }
    c
}

/// What planning the branch gave.
pub enum Outcome<'a> {
    /// The branch's manifests are invalid: merging it would be refused.
    Invalid(&'a [String]),
    /// Planned; `problems` is a failed pre-flight (merging it would apply nothing).
    Planned {
        plan: &'a Plan,
        problems: &'a [PreflightProblem],
    },
    /// The preview could not be computed (the cluster or the branch was unreadable).
    Failed(&'a str),
}

/// The preview document.
pub fn render(branch: &str, revision: &str, outcome: &Outcome<'_>) -> String {
    let mut out = format!(
        "# Plan preview: `{branch}`\n\nRevision `{revision}`, planned against the live cluster. \
         Nothing from this branch is applied; this is what merging it would do now.\n\n"
    );
    match outcome {
        Outcome::Invalid(errors) => {
            let _ = writeln!(
                out,
                "**The manifests are invalid** ({} error{}): merging this branch would apply nothing.\n\n```",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            for e in *errors {
                let _ = writeln!(out, "{e}");
            }
            out.push_str("```\n");
        }
        Outcome::Failed(why) => {
            let _ = writeln!(out, "**No preview**: {why}");
        }
        Outcome::Planned { plan, problems } => {
            let c = counts(plan);
            let _ = writeln!(
                out,
                "**{} to create, {} to update, {} to delete**\n",
                c.create, c.update, c.delete
            );
            if !problems.is_empty() {
                out.push_str("Pre-flight would refuse it, so nothing would be applied:\n\n");
                for p in *problems {
                    let _ = writeln!(out, "- {p}");
                }
                out.push('\n');
            }
            let lines = crate::reconcile::describe(plan);
            if lines.is_empty() {
                out.push_str("The cluster already matches this branch.\n");
            } else {
                let _ = write!(out, "```\n{lines}```\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_within_one_path_segment() {
        let cases = [
            ("plan/*", "plan/topic", true),
            ("plan/*", "plan/", true),
            ("plan/*", "plan/a/b", false),
            ("plan/*", "planx/topic", false),
            ("plan/*", "main", false),
            ("*/preview", "team/preview", true),
            ("release-*-rc", "release-9-rc", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (p, b, want) in cases {
            assert_eq!(matches(p, b), want, "{p} vs {b}");
        }
    }

    #[test]
    fn path_flattens_the_branch_name() {
        assert_eq!(path("plan/topic"), "plans/plan-topic.md");
        assert_eq!(path("plan/a/b"), "plans/plan-a-b.md");
    }
}
