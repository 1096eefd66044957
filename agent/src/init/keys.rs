//! The files `init` creates under pmxcfs's `priv/`: each written once, never replaced.
//!
//! Files are created with `O_CREAT|O_EXCL` and mode 0600, so a second `init` (or one
//! racing on another node) cannot overwrite a key the cluster already uses. On pmxcfs
//! the mode is fixed by the filesystem anyway (`priv/` is root-only); elsewhere (tests,
//! a plain directory) it is what keeps the secrets private.

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether `create_secret` wrote the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Written,
    Existed,
}

/// Write `contents` to a new file with `mode`; an existing file is left alone.
pub fn create_file(path: &Path, contents: &[u8], mode: u32) -> Result<Created> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(Created::Existed),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Created::Written)
}

/// A secret file: mode 0600.
pub fn create_secret(path: &Path, contents: &[u8]) -> Result<Created> {
    create_file(path, contents, 0o600)
}

/// A new age X25519 identity as an identity file (`age-keygen`'s layout), and its
/// recipient (`age1…`).
pub fn new_age_identity() -> (zeroize::Zeroizing<String>, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let file = format!(
        "# pve-gitops cluster identity: decrypts the repository's secrets.\n\
         # public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    (zeroize::Zeroizing::new(file), recipient)
}

/// A new SSH ed25519 key pair: the OpenSSH private key file and the public key line.
pub fn new_deploy_key(comment: &str) -> Result<(zeroize::Zeroizing<String>, String)> {
    use ring::rand::SecureRandom;
    use ssh_key::private::{Ed25519Keypair, KeypairData};
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(seed.as_mut())
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    let pair = Ed25519Keypair::from_seed(&seed);
    let key = ssh_key::PrivateKey::new(KeypairData::Ed25519(pair), comment)
        .context("building the deploy key")?;
    let private = key
        .to_openssh(ssh_key::LineEnding::LF)
        .context("encoding the deploy key")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding the deploy key's public half")?;
    Ok((zeroize::Zeroizing::new(private.to_string()), public))
}

/// The public key line of an OpenSSH private key file.
pub fn deploy_public_key(private: &Path) -> Result<String> {
    let key = ssh_key::PrivateKey::read_openssh_file(private)
        .with_context(|| format!("reading {}", private.display()))?;
    Ok(key.public_key().to_openssh()?)
}

/// The recipients of an age identity file.
pub fn age_recipients(path: &Path) -> Result<Vec<String>> {
    let ids = crate::secrets::Identities::load(path)?;
    Ok(ids.recipients())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_are_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("priv/x/key");
        assert_eq!(create_secret(&path, b"one").unwrap(), Created::Written);
        assert_eq!(create_secret(&path, b"two").unwrap(), Created::Existed);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn generated_keys_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let (file, recipient) = new_age_identity();
        let path = dir.path().join("age.key");
        create_secret(&path, file.as_bytes()).unwrap();
        assert_eq!(age_recipients(&path).unwrap(), vec![recipient.clone()]);
        assert!(recipient.starts_with("age1"));

        let (private, public) = new_deploy_key("pve-gitops@test").unwrap();
        let key = dir.path().join("deploy_key");
        create_secret(&key, private.as_bytes()).unwrap();
        assert_eq!(deploy_public_key(&key).unwrap(), public);
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
        assert!(public.ends_with(" pve-gitops@test"), "{public}");
    }
}
