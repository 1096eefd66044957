//! Drift, deletion safety, adoption and rebuilds end to end: the daemon's passes against
//! fakepve, with changes made behind the agent's back through the simulator's control
//! port, asserting the cluster's state, the writes sent and the status files.

#[macro_use]
mod support;

use pve_gitops::apply::ApplyOptions;
use pve_gitops::daemon::changes::VmList;
use pve_gitops::daemon::sources::Directory;
use pve_gitops::daemon::{Daemon, DaemonOptions, Outcome};
use pve_gitops::plan::PolicyOverrides;
use pve_gitops::report::status::ClusterStatus;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::control::{text, Control};
use support::fakepve::{FakePve, Options};

const HEAD: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
";

/// The cluster's policy document.
fn policy(spec: &str) -> String {
    format!("---\napiVersion: pve-gitops/v1alpha1\nkind: ClusterPolicy\nmetadata: {{ name: test }}\nspec: {spec}\n")
}

/// `replicas` web VMs (601...) on pve1, with what PVE rewrites: a generated MAC, tags,
/// booleans, cloud-init keys and addresses.
fn web(replicas: u32, extra: &str) -> String {
    format!(
        "---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: web }}
spec:
  replicas: {replicas}
  vmidStart: 601
  nodes: [pve1]
  template:
    clone: {{ template: 9000 }}
    memory: 1G
    cpu: {{ cores: 2 }}
    agent: true
    startOnBoot: true
    tags: [web]
    network: [ {{ bridge: vmbr0 }} ]
    cloudInit:
      sshKeys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDrift ops@example\"]
      ipConfig: [ {{ ipv4: {{ cidr: 10.0.0.0/24, offset: 10 }}, gateway: 10.0.0.1 }} ]
{extra}"
    )
}

struct Agent {
    daemon: Daemon,
    repo: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn new(pve: &FakePve, manifests: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let state = dir.path().join("state");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(repo.join("m.yaml"), manifests).unwrap();
        Agent {
            daemon: daemon(pve, &repo, &state),
            repo,
            state,
            _dir: dir,
        }
    }

    fn edit(&self, manifests: &str) {
        std::fs::write(self.repo.join("m.yaml"), manifests).unwrap();
    }

    /// A restarted agent: same manifests and state directory, nothing in memory.
    fn restart(&mut self, pve: &FakePve) {
        self.daemon = daemon(pve, &self.repo, &self.state);
    }

    /// One full pass that must not fail: what it did per VM, and the status.
    async fn pass(
        &mut self,
    ) -> (
        std::collections::BTreeMap<String, Vec<String>>,
        ClusterStatus,
    ) {
        match self.daemon.tick().await.unwrap() {
            Outcome::Reconciled { report, status, .. } => {
                assert!(report.failed.is_empty(), "{:?}", report.failed);
                (report.done, *status)
            }
            other => panic!("expected a full pass, got {other:?}"),
        }
    }
}

fn daemon(pve: &FakePve, repo: &Path, state: &Path) -> Daemon {
    let options = DaemonOptions {
        cluster: "test".into(),
        node: "pve1".into(),
        decryptor: None,
        interval: Duration::from_secs(15),
        resync: Duration::from_secs(3600),
        passes: None,
        state_dir: Some(state.to_path_buf()),
        policy: PolicyOverrides::default(),
        apply: ApplyOptions::default(),
        clock: Default::default(),
    };
    // No pmxcfs guest list: every pass is a full one.
    let vmlist = VmList(state.join("no-vmlist"));
    Daemon::new(
        pve.client(),
        Box::new(Directory(repo.to_path_buf())),
        Box::new(vmlist),
        options,
    )
}

async fn started(time_scale: f64) -> Option<FakePve> {
    let pve = FakePve::start(Options {
        time_scale,
        ..Options::default()
    })?;
    pve.control.create_template(9000, "pve1", "local-lvm").await;
    Some(pve)
}

async fn config(control: &Control, vmid: u32, key: &str) -> String {
    let vm = control
        .vm(vmid)
        .await
        .unwrap_or_else(|| panic!("VM {vmid} exists"));
    text(&vm["config"][key])
}

async fn delete_behind_the_back(pve: &FakePve, vmid: u32) {
    let client = pve.client();
    let upid = client.stop_vm("pve1", vmid).await.unwrap();
    client
        .wait_task(&upid, Duration::from_secs(30))
        .await
        .unwrap();
    let upid = client.delete_vm("pve1", vmid, true, true).await.unwrap();
    client
        .wait_task(&upid, Duration::from_secs(30))
        .await
        .unwrap();
}

/// Memory, a tag and a whole VM changed behind the agent's back, once converged.
async fn tamper(pve: &FakePve) {
    pve.control
        .update_vm(601, json!({"config": {"memory": 2048}}))
        .await;
    pve.control
        .update_vm(602, json!({"config": {"tags": "pve-gitops;web;hand-made"}}))
        .await;
    delete_behind_the_back(pve, 603).await;
}

fn drift_md(status: &ClusterStatus) -> Option<String> {
    pve_gitops::report::files(status, None)
        .get("drift.md")
        .cloned()
}

fn fields(status: &ClusterStatus) -> Vec<(String, String, String, String, String)> {
    status
        .drift
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.field.clone(),
                d.desired.clone(),
                d.actual.clone(),
                d.action.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn report_mode_reports_drift_without_writing() {
    let Some(pve) = started(0.0).await else {
        return;
    };
    let control = &pve.control;
    let mut agent = Agent::new(&pve, &format!("{HEAD}{}", web(3, "")));
    let (done, _) = agent.pass().await;
    assert_eq!(done.len(), 3, "{done:?}");

    // What PVE fills in or spells its own way is not drift: a regenerated MAC, defaults
    // the manifests do not set, tag order, re-encoded SSH keys, spaced addresses,
    // booleans as `on`, the agent option's long form.
    control
        .update_vm(
            601,
            json!({"config": {
                "net0": "virtio=BC:24:11:AB:CD:EF,bridge=vmbr0",
                "scsihw": "virtio-scsi-single",
                "ostype": "l26",
                "tags": "web;pve-gitops",
                "sshkeys": "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIDrift%20ops@example%0A",
                "ipconfig0": "gw=10.0.0.1, ip=10.0.0.10/24",
                "onboot": "on",
                "agent": "enabled=1,fstrim_cloned_disks=1",
            }}),
        )
        .await;
    control.reset_counters().await;
    let (done, status) = agent.pass().await;
    assert!(done.is_empty(), "{done:?}");
    assert!(status.drift.is_empty(), "{:?}", status.drift);
    assert_eq!(drift_md(&status), None);
    assert_eq!(control.counters().await.writes, 0);

    tamper(&pve).await;
    control.reset_counters().await;
    let (done, status) = agent.pass().await;
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(
        control.counters().await.writes,
        0,
        "report mode writes nothing"
    );
    assert_eq!(config(control, 601, "memory").await, "2048");
    assert!(control.vm(603).await.is_none());
    assert_eq!(
        drift_md(&status).expect("drift.md"),
        "# Drift in test

Fields changed outside pve-gitops since they were applied. `reported`: left as found (drift mode `report`); `healed`: set back to the manifests' value in this pass.

| resource | vmid | field | desired | actual | action |
|---|---|---|---|---|---|
| VirtualMachine/web-1 | 601 | memory | 1024 | 2048 | reported |
| VirtualMachine/web-2 | 602 | tags | pve-gitops;web | pve-gitops;web;hand-made | reported |
| VirtualMachine/web-3 | 603 | vm | present | missing | reported |
"
    );
    let yaml = &pve_gitops::report::files(&status, None)["status.yaml"];
    assert!(
        yaml.contains("drift:\n- kind: VirtualMachine\n  name: web-1\n  vmid: 601\n  field: memory\n  desired: '1024'\n  actual: '2048'\n  action: reported\n"),
        "{yaml}"
    );
    let web3 = status.resources.iter().find(|r| r.name == "web-3").unwrap();
    assert_eq!(
        (web3.state.as_str(), web3.sync.as_str()),
        ("missing", "drift")
    );
    let md = &pve_gitops::report::files(&status, None)["STATUS.md"];
    assert!(md.contains("Drift: 3 fields changed outside pve-gitops, 0 healed, 3 reported. See [drift.md](drift.md)."), "{md}");

    // Still reported, never recreated, also by an agent restarted from its state dir.
    agent.restart(&pve);
    control.reset_counters().await;
    let (_, again) = agent.pass().await;
    assert_eq!(fields(&again), fields(&status));
    assert_eq!(control.counters().await.writes, 0);
}

#[tokio::test]
async fn heal_mode_sets_drift_back_and_says_so() {
    let Some(pve) = started(0.0).await else {
        return;
    };
    let control = &pve.control;
    let manifests = format!(
        "{HEAD}{}{}",
        policy("{ drift: { mode: heal } }"),
        web(3, "")
    );
    let mut agent = Agent::new(&pve, &manifests);
    agent.pass().await;
    tamper(&pve).await;
    let (done, status) = agent.pass().await;
    assert_eq!(
        fields(&status),
        [
            ("web-1", "memory", "1024", "2048", "healed"),
            (
                "web-2",
                "tags",
                "pve-gitops;web",
                "pve-gitops;web;hand-made",
                "healed"
            ),
            ("web-3", "vm", "present", "missing", "healed"),
        ]
        .map(|(a, b, c, d, e)| (a.into(), b.into(), c.into(), d.into(), e.into()))
    );
    assert_eq!(done["web-1"], ["configure memory"]);
    assert_eq!(done["web-2"], ["configure tags"]);
    assert!(
        done["web-3"].contains(&"create 603".to_string()),
        "{done:?}"
    );
    assert_eq!(config(control, 602, "tags").await, "pve-gitops;web");
    assert_eq!(config(control, 603, "memory").await, "1024");
    // Memory on a running VM waits for a reboot in PVE: healed as far as PVE allows, and
    // not planned again.
    control.reset_counters().await;
    let (done, status) = agent.pass().await;
    assert!(done.is_empty(), "{done:?}");
    assert!(status.drift.is_empty(), "{:?}", status.drift);
    assert_eq!(drift_md(&status), None);
    assert_eq!(control.counters().await.writes, 0);
}

#[tokio::test]
async fn ignore_mode_leaves_drift_alone_and_quiet() {
    let Some(pve) = started(0.0).await else {
        return;
    };
    let control = &pve.control;
    // The cluster reports; the VMs' own mode says ignore.
    let manifests = format!(
        "{HEAD}{}{}",
        policy("{ drift: { mode: report } }"),
        web(3, "    drift: { mode: ignore }\n")
    );
    let mut agent = Agent::new(&pve, &manifests);
    agent.pass().await;
    tamper(&pve).await;
    for _ in 0..2 {
        control.reset_counters().await;
        let (done, status) = agent.pass().await;
        assert!(done.is_empty(), "{done:?}");
        assert!(status.drift.is_empty(), "{:?}", status.drift);
        assert_eq!(control.counters().await.writes, 0);
    }
    assert_eq!(config(control, 601, "memory").await, "2048");
    assert_eq!(
        config(control, 602, "tags").await,
        "pve-gitops;web;hand-made"
    );
    assert!(control.vm(603).await.is_none());

    // A manifest change is always applied, drift included (the VM is synced as a
    // whole). A VM deleted behind the agent's back has no record left to compare: it
    // stays missing until drift is healed (`--drift heal` once, or the mode).
    agent.edit(&manifests.replace("memory: 1G", "memory: 1536M"));
    let (done, _) = agent.pass().await;
    assert_eq!(done["web-2"], ["configure memory,tags,description"]);
    assert_eq!(config(control, 602, "tags").await, "pve-gitops;web");
    assert!(control.vm(603).await.is_none());
}

#[tokio::test]
async fn ignored_fields_are_not_drift() {
    let Some(pve) = started(0.0).await else {
        return;
    };
    let control = &pve.control;
    let manifests = format!(
        "{HEAD}{}{}",
        policy("{ drift: { mode: report, ignoreFields: [tags] } }"),
        web(1, "    drift: { ignoreFields: [memory] }\n")
    );
    let mut agent = Agent::new(&pve, &manifests);
    agent.pass().await;
    control
        .update_vm(
            601,
            json!({"config": {"memory": 4096, "tags": "pve-gitops;web;x", "cores": 4}}),
        )
        .await;
    control.reset_counters().await;
    let (_, status) = agent.pass().await;
    assert_eq!(
        fields(&status),
        [(
            "web-1".into(),
            "cores".into(),
            "2".into(),
            "4".into(),
            "reported".into()
        )]
    );
    assert_eq!(control.counters().await.writes, 0);
}

/// An emptied repository deletes nothing; removing 2 of 20 deletes exactly those 2; a
/// protected VM is never deleted.
#[tokio::test]
async fn the_delete_guard_and_protection() {
    let Some(pve) = started(0.0).await else {
        return;
    };
    let control = &pve.control;
    let prune = policy("{ prune: { enabled: true, disks: true } }");
    let db = "---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: db }
spec: { vmid: 700, node: pve1, clone: { template: 9000 }, memory: 256M, protection: true }
";
    // Small VMs: 21 of them fit pve1.
    let web = |n| web(n, "").replace("memory: 1G", "memory: 256M");
    let mut agent = Agent::new(&pve, &format!("{HEAD}{prune}{}{db}", web(20)));
    let (done, _) = agent.pass().await;
    assert_eq!(done.len(), 21);
    assert_eq!(config(control, 700, "protection").await, "1");

    control.reset_counters().await;
    agent.edit(&format!("{HEAD}{prune}"));
    let (done, status) = agent.pass().await;
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(control.counters().await.writes, 0);
    assert_eq!(
        status.prune_refused.as_deref(),
        Some("pruning would delete 20 of 21 owned guests, more than maxDeleteShare 30%: nothing was deleted")
    );
    let md = &pve_gitops::report::files(&status, None)["STATUS.md"];
    assert!(
        md.contains("> **Pruning refused:** pruning would delete 20 of 21"),
        "{md}"
    );
    let kept = status
        .resources
        .iter()
        .filter(|r| r.sync.as_str() == "orphan")
        .count();
    assert_eq!(kept, 21);

    agent.edit(&format!("{HEAD}{prune}{}{db}", web(18)));
    let (done, status) = agent.pass().await;
    assert_eq!(done.keys().collect::<Vec<_>>(), ["web-19", "web-20"]);
    assert_eq!(status.prune_refused, None);
    assert!(control.vm(619).await.is_none());
    assert!(control.vm(620).await.is_none());
    assert!(control.vm(618).await.is_some());
    assert_eq!(status.counts.deleted, 2);

    // The protected VM, no longer declared, stays (one of 19 is under the share).
    agent.edit(&format!("{HEAD}{prune}{}", web(18)));
    let (done, status) = agent.pass().await;
    assert!(done.is_empty(), "{done:?}");
    assert!(control.vm(700).await.is_some());
    let db = status.resources.iter().find(|r| r.name == "db").unwrap();
    assert_eq!(db.message.as_deref(), Some("no longer declared; protected"));
}

/// Without `prune.disks` a pruned VM is stopped and tagged, keeps its disks and is left
/// alone afterwards; pruning off (the default) keeps it untouched.
#[tokio::test]
async fn prune_without_disks_stops_and_tags() {
    let Some(pve) = started(0.0).await else {
        return;
    };
    let control = &pve.control;
    let mut agent = Agent::new(&pve, &format!("{HEAD}{}", web(4, "")));
    agent.pass().await;
    agent.edit(&format!("{HEAD}{}", web(3, "")));
    control.reset_counters().await;
    let (done, status) = agent.pass().await;
    assert!(done.is_empty(), "pruning is off by default: {done:?}");
    assert_eq!(control.counters().await.writes, 0);
    let web4 = status.resources.iter().find(|r| r.name == "web-4").unwrap();
    assert_eq!(
        web4.message.as_deref(),
        Some("no longer declared; pruning is off")
    );

    let prune = policy("{ prune: { enabled: true } }");
    agent.edit(&format!("{HEAD}{prune}{}", web(3, "")));
    let (done, _) = agent.pass().await;
    assert_eq!(
        done["web-4"],
        ["stop", "retire (tagged pve-gitops-orphan, disks kept)"]
    );
    let vm = control.vm(604).await.expect("kept");
    assert_eq!(text(&vm["status"]), "stopped");
    assert_eq!(
        text(&vm["config"]["tags"]),
        "pve-gitops;pve-gitops-orphan;web"
    );
    assert!(text(&vm["config"]["scsi0"]).contains("vm-604-disk"), "{vm}");
    control.reset_counters().await;
    let (done, status) = agent.pass().await;
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(control.counters().await.writes, 0);
    let web4 = status.resources.iter().find(|r| r.name == "web-4").unwrap();
    assert_eq!(
        web4.message.as_deref(),
        Some("no longer declared; pruned: stopped and tagged pve-gitops-orphan, disks kept")
    );
}

#[tokio::test]
async fn adopt_takes_over_an_existing_vm() {
    let Some(pve) = started(0.0).await else {
        return;
    };
    let control = &pve.control;
    control
        .create_vm(
            json!({"vmid": 650, "name": "legacy", "node": "pve1", "status": "running",
            "config": {"memory": 512, "cores": 1, "description": "Set up by hand in 2019."}}),
        )
        .await;
    let vm = |adopt: bool| {
        format!(
            "{HEAD}---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: {{ name: legacy }}
spec: {{ vmid: 650, node: pve1, memory: 1G, cpu: {{ cores: 1 }}, adopt: {adopt} }}
"
        )
    };
    let mut agent = Agent::new(&pve, &vm(false));
    control.reset_counters().await;
    let (done, status) = agent.pass().await;
    assert!(done.is_empty());
    assert_eq!(control.counters().await.writes, 0);
    assert_eq!(status.resources[0].sync.as_str(), "blocked");

    agent.edit(&vm(true));
    let (done, _) = agent.pass().await;
    assert_eq!(done["legacy"], ["configure memory,tags,description"]);
    assert_eq!(config(control, 650, "tags").await, "pve-gitops");
    assert_eq!(config(control, 650, "cores").await, "1");
    let description = config(control, 650, "description").await;
    assert!(
        description.starts_with("Set up by hand in 2019.\n\npve-gitops: applied="),
        "the operator's notes stay: {description}"
    );
    control.reset_counters().await;
    let (done, _) = agent.pass().await;
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(control.counters().await.writes, 0);
}

/// A bumped rebuild token destroys and recreates exactly that VM, once: the token is
/// recorded in the VM, so neither the next pass nor a restarted agent rebuilds again.
#[tokio::test]
async fn a_bumped_rebuild_token_recreates_that_vm_once() {
    let Some(pve) = started(0.0).await else {
        return;
    };
    let control = &pve.control;
    let manifests = |token: &str| {
        format!(
            "{HEAD}{}",
            web(
                3,
                &format!("  overrides:\n    web-2: {{ rebuild: \"{token}\" }}\n")
            )
        )
    };
    let mut agent = Agent::new(&pve, &manifests("2025-06-01"));
    agent.pass().await;
    let uuid = config(control, 602, "smbios1").await;
    control.reset_counters().await;
    let (done, _) = agent.pass().await;
    assert!(done.is_empty(), "{done:?}");

    agent.edit(&manifests("2025-06-02"));
    control.reset_counters().await;
    let (done, status) = agent.pass().await;
    assert_eq!(done.keys().collect::<Vec<_>>(), ["web-2"]);
    assert_eq!(done["web-2"][..3], ["stop", "delete", "create 602"]);
    let c = control.counters().await;
    assert_eq!(c.path("DELETE", "/nodes/pve1/qemu/602"), 1);
    assert_eq!(c.path("DELETE", "/nodes/pve1/qemu/601"), 0);
    assert_ne!(config(control, 602, "smbios1").await, uuid, "a new VM");
    assert_eq!(text(&control.vm(602).await.unwrap()["status"]), "running");
    assert_eq!(status.counts.created, 1);

    for restart in [false, true] {
        if restart {
            agent.restart(&pve);
        }
        control.reset_counters().await;
        let (done, _) = agent.pass().await;
        assert!(done.is_empty(), "{done:?}");
        assert_eq!(control.counters().await.writes, 0);
    }
}
