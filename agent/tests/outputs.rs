//! Seed 003's outputs through the daemon and git, as a user runs it: the example pushed
//! to a bare repository converges on fakepve (health gates: guest agent, cloud-init, the
//! Kubernetes API port), and the status branch gets the VM's address from the guest agent
//! in `inventory.yaml` and `outputs.yaml`, and its kubeconfig, read through the guest
//! agent's file-read, only age-encrypted to the repository's recipients.

#[macro_use]
mod support;

use pve_gitops::apply::ApplyOptions;
use pve_gitops::daemon::changes::Unknown;
use pve_gitops::daemon::sources::Git;
use pve_gitops::daemon::{Daemon, DaemonOptions, Outcome};
use pve_gitops::plan::PolicyOverrides;
use pve_gitops::source::{Source, SourceConfig};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use support::examples::{demo_decryptor, examples};
use support::fakepve::{FakePve, Options};
use support::git::{git, GitRemote};

/// What K3s writes; the key material is what must never appear in plaintext on the branch.
const KUBECONFIG: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtY2FuYXJ5LWQ0ZTFmOWIy
    server: https://127.0.0.1:6443
  name: default
contexts:
- context: { cluster: default, user: default }
  name: default
current-context: default
kind: Config
users:
- name: default
  user:
    client-certificate-data: Q0VSVC1jYW5hcnktN2E5YzMx
    client-key-data: S0VZLWNhbmFyeS0zYjhmMDU=
";
const CANARIES: [&str; 3] = [
    "Q0EtY2FuYXJ5LWQ0ZTFmOWIy",
    "Q0VSVC1jYW5hcnktN2E5YzMx",
    "S0VZLWNhbmFyeS0zYjhmMDU=",
];

/// Copy `from` (a directory) into the remote's work tree at `to`.
fn copy_tree(remote: &GitRemote, from: &Path, to: &str) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{to}/{name}");
        if entry.file_type().unwrap().is_dir() {
            copy_tree(remote, &entry.path(), &path);
        } else {
            remote.write(&path, std::fs::read(entry.path()).unwrap());
        }
    }
}

/// A blob of the status branch, byte for byte.
fn show(bare: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("git")
        .current_dir(bare)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["show", &format!("pve-gitops/status:{path}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn yaml(bytes: &[u8]) -> serde_yaml::Value {
    serde_yaml::from_slice(bytes).unwrap()
}

fn status_commits(bare: &Path) -> usize {
    git(bare, &["rev-list", "--count", "pve-gitops/status"])
        .parse()
        .unwrap()
}

#[tokio::test]
async fn seed_003_publishes_the_guest_agents_ip_and_an_encrypted_kubeconfig() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let scratch = tempfile::tempdir().unwrap();
    let snippets = scratch.path().join("local");
    pve.control
        .post(
            "/storages",
            json!({ "local": { "type": "dir", "path": snippets, "content": "iso,vztmpl,backup,snippets" } }),
        )
        .await;
    pve.control
        .create_vm(json!({
            "vmid": 9000, "name": "ubuntu-2204-cloudinit", "node": "pve1", "template": true,
            "config": { "scsi0": "local-lvm:base-9000-disk-0,size=3584M", "scsihw": "virtio-scsi-pci",
                        "memory": 2048, "cores": 2, "agent": "1", "ostype": "l26",
                        "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "ide2": "local-lvm:vm-9000-cloudinit,media=cdrom" },
        }))
        .await;
    pve.control
        .post(
            "/capacity",
            json!({ "nodes": { "maxcpu": 16, "maxmem": 64u64 << 30, "mem": 0 },
                    "storages": { "local-lvm": 1u64 << 40 } }),
        )
        .await;
    // What the guest's agent answers once it runs: K3s added cni0 before eth0's address.
    let interfaces = json!([
        { "name": "lo", "hardware-address": "00:00:00:00:00:00",
          "ip-addresses": [{ "ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8 }] },
        { "name": "eth0", "hardware-address": "bc:24:11:aa:bb:cc",
          "ip-addresses": [{ "ip-address": "fe80::be24:11ff:feaa:bbcc", "ip-address-type": "ipv6", "prefix": 64 },
                           { "ip-address": "192.168.1.50", "ip-address-type": "ipv4", "prefix": 24 }] },
        { "name": "cni0", "hardware-address": "aa:bb:cc:00:00:01",
          "ip-addresses": [{ "ip-address": "10.42.0.1", "ip-address-type": "ipv4", "prefix": 24 }] },
    ]);
    pve.control
        .guest_agents(json!({
            "interfaces": interfaces,
            "files": { "/etc/rancher/k3s/k3s.yaml": KUBECONFIG },
        }))
        .await;
    // The Kubernetes API "answers": the gate's dial of 192.168.1.50:6443 goes here.
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probes: BTreeMap<SocketAddr, SocketAddr> = [(
        "192.168.1.50:6443".parse().unwrap(),
        api.local_addr().unwrap(),
    )]
    .into();

    let remote = GitRemote::new();
    copy_tree(&remote, &examples().join("003-k3s-single"), "clusters/k3s");
    let applied = remote.commit("seed 003");
    remote.push("main");
    let mut config = SourceConfig::new(remote.url(), "main");
    config.cache_root = remote.scratch("cache");
    let state = remote.scratch("state");
    let decryptor = Arc::new(demo_decryptor(scratch.path()));
    let mut daemon = Daemon::new(
        pve.client(),
        Box::new(Git::new(
            Source::open(config).unwrap(),
            "clusters/k3s",
            "pve-gitops/status",
            Duration::ZERO,
        )),
        Box::new(Unknown),
        DaemonOptions {
            cluster: "k3s".into(),
            node: "pve1".into(),
            decryptor: Some(decryptor.clone()),
            interval: Duration::from_secs(3600),
            resync: Duration::from_secs(3600),
            passes: None,
            state_dir: Some(state.clone()),
            policy: PolicyOverrides::default(),
            apply: ApplyOptions {
                tcp_probes: Some(Arc::new(probes)),
                ..ApplyOptions::default()
            },
            clock: Default::default(),
        },
    );

    let outcome = daemon.tick().await.unwrap();
    let Outcome::Reconciled { report, .. } = outcome else {
        panic!("not reconciled: {outcome:#?}")
    };
    assert!(
        report.failed.is_empty() && report.skipped.is_empty(),
        "{report:#?}"
    );
    assert_eq!(
        report.done["k3s-01"].last().unwrap(),
        "ready",
        "{report:#?}"
    );
    let vm = pve.control.vm(100).await.expect("k3s-01 is VM 100");
    assert_eq!(vm["name"], "k3s-01");
    assert_eq!(vm["status"], "running");
    let asked: Vec<String> = vm["agent_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    assert!(
        asked.contains(&"network-get-interfaces".to_string()),
        "{asked:?}"
    );
    assert!(asked.contains(&"file-read".to_string()), "{asked:?}");

    // The address in the inventory and the outputs is the guest agent's, on eth0.
    let bare = &remote.bare;
    let inventory = yaml(&show(bare, "k3s/inventory.yaml"));
    let host = &inventory["all"]["hosts"]["k3s-01"];
    assert_eq!(host["ansible_host"], "192.168.1.50", "{inventory:?}");
    assert_eq!(host["pve_vmid"], 100);
    assert_eq!(
        inventory["all"]["children"]["k3s"]["hosts"]["k3s-01"],
        serde_yaml::Value::Mapping(Default::default()),
        "grouped by its label app: k3s"
    );
    let outputs = yaml(&show(bare, "k3s/outputs.yaml"));
    let o = &outputs["k3s-01"];
    assert_eq!(o["ip"], "192.168.1.50", "{outputs:?}");
    assert_eq!(o["vmid"], 100);
    assert_eq!(o["node"], "pve1");
    assert_eq!(o["kubeconfig"]["file"], "outputs/k3s-01/kubeconfig.age");
    assert_eq!(
        o["kubeconfig"]["encryptedTo"][0],
        "age1v7ya5u50dvg5szml0p49l5773nj2kxgltjysfrsz59nznkhq4dwsyuc7zt"
    );
    assert!(o.get("missing").is_none(), "{outputs:?}");

    // The kubeconfig opens with the example identity, and is the guest's file.
    let sealed = show(bare, "k3s/outputs/k3s-01/kubeconfig.age");
    assert!(sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    let opened = decryptor
        .decrypt_file(Path::new("kubeconfig.age"), &sealed)
        .unwrap()
        .get(&pve_gitops_schema::secret::SecretRef::File {
            file: "kubeconfig.age".into(),
        })
        .unwrap();
    assert_eq!(opened.as_str().unwrap(), KUBECONFIG);

    // Its plaintext is nowhere else: no file of any status commit, no commit message,
    // not the node's local status.
    let everything = git(bare, &["log", "-p", "--all", "--format=%B"]);
    let local: String = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    for canary in CANARIES {
        assert!(!everything.contains(canary), "{canary} on the branch");
        assert!(!local.contains(canary), "{canary} in the state dir");
    }
    assert!(everything.contains("kubeconfig.age"));

    // A second pass writes nothing: no API write, no status commit, the guest not asked.
    let commits = status_commits(bare);
    pve.control.reset_counters().await;
    daemon.tick().await.unwrap();
    let c = pve.control.counters().await;
    assert_eq!(c.writes, 0, "{:?}", c.by_path);
    assert_eq!(
        c.by_endpoint
            .keys()
            .filter(|e| e.contains("/agent/"))
            .count(),
        0,
        "{:?}",
        c.by_endpoint
    );
    daemon.tick().await.unwrap();
    assert_eq!(status_commits(bare), commits + 1, "in-sync table, once");
    daemon.tick().await.unwrap();
    assert_eq!(status_commits(bare), commits + 1);
    assert_eq!(show(bare, "k3s/outputs/k3s-01/kubeconfig.age"), sealed);
    assert_eq!(
        git(bare, &["rev-parse", "main"]),
        applied,
        "the applied branch is never written"
    );

    // DHCP instead of the static address: the inventory takes what the guest reports.
    let k3s = std::fs::read_to_string(remote.work.join("clusters/k3s/k3s.yaml")).unwrap();
    let dhcp = k3s
        .replace(
            "      - ipv4: 192.168.1.50/24 # static; DHCP: `ipv4: dhcp`, and drop waitFor.tcpPort (it dials this address)\n        gateway: 192.168.1.1\n",
            "      - ipv4: dhcp\n",
        )
        .replace("    tcpPort: 6443 # the Kubernetes API answers\n", "");
    assert_eq!(dhcp.lines().count(), k3s.lines().count() - 2);
    remote.write("clusters/k3s/k3s.yaml", dhcp);
    remote.commit("k3s-01 on DHCP");
    remote.push("main");
    let mut leased = interfaces.clone();
    leased[1]["ip-addresses"][1]["ip-address"] = json!("192.168.1.77");
    pve.control
        .update_vm(100, json!({ "agent": { "interfaces": leased, "files": { "/etc/rancher/k3s/k3s.yaml": KUBECONFIG } } }))
        .await;
    let outcome = daemon.tick().await.unwrap();
    let Outcome::Reconciled { report, .. } = outcome else {
        panic!("not reconciled: {outcome:#?}")
    };
    assert!(report.failed.is_empty(), "{report:#?}");
    assert!(report.done.contains_key("k3s-01"), "{report:#?}");
    let inventory = yaml(&show(bare, "k3s/inventory.yaml"));
    assert_eq!(
        inventory["all"]["hosts"]["k3s-01"]["ansible_host"],
        "192.168.1.77"
    );
    assert_eq!(
        yaml(&show(bare, "k3s/outputs.yaml"))["k3s-01"]["ip"],
        "192.168.1.77"
    );
    // Read again (the VM changed), the same kubeconfig: the same ciphertext.
    assert_eq!(show(bare, "k3s/outputs/k3s-01/kubeconfig.age"), sealed);

    // An Inventory manifest shapes inventory.yaml: its groups and variables.
    remote.write(
        "clusters/k3s/inventory.yaml",
        "apiVersion: pve-gitops/v1alpha1\nkind: Inventory\nmetadata: { name: k3s }\n\
         spec: { format: ansible, groupBy: [app], vars: { ansible_user: ubuntu } }\n",
    );
    remote.commit("an inventory");
    remote.push("main");
    daemon.tick().await.unwrap();
    let inventory = yaml(&show(bare, "k3s/inventory.yaml"));
    assert_eq!(
        inventory["all"]["vars"]["ansible_user"], "ubuntu",
        "{inventory:?}"
    );
    assert_eq!(
        inventory["all"]["hosts"]["k3s-01"]["ansible_host"],
        "192.168.1.77"
    );
    assert!(inventory["all"]["children"]["k3s"]["hosts"]
        .get("k3s-01")
        .is_some());
}
