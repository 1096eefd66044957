//! The daemon's hook for a new configuration: before each pass it asks its [`Reload`]
//! source (the config file, see `crate::config::watch`) whether there is one, and if so
//! runs the pass with the new client, manifests and options.
//!
//! A new configuration starts afresh: the revision is loaded again and the next pass is
//! a full one. Leader election, the webhook and the state directory are set up once at
//! start and do not change.

use super::sources::Manifests;
use super::{Daemon, DaemonOptions};
use crate::pve::PveClient;

/// What a new configuration replaces.
pub struct Reconfigured {
    pub client: PveClient,
    pub manifests: Box<dyn Manifests>,
    /// `node`, `passes` and `state_dir` are kept from the running daemon.
    pub options: DaemonOptions,
}

/// A source of new configurations, asked before every pass.
pub trait Reload: Send {
    /// A valid new configuration, or `None` (unchanged, or invalid and already logged).
    fn poll(&mut self) -> Option<Reconfigured>;
}

impl Daemon {
    /// Ask `reload` for a new configuration before every pass.
    pub fn with_reload(mut self, reload: Box<dyn Reload>) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Switch to a new configuration if the reload source has one.
    pub(super) fn reload(&mut self) {
        let Some(new) = self.reload.as_mut().and_then(|r| r.poll()) else {
            return;
        };
        let options = DaemonOptions {
            node: self.options.node.clone(),
            passes: self.options.passes,
            state_dir: self.options.state_dir.clone(),
            ..new.options
        };
        if options.cluster != self.options.cluster {
            self.status = None;
        }
        tracing::info!(cluster = %options.cluster, interval = ?options.interval, "running with the new configuration");
        self.client = new.client;
        self.manifests = new.manifests;
        self.options = options;
        self.desired = None;
        self.settled = None;
        self.published = None;
    }
}
