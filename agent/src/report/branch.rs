//! Committing a cluster's status files to the status branch of the manifests repository.
//!
//! Each update replaces the cluster's directory on the branch with exactly the files given
//! (so `errors.md` disappears once a revision is accepted again), keeps every other
//! directory (other clusters' agents write theirs), and commits only when the tree
//! changed. The push only succeeds over the branch head it was built on; when another
//! writer got there first, the branch is fetched again and the commit rebuilt on top.

use super::StatusFiles;
use crate::source::{PushOutcome, Source};
use anyhow::{bail, Context, Result};
use git2::{Oid, Signature};

/// How often a lost push race is retried before the update is given up (the next pass
/// tries again).
const PUSH_ATTEMPTS: usize = 5;

/// Replace `cluster/` on `branch` with `files` and push it; `Some(commit)` when a commit
/// was made, `None` when the branch already had exactly these files.
pub fn commit_status(
    source: &mut Source,
    branch: &str,
    cluster: &str,
    files: &StatusFiles,
    message: &str,
    node: &str,
) -> Result<Option<Oid>> {
    for _ in 0..PUSH_ATTEMPTS {
        let parent = source
            .fetch_branch(branch)
            .with_context(|| format!("fetching the status branch `{branch}`"))?;
        let Some(commit) = build(source, parent, cluster, files, message, node)? else {
            return Ok(None);
        };
        match source.push(commit, branch, parent)? {
            PushOutcome::Pushed => return Ok(Some(commit)),
            PushOutcome::NonFastForward { reason, .. } => {
                tracing::debug!(branch, reason, "status push lost a race; rebuilding on top");
            }
        }
    }
    bail!("the status branch `{branch}` kept moving: gave up after {PUSH_ATTEMPTS} attempts")
}

/// A tree holding `files` (`/`-separated paths → content), subdirectories included.
fn tree_of<'a>(
    repo: &git2::Repository,
    files: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<Oid> {
    let mut here = repo.treebuilder(None)?;
    let mut below: std::collections::BTreeMap<&str, Vec<(&str, &[u8])>> = Default::default();
    for (path, content) in files {
        match path.split_once('/') {
            Some((dir, rest)) => below.entry(dir).or_default().push((rest, content)),
            None => {
                here.insert(path, repo.blob(content)?, 0o100_644)?;
            }
        }
    }
    for (dir, entries) in below {
        here.insert(dir, tree_of(repo, entries.into_iter())?, 0o040_000)?;
    }
    Ok(here.write()?)
}

/// The commit of `files` on top of `parent`, or `None` if nothing would change.
fn build(
    source: &Source,
    parent: Option<Oid>,
    cluster: &str,
    files: &StatusFiles,
    message: &str,
    node: &str,
) -> Result<Option<Oid>> {
    let repo = source.repository();
    let parent = parent.map(|p| repo.find_commit(p)).transpose()?;
    let base = parent.as_ref().map(|c| c.tree()).transpose()?;
    let dir = tree_of(repo, files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())))?;
    let mut root = repo.treebuilder(base.as_ref())?;
    root.insert(cluster, dir, 0o040_000)?;
    let tree = root.write()?;
    if base.as_ref().map(|t| t.id()) == Some(tree) {
        return Ok(None);
    }
    let who = Signature::now("pve-gitops", &format!("pve-gitops@{node}"))?;
    let tree = repo.find_tree(tree)?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    Ok(Some(
        repo.commit(None, &who, &who, message, &tree, &parents)?,
    ))
}
