//! Where the daemon reads manifests from, and writes status to: a directory (development,
//! tests) or a git repository (production: the branch it applies, and the status branch).

use crate::report::StatusFiles;
use crate::source::{Poll, Source};
use anyhow::{Context, Result};
use pve_gitops_schema::Repository;
use std::path::PathBuf;

/// The manifests the daemon follows.
pub trait Manifests: Send {
    /// The revision to reconcile now; changes whenever the manifests do, and is cheap to
    /// ask for (a `stat` walk, one ref listing).
    fn revision(&mut self) -> Result<String>;

    /// The files of `revision`.
    fn read(&mut self, revision: &str) -> Result<Repository>;

    /// Whether the last [`revision`](Manifests::revision) is one the source refuses to
    /// have applied (signed-commit mode: a head not signed by an allowed key), and why.
    /// The daemon reports it like an invalid revision and applies nothing.
    fn refusal(&self) -> Option<Refusal> {
        None
    }

    /// Branches to preview: every branch of the source matching one of `patterns` (see
    /// [`crate::preview::matches`]) except the applied and status branches, with its
    /// head, ready to [`read`](Manifests::read). Sources without branches have none.
    fn preview_branches(&mut self, _patterns: &[String]) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    /// Publish a cluster's status (`Some(commit)` when a commit was made). Sources without
    /// a place for status keep it to themselves.
    fn write_status(
        &mut self,
        _cluster: &str,
        _files: &StatusFiles,
        _message: &str,
        _node: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A head the source will not have applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The refused commit.
    pub revision: String,
    /// Why, for the operator (names the remote, the branch and the commit).
    pub reason: String,
}

/// A manifests directory on disk; its revision is a fingerprint of the files' sizes and
/// modification times.
pub struct Directory(pub PathBuf);

impl Manifests for Directory {
    fn revision(&mut self) -> Result<String> {
        crate::manifests::fingerprint(&self.0)
    }

    fn read(&mut self, _revision: &str) -> Result<Repository> {
        crate::manifests::read_dir(&self.0)
    }
}

/// A directory of a branch of a git repository; status goes to another branch of it.
pub struct Git {
    source: Source,
    /// The cluster's directory in the repository (`clusters/prod`; empty: the root).
    subdir: String,
    status_branch: String,
    /// The last head the remote gave (and, in signed mode, that passed verification).
    last_good: Option<git2::Oid>,
    /// The head the last poll refused (signed-commit mode), until a good one replaces it.
    refused: Option<Refusal>,
}

impl Git {
    pub fn new(
        source: Source,
        subdir: impl Into<String>,
        status_branch: impl Into<String>,
    ) -> Self {
        Git {
            source,
            subdir: subdir.into(),
            status_branch: status_branch.into(),
            last_good: None,
            refused: None,
        }
    }
}

impl Manifests for Git {
    /// The branch head. When the remote cannot be reached, the last good head is kept:
    /// the cluster stays reconciled to it, and the problem is logged every pass until it
    /// clears. A head refused in signed-commit mode is returned with its
    /// [`refusal`](Manifests::refusal), so the status branch says why nothing is applied.
    fn revision(&mut self) -> Result<String> {
        self.refused = None;
        match blocking(|| self.source.poll()) {
            Ok(Poll::Unchanged { head }) => Ok(head.to_string()),
            Ok(Poll::Updated(update)) => {
                if update.history_rewritten {
                    tracing::warn!(head = %update.head, previous = ?update.previous, "the branch was force-pushed: following its new history");
                }
                match &update.cache {
                    crate::source::CacheEvent::Reused => {}
                    crate::source::CacheEvent::Created => tracing::info!("git cache created"),
                    other => tracing::warn!(cache = ?other, "git cache"),
                }
                self.last_good = Some(update.head);
                Ok(update.head.to_string())
            }
            Err(e @ crate::source::Error::Signature { .. }) => {
                let crate::source::Error::Signature { commit, .. } = &e else {
                    unreachable!("matched above")
                };
                let revision = commit.to_string();
                self.refused = Some(Refusal {
                    revision: revision.clone(),
                    reason: e.to_string(),
                });
                Ok(revision)
            }
            Err(e) => {
                crate::telemetry::git_fetch_failed();
                match self.last_good {
                    Some(head) => {
                        tracing::error!("{e}; keeping {head}");
                        Ok(head.to_string())
                    }
                    None => Err(e).context("reading the manifests repository"),
                }
            }
        }
    }

    fn refusal(&self) -> Option<Refusal> {
        self.refused.clone()
    }

    fn read(&mut self, revision: &str) -> Result<Repository> {
        let oid = git2::Oid::from_str(revision)?;
        Ok(self.source.read_tree(oid, &self.subdir)?)
    }

    /// From the listing the last poll made; a branch whose head is not in the cache yet
    /// is fetched. Branches are not signature-checked: nothing from them is applied.
    fn preview_branches(&mut self, patterns: &[String]) -> Result<Vec<(String, String)>> {
        let own = [self.source.branch().to_string(), self.status_branch.clone()];
        let wanted: Vec<(String, git2::Oid)> = self
            .source
            .remote_branches()
            .iter()
            .filter(|(b, _)| !own.contains(b))
            .filter(|(b, _)| patterns.iter().any(|p| crate::preview::matches(p, b)))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for (branch, head) in wanted {
            let head = if self.source.repository().find_commit(head).is_ok() {
                Some(head)
            } else {
                blocking(|| self.source.fetch_branch(&branch))
                    .with_context(|| format!("fetching branch `{branch}` for its preview"))?
            };
            if let Some(head) = head {
                out.push((branch, head.to_string()));
            }
        }
        Ok(out)
    }

    fn write_status(
        &mut self,
        cluster: &str,
        files: &StatusFiles,
        message: &str,
        node: &str,
    ) -> Result<Option<String>> {
        let status_branch = self.status_branch.clone();
        blocking(|| {
            crate::report::branch::commit_status(
                &mut self.source,
                &status_branch,
                cluster,
                files,
                message,
                node,
            )
        })
        .map(|c| c.map(|c| c.to_string()))
    }
}

/// Run `f`, which waits on the git remote, telling the daemon's runtime so: its other
/// tasks (the metrics endpoint, the webhook, the lease) move to other threads meanwhile,
/// and the HTTPS transport's blocking client may wait here. Off a multi-threaded
/// runtime (a plain thread, a test's single-threaded one), `f` just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
