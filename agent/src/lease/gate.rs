//! The write gate: may this agent issue an API write right now?
//!
//! The lease moves the gate's deadline forward on every good renewal and closes it when
//! it stops leading. The apply path holds a clone and asks before every write. The
//! deadline runs out by itself, so even a renewal stuck inside a hung pmxcfs call
//! cannot keep the gate open past the self-fence margin.

use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct WriteGate {
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl WriteGate {
    /// True while this node leads and its last good renewal is younger than the margin.
    pub fn may_write(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now < deadline)
    }

    /// When writes stop unless the lease is renewed; `None` while not leading.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().expect("write gate lock")
    }

    pub(super) fn open_until(&self, deadline: Instant) {
        *self.deadline.lock().expect("write gate lock") = Some(deadline);
    }

    pub(super) fn close(&self) {
        *self.deadline.lock().expect("write gate lock") = None;
    }
}
