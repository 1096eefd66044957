//! Where each value of a YAML file sits, so any error found after parsing (by serde, or by a
//! whole-set check long after) can name `file:line:column`.
//!
//! serde_yaml reports positions only for syntax errors and only for the first one; it keeps no
//! positions in its values. This module replays the file through a YAML event parser once and
//! records, for every document, the position of each key and value by its path
//! (`spec.disks[0].size`).

use saphyr_parser::{Event, Marker, Parser, Span, SpannedEventReceiver};
use std::collections::HashMap;
use std::fmt;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into a YAML document, displayed like `spec.disks[0].size`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YamlPath(pub Vec<Seg>);

impl YamlPath {
    pub fn root() -> Self {
        YamlPath(Vec::new())
    }

    /// Parse a dotted path (`spec.disks[0].size`); used by code and tests that name fields.
    pub fn parse(s: &str) -> Self {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(open) = rest.find('[') {
                if open > 0 {
                    segs.push(Seg::Key(rest[..open].to_string()));
                }
                rest = &rest[open..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let close = stripped.find(']').unwrap_or(stripped.len());
                    if let Ok(i) = stripped[..close].parse() {
                        segs.push(Seg::Index(i));
                    }
                    rest = stripped.get(close + 1..).unwrap_or("");
                }
            } else {
                segs.push(Seg::Key(rest.to_string()));
            }
        }
        YamlPath(segs)
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.into()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    pub fn join(&self, other: &YamlPath) -> Self {
        let mut p = self.clone();
        p.0.extend(other.0.iter().cloned());
        p
    }

    /// Convert the path serde_path_to_error reports for a failed deserialization.
    pub fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        YamlPath(
            path.iter()
                .filter_map(|s| match s {
                    Segment::Seq { index } => Some(Seg::Index(*index)),
                    Segment::Map { key } => Some(Seg::Key(key.clone())),
                    Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                    Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// 1-based line and column of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: Option<Pos>,
    value: Option<Pos>,
}

/// Positions of every key and value of every document in one file.
#[derive(Debug, Default)]
pub struct SourceMap {
    docs: Vec<HashMap<YamlPath, Entry>>,
}

impl SourceMap {
    /// Build the map. A file that does not parse yields what was seen before the error; the
    /// syntax error itself is reported by serde_yaml with its own position.
    pub fn build(text: &str) -> Self {
        let mut recv = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut recv, true);
        SourceMap { docs: recv.docs }
    }

    /// Number of documents seen (including empty ones).
    pub fn documents(&self) -> usize {
        self.docs.len()
    }

    /// Position of the value at `path`, or of its nearest ancestor that exists in the file
    /// (a missing field is reported where its parent mapping starts).
    pub fn value_pos(&self, doc: usize, path: &YamlPath) -> Pos {
        self.lookup(doc, path, false)
    }

    /// Position of the key naming `path` (for unknown or duplicate keys), falling back like
    /// [`SourceMap::value_pos`].
    pub fn key_pos(&self, doc: usize, path: &YamlPath) -> Pos {
        self.lookup(doc, path, true)
    }

    /// Whether the document has a node at exactly this path.
    pub fn contains(&self, doc: usize, path: &YamlPath) -> bool {
        self.docs.get(doc).is_some_and(|d| d.contains_key(path))
    }

    fn lookup(&self, doc: usize, path: &YamlPath, prefer_key: bool) -> Pos {
        let Some(map) = self.docs.get(doc) else {
            return Pos { line: 1, column: 1 };
        };
        let mut segs = path.0.clone();
        loop {
            if let Some(e) = map.get(&YamlPath(segs.clone())) {
                let first = if prefer_key {
                    e.key.or(e.value)
                } else {
                    e.value.or(e.key)
                };
                if let Some(p) = first {
                    return p;
                }
            }
            if segs.pop().is_none() {
                return Pos { line: 1, column: 1 };
            }
        }
    }
}

enum Frame {
    Map {
        /// The mapping itself is a (complex) key of its parent mapping.
        is_key: bool,
        path: YamlPath,
        pending_key: Option<String>,
    },
    Seq {
        is_key: bool,
        path: YamlPath,
        next: usize,
    },
}

#[derive(Default)]
struct Recorder {
    docs: Vec<HashMap<YamlPath, Entry>>,
    stack: Vec<Frame>,
}

impl Recorder {
    fn doc(&mut self) -> &mut HashMap<YamlPath, Entry> {
        if self.docs.is_empty() {
            self.docs.push(HashMap::new());
        }
        self.docs.last_mut().expect("at least one document")
    }

    /// Called for the start of every node; returns the node's path if it is a value (not a
    /// mapping key).
    fn node_path(&mut self, ev: &Event<'_>, pos: Pos) -> Option<YamlPath> {
        match self.stack.last_mut() {
            None => {
                self.doc().entry(YamlPath::root()).or_default().value = Some(pos);
                Some(YamlPath::root())
            }
            Some(Frame::Map {
                path, pending_key, ..
            }) => match pending_key.take() {
                None => {
                    // This node is a key.
                    let key = match ev {
                        Event::Scalar(v, ..) => v.to_string(),
                        _ => "<complex key>".to_string(),
                    };
                    let p = path.key(key.clone());
                    *pending_key = Some(key);
                    self.doc().entry(p).or_default().key = Some(pos);
                    None
                }
                Some(key) => {
                    let p = path.key(key);
                    self.doc().entry(p.clone()).or_default().value = Some(pos);
                    Some(p)
                }
            },
            Some(Frame::Seq { path, next, .. }) => {
                let p = path.index(*next);
                *next += 1;
                self.doc().entry(p.clone()).or_default().value = Some(pos);
                Some(p)
            }
        }
    }

    /// A mapping key that was a container leaves its parent waiting for the value.
    fn mark_complex_key_done(&mut self) {
        if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
            *pending_key = Some("<complex key>".to_string());
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Recorder {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let pos = Pos::from(span.start);
        match &ev {
            Event::DocumentStart(_) => {
                self.docs.push(HashMap::new());
                self.stack.clear();
            }
            Event::Scalar(..) | Event::Alias(_) => {
                let _ = self.node_path(&ev, pos);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let value_path = self.node_path(&ev, pos);
                let is_key = value_path.is_none();
                let path = value_path.unwrap_or_default();
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        is_key,
                        path,
                        pending_key: None,
                    }
                } else {
                    Frame::Seq {
                        is_key,
                        path,
                        next: 0,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let was_key = matches!(
                    self.stack.pop(),
                    Some(Frame::Map { is_key: true, .. } | Frame::Seq { is_key: true, .. })
                );
                if was_key {
                    self.mark_complex_key_done();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
a: 1
spec:
  disks:
    - slot: scsi0
      size: 30G
    - { slot: scsi1, size: 8G }
---
kind: Second
";

    #[test]
    fn positions_of_keys_and_values() {
        let map = SourceMap::build(TEXT);
        assert_eq!(map.documents(), 2);
        let p = YamlPath::parse("spec.disks[0].size");
        assert_eq!(
            map.value_pos(0, &p),
            Pos {
                line: 5,
                column: 13
            }
        );
        assert_eq!(map.key_pos(0, &p), Pos { line: 5, column: 7 });
        let p = YamlPath::parse("spec.disks[1].size");
        assert_eq!(
            map.value_pos(0, &p),
            Pos {
                line: 6,
                column: 28
            }
        );
        assert_eq!(
            map.value_pos(1, &YamlPath::parse("kind")),
            Pos { line: 8, column: 7 }
        );
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let map = SourceMap::build(TEXT);
        let p = YamlPath::parse("spec.disks[0].storage");
        assert_eq!(map.value_pos(0, &p), Pos { line: 4, column: 7 });
    }

    #[test]
    fn path_round_trips_through_display() {
        let p = YamlPath::parse("spec.template.disks[2].size");
        assert_eq!(p.to_string(), "spec.template.disks[2].size");
    }
}
