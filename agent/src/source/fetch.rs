//! Bringing one remote branch into the cache, cheaply: one connection lists the remote's
//! refs (what `git ls-remote` shows), and objects are downloaded over that same connection
//! only when the branch head differs from the one fetched last time.
//!
//! The fetch refspec is forced (`+refs/heads/B:refs/remotes/origin/B`), so a force-pushed
//! branch is followed; whether that happened is for the caller to tell from the old and new
//! heads (see [`rewritten`]).

use super::cache::tracking_ref;
use super::connect::Session;
use super::error::Error;
use git2::{AutotagOption, Direction, FetchOptions, Oid, Repository};

/// A branch brought up to date with the remote.
pub(crate) struct Synced {
    /// The remote's head, now in the cache; `None` if the remote has no such branch.
    pub head: Option<Oid>,
    /// The cache's head before this sync.
    pub previous: Option<Oid>,
    /// Whether objects were downloaded (false: the cache already had the head).
    pub fetched: bool,
    /// Every branch of the remote and its head, from the same listing.
    pub branches: Vec<(String, Oid)>,
}

/// Bring `branch` of the remote into the cache.
pub(crate) fn sync_branch(
    repo: &Repository,
    session: &Session<'_>,
    branch: &str,
) -> Result<Synced, Error> {
    let tracking = tracking_ref(branch);
    let previous = repo.refname_to_id(&tracking).ok();
    let action = format!("fetching branch `{branch}`");
    let fail = |e: git2::Error| session.error(e, &action, previous);

    let mut remote = repo.remote_anonymous(session.url.as_str()).map_err(fail)?;
    let mut conn = remote
        .connect_auth(Direction::Fetch, Some(session.callbacks()), None)
        .map_err(fail)?;
    let wanted = format!("refs/heads/{branch}");
    let branches: Vec<(String, Oid)> = conn
        .list()
        .map_err(fail)?
        .iter()
        .filter_map(|h| Some((h.name().strip_prefix("refs/heads/")?.to_string(), h.oid())))
        .collect();
    let head = branches.iter().find(|(b, _)| b == branch).map(|(_, o)| *o);
    let Some(head) = head else {
        return Ok(Synced {
            head: None,
            previous,
            fetched: false,
            branches,
        });
    };
    if Some(head) == previous && repo.find_commit(head).is_ok() {
        return Ok(Synced {
            head: Some(head),
            previous,
            fetched: false,
            branches,
        });
    }

    let mut opts = FetchOptions::new();
    opts.remote_callbacks(session.callbacks())
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    let refspec = format!("+{wanted}:{tracking}");
    conn.remote()
        .fetch(&[refspec], Some(&mut opts), Some("pve-gitops: fetch"))
        .map_err(fail)?;
    // The branch may have moved between the listing and the download; the ref now holds
    // what was actually downloaded.
    let head = repo.refname_to_id(&tracking).map_err(fail)?;
    Ok(Synced {
        head: Some(head),
        previous,
        fetched: true,
        branches,
    })
}

/// Whether moving from `previous` to `head` rewrote history: the new head does not contain
/// the old one (a force-push, a rebase, a reset). A `previous` that is not in the cache at
/// all (the cache was rebuilt and the new history does not reach it) counts as rewritten.
pub(crate) fn rewritten(repo: &Repository, previous: Option<Oid>, head: Oid) -> bool {
    match previous {
        None => false,
        Some(p) if p == head => false,
        Some(p) => !repo.graph_descendant_of(head, p).unwrap_or(false),
    }
}
