//! The pve-gitops side: the release binary, run as an operator runs it once
//! (`pve-gitops apply --once <dir>`), with the token in a file and fakepve's CA pinned.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::proc::{self, Measured};
use crate::support::fakepve::FakePve;

/// The binary cargo built next to this bench (release profile).
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pve-gitops"))
}

/// A working directory for one fake: the manifests (`manifests/set.yaml`) and the token.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new(pve: &FakePve, manifests: &str) -> Workdir {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("manifests")).expect("manifests directory");
        std::fs::write(dir.path().join("manifests/set.yaml"), manifests).expect("manifests");
        std::fs::write(
            dir.path().join("token"),
            format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
        )
        .expect("token file");
        Workdir { dir }
    }

    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--api-url`, `--token-file`, `--ca-file` for `pve`.
    pub fn connection(&self, pve: &FakePve, cmd: &mut Command) {
        cmd.arg("--api-url")
            .arg(format!("{}/api2/json", pve.base_url()))
            .arg("--token-file")
            .arg(self.path("token"))
            .arg("--ca-file")
            .arg(&pve.info.ca_file);
    }
}

/// `pve-gitops apply --once` with default settings (4 VMs at once per node); panics unless it
/// converges (exit 0).
pub fn apply_once(pve: &FakePve, work: &Workdir, log: &Path) -> Measured {
    let mut cmd = Command::new(binary());
    cmd.arg("apply").arg("--once").arg(work.manifests());
    work.connection(pve, &mut cmd);
    cmd.env("RUST_LOG", "warn");
    proc::run(cmd, log, &[]).0
}

/// `pve-gitops plan`: exit 0 (nothing to do) or 2 (changes pending) both count as run.
pub fn plan(pve: &FakePve, work: &Workdir, log: &Path) -> (Measured, i32) {
    let mut cmd = Command::new(binary());
    cmd.arg("plan").arg(work.manifests());
    work.connection(pve, &mut cmd);
    cmd.env("RUST_LOG", "warn");
    proc::run(cmd, log, &[2])
}
