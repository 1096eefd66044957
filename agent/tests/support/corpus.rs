//! The bad-input corpus (`agent/tests/corpus/`): a good cluster directory (`base/`) and
//! broken repository states (`bad/<case>/`) laid over it. `bad_input.rs` pushes every
//! case on top of the good revision; the chaos soak pushes them at random, over the
//! good files and its own.
//!
//! A case is a directory: `files/` is laid over the good cluster directory
//! (`clusters/prod`), `setup` (optional) lists what cannot be a plain file in the source
//! tree, one directive a line (paths relative to the cluster directory):
//!
//! | directive | effect |
//! |---|---|
//! | `delete PATH` | remove a file or directory |
//! | `symlink PATH TARGET` | a symbolic link |
//! | `copy PATH DATA` | a file of `tests/data/` (the SOPS vectors stay with their licences) |
//! | `write PATH TEXT` | a one-line text file |
//! | `fill PATH BYTES` | a text file of that size (valid YAML comments) |
//! | `garbage PATH BYTES` | pseudo-random bytes, not UTF-8 |
//! | `tamper PATH OFFSET` | flip the bits of one byte |
//! | `truncate PATH BYTES` | cut the file |
//!
//! `expect` lists, one a line, text the `errors.md` of the rejection must contain.
//! `BAD_INPUT_CASES=name,name` selects cases (debugging).

use std::path::{Path, PathBuf};

pub const CLUSTER_DIR: &str = "clusters/prod";
/// Secret plaintext of the good revision and of every encrypted file a case brings in
/// (`tests/data/age/README.md`, `tests/data/sops/humphd-sops-age/secret.json`).
pub const PLAINTEXTS: [&str; 5] = [
    "canary-web-5e1f",
    "this is a secret",
    "gotta match go",
    "s3cret-1",
    "hunter2-plain",
];
/// What `/etc/passwd` starts with: a path that escapes must never be read.
pub const OUTSIDE: &str = "root:x:0:0";

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// The age identity that opens the test data's secrets, copied to `dir/age.key` with the
/// mode the agent wants (git checks it out 0644; the agent refuses a key others can read).
pub fn age_identity(dir: &Path) -> PathBuf {
    let key = dir.join("age.key");
    std::fs::copy(data("sops/humphd-sops-age/key.txt"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    key
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Lay the good cluster directory into the work tree, replacing whatever a case left.
pub fn write_good(work: &Path) {
    let clusters = work.join("clusters");
    if clusters.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(&clusters).unwrap();
    }
    let dir = work.join(CLUSTER_DIR);
    copy_tree(&corpus().join("base"), &dir);
    std::fs::copy(
        data("sops/humphd-sops-age/secret.enc.yaml"),
        dir.join("secrets/db.enc.yaml"),
    )
    .unwrap();
}

/// One broken state: the good directory with the case laid over it.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub expect: Vec<String>,
}

pub fn cases() -> Vec<Case> {
    let only: Option<Vec<String>> = std::env::var("BAD_INPUT_CASES")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let mut out: Vec<Case> = std::fs::read_dir(corpus().join("bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let expect = std::fs::read_to_string(dir.join("expect"))
                .unwrap_or_else(|e| panic!("{name}/expect: {e}"))
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect::<Vec<_>>();
            assert!(!expect.is_empty(), "{name}/expect names nothing");
            Case { name, dir, expect }
        })
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

impl Case {
    /// The good cluster directory in the work tree `work`, with this case laid over it.
    pub fn apply(&self, work: &Path) {
        write_good(work);
        self.lay_over(&work.join(CLUSTER_DIR));
    }

    /// This case laid over a cluster directory `dir` that holds (at least) the good
    /// files: `files/` copied in, then the `setup` directives run.
    pub fn lay_over(&self, dir: &Path) {
        let dir = dir.to_path_buf();
        if self.dir.join("files").is_dir() {
            copy_tree(&self.dir.join("files"), &dir);
        }
        let Ok(setup) = std::fs::read_to_string(self.dir.join("setup")) else {
            return;
        };
        for line in setup.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.splitn(3, ' ');
            let (op, path) = (words.next().unwrap(), words.next().unwrap());
            let arg = words.next().unwrap_or("");
            let p = lexical_join(&dir, path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            let bytes = || -> usize { arg.parse().unwrap() };
            match op {
                "delete" if p.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
                "delete" => std::fs::remove_file(&p).unwrap(),
                "symlink" => std::os::unix::fs::symlink(arg, &p).unwrap(),
                "copy" => {
                    std::fs::copy(data(arg), &p).unwrap();
                }
                "write" => std::fs::write(&p, format!("{arg}\n")).unwrap(),
                "fill" => {
                    let line = "# padding padding padding padding padding padding padding\n";
                    let text = line.repeat(bytes() / line.len() + 1);
                    std::fs::write(&p, &text.as_bytes()[..bytes()]).unwrap();
                }
                "garbage" => std::fs::write(&p, garbage(bytes())).unwrap(),
                "tamper" => {
                    let mut b = std::fs::read(&p).unwrap();
                    b[bytes()] ^= 0x55;
                    std::fs::write(&p, b).unwrap();
                }
                "truncate" => {
                    let b = std::fs::read(&p).unwrap();
                    std::fs::write(&p, &b[..bytes()]).unwrap();
                }
                other => panic!("{}: unknown setup directive {other}", self.name),
            }
        }
    }
}

/// `dir/rel` with `..` taken lexically (a link in `dir` is not followed).
fn lexical_join(dir: &Path, rel: &str) -> PathBuf {
    let mut p = dir.to_path_buf();
    for part in rel.split('/') {
        match part {
            ".." => {
                p.pop();
            }
            "." | "" => {}
            part => p.push(part),
        }
    }
    p
}

/// Bytes that are not UTF-8 (every 0xff byte is invalid), the same on every run.
fn garbage(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 7 == 0 {
                0xff
            } else {
                x as u8
            }
        })
        .collect()
}
