//! StorageDownload, Template, Snippet and Container end to end on fakepve, through the same
//! `pass::prepare` / `pass::execute` as `apply --once` and the daemon (the harness module
//! `tests/fakepve/images.py` serves registered URLs, imports disks, lists snippet files).

#[macro_use]
mod support;

use pve_gitops::apply::{ApplyOptions, Report};
use pve_gitops::pass::{execute, follow, prepare};
use pve_gitops::plan::Policy;
use pve_gitops::pve::PveClient;
use pve_gitops::revision::{load, Revision};
use pve_gitops::secrets::Decryptor;
use pve_gitops_schema::Repository;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use support::control::text;
use support::examples::demo_decryptor;
use support::fakepve::{FakePve, Options};

fn example(name: &str) -> Repository {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    pve_gitops::manifests::read_dir(&dir).expect("example readable")
}

fn revision(repo: &Repository, decryptor: Option<&Decryptor>) -> Revision {
    load(repo, decryptor).unwrap_or_else(|e| panic!("{}", e.join("\n")))
}

/// One pass as `apply --once` runs it; pre-flight must pass.
async fn run(client: &PveClient, rev: &Revision, policy: Policy, options: &ApplyOptions) -> Report {
    let policy = Policy {
        secrets_decrypted: rev.secrets.decrypted(),
        ..policy
    };
    let options = ApplyOptions {
        secrets: rev.secrets.clone(),
        ..options.clone()
    };
    let prepared = prepare(client, &rev.desired, &policy)
        .await
        .expect("prepare");
    if let Err(p) = &prepared.preflight {
        panic!("pre-flight: {p:?}");
    }
    execute(client, &prepared, &options).await
}

fn on_node(node: &str, root: Option<&Path>) -> ApplyOptions {
    ApplyOptions {
        node: Some(node.into()),
        storage_root: root.map(Path::to_path_buf),
        ..ApplyOptions::default()
    }
}

/// What fakepve's storage.cfg gets: a `dir` storage at `path`.
fn dir_storage(path: &Path, shared: bool) -> Value {
    json!({ "type": "dir", "path": path, "shared": u8::from(shared),
            "content": "iso,import,snippets,images,vztmpl,rootdir" })
}

fn lvm(pool: &str) -> Value {
    json!({ "type": "lvmthin", "vgname": "pve", "thinpool": pool, "content": "images,rootdir" })
}

/// Register what `url` serves; returns its sha512.
async fn serve(pve: &FakePve, url: &str, content: &str, size: u64) -> String {
    let e = pve
        .control
        .post(
            "/remote_files",
            json!({ "url": url, "content": content, "size": size }),
        )
        .await;
    text(&e["sha512"])
}

const DEBIAN_URL: &str =
    "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2";

/// Example 004 from an empty server: the image is downloaded (checksum verified), VM 9000
/// built from it, one storage-tiers user-data per VM written, nine VMs cloned with their
/// tier disks and `cicustom`; the second pass writes nothing.
#[tokio::test]
async fn example_004_converges_from_empty_and_then_writes_nothing() {
    let pve = fake!(Options {
        nodes: vec!["pve".into()],
        time_scale: 0.0,
    });
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    pve.control
        .post(
            "/storages",
            json!({ "local": dir_storage(&local, false), "nvme": lvm("nvme"),
                    "ssd": lvm("ssd"), "hdd": lvm("hdd") }),
        )
        .await;
    pve.control.roomy(&["local", "nvme", "ssd", "hdd"]).await;
    pve.control.guest_agents(json!({})).await;
    let sha = serve(&pve, DEBIAN_URL, "debian 12 qcow2", 2 << 30).await;
    let mut repo = example("004-tiered-storage");
    let image = repo
        .text("image.yaml")
        .unwrap()
        .replace(&"0".repeat(128), &sha);
    repo.add("image.yaml", image);
    let rev = revision(&repo, None);
    let client = pve.client();
    let options = on_node("pve", None);

    let report = run(&client, &rev, Policy::default(), &options).await;
    assert!(
        report.failed.is_empty() && report.skipped.is_empty(),
        "{report:#?}"
    );
    assert_eq!(
        report.done["StorageDownload/debian-12-genericcloud"],
        ["download debian-12-genericcloud-amd64.qcow2 to pve"]
    );
    assert_eq!(
        report.done["Template/debian-12"],
        ["create 9000", "resize scsi0 to 8G", "template"]
    );
    assert_eq!(report.done["Snippet/storage-tiers"].len(), 9);
    // The SDN the VMs' NICs are on: zone, vnet and subnet, applied once.
    for object in ["SdnZone/ecoma", "SdnVnet/ecomanet", "SdnSubnet/ecoma-nodes"] {
        assert_eq!(report.done[object].last().unwrap(), "applied", "{object}");
    }
    assert_eq!(report.done.len(), 3 + 3 + 9, "{:?}", report.done.keys());

    // The download carried the checksum PVE verifies.
    let requests = pve.control.requests(100_000).await;
    let download = requests
        .iter()
        .find(|(m, p, _)| m == "POST" && p.ends_with("/download-url"))
        .unwrap();
    assert!(
        download.2.contains(&format!("checksum={sha}")),
        "{download:?}"
    );
    assert!(download.2.contains("checksum-algorithm=sha512"));

    let t = pve.control.vm(9000).await.unwrap();
    assert_eq!(t["template"], true);
    let c = &t["config"];
    assert!(text(&c["scsi0"]).starts_with("nvme:base-9000-disk-"), "{c}");
    assert!(text(&c["scsi0"]).contains("size=8G"), "{c}");
    assert!(!text(&c["scsi0"]).contains("import-from"));
    assert!(
        text(&c["ide2"]).starts_with("nvme:vm-9000-cloudinit")
            || text(&c["ide2"]).contains("media=cdrom"),
        "{c}"
    );
    assert_eq!(text(&c["serial0"]), "socket");
    assert_eq!(text(&c["vga"]), "serial0");
    assert_eq!(text(&c["agent"]), "1");
    assert_eq!(text(&c["scsihw"]), "virtio-scsi-single");
    assert!(text(&c["description"]).contains("pve-gitops-definition: "));

    // sts01: four tier disks, its user-data formats and mounts three of them.
    let sts = pve.control.vm(4131).await.unwrap();
    let c = &sts["config"];
    for (slot, size) in [
        ("scsi0", "32G"),
        ("scsi1", "500G"),
        ("scsi2", "2T"),
        ("scsi3", "16G"),
    ] {
        assert!(
            text(&c[slot]).contains(&format!("size={size}")),
            "{slot}: {c}"
        );
    }
    let volume = "local:snippets/pve-gitops-sts01-storage-tiers.yaml";
    assert_eq!(text(&c["cicustom"]), format!("user={volume}"));
    let file = local.join("snippets/pve-gitops-sts01-storage-tiers.yaml");
    let written = std::fs::read_to_string(&file).unwrap();
    let desired = rev
        .desired
        .snippet_files
        .iter()
        .find(|f| f.volume == volume)
        .unwrap();
    assert_eq!(written, desired.content);
    for mount in ["/var/storage/warm", "/var/storage/cold", "swap"] {
        assert!(written.contains(mount), "{mount} in {written}");
    }
    assert_eq!(
        std::fs::read_dir(local.join("snippets")).unwrap().count(),
        9
    );

    pve.control.reset_counters().await;
    let again = run(&client, &rev, Policy::default(), &options).await;
    assert!(
        again.done.is_empty() && again.failed.is_empty(),
        "{again:#?}"
    );
    assert_eq!(pve.control.counters().await.writes, 0);
}

/// A checksum that does not match what the URL serves fails the download (PVE checks it),
/// and everything built from it waits: the template is skipped, and so are its clones.
#[tokio::test]
async fn a_wrong_checksum_skips_the_template_and_its_clones() {
    let pve = fake!(Options {
        nodes: vec!["pve".into()],
        time_scale: 0.0,
    });
    let dir = tempfile::tempdir().unwrap();
    pve.control
        .post(
            "/storages",
            json!({ "local": dir_storage(&dir.path().join("local"), false), "nvme": lvm("nvme"),
                    "ssd": lvm("ssd"), "hdd": lvm("hdd") }),
        )
        .await;
    pve.control.roomy(&["local", "nvme", "ssd", "hdd"]).await;
    serve(&pve, DEBIAN_URL, "debian 12 qcow2", 2 << 30).await;
    let rev = revision(&example("004-tiered-storage"), None); // the placeholder checksum
    let report = run(
        &pve.client(),
        &rev,
        Policy::default(),
        &on_node("pve", None),
    )
    .await;
    assert!(
        report.failed["StorageDownload/debian-12-genericcloud"].contains("checksum mismatch"),
        "{report:#?}"
    );
    assert_eq!(
        report.skipped["Template/debian-12"],
        "depends on StorageDownload/debian-12-genericcloud (not ready)"
    );
    assert_eq!(report.skipped["cpl01"], "Template/debian-12 is not ready");
    assert!(pve.control.vm(9000).await.is_none());
    assert!(pve.control.vm(4111).await.is_none());
}

/// Example 000: the user-data snippets land on the shared CephFS directory with the
/// decrypted secrets in them (exactly the placeholders' render with the plaintext), 0600,
/// and every VM's `cicustom` points at its file. The plaintext is in no report.
#[tokio::test]
async fn example_000_snippets_are_written_with_secrets_and_referenced() {
    let pve = fake!(Options {
        nodes: vec!["pve01".into(), "pve02".into(), "pve03".into()],
        time_scale: 0.0,
    });
    let dir = tempfile::tempdir().unwrap();
    let cephfs = dir.path().join("cephfs");
    pve.control.seed_000(&cephfs).await;
    let decryptor = demo_decryptor(dir.path());
    let repo = example("000-hashicorp-cluster");
    let rev = revision(&repo, Some(&decryptor));
    let report = run(
        &pve.client(),
        &rev,
        Policy::default(),
        &on_node("pve01", None),
    )
    .await;
    assert!(
        report.failed.is_empty() && report.skipped.is_empty(),
        "{report:#?}"
    );
    assert_eq!(rev.desired.snippet_files.len(), rev.desired.vms.len());

    let plain = |p: &str| {
        let v = decryptor
            .read_file(&PathBuf::from(format!(
                "{}/../examples/000-hashicorp-cluster/{p}",
                env!("CARGO_MANIFEST_DIR")
            )))
            .unwrap();
        v.get(&pve_gitops_schema::secret::SecretRef::File { file: p.into() })
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    };
    let secrets = [
        (
            "<secret:age:secrets/admin-password.age>",
            plain("secrets/admin-password.age"),
        ),
        (
            "<secret:age:secrets/consul-gossip-key.age>",
            plain("secrets/consul-gossip-key.age"),
        ),
    ];
    let shown = format!("{report:?}");
    for f in &rev.desired.snippet_files {
        let name = f.volume.split_once(":snippets/").unwrap().1;
        let path = cephfs.join("snippets").join(name);
        let got =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut want = f.content.clone();
        for (placeholder, value) in &secrets {
            want = want.replace(placeholder, value.trim());
        }
        assert!(!want.contains("<secret:"), "{want}");
        assert_eq!(got, want, "{name}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let vm = rev.desired.vm(f.vm.as_str()).unwrap();
        let vmid = vm.vmid.map(|v| v.get()).unwrap_or_else(|| {
            // Sets without vmidStart take free ids: find by name.
            0
        });
        if vmid != 0 {
            let c = &pve.control.vm(vmid).await.unwrap()["config"];
            assert_eq!(text(&c["cicustom"]), format!("user={}", f.volume));
        }
    }
    for (_, value) in &secrets {
        assert!(!shown.contains(value.trim()), "a secret in the report");
    }
    // Every VM references its own file.
    let state = pve.control.get("/state").await;
    let with_cicustom = state["guests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| text(&g["config"]["cicustom"]).starts_with("user=cephfs:snippets/pve-gitops-"))
        .count();
    assert_eq!(with_cicustom, rev.desired.vms.len());
}

const LOCAL_SNIPPETS: &str = r#"
apiVersion: pve-gitops/v1alpha1
kind: Snippet
metadata: { name: init }
spec:
  storage: local
  template: |
    #cloud-config
    hostname: {{ vm.name }}
    # {{ vars.greeting }}
  variables: { greeting: hello }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: alpha }
spec:
  vmid: 501
  node: pve1
  disks: [ { slot: scsi0, storage: local-lvm, size: 2G } ]
  cloudInit: { storage: local-lvm, userData: { snippet: init } }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: beta }
spec:
  vmid: 502
  node: pve2
  disks: [ { slot: scsi0, storage: local-lvm, size: 2G } ]
  cloudInit: { storage: local-lvm, userData: { snippet: init } }
"#;

/// Node-local snippet storage: each node's agent writes the files of its own VMs; the
/// leader (pve1) creates a VM on pve2 only once pve2's agent has written its file. A
/// changed snippet is rewritten on exactly the nodes that host VMs using it (pve1, pve2,
/// not pve3) and leaves the running VMs alone.
#[tokio::test]
async fn node_local_snippets_are_written_by_each_node_and_the_leader_waits() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let root = |n: &str| dir.path().join(n);
    let storage_path = Path::new("/srv/pve-snippets");
    pve.control
        .post(
            "/storages",
            json!({ "local": dir_storage(storage_path, false) }),
        )
        .await;
    pve.control
        .post(
            "/node_roots",
            json!({ "pve1": root("pve1"), "pve2": root("pve2"), "pve3": root("pve3") }),
        )
        .await;
    let file = |n: &str, vm: &str| {
        root(n).join(format!(
            "srv/pve-snippets/snippets/pve-gitops-{vm}-init.yaml"
        ))
    };
    let client = pve.client();
    let leader = on_node("pve1", Some(&root("pve1")));
    let followers = [
        on_node("pve2", Some(&root("pve2"))),
        on_node("pve3", Some(&root("pve3"))),
    ];
    let follow_all = |rev: &Revision| {
        let rev_desired = rev.desired.clone();
        let secrets = rev.secrets.clone();
        let client = client.clone();
        let followers = followers.clone();
        async move {
            for f in &followers {
                let prepared = prepare(&client, &rev_desired, &Policy::default())
                    .await
                    .unwrap();
                let options = ApplyOptions {
                    secrets: secrets.clone(),
                    ..f.clone()
                };
                let report = follow(&prepared, &options);
                assert!(report.failed.is_empty(), "{report:?}");
            }
        }
    };

    let rev = revision(&pve_gitops_test_repo(LOCAL_SNIPPETS), None);
    let first = run(&client, &rev, Policy::default(), &leader).await;
    assert!(first.failed.is_empty(), "{first:#?}");
    assert!(first.done.contains_key("alpha"), "{first:#?}");
    assert_eq!(
        first.skipped["beta"],
        "waiting for pve2's agent to write pve-gitops-beta-init.yaml (not there yet)"
    );
    assert!(pve.control.vm(502).await.is_none());
    assert!(file("pve1", "alpha").exists());
    assert!(!file("pve2", "beta").exists() && !file("pve1", "beta").exists());

    follow_all(&rev).await;
    assert_eq!(
        std::fs::read_to_string(file("pve2", "beta")).unwrap(),
        "#cloud-config\nhostname: beta\n# hello\n"
    );
    assert!(!root("pve3").exists(), "pve3 hosts no VM using the snippet");
    let second = run(&client, &rev, Policy::default(), &leader).await;
    assert!(
        second.failed.is_empty() && second.skipped.is_empty(),
        "{second:#?}"
    );
    assert!(second.done.contains_key("beta"));
    let beta = pve.control.vm(502).await.unwrap();
    assert_eq!(
        text(&beta["config"]["cicustom"]),
        "user=local:snippets/pve-gitops-beta-init.yaml"
    );

    // The snippet changes: rewritten where it is needed, nothing else happens.
    let rev = revision(
        &pve_gitops_test_repo(&LOCAL_SNIPPETS.replace("greeting: hello", "greeting: bonjour")),
        None,
    );
    follow_all(&rev).await;
    pve.control.reset_counters().await;
    let third = run(&client, &rev, Policy::default(), &leader).await;
    assert_eq!(
        third.done.keys().collect::<Vec<_>>(),
        ["Snippet/init"],
        "{third:#?}"
    );
    assert_eq!(
        third.done["Snippet/init"],
        ["write pve-gitops-alpha-init.yaml on pve1"]
    );
    assert_eq!(pve.control.counters().await.writes, 0);
    for (n, vm) in [("pve1", "alpha"), ("pve2", "beta")] {
        assert!(
            std::fs::read_to_string(file(n, vm))
                .unwrap()
                .ends_with("# bonjour\n"),
            "{n}"
        );
    }
    assert!(!root("pve3").exists());
}

/// `text` with the External document its references need.
fn pve_gitops_test_repo(text: &str) -> Repository {
    let external = "apiVersion: pve-gitops/v1alpha1\nkind: External\nmetadata: { name: cluster }\n\
                    spec: { nodes: [pve1, pve2, pve3], bridges: [vmbr0], storages: [local, local-lvm] }\n---\n";
    support::pass::repo(&format!("{external}{text}"))
}

const TEMPLATE: &str = r#"
apiVersion: pve-gitops/v1alpha1
kind: StorageDownload
metadata: { name: img }
spec:
  storage: local
  content: import
  url: https://images.example/img.qcow2
  fileName: img.qcow2
  checksum: { algorithm: sha256, value: SHA }
  nodes: [pve1]
---
apiVersion: pve-gitops/v1alpha1
kind: Template
metadata: { name: base }
spec:
  vmid: 9100
  node: pve1
  image: { download: img }
  storage: local-lvm
  cpu: { cores: 2 }
  memory: 1G
  network: [ { bridge: vmbr0 } ]
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: web }
spec:
  vmid: 600
  node: pve1
  clone: { template: base }
  cpu: { cores: 1 }
"#;

/// A template is built once, left alone while its definition is unchanged, and rebuilt
/// (destroyed and created again) when it changes.
#[tokio::test]
async fn a_template_is_rebuilt_only_when_its_definition_changes() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    pve.control
        .post(
            "/storages",
            json!({ "local": dir_storage(&dir.path().join("local"), false) }),
        )
        .await;
    let e = pve
        .control
        .post("/remote_files", json!({ "url": "https://images.example/img.qcow2", "content": "img", "size": 1u64 << 30 }))
        .await;
    let manifests = TEMPLATE.replace("SHA", &text(&e["sha256"]));
    let client = pve.client();
    let options = on_node("pve1", None);
    let rev = revision(&pve_gitops_test_repo(&manifests), None);
    let first = run(&client, &rev, Policy::default(), &options).await;
    assert!(
        first.failed.is_empty() && first.skipped.is_empty(),
        "{first:#?}"
    );
    assert_eq!(first.done["Template/base"], ["create 9100", "template"]);
    assert!(first.done["web"][0].starts_with("create 600"), "{first:#?}");

    pve.control.reset_counters().await;
    let same = run(&client, &rev, Policy::default(), &options).await;
    assert!(same.done.is_empty(), "{same:#?}");
    assert_eq!(pve.control.counters().await.writes, 0);

    let changed = manifests.replace("cpu: { cores: 2 }", "cpu: { cores: 4 }");
    let rev = revision(&pve_gitops_test_repo(&changed), None);
    let rebuilt = run(&client, &rev, Policy::default(), &options).await;
    assert!(rebuilt.failed.is_empty(), "{rebuilt:#?}");
    assert_eq!(
        rebuilt.done["Template/base"],
        ["destroy old 9100", "create 9100", "template"]
    );
    assert_eq!(
        rebuilt.done.len(),
        1,
        "the clone is left alone: {rebuilt:#?}"
    );
    let t = pve.control.vm(9100).await.unwrap();
    assert_eq!(t["template"], true);
    assert_eq!(text(&t["config"]["cores"]), "4");
    assert!(pve.control.vm(600).await.is_some());
}

const CONTAINER: &str = r#"
apiVersion: pve-gitops/v1alpha1
kind: StorageDownload
metadata: { name: debian-ct }
spec:
  storage: local
  content: vztmpl
  url: https://images.example/debian-12-standard_12.7-1_amd64.tar.zst
  fileName: debian-12-standard_12.7-1_amd64.tar.zst
  nodes: [pve1]
---
apiVersion: pve-gitops/v1alpha1
kind: Container
metadata: { name: dns }
spec:
  vmid: 700
  node: pve1
  osTemplate: { download: debian-ct }
  cores: 1
  memory: 512M
  rootfs: { storage: local-lvm, size: 4G }
  network: [ { bridge: vmbr0, ipv4: 192.0.2.53/24, gateway: 192.0.2.1 } ]
"#;

/// A container is created from a downloaded template and started, updated in place, and
/// deleted only when pruning is on.
#[tokio::test]
async fn a_container_converges_is_updated_and_is_deleted_only_with_prune() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    pve.control
        .post(
            "/storages",
            json!({ "local": dir_storage(&dir.path().join("local"), false) }),
        )
        .await;
    serve(
        &pve,
        "https://images.example/debian-12-standard_12.7-1_amd64.tar.zst",
        "rootfs",
        100 << 20,
    )
    .await;
    let client = pve.client();
    let options = on_node("pve1", None);
    let rev = revision(&pve_gitops_test_repo(CONTAINER), None);
    let first = run(&client, &rev, Policy::default(), &options).await;
    assert!(
        first.failed.is_empty() && first.skipped.is_empty(),
        "{first:#?}"
    );
    assert_eq!(first.done["Container/dns"], ["create 700, start"]);
    let c = client.get_ct_config("pve1", 700).await.unwrap();
    assert_eq!(c.text("hostname").as_deref(), Some("dns"));
    assert_eq!(c.text("memory").as_deref(), Some("512"));
    assert!(c.text("net0").unwrap().contains("ip=192.0.2.53/24"));
    assert!(c.text("tags").unwrap().contains("pve-gitops"));
    let state = pve.control.get("/state").await;
    assert_eq!(state["containers"][0]["status"], "running");

    pve.control.reset_counters().await;
    let same = run(&client, &rev, Policy::default(), &options).await;
    assert!(same.done.is_empty(), "{same:#?}");
    assert_eq!(pve.control.counters().await.writes, 0);

    let rev = revision(
        &pve_gitops_test_repo(&CONTAINER.replace("cores: 1", "cores: 2")),
        None,
    );
    let updated = run(&client, &rev, Policy::default(), &options).await;
    assert_eq!(
        updated.done["Container/dns"],
        ["configure cores"],
        "{updated:#?}"
    );
    assert_eq!(
        client
            .get_ct_config("pve1", 700)
            .await
            .unwrap()
            .text("cores")
            .as_deref(),
        Some("2")
    );

    let only_download = CONTAINER.split("---").next().unwrap();
    let rev = revision(&pve_gitops_test_repo(only_download), None);
    let kept = run(&client, &rev, Policy::default(), &options).await;
    assert!(
        kept.skipped["Container/dns"].contains("pruning is off"),
        "{kept:#?}"
    );
    assert!(client.get_ct_config("pve1", 700).await.is_ok());
    let pruned = run(
        &client,
        &rev,
        Policy {
            prune: true,
            ..Policy::default()
        },
        &options,
    )
    .await;
    assert_eq!(
        pruned.done["Container/dns"],
        ["stop", "delete"],
        "{pruned:#?}"
    );
    assert!(client.get_ct_config("pve1", 700).await.is_err());
}
