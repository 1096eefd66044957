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
    /// Known to exist only (too large to load, or not needed).
    Opaque,
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

    /// The raw content of a text or binary file.
    pub fn bytes(&self, path: &str) -> Option<&[u8]> {
        match self.files.get(path)? {
            Content::Text(t) => Some(t.as_bytes()),
            Content::Binary(b) => Some(b),
            Content::Opaque => None,
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
    fn sops_documents_are_not_manifests() {
        let mut r = Repository::new();
        r.add("a.yaml", "kind: X\n");
        r.add("s.yaml", "password: ENC[...]\nsops:\n  mac: x\n");
        let names: Vec<_> = r.manifests().map(|(p, _)| p).collect();
        assert_eq!(names, ["a.yaml"]);
    }
}
