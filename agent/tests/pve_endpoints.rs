//! Typed endpoints of the PVE client against a real fakepve: each test checks what
//! the fake's state shows afterwards, not just that the calls returned.

#[macro_use]
mod support;

use std::time::Duration;

use pve_gitops::pve::{encode_sshkeys, DownloadUrl, Params, PoolUpdate, PveError, ShutdownOptions};
use serde_json::json;
use support::control::text;
use support::fakepve::{FakePve, Options};

const TASK: Duration = Duration::from_secs(30);

#[tokio::test]
async fn form_encoding_reaches_pve_intact() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control
        .create_vm(json!({"vmid": 104, "config": {"scsi0": "local-lvm:vm-104-disk-0,size=2G"}}))
        .await;

    // `+1G` must arrive as a plus (%2B), not as a space.
    let upid = client
        .resize_disk("pve1", 104, "scsi0", "+1G", None)
        .await
        .unwrap();
    client.wait_optional(upid, TASK).await.unwrap();
    let sent = control.requests(10).await;
    let (_, _, body) = sent
        .iter()
        .find(|(m, p, _)| m == "PUT" && p.ends_with("/qemu/104/resize"))
        .unwrap();
    assert_eq!(body, "disk=scsi0&size=%2B1G");

    let keys = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB+k/x= ops@example",
        "ssh-rsa AAAAB3Nza+c2E= ci@example",
    ];
    let changes = Params::new()
        .with("sshkeys", encode_sshkeys(keys))
        .with("description", "a+b c&d=e")
        .with("onboot", true);
    client
        .set_vm_config("pve1", 104, &changes, &[], None)
        .await
        .unwrap();

    let cfg = control.vm(104).await.unwrap()["config"].clone();
    assert!(text(&cfg["scsi0"]).contains("size=3G"), "{cfg}");
    assert_eq!(text(&cfg["description"]), "a+b c&d=e");
    assert_eq!(text(&cfg["onboot"]), "1");
    // PVE keeps sshkeys URL-encoded: one decode (the form's) happened on the way.
    let stored = text(&cfg["sshkeys"]);
    assert_eq!(stored, encode_sshkeys(keys));
    assert!(stored.contains("%20") && stored.contains("%2B") && stored.contains("%0A"));
}

#[tokio::test]
async fn vm_lifecycle_pending_changes_guest_agent_and_delete() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    control
        .create_vm(json!({"vmid": 105, "config": {
            "cores": 1, "memory": 512, "agent": "1",
            "scsi0": "local-lvm:vm-105-disk-0,size=2G"}}))
        .await;

    let upid = client.start_vm("pve1", 105).await.unwrap();
    client.wait_task(&upid, TASK).await.unwrap();
    let status = client.vm_status_current("pve1", 105).await.unwrap();
    assert!(status.is_running() && status.agent);

    // On a running VM, cores waits for the next start.
    let upid = client
        .set_vm_config_async("pve1", 105, &Params::new().with("cores", 2u32), &[], None)
        .await
        .unwrap();
    client.wait_optional(upid, TASK).await.unwrap();
    let pending = client.vm_pending("pve1", 105).await.unwrap();
    let cores = pending.iter().find(|p| p.key == "cores").unwrap();
    assert!(cores.is_pending());
    assert_eq!(cores.pending.as_ref().map(text).as_deref(), Some("2"));
    let upid = client.reboot_vm("pve1", 105).await.unwrap();
    client.wait_task(&upid, TASK).await.unwrap();
    assert!(client
        .vm_pending("pve1", 105)
        .await
        .unwrap()
        .iter()
        .all(|p| !p.is_pending()));

    // The guest agent answers once it runs.
    let err = client.agent_ping("pve1", 105).await.unwrap_err();
    assert!(
        err.to_string().contains("guest agent is not running"),
        "{err}"
    );
    control
        .update_vm(
            105,
            json!({"agent": {"files": {"/etc/hostname": "vm105\n"}}}),
        )
        .await;
    client.agent_ping("pve1", 105).await.unwrap();
    let ifaces = client.agent_network_interfaces("pve1", 105).await.unwrap();
    let eth0 = ifaces.iter().find(|i| i.name == "eth0").unwrap();
    assert_eq!(eth0.ip_addresses[0].ip_address, "192.0.2.10");
    let pid = client
        .agent_exec("pve1", 105, &["cat", "/etc/hostname"], None)
        .await
        .unwrap();
    let done = client.agent_exec_status("pve1", 105, pid).await.unwrap();
    assert!(done.exited && done.exitcode == Some(0));
    let file = client
        .agent_file_read("pve1", 105, "/etc/hostname")
        .await
        .unwrap();
    assert_eq!(file.content, "vm105\n");
    let asked = control.vm(105).await.unwrap()["agent_requests"].clone();
    assert!(asked.to_string().contains("/etc/hostname"), "{asked}");

    let upid = client
        .shutdown_vm(
            "pve1",
            105,
            ShutdownOptions {
                timeout: Some(30),
                force_stop: true,
            },
        )
        .await
        .unwrap();
    client.wait_task(&upid, TASK).await.unwrap();
    assert_eq!(control.vm(105).await.unwrap()["status"], "stopped");

    let upid = client.delete_vm("pve1", 105, true, true).await.unwrap();
    client.wait_task(&upid, TASK).await.unwrap();
    assert!(control.vm(105).await.is_none());
    let err = client.get_vm_config("pve1", 105).await.unwrap_err();
    assert!(matches!(err, PveError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn create_template_pools_storage_download_and_firewall() {
    let pve = fake!();
    let (client, control) = (pve.client(), &pve.control);
    let vmid = client.nextid().await.unwrap();
    let params = Params::new()
        .with("name", "base")
        .with("memory", 1024u32)
        .with("scsi0", "local-lvm:4")
        .with("net0", "virtio,bridge=vmbr0");
    let upid = client.create_vm("pve2", vmid, &params).await.unwrap();
    assert_eq!(upid.node(), "pve2");
    client.wait_task(&upid, TASK).await.unwrap();
    let vm = control.vm(vmid).await.unwrap();
    assert_eq!(vm["node"], "pve2");
    assert!(text(&vm["config"]["scsi0"]).contains("size=4G"));

    let upid = client.convert_to_template("pve2", vmid).await.unwrap();
    client.wait_optional(upid, TASK).await.unwrap();
    assert_eq!(control.vm(vmid).await.unwrap()["template"], true);
    let images = client
        .storage_content("pve2", "local-lvm", Some("images"))
        .await
        .unwrap();
    let base = format!("local-lvm:base-{vmid}-disk-0");
    assert!(images.iter().any(|c| c.volid == base), "{images:?}");

    client.create_pool("web", Some("web tier")).await.unwrap();
    let add = PoolUpdate {
        vms: vec![vmid],
        ..Default::default()
    };
    client.update_pool("web", &add).await.unwrap();
    let pool = client.pool("web").await.unwrap().unwrap();
    assert_eq!(pool.comment.as_deref(), Some("web tier"));
    assert!(pool.members.iter().any(|m| m.vmid == Some(vmid as u64)));
    assert!(client
        .pools()
        .await
        .unwrap()
        .iter()
        .any(|p| p.poolid == "web"));
    let remove = PoolUpdate {
        delete: true,
        ..add
    };
    client.update_pool("web", &remove).await.unwrap();
    assert_eq!(
        control.state().await["pools"]["web"],
        json!([]),
        "the member was removed"
    );
    client.delete_pool("web").await.unwrap();
    assert!(client.pool("web").await.unwrap().is_none());

    // The harness serves only registered URLs (tests/fakepve/images.py).
    control
        .post(
            "/remote_files",
            json!({ "url": "https://images.example/debian-13.iso", "content": "iso", "size": 1u64 << 20 }),
        )
        .await;
    let request = DownloadUrl {
        url: "https://images.example/debian-13.iso".into(),
        content: "iso".into(),
        filename: "debian-13.iso".into(),
        ..Default::default()
    };
    let upid = client
        .download_url("pve1", "local", &request)
        .await
        .unwrap();
    client.wait_task(&upid, TASK).await.unwrap();
    let isos = client
        .storage_content("pve1", "local", Some("iso"))
        .await
        .unwrap();
    assert!(
        isos.iter().any(|c| c.volid == "local:iso/debian-13.iso"),
        "{isos:?}"
    );

    client.cluster_firewall_options().await.unwrap();
    client.cluster_firewall_rules().await.unwrap();
    client.firewall_groups().await.unwrap();
    client.firewall_ipsets().await.unwrap();
    client.firewall_aliases().await.unwrap();
}
