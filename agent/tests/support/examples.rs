//! The repository's `examples/` and the public demo identity their secrets are encrypted to.

use std::path::{Path, PathBuf};

use pve_gitops::secrets::{Decryptor, Identities};

/// The `examples/` directory of this repository.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A decryptor holding `examples/keys/demo-age.key`, copied into `dir` as 0600 (the agent
/// refuses an identity file others can read).
pub fn demo_decryptor(dir: &Path) -> Decryptor {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("demo-age.key");
    std::fs::copy(examples().join("keys/demo-age.key"), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut ids = Identities::new();
    ids.add_file(&file).unwrap();
    Decryptor::new(ids)
}
