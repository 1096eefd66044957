//! Reading a fetched revision straight from the cache's object database, without a work
//! tree: nothing is checked out, so nothing on disk can be half-updated, and a revision is
//! read exactly as committed.
//!
//! The rules are those of `manifests::read_dir`: hidden entries are skipped, files that are
//! not UTF-8 are kept as bytes (binary `*.age` files), files larger than 4 MiB are recorded
//! without their content. Symbolic links (mode 120000) and submodules (gitlinks) are
//! recorded, not followed: a link can point outside the repository (`/etc/pve/priv/...`)
//! and a submodule is another repository the agent did not fetch. A manifest that names
//! one of these, or a `*.yaml` file that is one, is an error of the revision saying why
//! (see [`pve_gitops_schema::repo::Skipped`]).

use super::error::Error;
use crate::manifests::MAX_TEXT_FILE;
use git2::{Oid, Repository, Tree};
use pve_gitops_schema::repo::Skipped;
use pve_gitops_schema::Repository as Files;

const MODE_TREE: i32 = 0o040000;
const MODE_BLOB: i32 = 0o100644;
const MODE_BLOB_GROUP_WRITABLE: i32 = 0o100664;
const MODE_EXECUTABLE: i32 = 0o100755;
const MODE_LINK: i32 = 0o120000;
const MODE_COMMIT: i32 = 0o160000;

/// The files under `subdir` (`""` for the whole repository) of `commit`, with paths
/// relative to `subdir`.
pub fn read_tree(repo: &Repository, commit: Oid, subdir: &str) -> Result<Files, Error> {
    let tree = subdir_tree(repo, commit, subdir)?;
    let mut files = Files::new();
    let reader = Reader { repo, commit };
    reader.walk(&tree, &normalize(subdir)?, "", &mut files)?;
    Ok(files)
}

/// The bytes of one regular file, `path` relative to `subdir` (for binary files such as
/// `*.age`, which [`read_tree`] records as opaque). Links, hidden paths and directories are
/// refused like [`read_tree`] skips them.
pub fn read_file(
    repo: &Repository,
    commit: Oid,
    subdir: &str,
    path: &str,
) -> Result<Vec<u8>, Error> {
    let full = join(&normalize(subdir)?, path);
    let err = |message: &str| Error::Read {
        commit,
        path: full.clone(),
        message: message.to_string(),
    };
    if path.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
        return Err(err(
            "not a plain relative path (empty, hidden or `..` component)",
        ));
    }
    let tree = subdir_tree(repo, commit, subdir)?;
    let entry = tree
        .get_path(std::path::Path::new(path))
        .map_err(|_| err("does not exist"))?;
    match entry.filemode() {
        MODE_BLOB | MODE_BLOB_GROUP_WRITABLE | MODE_EXECUTABLE => {}
        MODE_LINK => return Err(err("is a symbolic link (not followed)")),
        _ => return Err(err("is not a regular file")),
    }
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| err(&format!("cannot read: {}", e.message())))?;
    Ok(blob.content().to_vec())
}

/// `subdir` without surrounding slashes; `.`, `..` and empty components refused.
fn normalize(subdir: &str) -> Result<String, Error> {
    let trimmed = subdir.trim_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::Read {
            commit: Oid::zero(),
            path: subdir.to_string(),
            message: "not a plain relative directory".to_string(),
        });
    }
    Ok(trimmed.to_string())
}

fn subdir_tree<'r>(repo: &'r Repository, commit: Oid, subdir: &str) -> Result<Tree<'r>, Error> {
    let dir = normalize(subdir)?;
    let err = |message: String| Error::Read {
        commit,
        path: if dir.is_empty() {
            "/".to_string()
        } else {
            dir.clone()
        },
        message,
    };
    let root = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| err(format!("cannot read the commit: {}", e.message())))?;
    if dir.is_empty() {
        return Ok(root);
    }
    let entry = root
        .get_path(std::path::Path::new(&dir))
        .map_err(|_| err("directory does not exist".to_string()))?;
    match entry.filemode() {
        MODE_TREE => {}
        MODE_LINK => {
            return Err(err(
                "is a symbolic link, not a directory (links are not followed)".to_string(),
            ))
        }
        _ => return Err(err("is not a directory".to_string())),
    }
    repo.find_tree(entry.id())
        .map_err(|e| err(format!("cannot read: {}", e.message())))
}

struct Reader<'r> {
    repo: &'r Repository,
    commit: Oid,
}

impl Reader<'_> {
    /// Add the files of `tree` (at `prefix` relative to the subdir `base`) to `out`.
    fn walk(
        &self,
        tree: &Tree<'_>,
        base: &str,
        prefix: &str,
        out: &mut Files,
    ) -> Result<(), Error> {
        for entry in tree.iter() {
            let Some(name) = entry.name() else {
                tracing::warn!(commit = %self.commit, dir = %join(base, prefix), "skipping an entry whose name is not UTF-8");
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let rel = join(prefix, name);
            let err = |e: git2::Error| Error::Read {
                commit: self.commit,
                path: join(base, &rel),
                message: format!("cannot read: {}", e.message()),
            };
            match entry.filemode() {
                MODE_TREE => {
                    let sub = self.repo.find_tree(entry.id()).map_err(err)?;
                    self.walk(&sub, base, &rel, out)?;
                }
                MODE_BLOB | MODE_BLOB_GROUP_WRITABLE | MODE_EXECUTABLE => {
                    // The size is in the object header: a large blob is never loaded.
                    let odb = self.repo.odb().map_err(err)?;
                    let (size, _) = odb.read_header(entry.id()).map_err(err)?;
                    if size as u64 > MAX_TEXT_FILE {
                        out.add_skipped(rel, Skipped::TooLarge(size as u64));
                        continue;
                    }
                    let blob = self.repo.find_blob(entry.id()).map_err(err)?;
                    match std::str::from_utf8(blob.content()) {
                        Ok(text) => out.add(rel, text),
                        Err(_) => out.add_binary(rel, blob.content().to_vec()),
                    };
                }
                MODE_LINK => {
                    tracing::warn!(commit = %self.commit, path = %join(base, &rel), "skipping a symbolic link (links are not followed)");
                    out.add_skipped(rel, Skipped::SymbolicLink);
                }
                MODE_COMMIT => {
                    tracing::warn!(commit = %self.commit, path = %join(base, &rel), "skipping a submodule (not fetched)");
                    out.add_skipped(rel, Skipped::Submodule);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}
