//! A cluster of agents under test (the failover test, the chaos soak): one
//! `pve-gitops run` per node, each with its own state, API token and mount of the pmxcfs
//! emulation (served from the test process), following a manifests directory or a
//! bare repository (with its own cache), with the lease timing scaled down 60 times
//! (lifetime 2 s, self-fence margin 1 s, renew 250 ms; production 120/60/10 s).
//!
//! Every start of an agent logs to its own file under the cluster's directory, so the
//! logs of killed agents stay for the secret scan and for failure messages.

use pmxcfs_emu::{Emulator, Mount};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
pub const LIFETIME: Duration = Duration::from_secs(2);
pub const MARGIN: Duration = Duration::from_secs(1);
/// The lock the agents elect their leader with, below `priv/lock/`.
pub const LOCK: &str = "pve-gitops";

/// What the agents follow.
pub enum Source {
    /// A manifests directory (`pve-gitops run <dir>`).
    Dir(PathBuf),
    /// A git repository's cluster directory ([`crate::support::corpus::CLUSTER_DIR`]),
    /// with the age identity that opens the revision's secrets, asked for its head every
    /// `git_interval` (`--git-interval`).
    Repo {
        url: String,
        identity: PathBuf,
        git_interval: &'static str,
    },
}

/// What every agent is started with.
pub struct AgentConfig {
    pub source: Source,
    pub api_url: String,
    pub ca_file: PathBuf,
}

struct Agent {
    child: Child,
    log: PathBuf,
}

pub struct Cluster {
    /// Agents first: they are killed before the mounts go away.
    agents: BTreeMap<&'static str, Agent>,
    mounts: BTreeMap<&'static str, Mount>,
    pub emu: Emulator,
    dir: PathBuf,
    config: AgentConfig,
    starts: usize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for agent in self.agents.values_mut() {
            let _ = agent.child.kill();
            let _ = agent.child.wait();
        }
    }
}

impl Cluster {
    /// Mounts the emulation for every node under `dir` and writes each node's token
    /// file (`tokens`: node → `root@pam!node=secret`); starts no agent.
    pub fn new(dir: &Path, config: AgentConfig, tokens: &BTreeMap<&str, String>) -> Cluster {
        let emu = Emulator::new(LIFETIME);
        let mut mounts = BTreeMap::new();
        for node in NODES {
            let path = dir.join(format!("mnt-{node}"));
            std::fs::create_dir_all(&path).unwrap();
            mounts.insert(node, emu.mount(node, &path).unwrap());
            std::fs::write(dir.join(format!("{node}.token")), &tokens[node]).unwrap();
        }
        Cluster {
            agents: BTreeMap::new(),
            mounts,
            emu,
            dir: dir.to_path_buf(),
            config,
            starts: 0,
        }
    }

    /// The `--git-interval` of the agents started from now on (a repository source).
    pub fn set_git_interval(&mut self, interval: &'static str) {
        match &mut self.config.source {
            Source::Repo { git_interval, .. } => *git_interval = interval,
            Source::Dir(_) => panic!("the agents follow a directory"),
        }
    }

    /// The directory the agents' files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `node`'s mount of the emulation (its `/etc/pve`).
    pub fn mount(&self, node: &str) -> &Path {
        self.mounts[node].path()
    }

    /// The log of `node`'s running agent.
    pub fn log(&self, node: &str) -> Option<&Path> {
        self.agents.get(node).map(|a| a.log.as_path())
    }

    pub fn running(&self, node: &str) -> bool {
        self.agents.contains_key(node)
    }

    pub fn apply_log(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.windows"))
    }

    pub fn state_dir(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}-state"))
    }

    /// Every log file any agent start wrote.
    pub fn logs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        out.sort();
        out
    }

    /// Starts `node`'s agent; it logs to a file of its own.
    pub fn start(&mut self, node: &'static str) {
        assert!(!self.running(node), "{node} runs already");
        self.starts += 1;
        let log = self.dir.join(format!("{node}-{:03}.log", self.starts));
        let c = &self.config;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pve-gitops"));
        cmd.arg("run");
        match &c.source {
            Source::Dir(dir) => cmd.arg(dir),
            Source::Repo {
                url,
                identity,
                git_interval,
            } => cmd
                .args(["--repo", url, "--path", crate::support::corpus::CLUSTER_DIR])
                .args(["--git-interval", git_interval])
                .arg("--cache")
                .arg(self.dir.join(format!("{node}-cache")))
                .arg("--identity")
                .arg(identity),
        };
        let child = cmd
            .arg("--state-dir")
            .arg(self.state_dir(node))
            .args(["--api-url", &c.api_url])
            .arg("--token-file")
            .arg(self.dir.join(format!("{node}.token")))
            .arg("--ca-file")
            .arg(&c.ca_file)
            .args(["--vmlist", "/nonexistent/.vmlist"])
            .args(["--interval", "150ms", "--node", node])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--pmxcfs-root")
            .arg(self.mounts[node].path())
            .args(["--lock-lifetime", "2s", "--lock-margin", "1s"])
            .args(["--lock-renew", "250ms"])
            .arg("--apply-log")
            .arg(self.apply_log(node))
            .env("RUST_LOG", "pve_gitops=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("pve-gitops runs");
        self.agents.insert(node, Agent { child, log });
    }

    /// The head `node`'s cache holds of the repository's branch `main` (what its agent
    /// last fetched), if it fetched it yet.
    pub fn fetched(&self, node: &str) -> Option<String> {
        let caches = std::fs::read_dir(self.dir.join(format!("{node}-cache"))).ok()?;
        caches.flatten().find_map(|cache| {
            let repo = git2::Repository::open_bare(cache.path()).ok()?;
            let head = repo.refname_to_id("refs/remotes/origin/main").ok()?;
            Some(head.to_string())
        })
    }

    /// kill -9: no release, nothing flushed.
    pub fn kill(&mut self, node: &str) {
        let mut agent = self.agents.remove(node).expect("agent runs");
        agent.child.kill().unwrap();
        agent.child.wait().unwrap();
    }

    /// SIGTERM, and wait for the agent to exit (it releases the lock first). An agent
    /// stuck in a hung request may take a while; past 20 s it is killed and that is an
    /// error.
    pub fn terminate(&mut self, node: &str) -> Result<(), String> {
        let mut agent = self.agents.remove(node).expect("agent runs");
        let pid = agent.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = agent.child.try_wait().unwrap() {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("{node} exited with {status} on SIGTERM"))
                };
            }
            if Instant::now() > deadline {
                let _ = agent.child.kill();
                let _ = agent.child.wait();
                return Err(format!("{node} ignored SIGTERM for 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An agent that exited by itself: its node and status.
    pub fn exited(&mut self) -> Option<(String, String)> {
        for (node, agent) in self.agents.iter_mut() {
            if let Some(status) = agent.child.try_wait().unwrap() {
                return Some((node.to_string(), status.to_string()));
            }
        }
        None
    }

    /// The node holding the lock, as the emulation knows it.
    pub fn holder(&self) -> Option<String> {
        self.emu
            .locks()
            .into_iter()
            .find(|l| l.name == LOCK)
            .map(|l| l.owner)
    }

    /// The last `n` lines of every running agent's log.
    pub fn log_tails(&self, n: usize) -> String {
        self.agents
            .iter()
            .map(|(node, a)| {
                let text = std::fs::read_to_string(&a.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {node} ({})\n{}\n",
                    a.log.display(),
                    lines[lines.len().saturating_sub(n)..].join("\n")
                )
            })
            .collect()
    }
}
