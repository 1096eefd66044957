//! Bounds on requests in flight: one for the whole client, one per node.
//!
//! pveproxy has few workers and proxies requests for other nodes, so a reconcile of a
//! thousand VMs must not open a thousand connections; and one slow or overloaded node
//! must not take every slot, so each node also has its own smaller bound. A request
//! takes its node's slot before a global one, so requests waiting on a busy node do not
//! hold global slots that other nodes could use.
//!
//! The bounds cover HTTP requests only. How many long-running tasks (clones, starts)
//! run at once is the caller's choice; [`Limits::node_slots`] and
//! [`Limits::global_slots`] give the numbers to size it from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The semaphores of one client.
#[derive(Debug)]
pub struct Limits {
    global: Arc<Semaphore>,
    global_slots: usize,
    per_node: usize,
    nodes: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Held while a request is in flight; dropping it frees the slots.
#[derive(Debug)]
pub struct Permit {
    _node: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
}

impl Limits {
    /// `global` and `per_node` are raised to at least 1.
    pub fn new(global: usize, per_node: usize) -> Self {
        let global = global.max(1);
        Limits {
            global: Arc::new(Semaphore::new(global)),
            global_slots: global,
            per_node: per_node.max(1),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    pub fn global_slots(&self) -> usize {
        self.global_slots
    }

    pub fn node_slots(&self) -> usize {
        self.per_node
    }

    /// Wait for a slot on `node` (if the request is for one) and a global one.
    pub async fn acquire(&self, node: Option<&str>) -> Permit {
        let node_permit = match node {
            Some(name) => Some(
                self.node_semaphore(name)
                    .acquire_owned()
                    .await
                    .expect("node semaphores are never closed"),
            ),
            None => None,
        };
        let global = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("the global semaphore is never closed");
        Permit {
            _node: node_permit,
            _global: global,
        }
    }

    fn node_semaphore(&self, node: &str) -> Arc<Semaphore> {
        // A poisoned map only means another thread panicked while inserting; the map
        // itself is still consistent.
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .entry(node.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_node)))
            .clone()
    }
}

/// The node a request path is about: `/nodes/{node}/...`.
pub(crate) fn node_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/nodes/")?;
    let node = rest.split('/').next()?;
    (!node.is_empty()).then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn node_from_path() {
        assert_eq!(node_of("/nodes/pve2/qemu/100/config"), Some("pve2"));
        assert_eq!(node_of("/nodes/pve2"), Some("pve2"));
        assert_eq!(node_of("/cluster/resources"), None);
        assert_eq!(node_of("/nodes"), None);
    }

    #[tokio::test]
    async fn per_node_bound_does_not_block_other_nodes() {
        let limits = Limits::new(3, 1);
        let _a = limits.acquire(Some("pve1")).await;
        // pve1 is full; pve2 still gets a slot at once.
        let b = tokio::time::timeout(Duration::from_secs(5), limits.acquire(Some("pve2"))).await;
        assert!(b.is_ok());
        let blocked =
            tokio::time::timeout(Duration::from_millis(20), limits.acquire(Some("pve1"))).await;
        assert!(blocked.is_err());
    }

    #[tokio::test]
    async fn global_bound() {
        let limits = Limits::new(2, 5);
        let _a = limits.acquire(None).await;
        let _b = limits.acquire(Some("pve1")).await;
        let blocked =
            tokio::time::timeout(Duration::from_millis(20), limits.acquire(Some("pve2"))).await;
        assert!(blocked.is_err());
    }
}
