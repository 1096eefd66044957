//! The git source: the repository of manifests the agent follows, fetched into a local
//! cache and read without a work tree; and the same repository written back to (the
//! status branch).
//!
//! ```no_run
//! use pve_gitops::source::{Credentials, HostKeyPins, Poll, Source, SourceConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = SourceConfig::new("ssh://git@git.example.org/infra/cluster.git", "main");
//! config.credentials = Credentials::SshKey { private_key: "/etc/pve/priv/pve-gitops/deploy_key".into() };
//! config.host_keys = Some(HostKeyPins::parse("SHA256:DtRtzr6c2VtIKhz7b0r4P6HElmkBIUM0qhZnX3K508Y")?);
//! let mut source = Source::open(config)?;
//! loop {
//!     match source.poll() {
//!         Ok(Poll::Updated(update)) => {
//!             let files = source.read_tree(update.head, "clusters/prod")?;
//!             // validate, plan, apply `files`...
//!         }
//!         Ok(Poll::Unchanged { .. }) => {}
//!         // Unreachable remote, refused signature...: keep what was applied last.
//!         Err(e) => eprintln!("{e}"),
//!     }
//!     std::thread::sleep(pve_gitops::source::DEFAULT_POLL_INTERVAL);
//! }
//! # }
//! ```
//!
//! - Transports: SSH with a deploy key and a pinned host key (`ssh.rs`; pins:
//!   `hostkey.rs`, never trusted on first use), HTTPS with a token read from a file (the
//!   password of basic auth; `smart_http.rs`, trusted CAs: `tls.rs`), `file://` and
//!   absolute paths. libgit2 speaks git; the network transports are the agent's own
//!   (`transport.rs` says why). Credentials never appear in a URL, a log line or an error
//!   (`url.rs`, `error.rs`).
//! - A poll lists the remote's refs over one connection and downloads objects only when
//!   the branch head changed (`fetch.rs`), so an idle agent costs one round trip per poll
//!   (over HTTPS, on a connection kept open since the last one).
//! - The cache (`cache.rs`) is a bare repository per URL under a root directory; it
//!   survives restarts, and a corrupted or deleted cache is rebuilt and reported.
//!   Force-pushes are followed and reported.
//! - Revisions are read from the object database (`tree.rs`), symlinks not followed.
//! - Signed-commit mode (`signers.rs`) refuses a head not signed by an allowed SSH key.
//! - The status branch is fetched with [`Source::fetch_branch`] and written with
//!   [`Source::push`] (`push.rs`), which reports a lost race as an outcome, not an error.
//!
//! - Every wait on the remote is bounded (`timeout.rs`, [`bound_network_waits`]): a
//!   remote that accepts the connection and then hangs is an unreachable remote, not a
//!   stuck agent.
//!
//! Every call blocks (libgit2 is synchronous): in async code, call it from
//! `spawn_blocking` or `block_in_place` (the HTTPS transport's blocking client refuses to
//! wait on an async runtime's thread otherwise).

mod cache;
mod connect;
mod error;
mod fetch;
mod hostkey;
mod probe;
mod push;
mod signers;
mod smart_http;
mod ssh;
mod timeout;
mod tls;
mod transport;
mod tree;
mod url;

pub use cache::{CacheEvent, DEFAULT_CACHE_ROOT};
pub use error::{Error, ParseError, SignatureProblem};
pub use hostkey::HostKeyPins;
pub use probe::host_key_fingerprint;
pub use push::PushOutcome;
pub use signers::AllowedSigners;
pub(crate) use ssh::Target as SshTarget;
pub use timeout::{bound_network_waits, DEFAULT_TIMEOUT};
pub use tree::{read_file, read_tree};
pub use url::{RemoteUrl, Transport};

use connect::Session;
use git2::{Oid, Repository};
use smart_http::HttpRemote;
use ssh::SshRemote;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use transport::Remote;

/// How often the agent should poll when nothing tells it the repository changed.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);

/// How the agent authenticates to the remote. Secrets are read from their files at each
/// connection (so a rotated token is picked up) and never kept or printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Anonymous (`file://`, a public HTTPS repository).
    #[default]
    None,
    /// SSH deploy key (OpenSSH private key file, unencrypted).
    SshKey { private_key: PathBuf },
    /// HTTPS token, sent as the password of basic authentication (the user name is the
    /// URL's, else `git`; forges accept any user name with a token).
    Token { file: PathBuf },
}

/// Everything a [`Source`] needs.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// `ssh://…`, `user@host:path`, `https://…`, `file://…` or an absolute path.
    pub url: String,
    /// The branch the agent applies.
    pub branch: String,
    /// Directory holding the caches; this remote's is `<cache_root>/<hash of the URL>`.
    pub cache_root: PathBuf,
    pub credentials: Credentials,
    /// Required for SSH remotes.
    pub host_keys: Option<HostKeyPins>,
    /// HTTPS: verify the server against the CA certificates in this PEM file instead of
    /// the system's store (a self-hosted forge with a private CA).
    pub ca_file: Option<PathBuf>,
    /// `Some`: signed-commit mode, only heads signed by one of these keys are accepted.
    pub allowed_signers: Option<AllowedSigners>,
}

impl SourceConfig {
    /// An anonymous source with the default cache root.
    pub fn new(url: impl Into<String>, branch: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            branch: branch.into(),
            cache_root: PathBuf::from(DEFAULT_CACHE_ROOT),
            credentials: Credentials::None,
            host_keys: None,
            ca_file: None,
            allowed_signers: None,
        }
    }
}

/// The result of a poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The head is the one the previous poll of this `Source` returned; nothing was fetched.
    Unchanged { head: Oid },
    /// The first poll of this `Source`, or the head changed.
    Updated(Update),
}

/// A head to apply, and what the operator should know about how it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub head: Oid,
    /// The head fetched before this one, if known.
    pub previous: Option<Oid>,
    /// The new head does not contain the previous one: the branch was force-pushed.
    pub history_rewritten: bool,
    /// Whether objects were downloaded for this update.
    pub fetched: bool,
    /// What happened to the cache since the last update (reported once).
    pub cache: CacheEvent,
    /// Signed-commit mode: the principals of the key that signed the head.
    pub signer: Option<String>,
}

/// Network operations made by a [`Source`], for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections that listed the remote's refs (every poll and branch fetch makes one).
    pub listings: u64,
    /// Listings that went on to download objects.
    pub fetches: u64,
    pub pushes: u64,
}

/// A remote repository followed through its local cache.
pub struct Source {
    url: RemoteUrl,
    branch: String,
    /// What the transports need for a network remote (the HTTP client is kept between
    /// polls); `None` for a local one.
    remote: Option<Remote>,
    signers: Option<AllowedSigners>,
    path: PathBuf,
    repo: Repository,
    /// Reported with the next update.
    cache_event: Option<CacheEvent>,
    /// The head the last poll returned (kept in memory, so it survives a cache rebuild).
    last_head: Option<Oid>,
    /// Every branch of the remote, from the last listing.
    remote_branches: Vec<(String, Oid)>,
    stats: Stats,
}

impl Source {
    /// Check the configuration and open (or create, or rebuild) the cache. Makes no
    /// network connection.
    pub fn open(config: SourceConfig) -> Result<Self, Error> {
        let url = RemoteUrl::parse(&config.url).map_err(|message| Error::Config {
            url: url::redact(&config.url),
            message,
        })?;
        let config_error = |message: String| Error::Config {
            url: url.to_string(),
            message,
        };
        if !git2::Reference::is_valid_name(&format!("refs/heads/{}", config.branch)) {
            return Err(config_error(format!(
                "`{}` is not a valid branch name",
                config.branch
            )));
        }
        match (url.transport(), &config.credentials) {
            (Transport::Ssh, _) if config.host_keys.is_none() => {
                return Err(config_error(
                    "an SSH remote needs a pinned host key (a known_hosts line or a SHA256 \
                     fingerprint): host keys are never trusted on first use"
                        .to_string(),
                ))
            }
            (Transport::Ssh, Credentials::Token { .. }) => {
                return Err(config_error(
                    "a token authenticates over HTTPS; an SSH remote needs a deploy key"
                        .to_string(),
                ))
            }
            (Transport::Https | Transport::Http, Credentials::SshKey { .. }) => {
                return Err(config_error(
                    "a deploy key authenticates over SSH; an HTTPS remote needs a token file"
                        .to_string(),
                ))
            }
            (Transport::Http, Credentials::Token { .. }) => {
                return Err(config_error(
                    "refusing to send a token over plain http: use https".to_string(),
                ))
            }
            _ => {}
        }
        let trust = match (&config.ca_file, url.transport()) {
            (None, _) => tls::Trust::System,
            (Some(file), Transport::Https) => tls::Trust::load(file).map_err(config_error)?,
            (Some(_), _) => {
                return Err(config_error(
                    "a CA file verifies an HTTPS server; this remote does not use HTTPS"
                        .to_string(),
                ))
            }
        };
        let remote = match (url.transport(), config.credentials, config.host_keys) {
            (Transport::Https | Transport::Http, credentials, _) => {
                let token = match credentials {
                    Credentials::Token { file } => Some(file),
                    _ => None,
                };
                Some(Remote::Http(Arc::new(HttpRemote::new(
                    url.clone(),
                    token,
                    trust,
                ))))
            }
            (Transport::Ssh, credentials, Some(pins)) => {
                let key = match credentials {
                    Credentials::SshKey { private_key } => Some(private_key),
                    _ => None,
                };
                let ssh = SshRemote::new(&url, key, pins).map_err(config_error)?;
                Some(Remote::Ssh(Arc::new(ssh)))
            }
            _ => None,
        };
        let path = cache::cache_dir(&config.cache_root, &url);
        let (repo, event) = cache::open(&path, &url, &config.branch)?;
        Ok(Self {
            url,
            branch: config.branch,
            remote,
            signers: config.allowed_signers,
            path,
            repo,
            cache_event: Some(event),
            last_head: None,
            remote_branches: Vec::new(),
            stats: Stats::default(),
        })
    }

    /// Ask the remote for the branch head and fetch it if it changed. In signed-commit
    /// mode the head is verified on every poll, so a refused head stays refused (as
    /// [`Error::Signature`]) until a signed one replaces it.
    pub fn poll(&mut self) -> Result<Poll, Error> {
        let branch = self.branch.clone();
        let synced = self.sync(&branch)?;
        let Some(head) = synced.head else {
            return Err(Error::BranchMissing {
                url: self.url.to_string(),
                branch,
                last_fetched: synced.previous,
            });
        };
        let signer = self.verify(head)?;
        if self.last_head == Some(head) && self.cache_event.is_none() {
            return Ok(Poll::Unchanged { head });
        }
        let previous = self.last_head.or(synced.previous);
        let history_rewritten = fetch::rewritten(&self.repo, previous, head);
        if history_rewritten {
            tracing::warn!(url = %self.url, branch = %self.branch, from = ?previous, to = %head,
                "history rewritten (force-push): following the new head");
        }
        self.last_head = Some(head);
        Ok(Poll::Updated(Update {
            head,
            previous,
            history_rewritten,
            fetched: synced.fetched,
            cache: self.cache_event.take().unwrap_or(CacheEvent::Reused),
            signer,
        }))
    }

    /// The head fetched last (from the cache, so also after a restart), whether or not it
    /// passed signature verification.
    pub fn fetched_head(&self) -> Option<Oid> {
        self.repo
            .refname_to_id(&cache::tracking_ref(&self.branch))
            .ok()
    }

    /// Signed-commit mode: check that `commit` is signed by an allowed signer and return
    /// the signer's principals. Without allowed signers, every commit passes (`None`).
    pub fn verify(&self, commit: Oid) -> Result<Option<String>, Error> {
        let Some(signers) = &self.signers else {
            return Ok(None);
        };
        let refuse = |problem| Error::Signature {
            url: self.url.to_string(),
            branch: self.branch.clone(),
            commit,
            problem: Box::new(problem),
        };
        let (signature, signed) = match self.repo.extract_signature(&commit, None) {
            Ok(parts) => parts,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                return Err(refuse(SignatureProblem::Unsigned))
            }
            Err(e) => return Err(refuse(SignatureProblem::Malformed(e.message().to_string()))),
        };
        let time = self
            .repo
            .find_commit(commit)
            .map(|c| c.committer().when().seconds())
            .map_err(|e| refuse(SignatureProblem::Malformed(e.message().to_string())))?;
        signers
            .verify(&signature, &signed, time)
            .map(|principals| Some(principals.to_string()))
            .map_err(refuse)
    }

    /// The remote's branches and heads as the last listing (every poll makes one) saw them.
    pub fn remote_branches(&self) -> &[(String, Oid)] {
        &self.remote_branches
    }

    /// The files under `subdir` of a fetched commit (see [`read_tree`]).
    pub fn read_tree(
        &self,
        commit: Oid,
        subdir: &str,
    ) -> Result<pve_gitops_schema::Repository, Error> {
        read_tree(&self.repo, commit, subdir)
    }

    /// One file's bytes (see [`read_file`]).
    pub fn read_file(&self, commit: Oid, subdir: &str, path: &str) -> Result<Vec<u8>, Error> {
        read_file(&self.repo, commit, subdir, path)
    }

    /// Fetch another branch of the same remote (the status branch) into the cache; `None`
    /// if the remote has no such branch. Not signature-checked: the agent writes it.
    pub fn fetch_branch(&mut self, name: &str) -> Result<Option<Oid>, Error> {
        self.check_branch_name(name)?;
        let synced = self.sync(name)?;
        if synced.head.is_none() {
            // Deleted on the remote: forget it here too, so the next push starts afresh.
            if let Ok(mut r) = self.repo.find_reference(&cache::tracking_ref(name)) {
                let _ = r.delete();
            }
        }
        Ok(synced.head)
    }

    /// Push `commit` (already in [`Source::repository`]) to `branch` of the remote,
    /// provided the remote branch is at `expected_remote_old` (`None`: it must not exist)
    /// and the push is a fast-forward. Refuses to write the branch the agent reads.
    pub fn push(
        &mut self,
        commit: Oid,
        branch: &str,
        expected_remote_old: Option<Oid>,
    ) -> Result<PushOutcome, Error> {
        self.check_branch_name(branch)?;
        if branch == self.branch {
            return Err(Error::Config {
                url: self.url.to_string(),
                message: format!(
                    "refusing to push to `{branch}`: it is the branch the agent reads"
                ),
            });
        }
        self.ensure_cache()?;
        self.stats.pushes += 1;
        let session = self.session();
        push::push(&self.repo, &session, commit, branch, expected_remote_old)
    }

    /// The cache repository, for building status commits. Its `refs/remotes/origin/*`
    /// belong to this module.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The cache directory.
    pub fn cache_path(&self) -> &Path {
        &self.path
    }

    /// The remote URL (safe to print).
    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// List the remote and fetch `branch` if needed; a cache found broken during the fetch
    /// is rebuilt and the fetch retried once.
    fn sync(&mut self, branch: &str) -> Result<fetch::Synced, Error> {
        self.ensure_cache()?;
        match self.sync_once(branch) {
            Err(Error::Unreachable { .. }) if !self.cache_healthy(branch) => {
                self.rebuild("objects unreadable during a fetch")?;
                self.sync_once(branch)
            }
            other => other,
        }
    }

    fn sync_once(&mut self, branch: &str) -> Result<fetch::Synced, Error> {
        self.stats.listings += 1;
        let session = self.session();
        let synced = fetch::sync_branch(&self.repo, &session, branch)?;
        self.remote_branches.clone_from(&synced.branches);
        if synced.fetched {
            self.stats.fetches += 1;
            tracing::info!(url = %self.url, branch, from = ?synced.previous, to = ?synced.head, "fetched");
        }
        Ok(synced)
    }

    fn session(&self) -> Session<'_> {
        Session::new(&self.url, self.remote.as_ref())
    }

    /// Rebuild the cache if it was deleted under us.
    fn ensure_cache(&mut self) -> Result<(), Error> {
        if !cache::present(&self.path) {
            self.rebuild("the cache directory was deleted while the agent ran")?;
        }
        Ok(())
    }

    fn cache_healthy(&self, branch: &str) -> bool {
        Repository::open_bare(&self.path).is_ok_and(|r| cache::check(&r, branch).is_ok())
    }

    fn rebuild(&mut self, why: &str) -> Result<(), Error> {
        tracing::warn!(url = %self.url, cache = %self.path.display(), why, "rebuilding the cache");
        self.repo = cache::rebuild(&self.path, &self.url)?;
        self.cache_event = Some(CacheEvent::Rebuilt {
            reason: format!("cache {}: {why}", self.path.display()),
        });
        Ok(())
    }

    fn check_branch_name(&self, name: &str) -> Result<(), Error> {
        if git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
            Ok(())
        } else {
            Err(Error::Config {
                url: self.url.to_string(),
                message: format!("`{name}` is not a valid branch name"),
            })
        }
    }
}
