//! The cluster-wide configuration file, `/etc/pve/pve-gitops/config.yaml`.
//!
//! It lives on pmxcfs, so every node reads the same file: `pve-gitops init` writes it
//! once, `pve-gitops run --config FILE` and `pve-gitops doctor` read it. It holds what
//! `run` otherwise takes as flags; a flag given on the command line wins over the file
//! ([`overlay`]). The running daemon follows edits without a restart ([`watch`]): a
//! new valid file replaces the old one, an invalid one is logged with `file:line:col`
//! and the old one stays in force.
//!
//! ```yaml
//! repo:
//!   url: ssh://git@git.example.org/infra/pve.git
//!   branch: main
//!   path: clusters/prod
//!   deployKey: /etc/pve/priv/pve-gitops/deploy_key
//!   hostKeys: ["SHA256:DtRtzr6c2VtIKhz7b0r4P6HElmkBIUM0qhZnX3K508Y"]
//! api:
//!   tokenFile: /etc/pve/priv/pve-gitops/token
//! identities: [/etc/pve/priv/pve-gitops/age.key]
//! interval: 15s
//! policy: { reboot: never }
//! metricsListen: 127.0.0.1:9596
//! webhook: { listen: 0.0.0.0:9595, secretFile: /etc/pve/priv/pve-gitops/webhook.secret }
//! ```
//!
//! Every key is optional; a missing one keeps the flag's default.

pub mod overlay;
pub mod watch;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `init` writes the file and `doctor` looks for it.
pub const DEFAULT_CONFIG: &str = "/etc/pve/pve-gitops/config.yaml";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentConfig {
    /// The manifests repository and where status goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoConfig>,
    /// How to reach the Proxmox API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiConfig>,
    /// age identity files (or SSH private keys) that decrypt the repository's secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<PathBuf>,
    /// Time between passes (`15s`, `1m`).
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// A full pass at least this often.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub resync: Option<Duration>,
    /// What the agent may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyConfig>,
    /// How much an apply does at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyConfig>,
    /// Where pmxcfs is mounted (`/etc/pve`); the lease lock lives below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmxcfs_root: Option<PathBuf>,
    /// Serve `/metrics` on this address, or `off` (`--metrics-listen`). Read at start: a
    /// change takes a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The push webhook receiver. Read at start: a change takes a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

/// `webhook:` — poll at once on a verified forge push webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookConfig {
    /// The address to listen on, e.g. `0.0.0.0:9595` (`--webhook-listen`).
    pub listen: std::net::SocketAddr,
    /// The shared secret (HMAC key, or GitLab's token) (`--webhook-secret-file`).
    pub secret_file: PathBuf,
}

/// `repo:` — the git source (see `pve-gitops run --help` for each flag).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoConfig {
    /// `ssh://…`, `git@host:path`, `https://…`, `file://…` (`--repo`).
    pub url: String,
    /// The branch applied (`--branch`, default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The cluster's directory in the repository (`--path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where status is committed (`--status-branch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_branch: Option<String>,
    /// Local cache of the repository (`--cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
    /// SSH deploy key, private key file (`--deploy-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_key: Option<PathBuf>,
    /// File holding an HTTPS access token (`--git-token-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// CA certificate(s) to verify an HTTPS remote against, instead of the system's
    /// store (`--git-ca-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The SSH server's host keys: known_hosts lines or `SHA256:…` (`--host-key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<String>,
    /// Apply only heads signed by a key in this file (`--allowed-signers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_signers: Option<PathBuf>,
    /// How often the remote is asked whether the branch moved (`--git-interval`, default
    /// `1m`; `0s`: every pass).
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long the remote may keep the agent waiting (`--git-timeout`, default `30s`).
    /// Read at start: a change takes effect when the agent restarts.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// `api:` — the Proxmox API connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiConfig {
    /// API base URL (`--api-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// File holding `USER@REALM!TOKENID=SECRET` (`--token-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// CA certificate(s) to verify the API against (`--ca-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Pin the API certificate by SHA-256 fingerprint instead (`--fingerprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// `policy:` — what the agent may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyConfig {
    /// `true`: delete owned VMs that are no longer declared (`--prune`); `false`: never
    /// delete anything, whatever the manifests say (`--no-prune`). Unset: the manifests'
    /// `ClusterPolicy` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// `never` or `allowed` (`--reboot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootConfig>,
    /// `ignore`, `report` or `heal`, over the manifests' drift mode (`--drift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftConfig {
    Ignore,
    Report,
    Heal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootConfig {
    Never,
    Allowed,
}

/// `apply:` — bounds of one apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplyConfig {
    /// VMs changed at once in the whole cluster (`--parallelism`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// VMs changed at once on one node (`--per-node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_node: Option<usize>,
    /// Clones of one template at once (`--clones-per-template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clones_per_template: Option<usize>,
}

/// A config file that cannot be used, located for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path:line:col: message`, as the manifests' errors are written.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl AgentConfig {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parse `text` (the contents of `path`, which only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let invalid = |line, column, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        };
        // An empty file (or only comments) is an empty configuration, not an error.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Self::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let e = e.into_inner();
            // serde_yaml appends " at line L column C" (the position goes in front) and
            // names the path of a nested error; a value's own error (a bad duration)
            // comes with neither (its position is the document's start): find its key.
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            let (line, column) = match e.location().map(|l| (l.line(), l.column())) {
                Some((1, 1)) | None => locate(text, &at).unwrap_or((1, 1)),
                Some(position) => position,
            };
            let named = matches!(at.as_str(), "" | "." | "?")
                || message.starts_with("unknown field")
                || message
                    .split(": ")
                    .next()
                    .is_some_and(|head| at.starts_with(head));
            let message = if named {
                message.to_string()
            } else {
                format!("{at}: {message}")
            };
            invalid(line, column, message)
        })?;
        config.check().map_err(|(at, m)| {
            let (line, column) = locate(text, at).unwrap_or((1, 1));
            invalid(line, column, m)
        })?;
        Ok(config)
    }

    /// Checks serde cannot express; `Err` names the key (`repo.url`) and the problem.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(repo) = &self.repo {
            if repo.url.trim().is_empty() {
                return Err(("repo.url", "repo.url is empty".into()));
            }
            if repo.deploy_key.is_some() && repo.token_file.is_some() {
                return Err((
                    "repo.tokenFile",
                    "repo: give deployKey or tokenFile, not both".into(),
                ));
            }
            crate::source::RemoteUrl::parse(&repo.url)
                .map_err(|e| ("repo.url", format!("repo.url: {e}")))?;
            if !repo.host_keys.is_empty() {
                crate::source::HostKeyPins::parse(&repo.host_keys.join("\n"))
                    .map_err(|e| ("repo.hostKeys", format!("repo.hostKeys: {e}")))?;
            }
        }
        if let Some(api) = &self.api {
            if api.ca_file.is_some() && api.fingerprint.is_some() {
                return Err((
                    "api.fingerprint",
                    "api: give caFile or fingerprint, not both".into(),
                ));
            }
        }
        if let Some(listen) = &self.metrics_listen {
            crate::telemetry::metrics::parse_listen(listen)
                .map_err(|e| ("metricsListen", format!("metricsListen: {e}")))?;
        }
        let timeout = self.repo.as_ref().and_then(|r| r.timeout);
        for (name, d) in [
            ("interval", self.interval),
            ("resync", self.resync),
            ("repo.timeout", timeout),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err((name, format!("{name} must be longer than 0s")));
            }
        }
        if let Some(a) = &self.apply {
            for (name, n) in [
                ("apply.parallelism", a.parallelism),
                ("apply.perNode", a.per_node),
            ] {
                if n == Some(0) {
                    return Err((name, format!("{name} must be at least 1")));
                }
            }
        }
        Ok(())
    }

    /// The file as `init` writes it: a header, then the YAML.
    pub fn to_yaml(&self) -> String {
        let body = serde_yaml::to_string(self).expect("the config serializes");
        format!(
            "# pve-gitops cluster configuration (on pmxcfs: every node reads it).\n\
             # Edits are picked up by running agents without a restart; an invalid file is\n\
             # logged and the previous one kept. Check it with: pve-gitops doctor\n\
             {body}"
        )
    }
}

/// The 1-based line and column of the value at `path` (`repo.branch`), by a plain scan:
/// each key is looked for after the previous one. Good enough for the file's two levels.
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    let mut found = None;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        let key = key.split('[').next().unwrap_or(key);
        let (i, line) = text
            .lines()
            .enumerate()
            .skip(from)
            .find(|(_, l)| key_column(l, key).is_some())?;
        let col = key_column(line, key)?;
        let value =
            line[col + key.len() + 1..].len() - line[col + key.len() + 1..].trim_start().len();
        found = Some((i + 1, col + key.len() + 1 + value + 1));
        from = i;
    }
    found
}

/// Where `key:` starts in `line`, as a key (after indentation, `{`, `,` or `- `).
fn key_column(line: &str, key: &str) -> Option<usize> {
    let pattern = format!("{key}:");
    line.match_indices(&pattern).map(|(i, _)| i).find(|&i| {
        line[..i]
            .trim_end()
            .chars()
            .last()
            .is_none_or(|c| matches!(c, '{' | ',' | '-'))
    })
}

/// `15s`, `1m30s` in YAML, as humantime spells them.
mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "\
repo:
  url: ssh://git@git.example.org/infra/pve.git
  branch: main
  path: clusters/prod
  statusBranch: pve-gitops/status
  cache: /var/lib/pve-gitops/cache
  deployKey: /etc/pve/priv/pve-gitops/deploy_key
  hostKeys: ['SHA256:DtRtzr6c2VtIKhz7b0r4P6HElmkBIUM0qhZnX3K508Y']
  allowedSigners: /etc/pve/pve-gitops/allowed_signers
  interval: 5m
api:
  url: https://127.0.0.1:8006/api2/json
  tokenFile: /etc/pve/priv/pve-gitops/token
  caFile: /etc/pve/pve-root-ca.pem
identities: [/etc/pve/priv/pve-gitops/age.key]
interval: 30s
resync: 10m
policy: { prune: true, reboot: allowed, drift: heal }
apply: { parallelism: 8, perNode: 2, clonesPerTemplate: 1 }
pmxcfsRoot: /etc/pve
metricsListen: 0.0.0.0:9596
webhook: { listen: '0.0.0.0:9595', secretFile: /etc/pve/priv/pve-gitops/webhook.secret }
";

    #[test]
    fn full_file_round_trips() {
        let c = AgentConfig::parse(Path::new("c.yaml"), FULL).unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(30)));
        assert_eq!(
            c.policy.as_ref().unwrap().reboot,
            Some(RebootConfig::Allowed)
        );
        assert_eq!(
            c.repo.as_ref().unwrap().path.as_deref(),
            Some("clusters/prod")
        );
        assert_eq!(
            c.repo.as_ref().unwrap().interval,
            Some(Duration::from_secs(300))
        );
        let again = AgentConfig::parse(Path::new("c.yaml"), &c.to_yaml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn empty_file_is_empty_config() {
        let c = AgentConfig::parse(Path::new("c.yaml"), "# nothing yet\n\n").unwrap();
        assert_eq!(c, AgentConfig::default());
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let cases = [
            (
                "repo:\n  url: file:///r\n  brnch: main\n",
                "c.yaml:3:3: repo: unknown field `brnch`",
            ),
            (
                "interval: soon\n",
                "c.yaml:1:11: interval: `soon` is not a duration",
            ),
            (
                "api:\n  caFile: [1]\n",
                "c.yaml:2:11: api.caFile: invalid type: sequence",
            ),
            (
                "identities: []\n  bad: indent\n",
                "c.yaml:2:3: did not find expected key",
            ),
            (
                "repo: { url: 'ftp://x/y' }\n",
                "c.yaml:1:14: repo.url: ftp://x/y: unsupported scheme",
            ),
            (
                "interval: 1s\nresync: 0s\n",
                "c.yaml:2:9: resync must be longer than 0s",
            ),
            (
                "repo:\n  url: file:///r\n  timeout: 0s\n",
                "c.yaml:3:12: repo.timeout must be longer than 0s",
            ),
            (
                "policy: { reboot: sometimes }\n",
                "c.yaml:1:19: policy.reboot: unknown variant `sometimes`",
            ),
            (
                "interval: 1s\nmetricsListen: everywhere\n",
                "c.yaml:2:16: metricsListen: \"everywhere\": invalid socket address",
            ),
            (
                "webhook: { listen: 0.0.0.0 }\n",
                "c.yaml:1:20: webhook.listen: invalid socket address",
            ),
        ];
        for (text, expected) in cases {
            let err = AgentConfig::parse(Path::new("c.yaml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }
}
