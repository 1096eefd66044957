//! `pve-gitops init` and `pve-gitops doctor` as a user runs them, against fakepve (with the
//! harness's stateful access layer, tests/fakepve/access.py) and a temporary directory
//! standing for /etc/pve.
//!
//! init: creates the user, a role with exactly the privileges the agent needs, the ACL
//! and a privilege-separated token that really authenticates and is really limited, key
//! files with mode 0600 and a config `run --config` works with (its least privileges
//! are enough to converge a VM); run again it writes nothing and keeps every key byte.
//! Over SSH it shows the server's host key and pins it only once confirmed.
//!
//! doctor: passes on that setup, and names the failing check on each broken one.

#[macro_use]
mod support;

use pve_gitops::access::privileges;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::fakepve::FakePve;
use support::git::GitRemote;

const VM: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: web }
spec: { vmid: 601, node: pve1, clone: { template: 9000 }, memory: 1G }
";

fn bin(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pve-gitops"));
    c.args(args)
        .stdin(Stdio::null())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    c
}

fn text(o: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fake cluster with template 9000, a repository with one VM, and a directory for
/// /etc/pve; `admin` is the harness's root token.
struct Setup {
    pve: FakePve,
    remote: GitRemote,
    root: PathBuf,
    admin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Option<Setup> {
        let pve = FakePve::with_template().await?;
        let remote = GitRemote::new();
        remote.write("clusters/a/vm.yaml", VM);
        remote.commit("cluster a");
        remote.push("main");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("etc-pve");
        let admin = dir.path().join("admin-token");
        std::fs::write(
            &admin,
            format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
        )
        .unwrap();
        Some(Setup {
            pve,
            remote,
            root,
            admin,
            _dir: dir,
        })
    }

    fn connection(&self) -> Vec<String> {
        vec![
            "--api-url".into(),
            self.pve.base_url(),
            "--ca-file".into(),
            self.pve.info.ca_file.display().to_string(),
        ]
    }

    /// `init` with the admin token; `extra` after the common flags.
    fn init(&self, repo: &str, extra: &[&str]) -> Output {
        bin(&["init", "--repo", repo, "--path", "clusters/a"])
            .arg("--pve-root")
            .arg(&self.root)
            .arg("--token-file")
            .arg(&self.admin)
            .args(self.connection())
            .args(extra)
            .output()
            .unwrap()
    }

    fn config(&self) -> PathBuf {
        self.root.join("pve-gitops/config.yaml")
    }

    fn private(&self, name: &str) -> PathBuf {
        self.root.join("priv/pve-gitops").join(name)
    }

    /// One `run` pass with the written config.
    fn run_once(&self) -> Output {
        bin(&["run", "--config"])
            .arg(self.config())
            .args(["--no-lease", "--node", "pve1", "--passes", "1"])
            .arg("--state-dir")
            .arg(self.root.join("state"))
            .arg("--vmlist")
            .arg(self.root.join("no-vmlist"))
            .arg("--cache")
            .arg(self.remote.scratch("cache"))
            .output()
            .unwrap()
    }

    fn doctor(&self) -> Output {
        bin(&["doctor", "--config"])
            .arg(self.config())
            .arg("--cache")
            .arg(self.remote.scratch("doctor-cache"))
            .output()
            .unwrap()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn init_sets_up_a_least_privilege_token_and_a_second_run_changes_nothing() {
    let Some(s) = Setup::new().await else { return };
    let out = s.init(&s.remote.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "[ok] user pve-gitops@pve",
        "[ok] role PVEGitOps (",
        "[ok] API token pve-gitops@pve!agent created",
        "[ok] ACL: PVEGitOps on / for pve-gitops@pve and pve-gitops@pve!agent",
        "[ok] age identity ",
        "[ok] config ",
    ] {
        assert!(stdout.contains(line), "{line}\n{}", text(&out));
    }

    // PVE's side, as the harness keeps it.
    let access = s.pve.control.access().await;
    assert!(access["users"]["pve-gitops@pve"].is_object(), "{access}");
    let wanted: BTreeSet<String> = privileges::names(9).iter().map(|p| p.to_string()).collect();
    assert_eq!(strings(&access["roles"]["PVEGitOps"]), wanted);
    assert_eq!(
        access["tokens"]["pve-gitops@pve!agent"]["privsep"],
        json!(1)
    );
    let mut acl: Vec<(String, String, String)> = access["acl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().into(),
                e["ugid"].as_str().unwrap().into(),
                e["roleid"].as_str().unwrap().into(),
            )
        })
        .collect();
    acl.sort();
    assert_eq!(
        acl,
        vec![
            ("/".into(), "pve-gitops@pve".into(), "PVEGitOps".into()),
            (
                "/".into(),
                "pve-gitops@pve!agent".into(),
                "PVEGitOps".into()
            ),
        ]
    );

    // The files: secrets 0600, the token line the agent reads.
    let token = s.private("token");
    let age_key = s.private("age.key");
    assert_eq!(mode(&token), 0o600);
    assert_eq!(mode(&age_key), 0o600);
    let token_text = std::fs::read_to_string(&token).unwrap();
    assert!(
        token_text.starts_with("pve-gitops@pve!agent="),
        "token file"
    );
    assert!(
        !s.private("deploy_key").exists(),
        "no deploy key for file://"
    );
    assert!(stdout.contains("age1"), "the recipient is printed");

    // The new token authenticates, holds exactly the role on /, and nothing more.
    let mut o = s.pve.client_options();
    o.token = pve_gitops::pve::ApiToken::parse(&token_text).unwrap();
    let agent = pve_gitops::pve::PveClient::new(o).unwrap();
    let held = pve_gitops::access::api::permissions(&agent, "/")
        .await
        .unwrap();
    assert_eq!(held, wanted);
    let refused = pve_gitops::access::api::create_user(&agent, "x@pve", "").await;
    assert!(
        matches!(refused, Err(pve_gitops::pve::PveError::Auth(_))),
        "{refused:?}"
    );

    // `run --config` works with what init wrote, and the least privileges suffice.
    let run = s.run_once();
    assert!(run.status.success(), "{}", text(&run));
    let vm = s.pve.control.vm(601).await.expect("converged");
    assert_eq!(vm["status"], json!("running"), "{vm}");

    // A second init: a no-op that says so; no API write, the same bytes in every file.
    let before: Vec<Vec<u8>> = [&token, &age_key, &s.config()]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    s.pve.control.reset_counters().await;
    let again = s.init(&s.remote.url(), &[]);
    assert!(again.status.success(), "{}", text(&again));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(!stdout.contains("[ok]"), "{}", text(&again));
    assert!(stdout.contains("nothing to do"), "{}", text(&again));
    let counters = s.pve.control.counters().await;
    assert_eq!(counters.writes, 0, "{:?}", counters.by_endpoint);
    assert!(counters.reads > 0);
    let after: Vec<Vec<u8>> = [&token, &age_key, &s.config()]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn init_converges_a_role_edited_behind_its_back_and_regenerates_a_lost_token() {
    let Some(s) = Setup::new().await else { return };
    let out = s.init(&s.remote.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    s.pve
        .control
        .set_role_privileges("PVEGitOps", &["VM.Audit", "Sys.Console"])
        .await;
    let old_token = std::fs::read_to_string(s.private("token")).unwrap();
    std::fs::remove_file(s.private("token")).unwrap();
    let age_key = std::fs::read(s.private("age.key")).unwrap();

    let out = s.init(&s.remote.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[ok] role PVEGitOps updated (added: "),
        "{stdout}"
    );
    assert!(stdout.contains("removed: Sys.Console)"), "{stdout}");
    assert!(stdout.contains("secret regenerated"), "{stdout}");
    let access = s.pve.control.access().await;
    let wanted: BTreeSet<String> = privileges::names(9).iter().map(|p| p.to_string()).collect();
    assert_eq!(strings(&access["roles"]["PVEGitOps"]), wanted);
    let new_token = std::fs::read_to_string(s.private("token")).unwrap();
    assert_ne!(new_token, old_token);
    assert_eq!(std::fs::read(s.private("age.key")).unwrap(), age_key);
}

#[tokio::test]
async fn init_pins_an_ssh_host_key_only_once_confirmed() {
    let Some(s) = Setup::new().await else { return };
    let keys = s.remote.scratch("ssh");
    let Some(sshd) = support::sshd::Sshd::start(&keys) else {
        return;
    };
    let url = sshd.url(&s.remote.bare);
    let expected = support::git::fingerprint(&sshd.host_key);

    // No terminal to confirm on: the key is shown, nothing is done.
    s.pve.control.reset_counters().await;
    let out = s.init(&url, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains(&format!("[??] the SSH host key of 127.0.0.1 is {expected}")),
        "{all}"
    );
    assert!(all.contains(&format!("--host-key {expected}")), "{all}");
    assert_eq!(s.pve.control.counters().await.writes, 0);
    assert!(!s.root.exists(), "nothing written");

    // Confirmed: pinned, and a deploy key made.
    let out = s.init(&url, &["--host-key", &expected]);
    assert!(out.status.success(), "{}", text(&out));
    let deploy_key = s.private("deploy_key");
    assert_eq!(mode(&deploy_key), 0o600);
    let public = std::fs::read_to_string(deploy_key.with_extension("pub")).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(public.trim()), "{stdout}");
    let config = std::fs::read_to_string(s.config()).unwrap();
    assert!(config.contains(&expected), "{config}");

    // Once the forge knows the deploy key, the agent fetches over SSH with it.
    let authorized = keys.join("authorized_keys");
    let mut keys_text = std::fs::read_to_string(&authorized).unwrap();
    keys_text.push_str(&public);
    std::fs::write(&authorized, keys_text).unwrap();
    let run = s.run_once();
    assert!(run.status.success(), "{}\n{}", text(&run), sshd.log());
    assert!(s.pve.control.vm(601).await.is_some());

    // doctor checks the same over SSH, and names a changed host key.
    std::fs::create_dir_all(s.root.join("priv/lock")).unwrap();
    let good = s.doctor();
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    let other = support::git::fingerprint(&sshd.client_key);
    std::fs::write(s.config(), config.replace(&expected, &other)).unwrap();
    let changed = s.doctor();
    assert_eq!(changed.status.code(), Some(1), "{}", text(&changed));
    let failed = failed(&changed);
    assert_eq!(failed.len(), 1, "{}", text(&changed));
    assert_eq!(failed[0].0, "repository");
    assert!(
        failed[0]
            .1
            .contains(&format!("expected {other}, got {expected}")),
        "{}",
        text(&changed)
    );
}

const VM_WITH_SECRET: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: web }
spec:
  vmid: 601
  node: pve1
  clone: { template: 9000 }
  cloudInit: { user: debian, password: { file: secrets/pw.age } }
";

/// ASCII-armored: the git source reads text files only (a binary `.age` in git is
/// recorded as opaque by source/tree.rs and cannot be decrypted from a git revision).
fn encrypt(recipient: &dyn age::Recipient, plain: &[u8]) -> Vec<u8> {
    use age::armor::{ArmoredWriter, Format};
    use std::io::Write;
    let enc = age::Encryptor::with_recipients(std::iter::once(recipient)).unwrap();
    let mut out = Vec::new();
    let armored = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).unwrap();
    let mut w = enc.wrap_output(armored).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap().finish().unwrap();
    out
}

/// The checks that did not pass and did not skip: `(name, detail)`.
fn failed(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            (parts.next()? == "FAIL")
                .then(|| (name.to_string(), parts.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Replace a file's bytes (a secret keeps mode 0600).
fn replace(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
}

#[tokio::test]
async fn doctor_passes_on_a_good_setup_and_names_each_broken_check() {
    let Some(s) = Setup::new().await else { return };
    let out = s.init(&s.remote.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    // pmxcfs always has its lock directory.
    std::fs::create_dir_all(s.root.join("priv/lock")).unwrap();
    // A secret in the repository, encrypted to the identity init made.
    let age_key = s.private("age.key");
    let identity = std::fs::read_to_string(&age_key).unwrap();
    let recipient: age::x25519::Recipient = identity
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .parse()
        .unwrap();
    s.remote.write("clusters/a/vm.yaml", VM_WITH_SECRET).write(
        "clusters/a/secrets/pw.age",
        encrypt(&recipient, b"hunter2\n"),
    );
    s.remote.commit("a secret");
    s.remote.push("main");

    let good = s.doctor();
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(stdout.contains("all 9 checks passed"), "{stdout}");
    assert!(stdout.contains("1 decrypted with"), "{stdout}");
    assert!(!stdout.contains("hunter2"));

    let config = std::fs::read_to_string(s.config()).unwrap();
    let token = std::fs::read(s.private("token")).unwrap();
    let all = privileges::names(9);
    let broken = |out: &Output, check: &str, detail: &str| {
        assert_eq!(out.status.code(), Some(1), "{check}: {}", text(out));
        let failed = failed(out);
        assert_eq!(
            failed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            vec![check],
            "{}",
            text(out)
        );
        assert!(failed[0].1.contains(detail), "{check}: {}", text(out));
    };

    // A wrong token secret.
    replace(
        &s.private("token"),
        b"pve-gitops@pve!agent=00000000-0000-0000-0000-000000000000\n",
    );
    broken(&s.doctor(), "token", "pve-gitops@pve!agent refused");
    replace(&s.private("token"), &token);

    // A privilege taken from the role.
    let fewer: Vec<&str> = all.iter().copied().filter(|p| *p != "VM.Clone").collect();
    s.pve.control.set_role_privileges("PVEGitOps", &fewer).await;
    broken(&s.doctor(), "privileges", "missing on /: VM.Clone");
    s.pve.control.set_role_privileges("PVEGitOps", &all).await;

    // The API's certificate is not from the configured CA.
    let ca = s.pve.info.ca_file.display().to_string();
    let other = s.pve.info.other_ca_file.display().to_string();
    std::fs::write(s.config(), config.replace(&ca, &other)).unwrap();
    broken(&s.doctor(), "api", "certificate not trusted");
    std::fs::write(s.config(), &config).unwrap();

    // The repository cannot be reached.
    let gone = format!("file://{}/gone.git", s.root.display());
    std::fs::write(s.config(), config.replace(&s.remote.url(), &gone)).unwrap();
    broken(&s.doctor(), "repository", "gone.git");
    std::fs::write(s.config(), &config).unwrap();

    // An identity that does not open the repository's secrets.
    let right = std::fs::read(&age_key).unwrap();
    let (wrong, _) = pve_gitops::init::keys::new_age_identity();
    replace(&age_key, wrong.as_bytes());
    broken(&s.doctor(), "secrets", "secrets/pw.age");
    replace(&age_key, &right);

    // The lock directory is not usable.
    std::fs::remove_dir(s.root.join("priv/lock")).unwrap();
    std::fs::write(s.root.join("priv/lock"), b"not a directory").unwrap();
    broken(&s.doctor(), "lock", "priv/lock/pve-gitops-doctor-");
    std::fs::remove_file(s.root.join("priv/lock")).unwrap();
    std::fs::create_dir(s.root.join("priv/lock")).unwrap();

    // One node's clock is five minutes ahead.
    s.pve.control.set_clock_skew("pve2", 300.0).await;
    broken(&s.doctor(), "clock", "pve2 is +300s off");
    s.pve.control.set_clock_skew("pve2", 0.0).await;

    // Everything put back: healthy again.
    let again = s.doctor();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}
