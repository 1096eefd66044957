//! The repository as the whole interface: manifests pushed to a bare repository are
//! applied on fakepve, and the status comes back as commits on `pve-gitops/status` with
//! the right message, trailers and files; an invalid revision applies nothing and puts
//! `errors.md` on the branch, removed again once fixed; an unchanged cluster adds no commit.

#[macro_use]
mod support;

use pve_gitops::apply::ApplyOptions;
use pve_gitops::daemon::changes::Unknown;
use pve_gitops::daemon::sources::Git;
use pve_gitops::daemon::{Daemon, DaemonOptions, Outcome};
use pve_gitops::plan::PolicyOverrides;
use pve_gitops::source::{Source, SourceConfig};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::agent::Agent;
use support::fakepve::FakePve;
use support::git::{fingerprint, git, public_key, ssh_keygen, GitRemote};
use support::manifests::EXTERNAL;

fn manifests(replicas: u32, memory: &str) -> String {
    format!(
        "{EXTERNAL}---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: web, labels: {{ role: web }} }}
spec:
  replicas: {replicas}
  vmidStart: 701
  nodes: [pve1]
  template: {{ clone: {{ template: 9000 }}, memory: {memory} }}
"
    )
}

/// Commit `text` as `clusters/prod/web.yaml` and push it to `main`; the commit id.
fn push(remote: &GitRemote, text: &str, message: &str) -> String {
    remote.write("clusters/prod/web.yaml", text);
    let commit = remote.commit(message);
    remote.push("main");
    commit
}

/// The whole message of the status branch's last commit.
fn last_status_message(remote: &GitRemote) -> String {
    remote
        .last_message("pve-gitops/status")
        .expect("a status branch")
}

fn status_commits(remote: &GitRemote) -> Vec<String> {
    git(&remote.bare, &["log", "--format=%H", "pve-gitops/status"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// An in-process daemon on `node` following `clusters/prod` of `remote` (asking it every
/// `git_interval`), with a cache and state directory of its own.
fn daemon(pve: &FakePve, remote: &GitRemote, node: &str, git_interval: Duration) -> Daemon {
    let mut config = SourceConfig::new(remote.url(), "main");
    config.cache_root = remote.scratch(node).join("cache");
    let source = Source::open(config).unwrap();
    Daemon::new(
        pve.client(),
        Box::new(Git::new(
            source,
            "clusters/prod",
            "pve-gitops/status",
            git_interval,
        )),
        Box::new(Unknown),
        DaemonOptions {
            cluster: "prod".into(),
            node: node.into(),
            decryptor: None,
            interval: Duration::from_secs(3600),
            resync: Duration::from_secs(3600),
            passes: None,
            state_dir: Some(remote.scratch(node).join("state")),
            policy: PolicyOverrides::default(),
            apply: ApplyOptions::default(),
            clock: Default::default(),
        },
    )
}

/// fakepve (time scale 0, template 9000) and a remote whose `main` declares two web
/// servers, with that commit; `None`: fakepve cannot run here (the test is skipped).
async fn two_web_servers() -> Option<(FakePve, GitRemote, String)> {
    let pve = FakePve::with_template().await?;
    let remote = GitRemote::new();
    let commit = push(&remote, &manifests(2, "1G"), "two web servers");
    Some((pve, remote, commit))
}

#[tokio::test]
async fn pushes_are_applied_and_status_comes_back_as_commits() {
    let Some((pve, remote, first)) = two_web_servers().await else {
        return;
    };

    // The remote is asked once an hour: a push is seen when told of it (`poll_now`, as
    // the webhook and a new leader do).
    let mut daemon = daemon(&pve, &remote, "pve1", Duration::from_secs(3600));

    // Applied, and reported with message, trailers and the table.
    assert!(matches!(
        daemon.tick().await.unwrap(),
        Outcome::Reconciled { .. }
    ));
    assert!(pve.control.vm(702).await.is_some());
    let message = last_status_message(&remote);
    assert_eq!(
        message.trim_end(),
        format!(
            "apply {}: 2 created, 0 updated, 0 deleted, 0 failed\n\nApplied-Commit: {first}\nCluster: prod\nNode: pve1",
            &first[..7]
        )
    );
    let table = git(&remote.bare, &["show", "pve-gitops/status:prod/STATUS.md"]);
    assert!(
        table.contains("| VirtualMachine/web-2 | pve1 | 702 |  | running | changed |  |"),
        "{table}"
    );
    let files = git(
        &remote.bare,
        &["ls-tree", "-r", "--name-only", "pve-gitops/status"],
    );
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["prod/STATUS.md", "prod/inventory.yaml", "prod/status.yaml"]
    );
    assert_eq!(
        git(&remote.bare, &["rev-parse", "main"]).trim(),
        first,
        "the applied branch is never written"
    );

    // The next pass finds nothing to do: the table says in-sync, in one more commit; the
    // one after changes nothing and commits nothing.
    daemon.tick().await.unwrap();
    daemon.tick().await.unwrap();
    assert_eq!(status_commits(&remote).len(), 2);

    // `pve-gitops status` on the node reads the same from the local state.
    let (code, out) = status_cli(&remote.scratch("pve1").join("state"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("Applied revision: `{first}`")),
        "{out}"
    );
    assert!(
        out.contains("| VirtualMachine/web-1 | pve1 | 701 |"),
        "{out}"
    );

    // An invalid revision: nothing applied, errors.md with the location. Before the
    // remote is asked again, a pass still follows the head it gave last.
    let bad = push(&remote, &manifests(3, "1GB"), "typo");
    pve.control.reset_counters().await;
    match daemon.tick().await.unwrap() {
        Outcome::Reconciled { revision, plan, .. } => {
            assert_eq!(revision, first);
            assert!(plan.is_empty(), "{plan:?}");
        }
        other => panic!("the remote was asked before its interval: {other:?}"),
    }
    daemon.poll_now();
    assert!(matches!(
        daemon.tick().await.unwrap(),
        Outcome::Invalid { .. }
    ));
    assert_eq!(pve.control.counters().await.writes, 0);
    let message = last_status_message(&remote);
    assert_eq!(
        message.lines().next().unwrap(),
        format!("reject {}: 1 error", &bad[..7])
    );
    let errors = git(&remote.bare, &["show", "pve-gitops/status:prod/errors.md"]);
    assert!(
        errors.contains("web.yaml:13:") && errors.contains("invalid-value"),
        "{errors}"
    );

    let (code, out) = status_cli(&remote.scratch("pve1").join("state"));
    assert_eq!(code, 2, "a refused revision needs attention: {out}");
    assert!(out.contains(&format!("Revision `{bad}` rejected")), "{out}");

    // Fixed: applied, errors.md gone.
    push(&remote, &manifests(3, "1G"), "three web servers");
    daemon.poll_now();
    daemon.tick().await.unwrap();
    assert!(pve.control.vm(703).await.is_some());
    let files = git(
        &remote.bare,
        &["ls-tree", "-r", "--name-only", "pve-gitops/status"],
    );
    assert!(!files.contains("errors.md"), "{files}");
}

/// An agent that starts to lead while the head is invalid (a restart, a failover) reports
/// the rejection on top of what is applied, as the previous leader published it: the
/// status branch keeps saying which commit the cluster runs and what it holds.
#[tokio::test]
async fn a_new_leader_rejects_on_top_of_the_applied_status() {
    let Some((pve, remote, applied)) = two_web_servers().await else {
        return;
    };
    let mut first = daemon(&pve, &remote, "pve1", Duration::ZERO);
    assert!(matches!(
        first.tick().await.unwrap(),
        Outcome::Reconciled { .. }
    ));
    let table = git(&remote.bare, &["show", "pve-gitops/status:prod/STATUS.md"]);
    drop(first);

    let bad = push(&remote, &manifests(3, "1GB"), "typo");
    let mut second = daemon(&pve, &remote, "pve2", Duration::ZERO);
    assert!(matches!(
        second.tick().await.unwrap(),
        Outcome::Invalid { .. }
    ));
    let message = last_status_message(&remote);
    assert_eq!(
        message.trim_end(),
        format!(
            "reject {}: 1 error\n\nApplied-Commit: {applied}\nRejected-Commit: {bad}\nCluster: prod\nNode: pve2",
            &bad[..7]
        )
    );
    let now = git(&remote.bare, &["show", "pve-gitops/status:prod/STATUS.md"]);
    for vm in [
        "| VirtualMachine/web-1 | pve1 | 701 |",
        "| VirtualMachine/web-2 | pve1 | 702 |",
    ] {
        assert!(table.contains(vm) && now.contains(vm), "{now}");
    }
}

/// An HTTP/1.1 POST to the webhook receiver on loopback; the status code.
fn post(addr: &str, headers: &[(&str, String)], body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "POST /hook HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn hmac_hex(body: &[u8], secret: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    m.update(body);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_signed_webhook_starts_a_fetch_at_once_and_a_bad_one_is_refused() {
    use std::io::BufRead;
    let pve = fake!(with_template);
    let remote = GitRemote::new();
    push(&remote, &manifests(1, "1G"), "one");
    let token = remote.scratch(".").join("token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    std::fs::write(remote.scratch(".").join("hook.secret"), "s3cret\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .arg("run")
        .arg("--state-dir")
        .arg(remote.scratch(".").join("state"))
        .arg("--repo")
        .arg(remote.url())
        .args(["--path", "clusters/prod", "--node", "pve1", "--no-lease"])
        .arg("--cache")
        .arg(remote.scratch(".").join("cache"))
        .args(["--interval", "1h", "--webhook-listen", "127.0.0.1:0"])
        .arg("--webhook-secret-file")
        .arg(remote.scratch(".").join("hook.secret"))
        .arg("--vmlist")
        .arg(remote.scratch(".").join("none"))
        .args(["--api-url", &pve.base_url()])
        .arg("--token-file")
        .arg(&token)
        .arg("--ca-file")
        .arg(&pve.info.ca_file)
        .env("RUST_LOG", "pve_gitops=info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send((std::time::Instant::now(), line));
        }
    });
    let wait_for = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((at, line)) if pred(&line) => return (at, line),
                Ok(_) => {}
                Err(e) => panic!("no log line for {what}: {e}"),
            }
        }
    };
    let (_, listening) = wait_for("the receiver", &|l| {
        l.contains("webhook receiver listening")
    });
    let addr = listening
        .split("bound=")
        .nth(1)
        .expect("bound address logged")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    wait_for("the first pass", &|l| {
        l.contains("reconciled") && l.contains("changed=1")
    });

    push(&remote, &manifests(2, "1G"), "two");
    let body = r#"{"ref":"refs/heads/main"}"#;
    let bad = hmac_hex(body.as_bytes(), b"wrong");
    assert_eq!(
        post(
            &addr,
            &[("X-Hub-Signature-256", format!("sha256={bad}"))],
            body
        ),
        401
    );
    assert_eq!(post(&addr, &[], body), 401);
    wait_for("the refusal", &|l| l.contains("webhook refused"));
    let good = hmac_hex(body.as_bytes(), b"s3cret");
    assert_eq!(
        post(
            &addr,
            &[("X-Hub-Signature-256", format!("sha256={good}"))],
            body
        ),
        202
    );
    let sent = std::time::Instant::now();
    let (fetched_at, _) = wait_for("the fetch", &|l| l.contains("fetched"));
    let took = fetched_at.saturating_duration_since(sent);
    println!("webhook to fetch: {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "the fetch started {took:?} after the webhook"
    );
    wait_for("the second pass", &|l| {
        l.contains("reconciled") && l.contains("changed=1")
    });
    assert!(pve.control.vm(702).await.is_some());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Commit `text` as `clusters/prod/web.yaml`, signed by `key` (or unsigned), and push it.
fn push_signed(remote: &GitRemote, text: &str, message: &str, key: Option<&Path>) -> String {
    remote.write("clusters/prod/web.yaml", text);
    let commit = match key {
        Some(key) => remote.commit_signed(message, key),
        None => remote.commit(message),
    };
    remote.push("main");
    commit
}

/// Signed-commit mode through `pve-gitops run` (allowed signers from the config file):
/// a head signed by an allowed key applies; an unsigned head and one signed by another
/// key apply nothing and the status branch says why; the agent keeps running, and the
/// next signed head applies.
#[tokio::test]
async fn run_in_signed_commit_mode_applies_only_heads_signed_by_an_allowed_key() {
    let pve = fake!(with_template);
    let remote = GitRemote::new();
    let keys = remote.scratch("keys");
    let alice = ssh_keygen(&keys, "alice");
    let mallory = ssh_keygen(&keys, "mallory");
    let signers = keys.join("allowed_signers");
    std::fs::write(
        &signers,
        format!("alice@example.org {}\n", public_key(&alice)),
    )
    .unwrap();
    let first = push_signed(&remote, &manifests(1, "1G"), "one", Some(&alice));

    let dir = remote.scratch("agent");
    let token = dir.join("token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {url}\n  path: clusters/prod\n  cache: {cache}\n  allowedSigners: {signers}\n  interval: 1s\n\
             api:\n  url: {api}\n  tokenFile: {token}\n  caFile: {ca}\n\
             interval: 1s\n",
            url = remote.url(),
            cache = dir.join("cache").display(),
            signers = signers.display(),
            api = pve.base_url(),
            token = token.display(),
            ca = pve.info.ca_file.display(),
        ),
    )
    .unwrap();
    let mut agent = Agent::run(
        &dir,
        &args!["--config", &config, "--metrics-listen", "127.0.0.1:0"],
    );
    agent.wait_for("the first apply", |l| {
        l.contains("status committed: apply") && l.contains(&first[..7])
    });
    assert!(pve.control.vm(701).await.is_some());

    let show = |file: &str| git(&remote.bare, &["show", &format!("{STATUS}:prod/{file}")]);
    let refused = [
        (None, "it is not signed".to_string()),
        (
            Some(mallory.as_path()),
            format!(
                "it is signed by {}, which is not an allowed signer",
                fingerprint(&mallory)
            ),
        ),
    ];
    for (key, why) in refused {
        pve.control.reset_counters().await;
        let head = push_signed(&remote, &manifests(2, "1G"), "two", key);
        agent.wait_for("the rejection", |l| {
            l.contains(&format!("status committed: reject {}: 1 error", &head[..7]))
        });
        let message = git(&remote.bare, &["log", "-1", "--format=%B", STATUS]);
        assert_eq!(
            message.trim_end(),
            format!(
                "reject {}: 1 error\n\nApplied-Commit: {first}\nRejected-Commit: {head}\nCluster: prod\nNode: pve1",
                &head[..7]
            )
        );
        let errors = show("errors.md");
        assert!(
            errors.contains(&format!(
                "{}: head {head} of `main` refused: {why}",
                remote.url()
            )),
            "{errors}"
        );
        assert!(
            errors.contains(&format!("the cluster stays at `{first}`")),
            "{errors}"
        );
        assert!(
            show("STATUS.md").contains(&format!("**Revision `{head}` was rejected**")),
            "{}",
            show("STATUS.md")
        );
        assert_eq!(pve.control.counters().await.writes, 0, "nothing applied");
        assert!(pve.control.vm(702).await.is_none());
        assert!(agent.running(), "the agent keeps running");
    }

    let good = push_signed(&remote, &manifests(2, "1G"), "two, signed", Some(&alice));
    agent.wait_for("the signed head's apply", |l| {
        l.contains(&format!("status committed: apply {}", &good[..7]))
    });
    assert!(pve.control.vm(702).await.is_some());
    let files = git(&remote.bare, &["ls-tree", "-r", "--name-only", STATUS]);
    assert!(!files.contains("errors.md"), "{files}");
    assert_eq!(
        git(&remote.bare, &["rev-parse", "main"]).trim(),
        good,
        "the applied branch is never written"
    );
}

const STATUS: &str = "pve-gitops/status";

/// `pve-gitops status --state-dir DIR`: exit code and stdout.
fn status_cli(state: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .arg("status")
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
