//! Who leads: node, since when, and in which term.
//!
//! pmxcfs knows which node holds a lock but does not show it (`stat` gives only the
//! mtime), so the leader also writes a small record file next to the config. Every node
//! can read it to show the leader, and the next leader reads it to number its term. The
//! lock directory stays the authority; the record is what people and `status` read.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderIdentity {
    /// The PVE node name of the leading agent.
    pub node: String,
    /// Wall-clock seconds since the Unix epoch when this term began.
    pub since: u64,
    /// Counts leadership changes: one more than the previous leader's term.
    pub term: u64,
}

impl LeaderIdentity {
    /// The record file's bytes (one JSON line).
    pub fn to_record(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("identity serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses a record file; `None` when it is not one (truncated, hand-edited).
    pub fn from_record(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

impl fmt::Display for LeaderIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = UNIX_EPOCH + Duration::from_secs(self.since);
        write!(
            f,
            "{} (term {}, since {})",
            self.node,
            self.term,
            humantime::format_rfc3339_seconds(since)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_node_term_and_utc_start() {
        let id = LeaderIdentity {
            node: "pve2".into(),
            since: 1_700_000_000,
            term: 7,
        };
        assert_eq!(id.to_string(), "pve2 (term 7, since 2023-11-14T22:13:20Z)");
    }

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let id = LeaderIdentity {
            node: "pve1".into(),
            since: 42,
            term: 3,
        };
        assert_eq!(
            id.to_record(),
            b"{\"node\":\"pve1\",\"since\":42,\"term\":3}\n"
        );
        assert_eq!(LeaderIdentity::from_record(&id.to_record()), Some(id));
        assert_eq!(LeaderIdentity::from_record(b"{\"node\":"), None);
    }
}
