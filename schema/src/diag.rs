//! Diagnostics: every problem found in a revision, each naming `file:line:column`.
//!
//! Validation collects *all* problems of a revision before rejecting it, so an operator
//! fixes a broken push in one round trip instead of one error per push.

use serde::Serialize;
use std::fmt;

/// A position in a file of the repository; line and column are 1-based, as editors show them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The `BlueprintInstance` whose rendering this position is in: the same line of a
    /// blueprint means a different resource in each instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl Location {
    pub fn new(file: impl Into<String>, line: usize, column: usize) -> Self {
        Location {
            file: file.into(),
            line,
            column,
            instance: None,
        }
    }

    /// The position as editors parse it, without the instance.
    pub fn position(&self) -> String {
        format!("{}:{}:{}", self.file, self.line, self.column)
    }

    /// The start of a file, for problems that have no better position.
    pub fn file_start(file: impl Into<String>) -> Self {
        Location::new(file, 1, 1)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.position())?;
        if let Some(i) = &self.instance {
            write!(f, " (BlueprintInstance/{i})")?;
        }
        Ok(())
    }
}

/// What kind of problem a diagnostic reports. Tests and `--format json` consumers match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The file is not valid YAML.
    Syntax,
    /// A field the schema does not know (often a typo).
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A value of the wrong type, an unparsable unit, an out-of-range number.
    InvalidValue,
    /// `kind` names no known resource kind.
    UnknownKind,
    /// `apiVersion` is not one this build understands.
    UnsupportedApiVersion,
    /// A name or identifier that PVE would reject (vmid range, tag syntax, SDN id length...).
    InvalidIdentifier,
    /// Two resources of one namespace share a name.
    DuplicateName,
    /// Two guests share a vmid.
    DuplicateVmid,
    /// Two guests share a static IP address.
    IpCollision,
    /// An address that does not belong to its subnet, or an offset past the subnet's end.
    IpOutsideSubnet,
    /// A reference to something neither declared in the manifests nor declared external.
    UnresolvedReference,
    /// `dependsOn` (with the implicit edges) forms a cycle.
    DependencyCycle,
    /// A size or count PVE cannot satisfy (zero disk, shrink, too many cores...).
    ImpossibleSize,
    /// Two settings that contradict each other.
    Conflict,
    /// A template (snippet or blueprint) that fails to render.
    Template,
    /// A file the revision holds or names cannot be read: a symbolic link, a path that
    /// leaves the manifests directory, too large, not text.
    UnreadableFile,
}

impl ErrorKind {
    /// The kebab-case name used in human and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownField => "unknown-field",
            ErrorKind::MissingField => "missing-field",
            ErrorKind::InvalidValue => "invalid-value",
            ErrorKind::UnknownKind => "unknown-kind",
            ErrorKind::UnsupportedApiVersion => "unsupported-api-version",
            ErrorKind::InvalidIdentifier => "invalid-identifier",
            ErrorKind::DuplicateName => "duplicate-name",
            ErrorKind::DuplicateVmid => "duplicate-vmid",
            ErrorKind::IpCollision => "ip-collision",
            ErrorKind::IpOutsideSubnet => "ip-outside-subnet",
            ErrorKind::UnresolvedReference => "unresolved-reference",
            ErrorKind::DependencyCycle => "dependency-cycle",
            ErrorKind::ImpossibleSize => "impossible-size",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Template => "template",
            ErrorKind::UnreadableFile => "unreadable-file",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub kind: ErrorKind,
    #[serde(flatten)]
    pub location: Location,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(kind: ErrorKind, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            kind,
            location,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.location.position(),
            self.kind,
            self.message
        )?;
        if let Some(i) = &self.location.instance {
            write!(f, " (in BlueprintInstance/{i})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// All problems of a revision, sorted by position so output is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Sorted by location, one diagnostic per (location, kind): a mistake in a set's template
    /// is seen once per member, but is one mistake at one place.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.0.sort_by(|a, b| {
            (&a.location, a.kind, &a.message).cmp(&(&b.location, b.kind, &b.message))
        });
        self.0
            .dedup_by(|b, a| a.location == b.location && a.kind == b.kind);
        self.0
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.clone().into_sorted() {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest of `candidates` to a misspelt `word`, if one is close enough to suggest.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("replica", ["replicas", "nodes"]),
            Some("replicas")
        );
        assert_eq!(
            did_you_mean("vmidstart", ["vmidStart", "vmid"]),
            Some("vmidStart")
        );
        assert_eq!(did_you_mean("zzz", ["replicas", "nodes"]), None);
    }

    #[test]
    fn display_is_file_line_col_kind_message() {
        let d = Diagnostic::new(
            ErrorKind::DuplicateVmid,
            Location::new("a.yaml", 3, 9),
            "boom",
        )
        .with_hint("fix it");
        assert_eq!(
            d.to_string(),
            "a.yaml:3:9: duplicate-vmid: boom\n  hint: fix it"
        );
    }
}
