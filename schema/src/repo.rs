//! The repository as the schema crate sees it: paths and texts handed in by the caller, which
//! does the I/O. Keeping reads out of this crate lets tests build repositories in memory.

use std::collections::BTreeMap;

/// The files of one revision of the manifests directory.
#[derive(Debug, Clone, Default)]
pub struct Repository {
    /// Path (relative, `/`-separated) → text, for every text file (`None` for binary files
    /// such as `*.age`, which only need to exist).
    files: BTreeMap<String, Option<String>>,
}

impl Repository {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a text file.
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> &mut Self {
        self.files.insert(path.into(), Some(text.into()));
        self
    }

    /// Record a file whose content is not needed (a binary secret, an image...).
    pub fn add_opaque(&mut self, path: impl Into<String>) -> &mut Self {
        self.files.insert(path.into(), None);
        self
    }

    pub fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    pub fn text(&self, path: &str) -> Option<&str> {
        self.files.get(path).and_then(|t| t.as_deref())
    }

    /// The manifest files: YAML files that are not SOPS documents.
    pub fn manifests(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().filter_map(|(p, t)| {
            let t = t.as_deref()?;
            let yaml = p.ends_with(".yaml") || p.ends_with(".yml");
            (yaml && !is_sops_document(t)).then_some((p.as_str(), t))
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
