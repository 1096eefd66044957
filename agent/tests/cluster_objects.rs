//! SDN, firewall and pools of the seed examples against fakepve (with the harness's
//! stateful SDN): they converge from an empty cluster, a second pass writes nothing, one
//! changed object costs exactly its own write (and for SDN exactly one apply), and VMs get
//! into their pools.

#[macro_use]
mod support;

use pve_gitops::apply::cluster::{after_vms, before_vms, prepare, ClusterPlan};
use pve_gitops::apply::{ApplyOptions, Report};
use pve_gitops::plan::actual::ActualVm;
use pve_gitops::plan::{Plan, Policy};
use pve_gitops::pve::{Idempotency, Params, PveClient};
use pve_gitops_schema::desired::DesiredVm;
use pve_gitops_schema::{load, DesiredState, Repository};
use serde_json::{json, Value};
use std::path::Path;
use support::fakepve::{FakePve, Options};

fn example(name: &str) -> DesiredState {
    example_with(name, |_| {})
}

/// An example with `edit` made to its files first.
fn example_with(name: &str, edit: impl FnOnce(&mut Repository)) -> DesiredState {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let mut repo: Repository = pve_gitops::manifests::read_dir(&dir).expect("example readable");
    edit(&mut repo);
    load(&repo).unwrap_or_else(|e| panic!("{e}"))
}

/// The cluster objects' part of a pass, around VMs that exist already (`observed`):
/// what runs before the VMs, then what runs after them.
async fn objects_pass(
    client: &PveClient,
    desired: &DesiredState,
    observed: &[ActualVm],
) -> (ClusterPlan, Report) {
    let cluster = prepare(client, desired, &Policy::default())
        .await
        .expect("observe");
    let options = ApplyOptions::default();
    let plan = Plan::default();
    let mut report = before_vms(client, &cluster, &plan, &options).await;
    after_vms(client, &cluster, &plan, observed, &options, &mut report).await;
    (cluster, report)
}

async fn converge_twice(pve: &FakePve, desired: &DesiredState, observed: &[ActualVm]) -> Report {
    let client = pve.client();
    let (_, report) = objects_pass(&client, desired, observed).await;
    assert!(report.failed.is_empty(), "{report:?}");
    pve.control.reset_counters().await;
    let (plan, again) = objects_pass(&client, desired, observed).await;
    assert!(plan.is_empty(), "{:?}", plan.sdn);
    assert!(again.done.is_empty(), "{again:?}");
    assert_eq!(pve.control.counters().await.writes, 0);
    report
}

async fn sdn_state(pve: &FakePve) -> Value {
    pve.control.get("/sdn").await
}

/// Seed 004: a simple zone on the one node, its vnet and the 10.41.1.0/24 subnet with
/// gateway and SNAT, staged and applied once.
#[tokio::test]
async fn seed_004_sdn_converges_with_one_apply() {
    let pve = fake!(Options {
        nodes: vec!["pve".into()],
        time_scale: 0.0,
    });
    let desired = example("004-tiered-storage");
    let report = converge_twice(&pve, &desired, &[]).await;
    assert_eq!(
        report.done["SdnSubnet/ecoma-nodes"],
        ["create ecoma-10.41.1.0-24", "applied"]
    );
    let state = sdn_state(&pve).await;
    assert_eq!(state["applies"], 1, "{state}");
    let running = &state["running"];
    assert_eq!(running["zones"]["ecoma"]["type"], "simple");
    assert_eq!(running["zones"]["ecoma"]["nodes"], "pve");
    assert_eq!(running["vnets"]["ecomanet"]["zone"], "ecoma");
    assert_eq!(running["vnets"]["ecomanet"]["alias"], "Ecoma k3s nodes");
    let subnet = &running["subnets"]["ecoma-10.41.1.0-24"];
    assert_eq!(subnet["gateway"], "10.41.1.1");
    assert_eq!(subnet["snat"], 1);
}

/// Seed 001: the EVPN zone, one vnet and two subnets (v4 and v6) per Talos cluster, the
/// clusters' pools; changing one subnet stages exactly that subnet and applies once.
#[tokio::test]
async fn seed_001_sdn_and_pools_converge_and_one_subnet_change_is_one_write() {
    let pve = fake!(Options {
        nodes: vec!["pve01".into(), "pve02".into(), "pve03".into()],
        time_scale: 0.0,
    });
    let mut desired = example("001-talos-multicluster");
    assert!(desired.sdn_subnets.len() >= 6 && desired.pools.len() >= 3);
    converge_twice(&pve, &desired, &[]).await;
    let state = sdn_state(&pve).await;
    assert_eq!(state["applies"], 1);
    let running = &state["running"];
    assert_eq!(running["zones"]["talos"]["type"], "evpn");
    assert_eq!(running["zones"]["talos"]["vrf-vxlan"], 10000);
    assert_eq!(running["vnets"]["vnet101"]["tag"], 10101);
    assert_eq!(
        running["subnets"]["talos-fd00:101::-64"]["gateway"],
        "fd00:101::ffff"
    );
    let pools = pve.control.state().await["pools"].clone();
    assert!(pools.get("talos-sol").is_some(), "{pools}");

    // One subnet's gateway changes in the manifests.
    let s = desired
        .sdn_subnets
        .iter_mut()
        .find(|s| s.name.as_str() == "sol-v4")
        .expect("sol-v4");
    s.spec.gateway = Some("10.0.101.1".parse().unwrap());
    pve.control.reset_counters().await;
    let (_, report) = objects_pass(&pve.client(), &desired, &[]).await;
    assert!(report.failed.is_empty(), "{report:?}");
    let c = pve.control.counters().await;
    assert_eq!(c.endpoint("PUT /cluster/sdn"), 1, "{:?}", c.by_endpoint);
    assert_eq!(
        c.path(
            "PUT",
            "/cluster/sdn/vnets/vnet101/subnets/talos-10.0.101.0-24"
        ),
        1
    );
    assert_eq!(c.writes, 2, "one subnet update, one apply: {:?}", c.by_path);
    assert_eq!(report.done.keys().collect::<Vec<_>>(), ["SdnSubnet/sol-v4"]);
    let state = sdn_state(&pve).await;
    assert_eq!(
        state["running"]["subnets"]["talos-10.0.101.0-24"]["gateway"],
        "10.0.101.1"
    );
}

/// A change staged by an earlier pass whose apply failed is applied by the next pass,
/// without staging anything again; the VMs on that vnet wait while the apply fails.
#[tokio::test]
async fn failed_apply_is_retried_and_blocks_vms_on_the_vnet() {
    let pve = fake!(Options {
        nodes: vec!["pve".into()],
        time_scale: 0.0,
    });
    let desired = example("004-tiered-storage");
    pve.control
        .fail(
            json!({"method": "PUT", "path": "/cluster/sdn", "status": 500,
                     "message": "could not commit SDN config", "times": 1}),
        )
        .await;
    let client = pve.client();
    let cluster = prepare(&client, &desired, &Policy::default())
        .await
        .unwrap();
    // A plan in which one VM on the vnet and one elsewhere would be created.
    let mut plan = Plan::default();
    let on_vnet = desired
        .vms
        .iter()
        .find(|v| {
            v.spec
                .network
                .iter()
                .any(|n| n.bridge.as_str() == "ecomanet")
        })
        .expect("a VM on ecomanet");
    plan.waves.push(
        [(on_vnet.name.to_string(), Vec::new())]
            .into_iter()
            .collect(),
    );
    let report = before_vms(&client, &cluster, &plan, &ApplyOptions::default()).await;
    assert!(
        report.failed["SdnSubnet/ecoma-nodes"].contains("SDN apply failed"),
        "{report:?}"
    );
    assert!(report.skipped[on_vnet.name.as_str()].contains("SdnVnet/ecomanet"));
    assert_eq!(sdn_state(&pve).await["applies"], 0);

    pve.control.reset_counters().await;
    let (again, report) = objects_pass(&client, &desired, &[]).await;
    assert!(
        again.sdn.steps.is_empty() && again.sdn.apply,
        "{:?}",
        again.sdn
    );
    assert!(report.failed.is_empty(), "{report:?}");
    let c = pve.control.counters().await;
    assert_eq!((c.writes, c.endpoint("PUT /cluster/sdn")), (1, 1));
    assert_eq!(sdn_state(&pve).await["applies"], 1);
}

/// The VMs in fakepve as if an earlier pass had made them, and as observation reports them.
async fn create_vms(pve: &FakePve, vms: &[&DesiredVm]) -> Vec<ActualVm> {
    let mut observed = Vec::new();
    for vm in vms {
        let vmid = vm.vmid.expect("declared vmid").get();
        pve.control
            .create_vm(json!({"vmid": vmid, "name": vm.name.as_str(), "node": vm.node.as_str()}))
            .await;
        observed.push(ActualVm {
            vmid,
            name: vm.name.to_string(),
            node: vm.node.to_string(),
            running: false,
            template: false,
            tags: Default::default(),
            config: Default::default(),
            pending: Default::default(),
            digest: None,
        });
    }
    observed
}

/// The comments of a rule table, in order.
async fn comments(client: &PveClient, path: &str) -> Vec<String> {
    let rules: Vec<Value> = client.get(path, &Params::new()).await.expect("rules");
    rules
        .iter()
        .map(|r| r["comment"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Seed 001's firewalls: the datacenter firewall (options, aliases, IP sets, the `talos`
/// group, node rules) and each Talos VM's (options, the group inserted), from empty and
/// again with nothing to write; the rules enabled and in declared order below a rule an
/// operator added by hand; one changed rule is one write.
#[tokio::test]
async fn seed_001_firewalls_converge_and_one_rule_change_is_one_write() {
    let pve = fake!(Options {
        nodes: vec!["pve01".into(), "pve02".into(), "pve03".into()],
        time_scale: 0.0,
    });
    let client = pve.client();
    // An operator's rule, there before the agent.
    let _: Value = client
        .post(
            "/cluster/firewall/rules",
            &Params::new()
                .with("type", "in")
                .with("action", "ACCEPT")
                .with("macro", "Ping")
                .with("enable", true)
                .with("comment", "by hand"),
            Idempotency::NotIdempotent,
        )
        .await
        .unwrap();
    let mut desired = example("001-talos-multicluster");
    let sol: Vec<&DesiredVm> = desired
        .vms
        .iter()
        .filter(|v| v.labels.get("cluster").map(String::as_str) == Some("sol"))
        .collect();
    let observed = create_vms(&pve, &sol).await;
    let report = converge_twice(&pve, &desired, &observed).await;
    assert!(
        report.done.contains_key("Firewall/datacenter"),
        "{report:?}"
    );
    assert!(report.done["Firewall/sol-cp"]
        .iter()
        .any(|d| d.starts_with("10111: create rule")));

    let cluster = comments(&client, "/cluster/firewall/rules").await;
    assert_eq!(
        cluster,
        [
            "pve-gitops",
            "pve-gitops: PVE web UI and API",
            "pve-gitops: EVPN VXLAN",
            "pve-gitops: EVPN BGP",
            "by hand"
        ]
    );
    let rules: Vec<Value> = client
        .get("/cluster/firewall/rules", &Params::new())
        .await
        .unwrap();
    assert!(rules.iter().all(|r| r["enable"] == 1), "{rules:?}");
    let group = comments(&client, "/cluster/firewall/groups/talos").await;
    assert_eq!(group.len(), 5);
    assert_eq!(group[0], "pve-gitops: apid, trustd between nodes");
    let vm: Vec<Value> = client
        .get("/nodes/pve01/qemu/10121/firewall/rules", &Params::new())
        .await
        .unwrap();
    assert_eq!(
        (vm.len(), &vm[0]["type"], &vm[0]["action"]),
        (1, &json!("group"), &json!("talos"))
    );
    let options: Value = client
        .get("/nodes/pve01/qemu/10121/firewall/options", &Params::new())
        .await
        .unwrap();
    assert_eq!(options["policy_in"], "DROP");
    let entries: Vec<Value> = client
        .get("/cluster/firewall/ipset/pve-nodes", &Params::new())
        .await
        .unwrap();
    assert_eq!(entries.len(), 3);

    // The second node rule's port changes.
    let dc = desired
        .firewalls
        .iter_mut()
        .find(|f| f.name.as_str() == "datacenter")
        .unwrap();
    dc.spec.rules[1].dport = Some("8007".into());
    pve.control.reset_counters().await;
    let (_, report) = objects_pass(&client, &desired, &observed).await;
    assert!(report.failed.is_empty(), "{report:?}");
    let c = pve.control.counters().await;
    assert_eq!(c.writes, 1, "{:?}", c.by_path);
    assert_eq!(c.path("PUT", "/cluster/firewall/rules/1"), 1);
    assert_eq!(report.done["Firewall/datacenter"], ["update rule 1"]);
    let rules: Vec<Value> = client
        .get("/cluster/firewall/rules", &Params::new())
        .await
        .unwrap();
    assert_eq!(rules[1]["dport"], "8007");
    assert_eq!(rules[4]["comment"], "by hand");
}

/// Declared VMs join the pool they name; guests the manifests do not declare stay where
/// they are.
#[tokio::test]
async fn vms_join_their_pools() {
    let pve = fake!(Options {
        nodes: vec!["pve01".into(), "pve02".into(), "pve03".into()],
        time_scale: 0.0,
    });
    let desired = example("001-talos-multicluster");
    let members: Vec<_> = desired
        .vms
        .iter()
        .filter(|v| {
            v.spec
                .pool
                .as_ref()
                .is_some_and(|p| p.as_str() == "talos-sol")
        })
        .collect();
    assert_eq!(members.len(), 6);
    let observed = create_vms(&pve, &members).await;
    pve.control
        .create_vm(json!({"vmid": 999, "name": "foreign", "node": "pve01", "pool": "talos-sol"}))
        .await;
    let report = converge_twice(&pve, &desired, &observed).await;
    assert_eq!(
        report.done["Pool/talos-sol"],
        ["comment", "add 10111,10112,10113,10121,10122,10123"]
    );
    let pools = pve.control.state().await["pools"].clone();
    assert_eq!(
        pools["talos-sol"],
        json!([999, 10111, 10112, 10113, 10121, 10122, 10123])
    );
}

/// Seed 004 end to end: the SDN before the VMs, the VMs on its vnet with their labels as
/// PVE tags (`role-cpl`, `provider-proxmox`, beside the ownership tag).
#[tokio::test]
async fn seed_004_vms_get_label_tags_on_the_vnet() {
    let pve = fake!(Options {
        nodes: vec!["pve".into()],
        time_scale: 0.0,
    });
    let control = &pve.control;
    // The example builds template 9000 from a downloaded image (on `local`, which also
    // holds the snippets) and puts the tier disks on three LVM-thin storages.
    let dir = tempfile::tempdir().unwrap();
    let lvm = |pool: &str| json!({ "type": "lvmthin", "vgname": "pve", "thinpool": pool, "content": "images,rootdir" });
    control
        .post(
            "/storages",
            json!({ "local": { "type": "dir", "path": dir.path().join("local"), "shared": 0,
                               "content": "iso,import,snippets,images,vztmpl,rootdir" },
                    "nvme": lvm("nvme"), "ssd": lvm("ssd"), "hdd": lvm("hdd") }),
        )
        .await;
    // The seed's one server is large; fakepve's default node is not.
    let tib = 1u64 << 40;
    control
        .post(
            "/capacity",
            json!({"nodes": {"maxcpu": 32, "maxmem": 512u64 << 30, "mem": 0},
                   "storages": {"local": tib, "nvme": 4 * tib, "ssd": 4 * tib, "hdd": 16 * tib}}),
        )
        .await;
    let image = control
        .post(
            "/remote_files",
            json!({ "url": "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
                    "content": "debian 12 qcow2", "size": 2u64 << 30 }),
        )
        .await;
    control.guest_agents(json!({})).await;
    let desired = example_with("004-tiered-storage", |repo| {
        let text = repo
            .text("image.yaml")
            .unwrap()
            .replace(&"0".repeat(128), image["sha512"].as_str().unwrap());
        repo.add("image.yaml", text);
    });
    let client = pve.client();
    let policy = Policy::default();
    let options = ApplyOptions {
        node: Some("pve".into()),
        ..ApplyOptions::default()
    };
    let prepared = pve_gitops::pass::prepare(&client, &desired, &policy)
        .await
        .expect("prepare");
    assert!(prepared.preflight.is_ok(), "{:?}", prepared.preflight);
    let report = pve_gitops::pass::execute(&client, &prepared, &options).await;
    assert!(
        report.failed.is_empty() && report.skipped.is_empty(),
        "{report:?}"
    );
    for vm in &desired.vms {
        let got = control.vm(vm.vmid.unwrap().get()).await.expect("created");
        let tags = got["config"]["tags"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let role = &vm.labels["role"];
        for want in [
            format!("role-{role}"),
            "provider-proxmox".into(),
            "pve-gitops".into(),
        ] {
            assert!(tags.split(';').any(|t| t == want), "{}: {tags}", vm.name);
        }
        assert!(text_of(&got["config"]["net0"]).contains("bridge=ecomanet"));
    }
    // The vnet was applied before the first VM was cloned onto it.
    let requests = control.requests(100_000).await;
    let first = |what: &dyn Fn(&(String, String, String)) -> bool| {
        requests.iter().position(what).expect("request made")
    };
    let applied = first(&|(m, p, _)| m == "PUT" && p.ends_with("/cluster/sdn"));
    let cloned = first(&|(m, p, _)| m == "POST" && p.ends_with("/clone"));
    assert!(applied < cloned, "apply #{applied}, first clone #{cloned}");

    control.reset_counters().await;
    let again = pve_gitops::pass::prepare(&client, &desired, &policy)
        .await
        .expect("prepare");
    assert!(
        again.plan.is_empty() && again.cluster.is_empty(),
        "{:?}",
        again.plan
    );
    let report = pve_gitops::pass::execute(&client, &again, &options).await;
    assert!(report.done.is_empty(), "{report:?}");
    assert_eq!(control.counters().await.writes, 0);
}

fn text_of(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
