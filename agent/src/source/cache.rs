//! The local cache: one bare repository per remote URL under the cache root, kept across
//! restarts so a restarted agent has the last fetched revision even while the remote is
//! down, and fetches only what is new.
//!
//! A cache that cannot be opened, or whose fetched heads cannot be read back in full, is
//! deleted and created anew; the next fetch then downloads everything again (a re-clone).
//! The event is reported to the caller rather than hidden.

use super::error::Error;
use super::url::RemoteUrl;
use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};
use std::path::{Path, PathBuf};

/// Where caches live unless configured otherwise.
pub const DEFAULT_CACHE_ROOT: &str = "/var/lib/pve-gitops/cache";

/// Local refs that mirror the remote's branches: `refs/remotes/origin/<branch>`.
pub(crate) fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

/// What happened to the cache when it was opened, reported with the next update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheEvent {
    /// An existing cache was reused.
    Reused,
    /// There was no cache (first start, or it was deleted while the agent was stopped).
    Created,
    /// The cache was unusable (corrupted, or deleted while the agent ran) and was rebuilt;
    /// everything is fetched again.
    Rebuilt { reason: String },
}

/// The cache directory of `url` under `root`: a hash of the URL, so any URL maps to one
/// plain directory name (the URL itself is recorded in the repository's config).
pub(crate) fn cache_dir(root: &Path, url: &RemoteUrl) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, url.as_str().as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    root.join(hex)
}

/// Open the cache at `path`, creating or rebuilding it as needed.
pub(crate) fn open(
    path: &Path,
    url: &RemoteUrl,
    branch: &str,
) -> Result<(Repository, CacheEvent), Error> {
    if !path.exists() {
        return Ok((create(path, url)?, CacheEvent::Created));
    }
    let problem = match Repository::open_bare(path) {
        Ok(repo) => match check(&repo, branch) {
            Ok(()) => return Ok((repo, CacheEvent::Reused)),
            Err(problem) => problem,
        },
        Err(e) => format!("cannot open: {}", e.message()),
    };
    tracing::warn!(url = %url, cache = %path.display(), %problem, "cache unusable, rebuilding");
    let repo = rebuild(path, url)?;
    Ok((
        repo,
        CacheEvent::Rebuilt {
            reason: format!("cache {} was unusable ({problem})", path.display()),
        },
    ))
}

/// Delete the cache at `path` and create an empty one.
pub(crate) fn rebuild(path: &Path, url: &RemoteUrl) -> Result<Repository, Error> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| cache_error(url, path, "cannot delete", e))?;
    }
    create(path, url)
}

/// Whether the cache at `path` is still there (an operator or a cleanup may delete it
/// while the agent runs).
pub(crate) fn present(path: &Path) -> bool {
    path.join("HEAD").is_file() && path.join("objects").is_dir()
}

fn create(path: &Path, url: &RemoteUrl) -> Result<Repository, Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| cache_error(url, path, "cannot create", e))?;
    }
    let repo =
        Repository::init_bare(path).map_err(|e| cache_error(url, path, "cannot create", e))?;
    // For a person looking into the cache root: which remote this directory mirrors.
    repo.config()
        .and_then(|mut c| c.set_str("pve-gitops.url", url.as_str()))
        .map_err(|e| cache_error(url, path, "cannot write config", e))?;
    Ok(repo)
}

/// The fetched head of `branch`, if any, must be a readable commit whose every tree and
/// blob is present: that is what the agent reads later, possibly with the remote down.
pub(crate) fn check(repo: &Repository, branch: &str) -> Result<(), String> {
    repo.find_reference("HEAD")
        .map_err(|e| format!("HEAD unreadable: {}", e.message()))?;
    let head = match repo.refname_to_id(&tracking_ref(branch)) {
        Ok(head) => head,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(()), // nothing fetched yet
        Err(e) => return Err(format!("ref of `{branch}` unreadable: {}", e.message())),
    };
    let unreadable = |what: &str, id: Oid, e: git2::Error| {
        format!("{what} {id} of `{branch}` unreadable: {}", e.message())
    };
    let commit = repo
        .find_commit(head)
        .map_err(|e| unreadable("commit", head, e))?;
    let tree = commit.tree().map_err(|e| unreadable("tree", head, e))?;
    let odb = repo.odb().map_err(|e| e.message().to_string())?;
    let mut missing = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |_, entry| {
        if matches!(entry.kind(), Some(ObjectType::Blob | ObjectType::Tree)) {
            if let Err(e) = odb.read_header(entry.id()) {
                missing = Some(unreadable("object", entry.id(), e));
                return TreeWalkResult::Abort;
            }
        }
        TreeWalkResult::Ok
    });
    match (missing, walked) {
        (Some(m), _) => Err(m),
        (None, Err(e)) => Err(unreadable("tree", head, e)),
        (None, Ok(())) => Ok(()),
    }
}

fn cache_error(url: &RemoteUrl, path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Cache {
        url: url.to_string(),
        path: path.to_path_buf(),
        message: format!("{what}: {e}"),
    }
}
