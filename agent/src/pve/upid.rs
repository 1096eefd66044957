//! PVE task identifiers.
//!
//! A long operation answers with a UPID, `UPID:node:pid:pstart:starttime:type:id:user:`.
//! The task runs on the node named inside it, which is where its status must be read,
//! whatever node the request went to (a clone with `target` still runs on the source).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed UPID; `Display` gives back the exact text PVE sent.
///
/// The text fields are kept as ranges into the original string, so the type (and every
/// error that carries one) stays small.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    raw: String,
    node: Span,
    task_type: Span,
    id: Span,
    user: Span,
    pid: u32,
    pstart: u64,
    starttime: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Span(u16, u16);

impl Upid {
    fn span(&self, s: Span) -> &str {
        &self.raw[usize::from(s.0)..usize::from(s.1)]
    }
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// The node the task runs on.
    pub fn node(&self) -> &str {
        self.span(self.node)
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn pstart(&self) -> u64 {
        self.pstart
    }
    /// Unix time the task started.
    pub fn starttime(&self) -> u64 {
        self.starttime
    }
    /// `qmclone`, `qmstart`, `qmcreate`, `download`, ...
    pub fn task_type(&self) -> &str {
        self.span(self.task_type)
    }
    /// What the task works on, usually a VMID (may be empty).
    pub fn id(&self) -> &str {
        self.span(self.id)
    }
    /// Who started it: `root@pam` or a token `user@realm!name`.
    pub fn user(&self) -> &str {
        self.span(self.user)
    }
}

/// The text was not a UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PVE UPID: {0:?}")]
pub struct UpidParseError(pub String);

impl FromStr for Upid {
    type Err = UpidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UpidParseError(s.to_string());
        if s.len() > usize::from(u16::MAX) {
            return Err(bad());
        }
        let body = s.strip_prefix("UPID:").ok_or_else(bad)?;
        let body = body.strip_suffix(':').ok_or_else(bad)?;
        // Byte ranges of the seven fields within `s`.
        let mut spans = Vec::with_capacity(7);
        let mut start = "UPID:".len();
        for part in body.split(':') {
            spans.push((start, start + part.len()));
            start += part.len() + 1;
        }
        let [node, pid, pstart, starttime, task_type, id, user] = spans[..] else {
            return Err(bad());
        };
        let text = |(a, b): (usize, usize)| &s[a..b];
        let hex = |r| -> Result<u64, UpidParseError> {
            let t = text(r);
            if t.is_empty() || t.len() > 16 {
                return Err(bad());
            }
            u64::from_str_radix(t, 16).map_err(|_| bad())
        };
        let node_ok = !text(node).is_empty()
            && text(node)
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !node_ok || text(task_type).is_empty() || text(user).is_empty() {
            return Err(bad());
        }
        // Fits: the whole string is at most u16::MAX bytes.
        let span = |(a, b): (usize, usize)| Span(a as u16, b as u16);
        Ok(Upid {
            raw: s.to_string(),
            node: span(node),
            task_type: span(task_type),
            id: span(id),
            user: span(user),
            pid: u32::try_from(hex(pid)?).map_err(|_| bad())?,
            pstart: hex(pstart)?,
            starttime: hex(starttime)?,
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upid({})", self.raw)
    }
}

impl<'de> Deserialize<'de> for Upid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Upid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_clone_upid() {
        let text = "UPID:pve1:000003EB:00001B6D:6B065CCC:qmclone:100:root@pam!test:";
        let u: Upid = text.parse().unwrap();
        assert_eq!(u.node(), "pve1");
        assert_eq!(u.pid(), 0x3EB);
        assert_eq!(u.pstart(), 0x1B6D);
        assert_eq!(u.starttime(), 0x6B065CCC);
        assert_eq!(u.task_type(), "qmclone");
        assert_eq!(u.id(), "100");
        assert_eq!(u.user(), "root@pam!test");
        assert_eq!(u.to_string(), text);
        let json: Upid = serde_json::from_str(&format!("\"{text}\"")).unwrap();
        assert_eq!(json, u);
    }

    #[test]
    fn empty_id_is_allowed() {
        let u: Upid = "UPID:node-2:00000001:00000002:00000003:aptupdate::root@pam:"
            .parse()
            .unwrap();
        assert_eq!(u.id(), "");
        assert_eq!(u.node(), "node-2");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "UPID:",
            "UPID:pve1:1:2:3:qmstart:100:root@pam",
            "UPID:pve1:xyz:2:3:qmstart:100:root@pam:",
            "UPID:pve 1:1:2:3:qmstart:100:root@pam:",
            "TASK:pve1:1:2:3:qmstart:100:root@pam:",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad}");
        }
    }
}
