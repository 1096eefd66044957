//! The PVE client against a real fakepve (tests/fakepve/harness.py): every test starts
//! its own fake cluster and checks outcomes in the fake's state, not just the answers.

#[macro_use]
mod support;

use std::time::Duration;

use pve_gitops::pve::cluster::ResourceType;
use pve_gitops::pve::{
    ApiToken, CertFingerprint, CloneOptions, Params, Probed, PveClient, PveError, TlsTrust,
    TransportKind,
};
use serde_json::{json, Value};
use support::control::{eventually, text};
use support::fakepve::{FakePve, Options};

const TASK: Duration = Duration::from_secs(30);

/// The error's text with all its sources, for checking what a TLS failure said.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        out.push_str(" <- ");
        out.push_str(&e.to_string());
        src = e.source();
    }
    out
}

#[tokio::test]
async fn token_auth_works_and_a_wrong_token_is_refused() {
    let pve = fake!();
    let nodes = pve.client().nodes().await.unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["pve1", "pve2", "pve3"]);
    assert!(nodes.iter().all(|n| n.is_online()));

    let mut options = pve.client_options();
    options.token = ApiToken::new(&pve.info.token_id, "not-the-secret").unwrap();
    let err = PveClient::new(options).unwrap().nodes().await.unwrap_err();
    match &err {
        PveError::Auth(f) => {
            assert_eq!(f.status, 401);
            assert!(f.message.contains("authentication failure"), "{err}");
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    // Refusals are not retried.
    assert_eq!(pve.control.counters().await.endpoint("GET /nodes"), 2);
}

#[tokio::test]
async fn tls_trusts_only_the_configured_ca_or_pin() {
    let pve = fake!();
    let with = |tls: TlsTrust| {
        let mut o = pve.client_options();
        o.tls = tls;
        PveClient::new(o).unwrap()
    };
    with(TlsTrust::CaFile(pve.info.ca_file.clone()))
        .nodes()
        .await
        .unwrap();
    let pem = std::fs::read(&pve.info.ca_file).unwrap();
    with(TlsTrust::CaPem(pem)).nodes().await.unwrap();

    let err = with(TlsTrust::CaFile(pve.info.other_ca_file.clone()))
        .nodes()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PveError::Transport {
                kind: TransportKind::Tls,
                ..
            }
        ),
        "{err:?}"
    );

    let pin: CertFingerprint = pve.info.fingerprint.parse().unwrap();
    with(TlsTrust::Fingerprint(pin)).nodes().await.unwrap();

    let wrong = CertFingerprint::of_der(b"some other certificate");
    let err = with(TlsTrust::Fingerprint(wrong))
        .nodes()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PveError::Transport {
                kind: TransportKind::Tls,
                ..
            }
        ),
        "{err:?}"
    );
    // The error names the certificate that was offered, so an operator can compare.
    assert!(
        chain(&err).contains(&pve.info.fingerprint),
        "{}",
        chain(&err)
    );
    // Only the three trusted connections reached the API; refused TLS is not retried.
    assert_eq!(pve.control.counters().await.total, 3);
}

#[tokio::test]
async fn clone_from_template_waits_for_the_task_and_clears_the_lock() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    // RBD-backed clones are slow (2 s here), so the clone lock can be seen.
    control
        .ceph(json!({"add_storage": "ceph-pool", "slow": 200}))
        .await;
    control.create_template(9000, "pve1", "ceph-pool").await;

    let mut options = CloneOptions::new(120);
    options.name = Some("web-1".into());
    options.full = Some(true);
    let upid = client.clone_vm("pve1", 9000, &options).await.unwrap();
    assert_eq!(upid.node(), "pve1");
    assert_eq!(upid.task_type(), "qmclone");

    let during = control.vm(120).await.expect("the clone exists at once");
    assert_eq!(during["lock"], "clone");
    let err = client
        .set_vm_config("pve1", 120, &Params::new().with("cores", 4u32), &[], None)
        .await
        .unwrap_err();
    match err {
        PveError::VmLocked { lock, .. } => assert_eq!(lock, "clone"),
        other => panic!("expected VmLocked, got {other:?}"),
    }

    let outcome = client.wait_task(&upid, TASK).await.unwrap();
    assert_eq!((outcome.warnings, outcome.exitstatus.as_str()), (0, "OK"));

    let vm = control.vm(120).await.unwrap();
    assert_eq!(vm["lock"], Value::Null);
    assert!(vm["config"].get("lock").is_none());
    assert_eq!(vm["name"], "web-1");
    assert_eq!(vm["template"], false);
    assert!(text(&vm["config"]["scsi0"]).starts_with("ceph-pool:vm-120-disk-0"));

    let cfg = client.get_vm_config("pve1", 120).await.unwrap();
    assert_eq!(cfg.lock(), None);
    assert_eq!(cfg.text("name").as_deref(), Some("web-1"));
    assert!(cfg.digest().is_some());
    assert!(!cfg.is_template());

    let guests = client
        .cluster_resources(Some(ResourceType::Vm))
        .await
        .unwrap();
    let find = |id| guests.iter().find(|g| g.vmid == Some(id)).unwrap();
    assert!(find(9000).template);
    assert!(!find(120).template);
    assert_eq!(find(120).node.as_deref(), Some("pve1"));
}

#[tokio::test]
async fn stale_digest_is_a_checksum_mismatch() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control
        .create_vm(json!({"vmid": 100, "config": {"cores": 1, "memory": 512}}))
        .await;
    let read = client.get_vm_config("pve1", 100).await.unwrap();
    let digest = read.digest().unwrap();

    let cores = |n: u32| Params::new().with("cores", n);
    client
        .set_vm_config("pve1", 100, &cores(2), &[], Some(digest))
        .await
        .unwrap();
    let err = client
        .set_vm_config("pve1", 100, &cores(3), &[], Some(digest))
        .await
        .unwrap_err();
    match &err {
        PveError::ChecksumMismatch(f) => {
            assert_eq!(f.status, 500);
            assert!(f.message.contains("checksum mismatch"), "{err}");
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    let vm = control.vm(100).await.unwrap();
    assert_eq!(text(&vm["config"]["cores"]), "2");
    let counts = control.counters().await;
    assert_eq!(counts.path("PUT", "/nodes/pve1/qemu/100/config"), 2);
}

#[tokio::test]
async fn parameter_errors_carry_the_per_parameter_map() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control
        .create_vm(json!({"vmid": 100, "config": {"memory": 512}}))
        .await;
    let bad = Params::new().with("bogus", 1u32).with("memory", "lots");
    let err = client
        .set_vm_config("pve1", 100, &bad, &[], None)
        .await
        .unwrap_err();
    match &err {
        PveError::ParameterVerification(f) => {
            assert_eq!(f.status, 400);
            assert_eq!(f.message, "Parameter verification failed.");
            assert!(f.errors["bogus"].contains("not defined in schema"), "{err}");
            assert!(f.errors.contains_key("memory"), "{err}");
        }
        other => panic!("expected ParameterVerification, got {other:?}"),
    }
    let vm = control.vm(100).await.unwrap();
    assert_eq!(text(&vm["config"]["memory"]), "512");
}

#[tokio::test]
async fn lock_timeouts_are_retried() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control
        .create_vm(json!({"vmid": 100, "config": {"cores": 1}}))
        .await;
    let path = "/nodes/pve1/qemu/100/config";

    // An injected lock timeout: one retry, then success.
    control
        .fail(json!({"method": "PUT", "path": path, "error": "config_lock_timeout", "times": 1}))
        .await;
    client
        .set_vm_config("pve1", 100, &Params::new().with("cores", 4u32), &[], None)
        .await
        .unwrap();
    assert_eq!(control.counters().await.path("PUT", path), 2);
    assert_eq!(
        text(&control.vm(100).await.unwrap()["config"]["cores"]),
        "4"
    );

    // A real one: another task holds the config lock until the client has retried.
    control.reset_counters().await;
    control.hold_config_lock(100, None).await;
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .set_vm_config("pve1", 100, &Params::new().with("cores", 6u32), &[], None)
                .await
        })
    };
    eventually("a retried PUT", TASK, || async {
        (control.counters().await.path("PUT", path) >= 2).then_some(())
    })
    .await;
    control.release_config_lock(100).await;
    writer.await.unwrap().unwrap();
    assert_eq!(
        text(&control.vm(100).await.unwrap()["config"]["cores"]),
        "6"
    );
}

#[tokio::test]
async fn server_errors_on_creates_are_not_retried_but_reads_are() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control.create_template(9000, "pve1", "local-lvm").await;
    let clone_path = "/nodes/pve1/qemu/9000/clone";
    let options = CloneOptions::new(130);

    for (status, message) in [(500, "internal error"), (503, "Service Unavailable")] {
        control
            .fail(
                json!({"method": "POST", "path": clone_path, "status": status,
                         "message": message, "times": 1}),
            )
            .await;
        match client.clone_vm("pve1", 9000, &options).await.unwrap_err() {
            PveError::Api(f) => assert_eq!((f.status, f.message.as_str()), (status, message)),
            other => panic!("expected Api, got {other:?}"),
        }
    }
    assert_eq!(control.counters().await.path("POST", clone_path), 2);
    assert!(control.vm(130).await.is_none());

    // A busy answer to a read is retried.
    control
        .fail(
            json!({"method": "GET", "path": "/nodes/pve1/qemu/9000/config",
                     "status": 503, "message": "Service Unavailable", "times": 1}),
        )
        .await;
    assert!(client
        .get_vm_config("pve1", 9000)
        .await
        .unwrap()
        .is_template());
    let counts = control.counters().await;
    assert_eq!(counts.path("GET", "/nodes/pve1/qemu/9000/config"), 2);

    // The caller checked that 130 does not exist, so it may create it now.
    let upid = client.clone_vm("pve1", 9000, &options).await.unwrap();
    client.wait_task(&upid, TASK).await.unwrap();
    assert!(control.vm(130).await.is_some());
}

#[tokio::test]
async fn failing_tasks_are_task_failed_with_the_upid() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control
        .create_vm(json!({"vmid": 101, "start_error": "QEMU exited with code 1"}))
        .await;
    let upid = client.start_vm("pve1", 101).await.unwrap();
    let err = client.wait_task(&upid, TASK).await.unwrap_err();
    assert_eq!(err.upid(), Some(&upid));
    match err {
        PveError::TaskFailed { exitstatus, .. } => {
            assert_eq!(exitstatus, "QEMU exited with code 1")
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }

    // An error raised inside the worker: the request succeeds with a UPID, the task fails.
    control.create_vm(json!({"vmid": 102})).await;
    control
        .fail(
            json!({"method": "POST", "path": "/nodes/pve1/qemu/102/status/start",
                     "error": "already_running", "times": 1}),
        )
        .await;
    let upid = client.start_vm("pve1", 102).await.unwrap();
    match client.wait_task(&upid, TASK).await.unwrap_err() {
        PveError::TaskFailed {
            upid: u,
            exitstatus,
        } => {
            assert_eq!(u, upid);
            assert_eq!(exitstatus, "VM 102 already running");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert_eq!(control.vm(102).await.unwrap()["status"], "stopped");
}

#[tokio::test]
async fn a_task_past_its_deadline_is_reported_and_keeps_running() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    // 1000 PVE seconds at time_scale 0.01: 10 s real.
    control
        .create_vm(json!({"vmid": 103, "start_secs": 1000}))
        .await;
    let upid = client.start_vm("pve1", 103).await.unwrap();
    match client
        .wait_task(&upid, Duration::from_millis(200))
        .await
        .unwrap_err()
    {
        PveError::TaskDeadline { upid: u, waited } => {
            assert_eq!(u, upid);
            assert!(waited >= Duration::from_millis(200), "{waited:?}");
        }
        other => panic!("expected TaskDeadline, got {other:?}"),
    }
    assert!(client.task_status(&upid).await.unwrap().is_running());
}

#[tokio::test]
async fn counters_show_reads_and_writes() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control.create_vm(json!({"vmid": 100})).await;
    control.reset_counters().await;

    client.nodes().await.unwrap();
    client.cluster_resources(None).await.unwrap();
    assert_eq!(client.nextid().await.unwrap(), 101);
    client
        .set_vm_config("pve1", 100, &Params::new().with("onboot", true), &[], None)
        .await
        .unwrap();

    let c = control.counters().await;
    assert_eq!((c.reads, c.writes, c.total), (3, 1, 4));
    assert_eq!(c.endpoint("GET /nodes"), 1);
    assert_eq!(c.endpoint("GET /cluster/resources"), 1);
    assert_eq!(c.endpoint("GET /cluster/nextid"), 1);
    assert_eq!(c.endpoint("PUT /nodes/{node}/qemu/{vmid}/config"), 1);
}

/// The harness answers in PVE's bytes (`tests/fakepve/wire.py`): compact JSON, UTF-8 as
/// is. What the client spends reading a listing is measured on them.
#[tokio::test]
async fn answers_are_compact_json_as_pve_writes_it() {
    let pve = fake!();
    pve.control
        .create_vm(json!({"vmid": 100, "name": "a", "config": {"description": "café"}}))
        .await;
    let client = pve.client();
    let listing = client
        .cluster_resources_with(None, |body| Ok(body.to_vec()))
        .await
        .unwrap();
    let text = String::from_utf8(listing).unwrap();
    assert!(text.starts_with(r#"{"data":[{"#), "{text}");
    assert!(text.contains(r#""vmid":100,"#), "{text}");
    assert!(!text.contains(", ") && !text.contains(": "), "{text}");
    let config = client
        .get_with("/nodes/pve1/qemu/100/config", &Params::new(), |body| {
            Ok(body.to_vec())
        })
        .await
        .unwrap();
    let text = String::from_utf8(config).unwrap();
    assert!(text.contains("café"), "{text}");
}

#[tokio::test]
async fn lost_quorum_and_offline_nodes() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control.create_vm(json!({"vmid": 100})).await;

    control.set_quorum(false).await;
    let err = client
        .set_vm_config("pve1", 100, &Params::new().with("cores", 2u32), &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, PveError::NoQuorum(_)), "{err:?}");
    client.get_vm_config("pve1", 100).await.unwrap();
    control.set_quorum(true).await;

    control.set_node_online("pve2", false).await;
    let err = client.node_status("pve2").await.unwrap_err();
    assert!(matches!(err, PveError::NodeOffline(_)), "{err:?}");
    assert_eq!(err.status(), Some(595));
    assert_eq!(
        control
            .counters()
            .await
            .endpoint("GET /nodes/{node}/status"),
        1
    );
    let nodes = client.nodes().await.unwrap();
    let pve2 = nodes.iter().find(|n| n.node == "pve2").unwrap();
    assert!(!pve2.is_online());
    let status = client.node_status("pve1").await.unwrap();
    assert!(status.memory.is_some() && status.cpuinfo.is_some());
}

/// Stopped VMs on pve1 whose starts take 50 PVE seconds: half a second at the fake's
/// time scale 0.01.
async fn slow_starting(control: &support::control::Control, vmids: &[u32]) {
    for vmid in vmids {
        control
            .create_vm(json!({"vmid": vmid, "start_secs": 50}))
            .await;
    }
}

#[tokio::test]
async fn a_task_like_the_last_one_is_polled_once_or_twice() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    slow_starting(control, &[201, 202, 203]).await;
    // Status requests for one task (the harness counts decoded paths).
    let polls = |upid: &pve_gitops::pve::Upid, c: &support::control::Counters| {
        c.path(
            "GET",
            &format!("/nodes/pve1/tasks/{}/status", upid.as_str()),
        )
    };
    // The first start is polled on the backoff schedule (10 ms, growing 1.6x).
    let upid = client.start_vm("pve1", 201).await.unwrap();
    client.wait_task(&upid, TASK).await.unwrap();
    let first = polls(&upid, &control.counters().await);
    assert!(first >= 5, "the first start took {first} polls");
    // The next ones wait about as long before their first poll.
    for vmid in [202, 203] {
        let upid = client.start_vm("pve1", vmid).await.unwrap();
        client.wait_task(&upid, TASK).await.unwrap();
        let n = polls(&upid, &control.counters().await);
        assert!(
            n <= 2,
            "start of {vmid} took {n} polls (the first took {first})"
        );
        assert_eq!(control.vm(vmid).await.unwrap()["status"], "running");
    }
}

/// A create's task is waited for by reading the new VM's config, which the configure
/// step needs anyway: once the client knows how long such clones take, one read and no
/// status poll. A task that fails still fails with its exit status.
#[tokio::test]
async fn creates_are_waited_for_by_their_config_and_fail_with_their_task() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control.ceph(json!({ "add_storage": "rbd" })).await;
    control.create_template(9000, "pve1", "rbd").await;
    // 50 PVE seconds at time scale 0.01: each clone takes half a second.
    control.ceph(json!({ "slow": 50 })).await;
    let unlocked = |vmid: u32| {
        let client = client.clone();
        move || {
            let client = client.clone();
            async move {
                match client.get_vm_config("pve1", vmid).await {
                    Ok(c) if c.lock().is_none() => Probed::Done(c),
                    Ok(_) => Probed::Busy,
                    Err(_) => Probed::Unknown,
                }
            }
        }
    };
    let clone = |vmid: u32| {
        let mut o = CloneOptions::new(vmid);
        o.full = Some(true);
        o
    };

    // The first clone of the template: its length is learned by polling.
    let upid = client.clone_vm("pve1", 9000, &clone(201)).await.unwrap();
    let made = client
        .wait_task_probing(&upid, TASK, unlocked(201))
        .await
        .unwrap();
    assert_eq!(made.lock(), None);

    // The next one: the client sleeps that long, then reads the config once.
    control.reset_counters().await;
    let upid = client.clone_vm("pve1", 9000, &clone(202)).await.unwrap();
    let made = client
        .wait_task_probing(&upid, TASK, unlocked(202))
        .await
        .unwrap();
    assert_eq!(made.lock(), None);
    let counts = control.counters().await;
    assert_eq!(counts.path("GET", "/nodes/pve1/qemu/202/config"), 1);
    assert_eq!(counts.endpoint("GET /nodes/{node}/tasks/{upid}/status"), 0);

    // A task that fails while its result is not there (a probe that only ever sees it
    // busy, or sees nothing) fails with the task's own words.
    control
        .create_vm(json!({"vmid": 204, "start_error": "QEMU exited with code 1"}))
        .await;
    for busy in [true, false] {
        let upid = client.start_vm("pve1", 204).await.unwrap();
        let probe = || async {
            if busy {
                Probed::<()>::Busy
            } else {
                Probed::Unknown
            }
        };
        match client
            .wait_task_probing(&upid, TASK, probe)
            .await
            .unwrap_err()
        {
            PveError::TaskFailed {
                upid: u,
                exitstatus,
            } => {
                assert_eq!(u, upid);
                assert_eq!(exitstatus, "QEMU exited with code 1");
            }
            other => panic!("expected TaskFailed, got {other:?}"),
        }
    }
}

/// Waits for tasks on one node share their looks: while several are waited for, a look
/// reads the node's task list (`GET /nodes/{node}/tasks`), and the waits whose tasks it
/// shows ended finish without a status request of their own, each with its own exit
/// status. A wait alone on its node reads its task's status.
#[tokio::test]
async fn waits_on_one_node_share_a_look_at_its_task_list() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    // 304 fails at the end of its start.
    slow_starting(control, &[301, 302, 303]).await;
    control
        .create_vm(json!({"vmid": 304, "start_secs": 50, "start_error": "QEMU exited with code 1"}))
        .await;
    control
        .create_vm(json!({"vmid": 305, "node": "pve2", "start_secs": 50}))
        .await;
    control.reset_counters().await;

    let mut upids = Vec::new();
    for (node, vmid) in [
        ("pve1", 301),
        ("pve1", 302),
        ("pve1", 303),
        ("pve1", 304),
        ("pve2", 305),
    ] {
        upids.push(client.start_vm(node, vmid).await.unwrap());
    }
    let mut waits = tokio::task::JoinSet::new();
    for (i, upid) in upids.iter().enumerate() {
        let (client, upid) = (client.clone(), upid.clone());
        waits.spawn(async move { (i, client.wait_task(&upid, TASK).await) });
    }
    let mut outcomes: Vec<_> = waits.join_all().await;
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<_> = outcomes.into_iter().map(|(_, o)| o).collect();
    for (upid, outcome) in upids.iter().zip(&outcomes) {
        match (upid.id(), outcome) {
            ("304", Err(PveError::TaskFailed { exitstatus, .. })) => {
                assert_eq!(exitstatus, "QEMU exited with code 1")
            }
            ("304", other) => panic!("304's start should fail: {other:?}"),
            (_, Ok(done)) => assert_eq!(done.exitstatus, "OK"),
            (id, Err(e)) => panic!("{id}: {e}"),
        }
    }
    for vmid in [301, 302, 303, 305] {
        assert_eq!(control.vm(vmid).await.unwrap()["status"], "running");
    }

    let c = control.counters().await;
    let status_looks = |upid: &pve_gitops::pve::Upid| {
        c.path(
            "GET",
            &format!("/nodes/{}/tasks/{}/status", upid.node(), upid.as_str()),
        )
    };
    let lists = c.path("GET", "/nodes/pve1/tasks");
    assert!(lists >= 1, "{:?}", c.by_endpoint);
    // One wait of the four (the first of its type, finding out how long starts take)
    // looks; the list shows the others their ends.
    let own: Vec<u64> = upids[..4].iter().map(status_looks).collect();
    assert!(
        own.iter().filter(|n| **n == 0).count() >= 3,
        "status looks per pve1 task: {own:?}, list looks: {lists}"
    );
    assert!(
        status_looks(&upids[4]) >= 1,
        "alone on pve2: its own status"
    );
    assert_eq!(c.path("GET", "/nodes/pve2/tasks"), 0);
}

/// Start two of pve1's VMs, wait for both starts at once, and check they succeeded.
async fn start_together(client: &PveClient, vmids: [u32; 2]) -> [pve_gitops::pve::Upid; 2] {
    let a = client.start_vm("pve1", vmids[0]).await.unwrap();
    let b = client.start_vm("pve1", vmids[1]).await.unwrap();
    let (ra, rb) = tokio::join!(client.wait_task(&a, TASK), client.wait_task(&b, TASK));
    assert_eq!(ra.unwrap().exitstatus, "OK");
    assert_eq!(rb.unwrap().exitstatus, "OK");
    [a, b]
}

/// A node whose task list cannot be read (here: refused) is looked at task by task.
#[tokio::test]
async fn waits_fall_back_to_each_task_status_where_the_list_is_refused() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    slow_starting(control, &[311, 312]).await;
    control
        .fail(
            json!({"method": "GET", "path": "/nodes/pve1/tasks", "status": 403,
                     "message": "Permission check failed", "times": 100}),
        )
        .await;
    control.reset_counters().await;
    start_together(&client, [311, 312]).await;
    let c = control.counters().await;
    assert_eq!(
        c.path("GET", "/nodes/pve1/tasks"),
        1,
        "tried once: {:?}",
        c.by_endpoint
    );
    assert!(c.endpoint("GET /nodes/{node}/tasks/{upid}/status") >= 2);
}

/// PVE's list shows a task as running until the daemon that started it has reaped its
/// worker. A list stuck at that does not hold the waits up: after a few list looks that
/// say running, a wait reads its task's status.
#[tokio::test]
async fn waits_see_through_a_list_that_shows_ended_tasks_running() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    slow_starting(control, &[321, 322]).await;
    control.stale_task_list(true).await;
    control.reset_counters().await;
    let [a, b] = start_together(&client, [321, 322]).await;
    let c = control.counters().await;
    assert!(
        c.path("GET", "/nodes/pve1/tasks") >= 1,
        "{:?}",
        c.by_endpoint
    );
    for upid in [&a, &b] {
        let path = format!("/nodes/pve1/tasks/{}/status", upid.as_str());
        assert!(c.path("GET", &path) >= 1, "{:?}", c.by_endpoint);
    }
}
