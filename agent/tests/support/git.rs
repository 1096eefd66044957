//! Git remotes for the source tests, made with the `git` CLI: a bare repository (the
//! remote) and a work tree that pushes to it, in a temporary directory.
//!
//! Every `git` runs with the user's and the system's configuration ignored and fixed
//! identities, so a developer's `commit.gpgsign` or hooks cannot change what a test sees.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A bare remote and a work tree cloned from it, on branch `main`.
pub struct GitRemote {
    dir: tempfile::TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
}

/// Run `git` in `dir` with an isolated configuration; panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // No automatic gc: a push's receive-pack starts `gc --auto` in the background,
        // whose prune-packed removed an object directory under the next push (seen in the
        // bad-input corpus, which pushes 84 revisions while the agent pushes status).
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "gc.auto")
        .env("GIT_CONFIG_VALUE_0", "0")
        .env("GIT_CONFIG_KEY_1", "receive.autogc")
        .env("GIT_CONFIG_VALUE_1", "false")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.org")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.org");
    cmd
}

impl GitRemote {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "remote.git"],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        GitRemote { dir, bare, work }
    }

    /// `file://` URL of the bare repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// A scratch directory next to the repositories (caches, keys).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Write a file of the work tree (directories created).
    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// A symbolic link in the work tree.
    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }

    /// Commit everything; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.work_head()
    }

    /// Commit everything with an SSH signature made by the private key `key`.
    pub fn commit_signed(&self, message: &str, key: &Path) -> String {
        let signing_key = format!("user.signingkey={}", key.display());
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &signing_key,
                "commit",
                "-q",
                "--allow-empty",
                "-S",
                "-m",
                message,
            ],
        );
        self.work_head()
    }

    pub fn work_head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// `git push origin HEAD:<branch>`.
    pub fn push(&self, branch: &str) {
        git(
            &self.work,
            &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
        );
    }

    /// `git push --force origin HEAD:<branch>`.
    pub fn force_push(&self, branch: &str) {
        git(
            &self.work,
            &[
                "push",
                "-q",
                "--force",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
    }

    /// The message of the last commit on the bare repository's `branch`, if it exists.
    pub fn last_message(&self, branch: &str) -> Option<String> {
        let head = self.remote_head(branch)?;
        Some(git(&self.bare, &["log", "-1", "--format=%B", &head]))
    }

    /// The bare repository's `branch`, if it exists.
    pub fn remote_head(&self, branch: &str) -> Option<String> {
        let out = git_command(&self.bare)
            .args([
                "rev-parse",
                "--verify",
                "-q",
                &format!("refs/heads/{branch}"),
            ])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

/// A new ed25519 key pair at `dir/name` (private) and `dir/name.pub`, made by `ssh-keygen`.
pub fn ssh_keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) is needed by the source tests");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    key
}

/// The `keytype base64` part of a public key file.
pub fn public_key(key: &Path) -> String {
    let text = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ssh-keygen -lf`'s `SHA256:…` fingerprint of a key.
pub fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}
