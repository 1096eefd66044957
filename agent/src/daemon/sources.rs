//! Where the daemon reads manifests from, and writes status to: a directory (development,
//! tests) or a git repository (production: the branch it applies, and the status branch).

use crate::report::status::ClusterStatus;
use crate::report::StatusFiles;
use crate::source::{Poll, Source};
use anyhow::{Context, Result};
use pve_gitops_schema::Repository;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The manifests the daemon follows.
pub trait Manifests: Send {
    /// The revision to reconcile now; changes whenever the manifests do, and is cheap to
    /// ask for (a `stat` walk; a ref listing, or the last one while it is recent).
    fn revision(&mut self) -> Result<String>;

    /// Make the next [`revision`](Manifests::revision) ask the source itself rather than
    /// give an earlier answer: a push webhook said the branch moved, the config changed,
    /// or this agent just became the leader and must not apply a head older than the one
    /// its predecessor applied. Sources that always ask have nothing to do.
    fn poll_now(&mut self) {}

    /// Whether the last [`revision`](Manifests::revision) is what the source said, now or
    /// within its interval, rather than a head kept because it could not be asked. A
    /// new leader applies only such a revision: the head it kept may be older than the
    /// one its predecessor applied.
    fn confirmed(&self) -> bool {
        true
    }

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

    /// The status of `cluster` as last published (by whichever agent led then), for an
    /// agent that starts to lead: a rejection it reports must keep what is applied.
    /// `None`: none published, or the source has no place for status. `Err`: it cannot
    /// be read now (the remote is unreachable).
    fn published_status(&mut self, _cluster: &str) -> Result<Option<ClusterStatus>> {
        Ok(None)
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

/// A [`Directory`] that the daemon's file watcher ([`super::watch`]) follows: walked
/// again only when the watcher saw something change in it, and at least every
/// [`REWALK`]. Each walk `stat`s every file, and opening the directories to list them
/// makes inotify report an access the watcher's thread wakes up for: some 8% of an idle
/// pass's CPU, to learn what the watcher already knows.
pub struct WatchedDirectory {
    dir: Directory,
    watch: DirWatch,
    /// When the directory was last walked, and the revision it gave.
    last: Option<(Instant, String)>,
    rewalk: Duration,
}

/// How long a watched directory's last walk stands without a change seen: for changes
/// inotify does not report (a network filesystem written from another machine).
pub const REWALK: Duration = Duration::from_secs(60);

impl WatchedDirectory {
    pub fn new(dir: PathBuf, watch: DirWatch) -> Self {
        Self::with_rewalk(dir, watch, REWALK)
    }

    /// With another bound than [`REWALK`] on how long a walk stands (tests).
    pub fn with_rewalk(dir: PathBuf, watch: DirWatch, rewalk: Duration) -> Self {
        WatchedDirectory {
            dir: Directory(dir),
            watch,
            last: None,
            rewalk,
        }
    }
}

impl Manifests for WatchedDirectory {
    fn revision(&mut self) -> Result<String> {
        if let Some((at, revision)) = &self.last {
            if at.elapsed() < self.rewalk && self.watch.quiet(&self.dir.0) {
                return Ok(revision.clone());
            }
        }
        // Cleared before the walk: a change during it makes the next pass walk again.
        self.watch.clear();
        let walked = Instant::now();
        let revision = self.dir.revision()?;
        self.last = Some((walked, revision.clone()));
        Ok(revision)
    }

    fn poll_now(&mut self) {
        self.last = None;
    }

    fn read(&mut self, revision: &str) -> Result<Repository> {
        self.dir.read(revision)
    }
}

/// What the file watcher tells a [`WatchedDirectory`]: whether anything changed since the
/// last walk, and which directory it watches. Until the watcher runs, nothing is known
/// and every pass walks. Clones share the state.
#[derive(Clone, Default)]
pub struct DirWatch(Arc<WatchState>);

#[derive(Default)]
struct WatchState {
    changed: AtomicBool,
    /// Device and inode of the directory the watcher was set on. A path swapped for
    /// another directory (a symbolic link repointed, a directory renamed over it) is
    /// not the one watched: then every pass walks.
    watching: OnceLock<(u64, u64)>,
}

impl DirWatch {
    /// The watcher is set on `dir` (as it is now).
    pub fn started(&self, dir: &Path) {
        if let Some(id) = identity(dir) {
            let _ = self.0.watching.set(id);
        }
        self.changed();
    }

    /// The watcher saw a change (or lost track: an error, an overflow).
    pub fn changed(&self) {
        self.0.changed.store(true, Ordering::SeqCst);
    }

    fn clear(&self) {
        self.0.changed.store(false, Ordering::SeqCst);
    }

    /// Whether `dir` is the watched directory and nothing changed in it since [`clear`].
    fn quiet(&self, dir: &Path) -> bool {
        !self.0.changed.load(Ordering::SeqCst)
            && self
                .0
                .watching
                .get()
                .is_some_and(|w| identity(dir) == Some(*w))
    }
}

/// The device and inode `path` leads to.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
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
    /// How often the remote is asked for the head (`--git-interval`).
    poll_every: Duration,
    /// When the remote last answered, and the revision it gave; `None` makes the next
    /// pass ask (never asked, the last ask failed, or [`Manifests::poll_now`]).
    answered: Option<(Instant, String)>,
}

impl Git {
    /// Follow `subdir` of `source`'s branch, asking the remote for its head at most every
    /// `poll_every` (passes in between reuse the answer), as Flux's `GitRepository`
    /// interval and Argo CD's polling do: a forge is not asked every few seconds by
    /// every node, and a push webhook still makes the next pass ask at once.
    pub fn new(
        source: Source,
        subdir: impl Into<String>,
        status_branch: impl Into<String>,
        poll_every: Duration,
    ) -> Self {
        Git {
            source,
            subdir: subdir.into(),
            status_branch: status_branch.into(),
            last_good: None,
            refused: None,
            poll_every,
            answered: None,
        }
    }

    /// The network operations made so far (tests, benchmarks).
    pub fn stats(&self) -> crate::source::Stats {
        self.source.stats()
    }

    /// Ask the remote for the branch head. When it cannot be reached, the last good head
    /// is kept: the cluster stays reconciled to it, and the problem is logged every pass
    /// until it clears. A head refused in signed-commit mode is given with its
    /// [`refusal`](Manifests::refusal), so the status branch says why nothing is applied.
    /// `answered` says whether the remote answered (a refusal is an answer).
    fn ask(&mut self) -> (Result<String>, bool) {
        self.refused = None;
        match blocking(|| self.source.poll()) {
            Ok(Poll::Unchanged { head }) => (Ok(head.to_string()), true),
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
                (Ok(update.head.to_string()), true)
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
                (Ok(revision), true)
            }
            Err(e) => {
                crate::telemetry::git_fetch_failed();
                let kept = match self.last_good {
                    Some(head) => {
                        tracing::error!("{e}; keeping {head}");
                        Ok(head.to_string())
                    }
                    None => Err(e).context("reading the manifests repository"),
                };
                (kept, false)
            }
        }
    }
}

impl Manifests for Git {
    /// The branch head, as the remote gave it within the last `poll_every` (see
    /// [`Git::ask`] for what a failed ask gives).
    fn revision(&mut self) -> Result<String> {
        if let Some((at, revision)) = &self.answered {
            if at.elapsed() < self.poll_every {
                return Ok(revision.clone());
            }
        }
        let (revision, answered) = self.ask();
        // The interval runs from the answer, as Flux requeues from the end of a
        // reconciliation: a remote slower to answer than the interval is not asked again
        // by the very next pass. A failure is not an answer: the next pass asks again.
        self.answered = match (&revision, answered) {
            (Ok(r), true) => Some((Instant::now(), r.clone())),
            _ => None,
        };
        revision
    }

    fn poll_now(&mut self) {
        self.answered = None;
    }

    fn confirmed(&self) -> bool {
        self.answered.is_some()
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

    /// `<cluster>/status.yaml` at the head of the status branch, fetched now. A file that
    /// is not a status (edited by hand) is logged and taken as none.
    fn published_status(&mut self, cluster: &str) -> Result<Option<ClusterStatus>> {
        let branch = self.status_branch.clone();
        let Some(head) = blocking(|| self.source.fetch_branch(&branch))? else {
            return Ok(None);
        };
        let path = format!("{cluster}/status.yaml");
        let bytes = match self.source.read_file(head, "", &path) {
            Ok(b) => b,
            Err(crate::source::Error::Read { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match serde_yaml::from_slice(&bytes) {
            Ok(status) => Ok(Some(status)),
            Err(e) => {
                tracing::warn!("{branch}:{path} is not a status, taking none: {e}");
                Ok(None)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceConfig;

    /// A manifests directory with one file, and its watched source (the watcher marked
    /// as started on it, as `super::watch` does).
    fn watched(rewalk: Duration) -> (tempfile::TempDir, PathBuf, DirWatch, WatchedDirectory) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("manifests");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "a: 1\n").unwrap();
        let watch = DirWatch::default();
        watch.started(&dir);
        let source = WatchedDirectory::with_rewalk(dir.clone(), watch.clone(), rewalk);
        (tmp, dir, watch, source)
    }

    #[test]
    fn a_watched_directory_is_walked_again_only_when_the_watcher_saw_a_change() {
        let (_tmp, dir, watch, mut source) = watched(REWALK);
        let first = source.revision().unwrap();
        // A change the watcher has not reported yet: the last walk stands...
        std::fs::write(dir.join("a.yaml"), "a: 22\n").unwrap();
        assert_eq!(source.revision().unwrap(), first);
        // ...until it reports one.
        watch.changed();
        let second = source.revision().unwrap();
        assert_ne!(second, first);
        assert_eq!(source.revision().unwrap(), second);
        // Asked to look again (a webhook, a reload): walked whatever the watcher said.
        std::fs::write(dir.join("b.yaml"), "b: 1\n").unwrap();
        source.poll_now();
        assert_ne!(source.revision().unwrap(), second);
    }

    #[test]
    fn a_directory_swapped_under_its_path_or_not_yet_watched_is_walked_every_pass() {
        let (tmp, dir, _watch, mut source) = watched(REWALK);
        let first = source.revision().unwrap();
        // Another directory at the same path: not the one the watcher is set on.
        std::fs::rename(&dir, tmp.path().join("old")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "a: 333\n").unwrap();
        let swapped = source.revision().unwrap();
        assert_ne!(swapped, first);
        std::fs::write(dir.join("a.yaml"), "a: 4444\n").unwrap();
        assert_ne!(source.revision().unwrap(), swapped);

        // No watcher started: nothing is known, every pass walks.
        let mut unwatched = WatchedDirectory::new(dir.clone(), DirWatch::default());
        let before = unwatched.revision().unwrap();
        std::fs::write(dir.join("a.yaml"), "a: 55555\n").unwrap();
        assert_ne!(unwatched.revision().unwrap(), before);
    }

    #[test]
    fn a_watched_directory_is_walked_again_once_its_last_walk_is_old() {
        let (_tmp, dir, _watch, mut source) = watched(Duration::ZERO);
        let first = source.revision().unwrap();
        std::fs::write(dir.join("a.yaml"), "a: 22\n").unwrap();
        assert_ne!(source.revision().unwrap(), first);
    }

    /// A bare repository with one commit on `main`, and its `file://` URL.
    fn remote(dir: &std::path::Path) -> String {
        let repo = git2::Repository::init_bare(dir.join("remote.git")).unwrap();
        let blob = repo.blob(b"kind: External\n").unwrap();
        let mut tree = repo.treebuilder(None).unwrap();
        tree.insert("a.yaml", blob, 0o100644).unwrap();
        let tree = repo.find_tree(tree.write().unwrap()).unwrap();
        let who = git2::Signature::now("t", "t@example.org").unwrap();
        repo.commit(Some("refs/heads/main"), &who, &who, "one", &tree, &[])
            .unwrap();
        format!("file://{}", dir.join("remote.git").display())
    }

    fn git(dir: &std::path::Path, url: &str, every: Duration) -> Git {
        let mut config = SourceConfig::new(url, "main");
        config.cache_root = dir.join("cache");
        Git::new(Source::open(config).unwrap(), "", "status", every)
    }

    #[test]
    fn the_remote_is_asked_once_per_interval_unless_told_to_ask_now() {
        let dir = tempfile::tempdir().unwrap();
        let url = remote(dir.path());
        let mut g = git(dir.path(), &url, Duration::from_secs(3600));
        let head = g.revision().unwrap();
        assert_eq!(g.revision().unwrap(), head);
        assert_eq!(g.stats().listings, 1, "the second pass reuses the answer");
        g.poll_now();
        assert_eq!(g.revision().unwrap(), head);
        assert_eq!(g.stats().listings, 2);

        let mut every_pass = git(dir.path(), &url, Duration::ZERO);
        every_pass.revision().unwrap();
        every_pass.revision().unwrap();
        assert_eq!(every_pass.stats().listings, 2);
    }

    #[test]
    fn a_failed_ask_keeps_the_last_head_unconfirmed_and_is_repeated_next_pass() {
        let dir = tempfile::tempdir().unwrap();
        let url = remote(dir.path());
        let mut g = git(dir.path(), &url, Duration::from_secs(3600));
        let head = g.revision().unwrap();
        let away = dir.path().join("away.git");
        std::fs::rename(dir.path().join("remote.git"), &away).unwrap();
        assert!(g.confirmed());
        g.poll_now();
        assert_eq!(g.revision().unwrap(), head, "the last good head is kept");
        assert!(!g.confirmed(), "a kept head is not the remote's answer");
        assert_eq!(g.revision().unwrap(), head);
        assert_eq!(
            g.stats().listings,
            3,
            "each pass asks until the remote answers"
        );
        std::fs::rename(&away, dir.path().join("remote.git")).unwrap();
        assert_eq!(g.revision().unwrap(), head);
        assert!(g.confirmed());
        assert_eq!(g.revision().unwrap(), head);
        assert_eq!(
            g.stats().listings,
            4,
            "an answer counts for the interval again"
        );
    }
}
