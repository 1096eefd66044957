//! Writing a branch of the remote (the status branch), as a compare-and-swap: the push
//! goes through only if the remote branch is where the caller built on, and only as a
//! fast-forward. When someone else moved the branch in between, the answer is
//! [`PushOutcome::NonFastForward`], not an error: fetch the branch again, rebuild the
//! commit on top, push again.

use super::cache::tracking_ref;
use super::connect::Session;
use super::error::Error;
use git2::{Direction, ErrorCode, Oid, PushOptions, Repository};
use std::cell::RefCell;

/// Local ref a push is sent from (libgit2 pushes refs, not bare commit ids).
fn staging_ref(branch: &str) -> String {
    format!("refs/pve-gitops/push/{branch}")
}

/// How a push ended, short of an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote branch now points at the pushed commit.
    Pushed,
    /// The remote branch is not where the caller expected, or the commit does not descend
    /// from it: fetch the branch, rebuild on top, retry.
    NonFastForward {
        /// The remote branch as last seen (`None`: it does not exist).
        remote_head: Option<Oid>,
        /// What libgit2 or the server said, or why the push was not attempted.
        reason: String,
    },
}

/// Push `commit` to `branch` of the remote if the branch is at `expected` (`None`: the
/// branch must not exist yet).
pub(crate) fn push(
    repo: &Repository,
    session: &Session<'_>,
    commit: Oid,
    branch: &str,
    expected: Option<Oid>,
) -> Result<PushOutcome, Error> {
    let action = format!("pushing to branch `{branch}`");
    let fail = |e: git2::Error| session.error(e, &action, None);
    let remote_ref = format!("refs/heads/{branch}");

    let mut remote = repo.remote_anonymous(session.url.as_str()).map_err(fail)?;
    let mut conn = remote
        .connect_auth(Direction::Push, Some(session.callbacks()), None)
        .map_err(fail)?;
    let current = conn
        .list()
        .map_err(fail)?
        .iter()
        .find(|h| h.name() == remote_ref)
        .map(|h| h.oid());
    if current != expected {
        return Ok(PushOutcome::NonFastForward {
            remote_head: current,
            reason: format!(
                "the remote branch is at {}, expected {}",
                show(current),
                show(expected)
            ),
        });
    }
    if current == Some(commit) {
        set_tracking(repo, branch, commit).map_err(fail)?;
        return Ok(PushOutcome::Pushed);
    }

    let staging = staging_ref(branch);
    repo.reference(&staging, commit, true, "pve-gitops: push")
        .map_err(fail)?;
    let refused = RefCell::new(None);
    let mut callbacks = session.callbacks();
    callbacks.push_update_reference(|_, status| {
        if let Some(status) = status {
            *refused.borrow_mut() = Some(status.to_string());
        }
        Ok(())
    });
    let mut opts = PushOptions::new();
    opts.remote_callbacks(callbacks);
    // Not forced: libgit2 refuses a non-fast-forward before sending anything, and the
    // server checks the old value it was told (the one listed above).
    let pushed = conn
        .remote()
        .push(&[format!("{staging}:{remote_ref}")], Some(&mut opts));
    drop(opts);
    let _ = repo.find_reference(&staging).and_then(|mut r| r.delete());
    match pushed {
        Err(e) if e.code() == ErrorCode::NotFastForward => {
            return Ok(PushOutcome::NonFastForward {
                remote_head: current,
                reason: e.message().to_string(),
            })
        }
        Err(e) => return Err(fail(e)),
        Ok(()) => {}
    }
    if let Some(status) = refused.into_inner() {
        if is_race(&status) {
            return Ok(PushOutcome::NonFastForward {
                remote_head: current,
                reason: status,
            });
        }
        return Err(Error::PushRejected {
            url: session.url.to_string(),
            branch: branch.to_string(),
            message: status,
        });
    }
    set_tracking(repo, branch, commit).map_err(fail)?;
    Ok(PushOutcome::Pushed)
}

/// Server statuses that mean "the branch moved": `git receive-pack` says these when the old
/// value it was sent is stale or the update is not a fast-forward.
fn is_race(status: &str) -> bool {
    [
        "non-fast-forward",
        "fetch first",
        "stale info",
        "failed to update ref",
        "failed to lock",
    ]
    .iter()
    .any(|s| status.contains(s))
}

/// After a push the cache knows the remote branch without fetching it.
fn set_tracking(repo: &Repository, branch: &str, commit: Oid) -> Result<(), git2::Error> {
    repo.reference(&tracking_ref(branch), commit, true, "pve-gitops: pushed")
        .map(drop)
}

fn show(oid: Option<Oid>) -> String {
    oid.map_or_else(|| "(absent)".to_string(), |o| o.to_string())
}
