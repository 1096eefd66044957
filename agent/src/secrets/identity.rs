//! The keys the agent decrypts with: the cluster's age identity file and, optionally, the
//! node's SSH host key.
//!
//! Private key files are refused when group or others may access them, as ssh refuses an
//! unprotected private key: a key that every local user can read protects nothing.

use super::error::SecretError;
use super::ssh_key;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where `pve-gitops init` puts the cluster's age identity (pmxcfs: 0600, root, on every node).
pub const DEFAULT_AGE_KEY: &str = "/etc/pve/priv/pve-gitops/age.key";

/// One identity and where it came from.
pub(crate) struct Entry {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    /// The recipient string that encrypts to this identity (`age1…` or `ssh-ed25519 AAAA…`);
    /// unknown for a legacy PEM RSA key without its `.pub` file.
    pub recipient: Option<String>,
    pub identity: Box<dyn age::Identity + Send + Sync>,
}

/// All the identities the agent tries, in order.
#[derive(Default)]
pub struct Identities {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("recipients", &self.recipients())
            .finish()
    }
}

impl Identities {
    pub fn new() -> Self {
        Self::default()
    }

    /// Load a private key file, telling an SSH private key (OpenSSH or PEM RSA) from an age
    /// identity file by its first line, as `age -i` does.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let mut ids = Identities::new();
        ids.add_file(path)?;
        Ok(ids)
    }

    /// Add the identities of one private key file (see [`Identities::load`]).
    pub fn add_file(&mut self, path: &Path) -> Result<(), SecretError> {
        let text = read_private(path)?;
        if ssh_key::looks_like_ssh_key(&text) {
            self.entries.extend(ssh_key::parse(path, &text)?);
        } else {
            self.add_age_identities(path, &text)?;
        }
        Ok(())
    }

    /// Add the identities of an age identity file's text (`AGE-SECRET-KEY-1…` lines, `#`
    /// comments). `source` names it in messages. No permission check: for keys that do not
    /// come from a file, and for tests.
    pub fn add_age_identities(&mut self, source: &Path, text: &str) -> Result<(), SecretError> {
        let before = self.entries.len();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let unsupported = |kind| SecretError::IdentityUnsupported {
                path: source.into(),
                line: i + 1,
                kind,
            };
            if line.starts_with("AGE-SECRET-KEY-PQ-1") {
                return Err(unsupported("post-quantum (AGE-SECRET-KEY-PQ-1…)"));
            }
            if line.starts_with("AGE-PLUGIN-") {
                return Err(unsupported("plugin (AGE-PLUGIN-…)"));
            }
            let identity: age::x25519::Identity =
                line.parse().map_err(|_| SecretError::IdentityInvalid {
                    path: source.into(),
                    line: i + 1,
                })?;
            self.push_x25519(source, identity);
        }
        if self.entries.len() == before {
            return Err(SecretError::IdentityEmpty {
                path: source.into(),
            });
        }
        Ok(())
    }

    pub(crate) fn push_x25519(&mut self, source: &Path, identity: age::x25519::Identity) {
        self.entries.push(Entry {
            source: source.to_path_buf(),
            recipient: Some(identity.to_public().to_string()),
            identity: Box::new(identity),
        });
    }

    /// The recipients that encrypt to these identities, in order, without repeats: what
    /// `pve-gitops secrets recipients` prints and what `age -r` / `sops --age` take.
    pub fn recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.entries.iter().filter_map(|e| e.recipient.as_ref()) {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }

    /// The files the identities came from, without repeats.
    pub fn sources(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for e in &self.entries {
            if !out.contains(&e.source.as_path()) {
                out.push(&e.source);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identities as the age crate takes them.
    pub(crate) fn as_age(&self) -> impl Iterator<Item = &dyn age::Identity> + Clone {
        self.entries
            .iter()
            .map(|e| e.identity.as_ref() as &dyn age::Identity)
    }
}

/// Read a private key file, refusing one that group or others may access. The mode is taken
/// from the opened file, so a file swapped between the check and the read is still checked.
fn read_private(path: &Path) -> Result<Zeroizing<String>, SecretError> {
    let mut file = std::fs::File::open(path).map_err(|e| SecretError::read(path, e))?;
    let meta = file.metadata().map_err(|e| SecretError::read(path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::IdentityPermissions {
            path: path.into(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| SecretError::read(path, e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "# created: 2021-03-31T09:51:59+02:00
# public key: age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29
AGE-SECRET-KEY-1RH87A5Z54ZGUR9S0AS3R6WHFSEFNPLYMAKF5Z2CEU7R06VRJ0A3Q7242AM
";

    #[test]
    fn age_identity_file_gives_its_recipient() {
        let mut ids = Identities::new();
        ids.add_age_identities(Path::new("k.txt"), KEY).unwrap();
        assert_eq!(
            ids.recipients(),
            ["age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29"]
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_never_the_key() {
        let mut ids = Identities::new();
        let text = format!("{KEY}AGE-SECRET-KEY-1NOTAKEY\n");
        let e = ids
            .add_age_identities(Path::new("k.txt"), &text)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "k.txt: line 4 is not an age identity (expected AGE-SECRET-KEY-1…)"
        );
        let e = ids
            .add_age_identities(Path::new("pq.txt"), "AGE-SECRET-KEY-PQ-1Z8QMHKS77CVF95LF\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pq.txt: line 1: post-quantum"), "{e}");
        assert!(!e.contains("Z8QMHKS"), "{e}");
        let e = ids
            .add_age_identities(Path::new("empty.txt"), "# nothing\n")
            .unwrap_err();
        assert!(matches!(e, SecretError::IdentityEmpty { .. }), "{e}");
    }

    #[test]
    fn key_file_readable_by_others_is_refused_like_ssh_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("age.key");
        std::fs::write(&path, KEY).unwrap();
        for (mode, ok) in [
            (0o644, false),
            (0o640, false),
            (0o604, false),
            (0o600, true),
            (0o400, true),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match Identities::load(&path) {
                Ok(ids) => {
                    assert!(ok, "mode {mode:o} accepted");
                    assert_eq!(ids.recipients().len(), 1);
                }
                Err(e) => {
                    assert!(!ok, "mode {mode:o} refused: {e}");
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("(mode 0{mode:o})")), "{msg}");
                    assert!(msg.contains("chmod 600"), "{msg}");
                }
            }
        }
        let e = Identities::load(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, SecretError::Read { .. }), "{e}");
    }
}
