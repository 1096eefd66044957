//! The repository as the schema crate sees it: paths and texts handed in by the caller, which
//! does the I/O. Keeping reads out of this crate lets tests build repositories in memory.

use std::collections::BTreeMap;

/// The files of one revision of the manifests directory.
#[derive(Debug, Clone, Default)]
pub struct Repository {
    /// Path (relative, `/`-separated) → content.
    files: BTreeMap<String, Content>,
}

/// What is known of one file's content.
#[derive(Debug, Clone)]
enum Content {
    Text(String),
    /// Not UTF-8 (a binary `*.age` file): kept as bytes for decryption.
    Binary(Vec<u8>),
    /// Known to exist only (not needed).
    Opaque,
    /// Present, but its content was deliberately not loaded.
    Skipped(Skipped),
}

/// Why the caller did not load an entry of the manifests directory. A manifest that names
/// such a file, or a `*.yaml` file that is one, is an error saying why: silently leaving
/// a manifest out would change the desired state without anyone having asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Larger than the caller's limit (its size in bytes): a stray disk image must not be
    /// loaded into memory.
    TooLarge(u64),
    /// A symbolic link: never followed, it could point anywhere (`/etc/pve/priv/...`).
    SymbolicLink,
    /// A git submodule: another repository, not fetched.
    Submodule,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::TooLarge(n) => write!(f, "is too large to load ({n} bytes)"),
            Skipped::SymbolicLink => f.write_str("is a symbolic link (links are not followed)"),
            Skipped::Submodule => f.write_str("is a git submodule (not fetched)"),
        }
    }
}

impl Repository {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a text file.
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> &mut Self {
        self.files.insert(path.into(), Content::Text(text.into()));
        self
    }

    /// Add a file that is not text (a binary age file).
    pub fn add_binary(&mut self, path: impl Into<String>, bytes: Vec<u8>) -> &mut Self {
        self.files.insert(path.into(), Content::Binary(bytes));
        self
    }

    /// Record a file whose content is not needed (an image, a file too large to load).
    pub fn add_opaque(&mut self, path: impl Into<String>) -> &mut Self {
        self.files.insert(path.into(), Content::Opaque);
        self
    }

    /// Record an entry whose content was not loaded, and why.
    pub fn add_skipped(&mut self, path: impl Into<String>, why: Skipped) -> &mut Self {
        self.files.insert(path.into(), Content::Skipped(why));
        self
    }

    /// Why a file a manifest names cannot be used, as the end of a sentence that starts
    /// with the path (`does not exist`, `is a symbolic link ...`); `None` if it can. `text`:
    /// the file must be UTF-8 text (a template), not just bytes (a secret).
    pub fn problem(&self, path: &str, text: bool) -> Option<String> {
        match self.files.get(path) {
            Some(Content::Text(_)) => None,
            Some(Content::Binary(_)) if text => Some("is not UTF-8 text".into()),
            Some(Content::Binary(_) | Content::Opaque) => None,
            Some(Content::Skipped(why)) => Some(why.to_string()),
            None => Some(match self.link_above(path) {
                Some(link) => {
                    format!("is inside `{link}`, a symbolic link (links are not followed)")
                }
                None => "does not exist".into(),
            }),
        }
    }

    /// The directory of `path` that the caller recorded as a symbolic link, if any.
    fn link_above<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.match_indices('/')
            .map(|(i, _)| &path[..i])
            .find(|dir| matches!(self.files.get(*dir), Some(Content::Skipped(_))))
    }

    /// Files named like manifests (`*.yaml`, `*.yml`) that cannot be read as such, with
    /// why: they must not silently drop out of the desired state.
    pub fn unreadable_manifests(&self) -> impl Iterator<Item = (&str, String)> {
        self.files.iter().filter_map(|(p, c)| {
            let why = match c {
                _ if !(p.ends_with(".yaml") || p.ends_with(".yml")) => return None,
                Content::Text(_) | Content::Opaque => return None,
                Content::Binary(_) => "is not UTF-8 text".to_string(),
                Content::Skipped(why) => why.to_string(),
            };
            Some((p.as_str(), why))
        })
    }

    /// The raw content of a text or binary file.
    pub fn bytes(&self, path: &str) -> Option<&[u8]> {
        match self.files.get(path)? {
            Content::Text(t) => Some(t.as_bytes()),
            Content::Binary(b) => Some(b),
            Content::Opaque | Content::Skipped(_) => None,
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    pub fn text(&self, path: &str) -> Option<&str> {
        match self.files.get(path)? {
            Content::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The manifest files: YAML files that are not SOPS documents.
    pub fn manifests(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().filter_map(|(p, c)| {
            let Content::Text(t) = c else {
                return None;
            };
            let yaml = p.ends_with(".yaml") || p.ends_with(".yml");
            (yaml && !is_sops_document(t)).then_some((p.as_str(), t.as_str()))
        })
    }
}

/// Whether a YAML/JSON text is a SOPS-encrypted document (it has top-level `sops` metadata).
pub fn is_sops_document(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("sops:") || l.trim_start().starts_with("\"sops\":"))
}

/// Resolve `rel`, written in the file `base`, to a repository path. A leading `/` means the
/// repository root. Returns `None` if the path leaves the repository.
pub fn resolve(base: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = if rel.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = base.split('/').collect();
        p.pop(); // the file name
        p
    };
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths() {
        assert_eq!(
            resolve("a/b/vm.yaml", "secrets/x.age").unwrap(),
            "a/b/secrets/x.age"
        );
        assert_eq!(resolve("a/b/vm.yaml", "../x.age").unwrap(), "a/x.age");
        assert_eq!(resolve("a/b/vm.yaml", "/x.age").unwrap(), "x.age");
        assert_eq!(resolve("vm.yaml", "./t/x.j2").unwrap(), "t/x.j2");
        assert!(resolve("vm.yaml", "../x").is_none());
    }

    #[test]
    fn files_that_cannot_be_used_say_why() {
        let mut r = Repository::new();
        r.add("t.j2", "x");
        r.add_binary("b.age", vec![0xff]);
        r.add_skipped("big.j2", Skipped::TooLarge(10 << 20));
        r.add_skipped("link.j2", Skipped::SymbolicLink);
        r.add_skipped("secrets", Skipped::SymbolicLink);
        assert_eq!(r.problem("t.j2", true), None);
        assert_eq!(r.problem("b.age", false), None);
        assert_eq!(r.problem("b.age", true).unwrap(), "is not UTF-8 text");
        assert_eq!(
            r.problem("big.j2", true).unwrap(),
            "is too large to load (10485760 bytes)"
        );
        assert!(r
            .problem("link.j2", false)
            .unwrap()
            .contains("symbolic link"));
        assert_eq!(
            r.problem("secrets/pw.age", false).unwrap(),
            "is inside `secrets`, a symbolic link (links are not followed)"
        );
        assert_eq!(r.problem("nope.j2", true).unwrap(), "does not exist");
    }

    #[test]
    fn manifests_that_cannot_be_read_are_listed() {
        let mut r = Repository::new();
        r.add("ok.yaml", "kind: X\n");
        r.add_binary("garbage.yaml", vec![0xff, 0xfe]);
        r.add_skipped("huge.yml", Skipped::TooLarge(1 << 30));
        r.add_skipped("link.yaml", Skipped::SymbolicLink);
        r.add_skipped("image.qcow2", Skipped::TooLarge(1 << 30));
        r.add_binary("pw.age", vec![0xff]);
        let bad: Vec<_> = r.unreadable_manifests().map(|(p, _)| p).collect();
        assert_eq!(bad, ["garbage.yaml", "huge.yml", "link.yaml"]);
    }

    #[test]
    fn sops_documents_are_not_manifests() {
        let mut r = Repository::new();
        r.add("a.yaml", "kind: X\n");
        r.add("s.yaml", "password: ENC[...]\nsops:\n  mac: x\n");
        let names: Vec<_> = r.manifests().map(|(p, _)| p).collect();
        assert_eq!(names, ["a.yaml"]);
    }
}
