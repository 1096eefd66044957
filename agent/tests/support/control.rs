//! Client of the harness's control endpoint: counters, faults, cluster changes, state.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

/// Request counters of the fake, from `GET /counters`.
#[derive(Clone, Debug, Deserialize)]
pub struct Counters {
    pub total: u64,
    pub reads: u64,
    pub writes: u64,
    /// `"PUT /nodes/{node}/qemu/{vmid}/config"` → count.
    pub by_endpoint: std::collections::BTreeMap<String, u64>,
    /// `"PUT /api2/json/nodes/pve1/qemu/100/config"` → count.
    pub by_path: std::collections::BTreeMap<String, u64>,
    /// Task type (`qmclone`, `qmstart`) → most tasks of that type running at once.
    #[serde(default)]
    pub peak_tasks: std::collections::BTreeMap<String, u64>,
}

impl Counters {
    pub fn endpoint(&self, key: &str) -> u64 {
        self.by_endpoint.get(key).copied().unwrap_or(0)
    }

    /// By concrete path below `/api2/json`: `path("PUT", "/nodes/pve1/qemu/100/config")`.
    pub fn path(&self, method: &str, path: &str) -> u64 {
        self.by_path
            .get(&format!("{method} /api2/json{path}"))
            .copied()
            .unwrap_or(0)
    }
}

/// One write request as the harness logged it on arrival (`tests/fakepve/writelog.py`).
#[derive(Clone, Debug, Deserialize)]
pub struct WriteEntry {
    pub seq: u64,
    /// Arrival, in `CLOCK_MONOTONIC` nanoseconds.
    pub t_ns: u64,
    pub method: String,
    /// `/api2/json/nodes/pve1/qemu/100/config`
    pub path: String,
    /// The token or user that sent it; `None`: not authenticated.
    pub user: Option<String>,
    /// The form body, secrets redacted.
    pub body: String,
    /// For a VM's DELETE: the VM as it was when the request arrived.
    #[serde(default)]
    pub vm: Option<Value>,
}

/// Client of the harness's control endpoint (plain HTTP on loopback).
#[derive(Clone)]
pub struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    pub(crate) fn new(port: u16) -> Self {
        // reqwest is built without a default crypto provider; this client never does TLS,
        // but reqwest wants a backend configured all the same.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("control client");
        Control {
            http,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("control {method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.expect("control response body");
        assert!(
            status.is_success(),
            "control {method} {path}: HTTP {status}: {text}"
        );
        serde_json::from_str(&text).expect("control answers JSON")
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn counters(&self) -> Counters {
        serde_json::from_value(self.get("/counters").await).expect("counters shape")
    }

    pub async fn reset_counters(&self) {
        self.post("/counters/reset", json!({})).await;
    }

    /// `pve.fail(...)`: `{"method", "path", "status"+"message" or "error", "times"}`.
    pub async fn fail(&self, spec: Value) {
        self.post("/fail", spec).await;
    }

    /// Make the node task lists show every task as running (`true`), as PVE's does for
    /// tasks whose worker the daemon that started it has not reaped; `false`: as they are.
    pub async fn stale_task_list(&self, stale: bool) {
        self.post("/tasklist", json!({ "stale": stale })).await;
    }

    pub async fn clear_failures(&self) {
        self.post("/fail/clear", json!({})).await;
    }

    /// Replace datacenter.cfg's settings (`{"max_workers": 1}`; `{}`: none set), as an
    /// administrator editing the file would.
    pub async fn datacenter(&self, settings: Value) {
        self.post("/datacenter", settings).await;
    }

    pub async fn set_quorum(&self, quorate: bool) {
        self.post("/quorum", json!({ "quorate": quorate })).await;
    }

    pub async fn set_node_online(&self, node: &str, online: bool) {
        self.post(&format!("/nodes/{node}"), json!({ "online": online }))
            .await;
    }

    /// Put a VM straight into the fake's state (see harness.py `/vms` for the fields).
    pub async fn create_vm(&self, spec: Value) -> Value {
        self.post("/vms", spec).await
    }

    /// A template like the seeds use: `vmid` on `node`, one 2G disk on `storage`.
    pub async fn create_template(&self, vmid: u32, node: &str, storage: &str) -> Value {
        self.create_vm(json!({
            "vmid": vmid, "name": format!("tmpl-{vmid}"), "node": node, "template": true,
            "config": {
                "scsi0": format!("{storage}:base-{vmid}-disk-0,size=2G"),
                "scsihw": "virtio-scsi-pci", "memory": 2048, "cores": 2,
                "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "ostype": "l26",
            },
        }))
        .await
    }

    /// Put a container straight into the fake's state (harness.py `/cts`).
    pub async fn create_ct(&self, spec: Value) -> Value {
        self.post("/cts", spec).await
    }

    pub async fn update_vm(&self, vmid: u32, changes: Value) -> Value {
        self.call(
            reqwest::Method::PATCH,
            &format!("/vms/{vmid}"),
            Some(changes),
        )
        .await
    }

    /// The guest as the fake holds it, or `None`.
    pub async fn vm(&self, vmid: u32) -> Option<Value> {
        let state = self.state().await;
        state["guests"]
            .as_array()
            .and_then(|g| g.iter().find(|v| v["vmid"] == json!(vmid)).cloned())
    }

    /// The last `limit` requests the fake saw: `(method, path, body)`, secrets redacted.
    pub async fn requests(&self, limit: usize) -> Vec<(String, String, String)> {
        serde_json::from_value(self.get(&format!("/requests?limit={limit}")).await)
            .expect("requests shape")
    }

    pub async fn state(&self) -> Value {
        self.get("/state").await
    }

    pub async fn ceph(&self, spec: Value) -> Value {
        self.post("/ceph", spec).await
    }

    /// A shared CephFS storage `id` whose files live in the directory `path` (the harness's
    /// images extension): snippets, ISOs and imports the agent writes or downloads land there.
    pub async fn shared_dir_storage(&self, id: &str, path: &std::path::Path) {
        self.post(
            "/storages",
            json!({ id: { "type": "cephfs", "path": path, "shared": 1,
                          "content": "snippets,iso,vztmpl,backup,import" } }),
        )
        .await;
    }

    /// Seed 000's cluster (nodes pve01..03): Ceph RBD for disks, a shared CephFS in the
    /// directory `cephfs` for snippets, room for everything, and the Packer templates
    /// 9001-9003 on RBD.
    pub async fn seed_000(&self, cephfs: &std::path::Path) {
        self.ceph(json!({ "add_storage": "rbd" })).await;
        self.shared_dir_storage("cephfs", cephfs).await;
        self.roomy(&["rbd", "cephfs"]).await;
        for vmid in [9001, 9002, 9003] {
            self.create_template(vmid, "pve01", "rbd").await;
        }
    }

    /// Nodes (64 threads, 1 TiB) and `storages` (64 TiB each) larger than any test needs,
    /// so pre-flight never refuses a plan for room.
    pub async fn roomy(&self, storages: &[&str]) {
        let totals: serde_json::Map<String, Value> = storages
            .iter()
            .map(|s| (s.to_string(), json!(64u64 << 40)))
            .collect();
        self.post(
            "/capacity",
            json!({ "nodes": { "maxcpu": 64, "maxmem": 1u64 << 40, "mem": 0 }, "storages": totals }),
        )
        .await;
    }

    pub async fn hold_config_lock(&self, vmid: u32, secs: Option<f64>) {
        self.post(&format!("/vms/{vmid}/config_lock"), json!({ "secs": secs }))
            .await;
    }

    pub async fn release_config_lock(&self, vmid: u32) {
        self.post(
            &format!("/vms/{vmid}/config_lock"),
            json!({ "release": true }),
        )
        .await;
    }

    pub async fn network(&self, spec: Value) -> Value {
        self.post("/network", spec).await
    }

    /// What the guest agent of VMs made through the API answers once they run with
    /// `agent` enabled (`json!({})` for the simulator's defaults; `"exec"` maps a command
    /// line to its result); `Value::Null`: they have no agent.
    pub async fn guest_agents(&self, agent: Value) {
        self.post("/guest_agents", json!({ "agent": agent })).await;
    }

    /// Users, roles (the custom ones), ACL entries and tokens (no secrets) as the
    /// harness's access layer keeps them (tests/fakepve/access.py).
    pub async fn access(&self) -> Value {
        self.get("/access").await
    }

    /// Replace a custom role's privileges behind the API's back (an administrator's edit).
    pub async fn set_role_privileges(&self, role: &str, privs: &[&str]) -> Value {
        self.post(&format!("/access/roles/{role}"), json!({ "privs": privs }))
            .await
    }

    /// Skew `node`'s clock as `GET /nodes/{node}/time` reports it, in seconds.
    pub async fn set_clock_skew(&self, node: &str, seconds: f64) {
        self.post("/clock", json!({ "node": node, "skew": seconds }))
            .await;
    }

    /// Requests matching `method` and `path` (a suffix or a schema template, as for
    /// `fail`) wait, unanswered, until [`Control::release_hangs`] (tests/fakepve/hang.py).
    pub async fn hang(&self, method: &str, path: &str) {
        self.post("/hang", json!({ "method": method, "path": path }))
            .await;
    }

    /// Forget the hang rules and answer every waiting request.
    pub async fn release_hangs(&self) {
        self.post("/hang/release", json!({})).await;
    }

    /// How many requests are waiting on a hang rule now.
    pub async fn hung(&self) -> u64 {
        self.get("/hang").await["hung"]
            .as_u64()
            .expect("hung count")
    }

    /// Back to the templates (`tests/fakepve/reset.py`): waits for running tasks, removes
    /// every other guest with its volumes, clears faults and counters; the removed vmids.
    pub async fn reset(&self) -> Vec<u32> {
        serde_json::from_value(self.post("/reset", json!({})).await["removed"].clone())
            .expect("reset shape")
    }

    /// Every write request from `seq` on, with its sender and arrival time.
    pub async fn writes(&self, since: u64) -> Vec<WriteEntry> {
        serde_json::from_value(self.get(&format!("/writes?since={since}")).await)
            .expect("writes shape")
    }

    /// A new API token `id` (`root@pam!pve1`); its secret.
    pub async fn add_token(&self, id: &str) -> String {
        self.post("/tokens", json!({ "id": id })).await["secret"]
            .as_str()
            .expect("token secret")
            .to_string()
    }

    pub async fn set_time_scale(&self, value: f64) {
        self.post("/time_scale", json!({ "value": value })).await;
    }
}

/// A JSON scalar of the fake's state as text (`2` and `"2"` alike give `2`).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Poll `check` until it gives `Some`, at most `deadline`: for conditions the test
/// cannot be told about directly. Panics with `what` on timeout.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
