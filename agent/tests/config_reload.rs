//! `pve-gitops run --config FILE` as a process against fakepve and a local git repository:
//! the file's settings are used, an edit of the file is followed without a restart (the
//! cluster directory changes, and the new one is applied), and an invalid edit is logged
//! with file:line while the agent keeps running on the previous settings.

#[macro_use]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::control::eventually;
use support::fakepve::FakePve;
use support::git::GitRemote;
use support::manifests::EXTERNAL;

const DEADLINE: Duration = Duration::from_secs(60);

fn cluster(vmid: u32, name: &str) -> String {
    format!(
        "{EXTERNAL}---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: {{ name: {name} }}
spec: {{ vmid: {vmid}, node: pve1, clone: {{ template: 9000 }}, memory: 1G }}
"
    )
}

fn config(pve: &FakePve, remote: &GitRemote, token: &Path, path: &str) -> String {
    format!(
        "repo:\n  url: {url}\n  path: {path}\n  cache: {cache}\n\
         api:\n  url: {api}\n  tokenFile: {token}\n  caFile: {ca}\n\
         interval: 1h\n",
        url = remote.url(),
        cache = remote.scratch("cache").display(),
        api = pve.base_url(),
        token = token.display(),
        ca = pve.info.ca_file.display(),
    )
}

/// The child's stderr lines, collected by a thread.
struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn start(config: &Path, state: &Path) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--no-lease", "--node", "pve1", "--config-poll", "200ms"])
            .arg("--state-dir")
            .arg(state)
            .arg("--vmlist")
            .arg(state.join("no-vmlist"))
            .env("RUST_LOG", "pve_gitops=info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary runs");
        let log = support::agent::collect_stderr(&mut child);
        Agent { child, log }
    }

    fn logged(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.log.lock().unwrap().iter().find(|l| pred(l)).cloned()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for_vm(pve: &FakePve, agent: &mut Agent, vmid: u32) {
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            if pve.control.vm(vmid).await.is_some() {
                return true;
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("the agent exited ({status}):\n{}", agent.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "VM {vmid} never appeared:\n{}", agent.log());
}

#[tokio::test]
async fn run_follows_the_config_file_and_keeps_the_old_one_when_an_edit_is_invalid() {
    let pve = fake!(with_template);
    let remote = GitRemote::new();
    remote
        .write("clusters/a/vm.yaml", cluster(601, "alpha"))
        .write("clusters/b/vm.yaml", cluster(701, "bravo"))
        .write("clusters/c/vm.yaml", cluster(801, "charlie"));
    remote.commit("three clusters");
    remote.push("main");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(
        &token,
        format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    )
    .unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(&pve, &remote, &token, "clusters/a")).unwrap();

    let mut agent = Agent::start(&config_path, &dir.path().join("state"));
    wait_for_vm(&pve, &mut agent, 601).await;

    // An edit of the file, with the interval at 1h: only the reload can apply cluster b.
    std::fs::write(&config_path, config(&pve, &remote, &token, "clusters/b")).unwrap();
    wait_for_vm(&pve, &mut agent, 701).await;

    // An invalid edit: logged with file:line:col, the agent keeps running on cluster b.
    let invalid = config(&pve, &remote, &token, "clusters/c").replace("  path:", "  pth:");
    std::fs::write(&config_path, invalid).unwrap();
    let at = format!("{}:3:3: repo: unknown field `pth`", config_path.display());
    let line = eventually("the invalid config to be logged", DEADLINE, || async {
        agent.logged(|l| l.contains(&at))
    })
    .await;
    assert!(
        line.contains("keeping the previous configuration"),
        "{line}"
    );
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent runs on"
    );
    assert!(pve.control.vm(801).await.is_none());

    // Fixed: the next valid file is used.
    std::fs::write(&config_path, config(&pve, &remote, &token, "clusters/c")).unwrap();
    wait_for_vm(&pve, &mut agent, 801).await;
    assert_eq!(
        agent.log().matches("configuration reloaded").count(),
        2,
        "{}",
        agent.log()
    );
}
