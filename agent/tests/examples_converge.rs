//! Example systems converged from an empty 3-node fakepve through the same
//! `pass::prepare` / `pass::execute` as `apply --once`, the resulting objects asserted
//! kind by kind, and a second pass that writes nothing (no POST, PUT or DELETE).
//! (Example 003 runs through the daemon and git in `outputs.rs`; 004 in `kinds.rs` and
//! `cluster_objects.rs`.)

#[macro_use]
mod support;

use pve_gitops::apply::{ApplyOptions, Report};
use pve_gitops::pass::{execute, prepare};
use pve_gitops::plan::Policy;
use pve_gitops::pve::PveClient;
use pve_gitops::revision::{load, Revision};
use pve_gitops::secrets::{Decryptor, Identities};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use support::control::text;
use support::fakepve::{FakePve, Options};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn revision(name: &str) -> Revision {
    revision_with(name, None)
}

/// The example, its secrets decrypted with `decryptor`.
fn revision_with(name: &str, decryptor: Option<&Decryptor>) -> Revision {
    let repo = pve_gitops::manifests::read_dir(&examples().join(name)).expect("example readable");
    load(&repo, decryptor).unwrap_or_else(|e| panic!("{}", e.join("\n")))
}

/// The public demo identity the examples' secrets are encrypted to.
fn demo_decryptor(dir: &Path) -> Decryptor {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("demo-age.key");
    std::fs::copy(examples().join("keys/demo-age.key"), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut ids = Identities::new();
    ids.add_file(&file).unwrap();
    Decryptor::new(ids)
}

/// The fake's guests by name.
async fn guests(pve: &FakePve) -> std::collections::BTreeMap<String, Value> {
    let state = pve.control.state().await;
    state["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (text(&g["name"]), g.clone()))
        .collect()
}

async fn pass(client: &PveClient, rev: &Revision, options: &ApplyOptions) -> Report {
    let prepared = prepare(client, &rev.desired, &Policy::default())
        .await
        .expect("prepare");
    if let Err(p) = &prepared.preflight {
        panic!("pre-flight: {p:?}");
    }
    execute(client, &prepared, options).await
}

/// Converge, then check a second pass does and writes nothing.
async fn converge(pve: &FakePve, rev: &Revision, options: &ApplyOptions) -> Report {
    let client = pve.client();
    let report = pass(&client, rev, options).await;
    assert!(
        report.failed.is_empty() && report.skipped.is_empty(),
        "{report:#?}"
    );
    pve.control.reset_counters().await;
    let again = pass(&client, rev, options).await;
    assert!(
        again.done.is_empty() && again.failed.is_empty() && again.skipped.is_empty(),
        "{again:#?}"
    );
    let c = pve.control.counters().await;
    assert_eq!(c.writes, 0, "second pass wrote: {:?}", c.by_path);
    report
}

fn config(vm: &Value, key: &str) -> String {
    text(&vm["config"][key])
}

/// Seed 002: the manager cluster (401-403) then the apps cluster (404-406), cloned in
/// full from template 400 on pve1 onto local ZFS on pve1..3 round-robin, VLAN 14, static
/// addresses .100-.102 and .110-.112, each health-gated (guest agent, cloud-init) before its dependents.
#[tokio::test]
async fn example_002_converges_from_empty_and_then_writes_nothing() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    pve.control
        .post(
            "/storages",
            json!({ "local-vm-zfs": { "type": "zfspool", "pool": "rpool/vm", "content": "images,rootdir" } }),
        )
        .await;
    pve.control
        .post(
            "/capacity",
            json!({ "nodes": { "maxcpu": 32, "maxmem": 128u64 << 30, "mem": 0 },
                    "storages": { "local-vm-zfs": 4u64 << 40 } }),
        )
        .await;
    pve.control
        .create_template(400, "pve1", "local-vm-zfs")
        .await;
    pve.control.guest_agents(json!({})).await;
    let rev = revision("002-rancher");
    let report = converge(&pve, &rev, &ApplyOptions::default()).await;

    let nodes = ["pve1", "pve2", "pve3"];
    for (i, vmid) in (401..=406).enumerate() {
        let vm = pve.control.vm(vmid).await.expect("created");
        let (set, n, offset) = if i < 3 {
            ("rancher-manager", i + 1, 100)
        } else {
            ("nprd-apps", i - 2, 110)
        };
        let name = format!("{set}-{n}");
        assert_eq!(vm["name"], name.as_str());
        assert_eq!(vm["node"], nodes[(n - 1) % 3], "{name}");
        assert_eq!(vm["status"], "running", "{name}");
        assert_eq!(report.done[&name].last().unwrap(), "ready", "{name}");
        assert!(
            config(&vm, "scsi0").starts_with(&format!("local-vm-zfs:vm-{vmid}-disk-")),
            "{name}: {}",
            vm["config"]
        );
        assert!(config(&vm, "scsi0").contains("size=20G"));
        assert!(config(&vm, "net0").contains("bridge=vmbr0"));
        assert!(config(&vm, "net0").contains("tag=14"));
        assert_eq!(
            config(&vm, "ipconfig0"),
            format!("ip=192.168.1.{}/24,gw=192.168.1.1", offset + n - 1)
        );
        assert_eq!(config(&vm, "agent"), "1");
        assert_eq!(config(&vm, "cores"), "4");
        assert!(config(&vm, "tags").split(';').any(|t| t == "pve-gitops"));
    }
    // The apps cluster started only after every manager passed its gate.
    let requests = pve.control.requests(100_000).await;
    let position = |vmid: u32| {
        requests
            .iter()
            .position(|(m, p, _)| m == "POST" && p.ends_with(&format!("/qemu/{vmid}/status/start")))
            .unwrap_or_else(|| panic!("{vmid} started"))
    };
    let last_manager = (401..=403).map(position).max().unwrap();
    let first_app = (404..=406).map(position).min().unwrap();
    assert!(last_manager < first_app, "{last_manager} < {first_app}");
}

/// Seed 000: dns02, manager01-03 and worker01-03 cloned in full from the Packer templates
/// 9001-9003 onto Ceph RBD (iothread, discard, ssd), round-robin over pve01..03, the
/// cloud-init drive on CephFS (ide0) with the decrypted password, static addresses
/// cidrhost(.., offset + i), and each VM's rendered user-data on CephFS as `cicustom`.
#[tokio::test]
async fn example_000_converges_from_empty_and_then_writes_nothing() {
    let pve = fake!(Options {
        nodes: vec!["pve01".into(), "pve02".into(), "pve03".into()],
        time_scale: 0.0,
    });
    let dir = tempfile::tempdir().unwrap();
    let cephfs = dir.path().join("cephfs");
    pve.control.ceph(json!({ "add_storage": "rbd" })).await;
    pve.control
        .post(
            "/storages",
            json!({ "cephfs": { "type": "cephfs", "path": cephfs, "shared": 1,
                                "content": "snippets,iso,vztmpl,backup,import" } }),
        )
        .await;
    pve.control
        .post(
            "/capacity",
            json!({ "nodes": { "maxcpu": 64, "maxmem": 1u64 << 40, "mem": 0 },
                    "storages": { "rbd": 64u64 << 40, "cephfs": 64u64 << 40 } }),
        )
        .await;
    for vmid in [9001, 9002, 9003] {
        pve.control.create_template(vmid, "pve01", "rbd").await;
    }
    let decryptor = demo_decryptor(dir.path());
    let rev = revision_with("000-hashicorp-cluster", Some(&decryptor));
    let options = ApplyOptions {
        node: Some("pve01".into()),
        secrets: rev.secrets.clone(),
        ..ApplyOptions::default()
    };
    let report = converge(&pve, &rev, &options).await;
    assert_eq!(report.done.len(), 7 + 3, "{:?}", report.done.keys());

    let guests = guests(&pve).await;
    let nodes = ["pve01", "pve02", "pve03"];
    let mut expected = vec![("dns02".to_string(), "pve01", 2, "8G")];
    for (i, node) in nodes.iter().enumerate() {
        expected.push((format!("manager{:02}", i + 1), node, 71 + i, "8G"));
        expected.push((format!("worker{:02}", i + 1), node, 81 + i, "30G"));
    }
    for (name, node, host, size) in &expected {
        let vm = guests.get(name).unwrap_or_else(|| panic!("{name} created"));
        assert_eq!(vm["node"], *node, "{name}");
        assert_eq!(vm["status"], "running", "{name}");
        let disk = config(vm, "scsi0");
        assert!(disk.starts_with("rbd:vm-"), "{name}: {disk}");
        let size = format!("size={size}");
        for option in ["iothread=1", "discard=on", "ssd=1", &size] {
            assert!(disk.contains(option), "{name}: {option} in {disk}");
        }
        assert!(
            config(vm, "ide0").starts_with("cephfs:"),
            "{name}: {}",
            vm["config"]
        );
        assert!(config(vm, "net0").contains("bridge=vmbr2"), "{name}");
        assert_eq!(
            config(vm, "ipconfig0"),
            format!("ip=192.168.1.{host}/24,gw=192.168.1.1"),
            "{name}"
        );
        assert_eq!(config(vm, "ciuser"), "admin");
        assert!(!config(vm, "cipassword").is_empty(), "{name}: password set");
        assert!(
            config(vm, "cicustom").starts_with(&format!("user=cephfs:snippets/pve-gitops-{name}-")),
            "{name}"
        );
        assert!(config(vm, "tags").split(';').any(|t| t == "pve-gitops"));
    }
    assert_eq!(
        guests.values().filter(|g| g["template"] == false).count(),
        7
    );
    // One user-data file per VM on the shared CephFS, secrets rendered in.
    let files: Vec<_> = std::fs::read_dir(cephfs.join("snippets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 7, "{files:?}");
    assert!(files
        .iter()
        .all(|f| std::fs::read_to_string(cephfs.join("snippets").join(f))
            .unwrap()
            .starts_with("#cloud-config")));
}
