//! The Ansible side: its venv, the inventory of one host per VM, and `ansible-playbook`.
//!
//! The playbook is `tests/bench-compare/playbook.yml`, the one a Proxmox user writes with
//! `community.proxmox.proxmox_kvm`: clone, configure with `update: true`, start. The
//! module reads its connection from `PROXMOX_*` variables and, with `validate_certs:
//! true`, verifies the API's certificate through requests, which takes its CA bundle from
//! `REQUESTS_CA_BUNDLE`: set to fakepve's CA, so TLS is checked as pve-gitops checks it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::proc::{self, Measured};
use crate::support::fakepve::FakePve;

/// One VM as the inventory names it: what pve-gitops made of the same manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub vmid: u32,
    pub node: String,
    /// `ip=10.20.0.10/16,gw=10.20.0.1`
    pub ipconfig0: String,
}

/// The venv's `bin/` (made by `tests/bench-compare/setup-ansible-venv.sh` the first time).
pub fn venv_bin(repo: &Path) -> PathBuf {
    let script = repo.join("tests/bench-compare/setup-ansible-venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({})",
        script.display(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or("").trim())
}

/// An INI inventory: group `vms`, one host per VM with its vmid, node and address, and
/// the template and storage as group variables.
pub fn inventory(hosts: &[Host], template: u32, storage: &str) -> String {
    let mut out = String::from("[vms]\n");
    for h in hosts {
        let ip = h
            .ipconfig0
            .strip_prefix("ip=")
            .and_then(|s| s.split('/').next())
            .unwrap_or_else(|| panic!("unexpected ipconfig0 {:?}", h.ipconfig0));
        out.push_str(&format!(
            "{} vmid={} pve_node={} ipv4={ip}\n",
            h.name, h.vmid, h.node
        ));
    }
    out.push_str(&format!(
        "\n[vms:vars]\ntemplate_node=pve1\ntemplate_vmid={template}\ntemplate_name=tmpl-{template}\nstorage={storage}\n"
    ));
    out
}

/// Run the playbook over `inventory` against `pve`; panics unless every host is ok.
pub fn play(bin: &Path, repo: &Path, pve: &FakePve, inventory: &Path, log: &Path) -> Measured {
    let (token_user, token_name) = pve
        .info
        .token_id
        .split_once('!')
        .expect("token id USER!NAME");
    // Nothing from a user's ~/.ansible.cfg or /etc/ansible: Ansible's defaults (forks 5).
    let dir = inventory.parent().expect("inventory in a directory");
    let config = dir.join("ansible.cfg");
    std::fs::write(&config, "[defaults]\n").expect("ansible.cfg");
    let mut cmd = Command::new(bin.join("ansible-playbook"));
    cmd.arg("-i")
        .arg(inventory)
        .arg(repo.join("tests/bench-compare/playbook.yml"))
        .env("PROXMOX_HOST", "127.0.0.1")
        .env("PROXMOX_PORT", pve.info.api_port.to_string())
        .env("PROXMOX_USER", token_user)
        .env("PROXMOX_TOKEN_ID", token_name)
        .env("PROXMOX_TOKEN_SECRET", &pve.info.token_secret)
        .env("REQUESTS_CA_BUNDLE", &pve.info.ca_file)
        .env_remove("CURL_CA_BUNDLE")
        .env("ANSIBLE_LOCALHOST_WARNING", "False")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
        .env("ANSIBLE_CONFIG", &config)
        .current_dir(dir);
    let (measured, _) = proc::run(cmd, log, &[]);
    measured
}
