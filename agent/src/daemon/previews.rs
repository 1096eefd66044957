//! Keeping the plan previews of `plan/*` branches (see [`crate::preview`]) current: a
//! branch is planned again when its head moves or when the cluster may have changed
//! under it (after a full pass); a deleted branch drops its preview.

use super::sources::Manifests;
use crate::plan::{Policy, PolicyOverrides};
use crate::preview::{self, Outcome};
use crate::pve::PveClient;
use crate::secrets::Decryptor;
use std::collections::BTreeMap;

/// The current preview documents, by branch.
#[derive(Debug, Default)]
pub(super) struct Previews {
    /// Branch → (head planned, document).
    by_branch: BTreeMap<String, (String, String)>,
}

impl Previews {
    /// The documents as status files (`plans/<branch>.md` → content).
    pub fn files(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.by_branch
            .iter()
            .map(|(b, (_, md))| (preview::path(b), md.clone()))
    }

    /// Bring the previews up to date; `true` when a document changed, appeared or went.
    /// `replan` plans unchanged branches again too (the cluster moved).
    pub async fn refresh(
        &mut self,
        client: &PveClient,
        manifests: &mut dyn Manifests,
        patterns: &[String],
        decryptor: Option<&Decryptor>,
        overrides: &PolicyOverrides,
        replan: bool,
    ) -> bool {
        let branches = match manifests.preview_branches(patterns) {
            Ok(b) => b,
            Err(e) => {
                // Keep the previews as they are: a listing failure is not a deletion.
                tracing::warn!("listing branches to preview: {e:#}");
                return false;
            }
        };
        let mut next = BTreeMap::new();
        for (branch, head) in branches {
            if let Some((planned, md)) = self.by_branch.get(&branch) {
                if *planned == head && !replan {
                    next.insert(branch, (head, md.clone()));
                    continue;
                }
            }
            let md = plan_branch(client, manifests, &branch, &head, decryptor, overrides).await;
            tracing::info!(%branch, %head, "plan preview updated");
            next.insert(branch, (head, md));
        }
        let changed = next != self.by_branch;
        self.by_branch = next;
        changed
    }
}

/// Plan one branch against the cluster and render its preview; never writes to PVE.
async fn plan_branch(
    client: &PveClient,
    manifests: &mut dyn Manifests,
    branch: &str,
    head: &str,
    decryptor: Option<&Decryptor>,
    overrides: &PolicyOverrides,
) -> String {
    let repo = match manifests.read(head) {
        Ok(r) => r,
        Err(e) => return preview::render(branch, head, &Outcome::Failed(&format!("{e:#}"))),
    };
    let revision = match crate::revision::load(&repo, decryptor) {
        Ok(r) => r,
        Err(errors) => return preview::render(branch, head, &Outcome::Invalid(&errors)),
    };
    // The branch's own ClusterPolicy, under the command line's flags, as a merge of it
    // would be applied.
    let policy = Policy {
        secrets_decrypted: revision.secrets.decrypted(),
        ..Policy::effective(revision.desired.policy.as_ref().map(|p| &p.spec), overrides)
    };
    match crate::pass::prepare(client, &revision.desired, &policy).await {
        Ok(prepared) => {
            let problems = prepared.preflight.err().unwrap_or_default();
            preview::render(
                branch,
                head,
                &Outcome::Planned {
                    plan: &prepared.plan,
                    problems: &problems,
                },
            )
        }
        Err(e) => preview::render(branch, head, &Outcome::Failed(&format!("{e:#}"))),
    }
}
