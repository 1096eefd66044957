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
use pve_gitops::secrets::Decryptor;
use serde_json::{json, Value};
use support::control::text;
use support::examples::{demo_decryptor, examples};
use support::fakepve::{FakePve, Options};

fn revision(name: &str) -> Revision {
    revision_with(name, None)
}

/// The example, its secrets decrypted with `decryptor`.
fn revision_with(name: &str, decryptor: Option<&Decryptor>) -> Revision {
    let repo = pve_gitops::manifests::read_dir(&examples().join(name)).expect("example readable");
    load(&repo, decryptor).unwrap_or_else(|e| panic!("{}", e.join("\n")))
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
    pve.control.seed_000(&cephfs).await;
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

/// Seed 001: three Talos clusters (sol 3+3, luna 3+3, terra 1+2) created from scratch:
/// the Talos ISO downloaded to every node and attached as ide2, the EVPN zone with one
/// vnet and two subnets per cluster applied once, the datacenter firewall and each
/// guest's, one pool per cluster with its members, the SOPS-encrypted machine configs
/// rendered to CephFS, sol-wk-1 pinned to pve01 with the GPU, control planes gated on the
/// Talos API port before the workers start.
#[tokio::test]
async fn example_001_converges_from_empty_and_then_writes_nothing() {
    let nodes = ["pve01", "pve02", "pve03"];
    let pve = fake!(Options {
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        time_scale: 0.0,
    });
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    pve.control.ceph(json!({ "add_storage": "rbd" })).await;
    pve.control
        .shared_dir_storage("resources", &resources)
        .await;
    pve.control.roomy(&["rbd", "resources"]).await;
    let iso = pve
        .control
        .post(
            "/remote_files",
            json!({ "url": "https://artifacts.example.com/talos/v1.11.5/talos-frr-v1.11.5-nocloud-amd64.iso",
                    "content": "talos iso", "size": 100u64 << 20 }),
        )
        .await;
    let mut repo =
        pve_gitops::manifests::read_dir(&examples().join("001-talos-multicluster")).unwrap();
    let text = repo
        .text("common/talos-iso.yaml")
        .unwrap()
        .replace(&"0".repeat(64), &text(&iso["sha256"]));
    repo.add("common/talos-iso.yaml", text);
    let decryptor = demo_decryptor(dir.path());
    let rev = load(&repo, Some(&decryptor)).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    // The Talos API "answers" on every control plane's address.
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut probes = std::collections::BTreeMap::new();
    for (id, n) in [(101, 3), (102, 3), (103, 1)] {
        for host in 11..11 + n {
            let addr: std::net::SocketAddr = format!("10.0.{id}.{host}:50000").parse().unwrap();
            probes.insert(addr, api.local_addr().unwrap());
        }
    }
    let options = ApplyOptions {
        node: Some("pve01".into()),
        secrets: rev.secrets.clone(),
        tcp_probes: Some(std::sync::Arc::new(probes)),
        ..ApplyOptions::default()
    };
    let report = converge(&pve, &rev, &options).await;
    // `nodes: all` on a shared storage: downloaded once, seen by every node.
    assert_eq!(
        report.done["StorageDownload/talos-iso"],
        ["download talos-frr-v1.11.5-nocloud-amd64.iso to pve01"],
        "{report:#?}"
    );

    // Guests: names, vmids, nodes, disks, NICs, the ISO, the cloud-init drive, pools.
    let guests = guests(&pve).await;
    let state = pve.control.state().await;
    let mut count = 0;
    for (cluster, id, cps, wks) in [
        ("sol", 101, 3, 3),
        ("luna", 102, 3, 3),
        ("terra", 103, 1, 2),
    ] {
        let members: Vec<(String, u32, usize, &str)> = (0..cps)
            .map(|i| {
                (
                    format!("{cluster}-cp-{}", i + 1),
                    id * 100 + 11 + i as u32,
                    i,
                    "controlplane",
                )
            })
            .chain((0..wks).map(|i| {
                (
                    format!("{cluster}-wk-{}", i + 1),
                    id * 100 + 21 + i as u32,
                    i,
                    "worker",
                )
            }))
            .collect();
        let mut pool: Vec<u64> = Vec::new();
        for (name, vmid, i, role) in members {
            count += 1;
            let vm = guests
                .get(&name)
                .unwrap_or_else(|| panic!("{name} created"));
            assert_eq!(vm["vmid"], vmid, "{name}");
            let pinned = name == "sol-wk-1";
            let node = if pinned { "pve01" } else { nodes[i % 3] };
            assert_eq!(vm["node"], node, "{name}");
            assert_eq!(vm["status"], "running", "{name}");
            assert_eq!(vm["pool"], format!("talos-{cluster}"), "{name}");
            pool.push(vmid.into());
            let ide2 = config(vm, "ide2");
            assert!(
                ide2.starts_with("resources:iso/talos-frr-v1.11.5-nocloud-amd64.iso"),
                "{name}: {ide2}"
            );
            assert!(
                config(vm, "ide0").starts_with("rbd:"),
                "{name}: {}",
                vm["config"]
            );
            assert!(config(vm, "scsi0").contains("size=64G"), "{name}");
            assert!(
                config(vm, "net0").contains(&format!("bridge=vnet{id}")),
                "{name}"
            );
            let net1 = config(vm, "net1");
            assert!(
                net1.contains("bridge=vmbr0") && net1.contains(&format!("tag={id}")),
                "{name}"
            );
            assert!(net1.contains("firewall=1"), "{name}: {net1}");
            let host = if role == "worker" { 21 + i } else { 11 + i };
            assert!(
                config(vm, "ipconfig0")
                    .starts_with(&format!("ip=10.0.{id}.{host}/24,gw=10.0.{id}.254")),
                "{name}: {}",
                config(vm, "ipconfig0")
            );
            assert_eq!(config(vm, "ipconfig1"), "ip6=auto", "{name}");
            assert!(
                config(vm, "cicustom")
                    .starts_with(&format!("user=resources:snippets/pve-gitops-{name}-")),
                "{name}"
            );
            let tags = config(vm, "tags");
            for t in [
                "talos",
                "pve-gitops",
                &format!("cluster-{cluster}"),
                &format!("role-{role}"),
            ] {
                assert!(tags.split(';').any(|x| x == t), "{name}: {t} in {tags}");
            }
            if pinned {
                assert_eq!(config(vm, "machine"), "q35");
                assert!(
                    config(vm, "hostpci0").contains("mapping=gpu-rtx4000"),
                    "{}",
                    vm["config"]
                );
                assert_eq!(config(vm, "memory"), "32768");
            } else {
                assert!(vm["config"].get("hostpci0").is_none(), "{name}");
            }
            // The guest firewall: options and the `talos` group.
            let rules: Vec<Value> = pve
                .client()
                .get(
                    &format!("/nodes/{node}/qemu/{vmid}/firewall/rules"),
                    &pve_gitops::pve::Params::new(),
                )
                .await
                .unwrap();
            assert_eq!(rules.len(), 1, "{name}: {rules:?}");
            assert_eq!(
                (&rules[0]["type"], &rules[0]["action"]),
                (&json!("group"), &json!("talos"))
            );
        }
        pool.sort();
        assert_eq!(
            state["pools"][format!("talos-{cluster}")],
            json!(pool),
            "{cluster}"
        );
    }
    assert_eq!(count, 15);
    assert_eq!(guests.len(), 15);

    // SDN: one EVPN zone, a vnet and two subnets per cluster, applied once.
    let sdn = pve.control.get("/sdn").await;
    assert_eq!(sdn["applies"], 1, "{sdn}");
    let running = &sdn["running"];
    assert_eq!(running["zones"]["talos"]["type"], "evpn");
    for id in [101, 102, 103] {
        assert_eq!(running["vnets"][format!("vnet{id}")]["tag"], 10000 + id);
        assert_eq!(
            running["subnets"][format!("talos-10.0.{id}.0-24")]["gateway"],
            format!("10.0.{id}.254")
        );
        assert!(running["subnets"][format!("talos-fd00:{id}::-64")].is_object());
    }
    for node in nodes {
        let content: Vec<Value> = pve
            .client()
            .get(
                &format!("/nodes/{node}/storage/resources/content"),
                &pve_gitops::pve::Params::new().with("content", "iso"),
            )
            .await
            .unwrap();
        assert!(
            content
                .iter()
                .any(|c| c["volid"] == "resources:iso/talos-frr-v1.11.5-nocloud-amd64.iso"),
            "{node}: {content:?}"
        );
    }
    // The datacenter firewall's group, IP sets and aliases.
    let group: Vec<Value> = pve
        .client()
        .get(
            "/cluster/firewall/groups/talos",
            &pve_gitops::pve::Params::new(),
        )
        .await
        .unwrap();
    assert_eq!(group.len(), 5);
    // Each VM's machine config on CephFS, the SOPS secrets rendered in.
    let snippets: Vec<_> = std::fs::read_dir(resources.join("snippets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snippets.len(), 15);
    for f in &snippets {
        let content = std::fs::read_to_string(f).unwrap();
        assert!(!content.contains("<secret:"), "{}", f.display());
    }
    // Control planes passed their gate before any worker of their cluster started.
    let requests = pve.control.requests(100_000).await;
    let started = |vmid: u32| {
        requests
            .iter()
            .position(|(m, p, _)| m == "POST" && p.ends_with(&format!("/qemu/{vmid}/status/start")))
            .unwrap_or_else(|| panic!("{vmid} started"))
    };
    assert!((10111..=10113).map(started).max() < (10121..=10123).map(started).min());
}
