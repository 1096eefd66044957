//! Reading a manifests directory from disk into a [`Repository`] for the schema crate.

use anyhow::{Context, Result};
use pve_gitops_schema::repo::Skipped;
use pve_gitops_schema::Repository;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Files larger than this are recorded but not read: manifests, templates and secrets are
/// small, and a stray disk image in the repository must not be loaded into memory.
pub(crate) const MAX_TEXT_FILE: u64 = 4 * 1024 * 1024;

/// Read every file under `dir` (skipping hidden entries such as `.git`). Paths are relative
/// to `dir`, `/`-separated; files that are not UTF-8 (binary age files) are kept as bytes.
pub fn read_dir(dir: &Path) -> Result<Repository> {
    let mut repo = Repository::new();
    for f in files(dir)? {
        if f.link {
            repo.add_skipped(f.rel, Skipped::SymbolicLink);
            continue;
        }
        if f.meta.len() > MAX_TEXT_FILE {
            repo.add_skipped(f.rel, Skipped::TooLarge(f.meta.len()));
            continue;
        }
        let bytes =
            std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
        match String::from_utf8(bytes) {
            Ok(text) => repo.add(f.rel, text),
            Err(e) => repo.add_binary(f.rel, e.into_bytes()),
        };
    }
    Ok(repo)
}

/// A cheap revision of `dir`: a hash of every file's path, size and modification time (no
/// file is read), so an idle daemon polling a directory costs a few `stat`s.
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut h = std::hash::DefaultHasher::new();
    for f in files(dir)? {
        f.rel.hash(&mut h);
        f.meta.len().hash(&mut h);
        f.meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .hash(&mut h);
    }
    Ok(format!("dir:{:016x}", h.finish()))
}

/// One regular file or symbolic link under the manifests directory.
struct File {
    /// `/`-separated, relative to the directory.
    rel: String,
    path: PathBuf,
    /// The link's own metadata for a link (never its target's).
    meta: std::fs::Metadata,
    link: bool,
}

/// The regular files and links under `dir`, sorted, hidden entries skipped, links not
/// followed (a link could point outside the repository).
fn files(dir: &Path) -> Result<Vec<File>> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<File>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        if !ty.is_file() && !ty.is_symlink() {
            continue; // sockets, devices
        }
        let rel = path
            .strip_prefix(root)
            .expect("walked under root")
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let meta = entry
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?;
        out.push(File {
            rel,
            path,
            meta,
            link: ty.is_symlink(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_and_binary_and_skips_hidden() {
        let dir = std::env::temp_dir().join(format!("pve-gitops-manifests-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub/.git")).unwrap();
        std::fs::write(dir.join("a.yaml"), "x: 1\n").unwrap();
        std::fs::write(dir.join("sub/s.age"), [0xff, 0xfe, 0x00]).unwrap();
        std::fs::write(dir.join("sub/.git/config"), "x").unwrap();
        let repo = read_dir(&dir).unwrap();
        assert_eq!(repo.text("a.yaml"), Some("x: 1\n"));
        assert!(repo.exists("sub/s.age"));
        assert_eq!(repo.text("sub/s.age"), None);
        assert_eq!(repo.bytes("sub/s.age"), Some(&[0xff, 0xfe, 0x00][..]));
        assert!(!repo.exists("sub/.git/config"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_and_large_files_are_recorded_unread() {
        let dir = tempfile::tempdir().unwrap();
        let big = "#\n".repeat(MAX_TEXT_FILE as usize / 2 + 1);
        std::fs::write(dir.path().join("big.yaml"), &big).unwrap();
        std::fs::create_dir(dir.path().join("t")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("t/passwd.j2")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        let repo = read_dir(dir.path()).unwrap();
        assert_eq!(repo.text("t/passwd.j2"), None, "a link is never followed");
        let why = repo.problem("t/passwd.j2", true).unwrap();
        assert!(why.contains("symbolic link"), "{why}");
        let why = repo.problem("etc/passwd", true).unwrap();
        assert!(why.contains("inside `etc`, a symbolic link"), "{why}");
        assert_eq!(repo.text("big.yaml"), None);
        let bad: Vec<_> = repo.unreadable_manifests().collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].1.contains("too large"), "{bad:?}");
    }
}
