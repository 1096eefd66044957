//! Following edits of the config file while the daemon runs.
//!
//! Two things wake the daemon when the file changes: a `notify` (inotify) watch on its
//! directory, which sees editors' renames too, and a poll of the file's bytes, because
//! `/etc/pve` is pmxcfs, a FUSE filesystem on which inotify does not report changes made
//! on other nodes. Either only wakes the loop; the daemon's [`Reload`] hook then reads
//! the file and, when its bytes differ from the last ones seen, parses it. A valid file
//! becomes the running configuration (command-line flags still win over it); an invalid
//! one is logged once, with `file:line:col`, and the previous configuration stays.

use super::overlay::overlay;
use super::{AgentConfig, ConfigError};
use crate::cli::RunArgs;
use crate::daemon::reload::{Reconfigured, Reload};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the file is read when nothing reports a change (pmxcfs).
pub const DEFAULT_POLL: Duration = Duration::from_secs(5);

/// The config file and the bytes last seen in it.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    seen: Option<u64>,
}

impl ConfigFile {
    /// Load the file for the first time; later calls of [`ConfigFile::changed`] report
    /// only what differs from this.
    pub fn open(path: &Path) -> Result<(Self, AgentConfig), ConfigError> {
        let mut file = ConfigFile {
            path: path.to_path_buf(),
            seen: None,
        };
        match file.changed() {
            Some(loaded) => loaded.map(|config| (file, config)),
            None => unreachable!("the first read always differs"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's configuration if its bytes changed since the last call (a file that
    /// cannot be read counts as a change once, reported as the error).
    pub fn changed(&mut self) -> Option<Result<AgentConfig, ConfigError>> {
        let bytes = std::fs::read(&self.path);
        let digest = fingerprint(&bytes);
        if self.seen == Some(digest) {
            return None;
        }
        self.seen = Some(digest);
        Some(match bytes {
            Ok(bytes) => AgentConfig::parse(&self.path, &String::from_utf8_lossy(&bytes)),
            Err(source) => Err(ConfigError::Read {
                path: self.path.clone(),
                source,
            }),
        })
    }
}

fn fingerprint(bytes: &std::io::Result<Vec<u8>>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    match bytes {
        Ok(b) => b.hash(&mut h),
        Err(e) => e.kind().hash(&mut h),
    }
    h.finish()
}

/// Builds what a configuration runs with (the client, the manifests source...).
pub type Builder = Box<dyn FnMut(&RunArgs) -> anyhow::Result<Reconfigured> + Send>;

/// The daemon's [`Reload`] source for `run --config`.
pub struct Reloader {
    file: ConfigFile,
    /// The command line as given: the base each new file is laid over.
    base: RunArgs,
    explicit: BTreeSet<String>,
    build: Builder,
}

impl Reloader {
    pub fn new(
        file: ConfigFile,
        base: RunArgs,
        explicit: BTreeSet<String>,
        build: Builder,
    ) -> Self {
        Reloader {
            file,
            base,
            explicit,
            build,
        }
    }
}

impl Reload for Reloader {
    fn poll(&mut self) -> Option<Reconfigured> {
        let path = self.file.path().display().to_string();
        match self.file.changed()? {
            Err(e) => {
                tracing::error!(config = %path, "{e}; keeping the previous configuration");
                None
            }
            Ok(config) => {
                let args = overlay(&config, self.base.clone(), &self.explicit);
                match (self.build)(&args) {
                    Ok(new) => {
                        tracing::info!(config = %path, "configuration reloaded");
                        Some(new)
                    }
                    Err(e) => {
                        tracing::error!(config = %path, "{e:#}; keeping the previous configuration");
                        None
                    }
                }
            }
        }
    }
}

/// Wakes the daemon (through `wake`) when the file may have changed; stops when dropped.
pub struct Watch {
    _watcher: Option<notify::RecommendedWatcher>,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// Watch `path` with inotify where that works and by reading it every `poll`. Call
/// inside a tokio runtime.
pub fn watch(path: &Path, poll: Duration, wake: mpsc::UnboundedSender<()>) -> Watch {
    let watcher = inotify(path, wake.clone())
        .map_err(
            |e| tracing::debug!(config = %path.display(), "no inotify watch ({e}); polling only"),
        )
        .ok();
    let path = path.to_path_buf();
    let poller = tokio::spawn(async move {
        let mut last = fingerprint(&std::fs::read(&path));
        loop {
            tokio::time::sleep(poll).await;
            let now = fingerprint(&std::fs::read(&path));
            if now != last {
                last = now;
                if wake.send(()).is_err() {
                    return;
                }
            }
        }
    });
    Watch {
        _watcher: watcher,
        poller,
    }
}

/// An inotify watch on the file's directory (editors and `init` replace the file by
/// renaming, which a watch on the file itself would lose), filtered to the file.
fn inotify(
    path: &Path,
    wake: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let name = path.file_name().map(|n| n.to_os_string());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
        if ours && !event.kind.is_access() {
            let _ = wake.send(());
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_reports_each_new_content_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "interval: 10s\n").unwrap();
        let (mut file, first) = ConfigFile::open(&path).unwrap();
        assert_eq!(first.interval, Some(Duration::from_secs(10)));
        assert!(file.changed().is_none());
        std::fs::write(&path, "interval: 10s\nbogus: 1\n").unwrap();
        let err = file.changed().unwrap().unwrap_err().to_string();
        assert!(
            err.contains("config.yaml:2:1: unknown field `bogus`"),
            "{err}"
        );
        assert!(file.changed().is_none(), "an invalid file is reported once");
        std::fs::write(&path, "interval: 20s\n").unwrap();
        let c = file.changed().unwrap().unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(20)));
    }
}
