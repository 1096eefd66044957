//! Which SSH host keys `init` pins: given on the command line (`--host-key`), taken
//! from a known_hosts file (`--known-hosts`), kept from an existing config, or read
//! from the server and confirmed by the operator. Never trusted on first use without
//! that confirmation.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// `(host, port)` of an SSH URL: `ssh://user@host:port/path` or `user@host:path`.
pub fn host_and_port(url: &str) -> Option<(String, u16)> {
    let target = crate::source::SshTarget::parse(url).ok()?;
    Some((target.host, target.port))
}

/// The lines of a known_hosts file that name the URL's host (`host` on port 22,
/// `[host]:port` otherwise). Hashed entries (`|1|…`) cannot be matched and are skipped.
pub fn from_known_hosts(file: &Path, url: &str) -> Result<Vec<String>> {
    let (host, port) = host_and_port(url).context("the repository URL names no SSH host")?;
    let wanted = if port == 22 {
        host.clone()
    } else {
        format!("[{host}]:{port}")
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|hosts| hosts.split(',').any(|h| h == wanted))
        })
        .map(|l| {
            // Keep the key only: the pin belongs to this repository, not to a host name.
            l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
        })
        .collect();
    if lines.is_empty() {
        bail!(
            "{} has no entry for {wanted} (hashed entries cannot be matched: \
             use ssh-keyscan, or --host-key)",
            file.display()
        );
    }
    crate::source::HostKeyPins::parse(&lines.join("\n"))
        .with_context(|| format!("{}", file.display()))?;
    Ok(lines)
}

/// Read the server's host key and ask the operator to confirm it. Without a terminal
/// to ask on, fail with the fingerprint and how to pin it.
pub fn confirm(url: &str, out: &mut dyn Write) -> Result<Vec<String>> {
    crate::source::bound_network_waits(crate::source::DEFAULT_TIMEOUT);
    let fingerprint = crate::source::host_key_fingerprint(url)?;
    let host = host_and_port(url).map_or_else(|| url.to_string(), |(h, _)| h);
    writeln!(out, "[??] the SSH host key of {host} is {fingerprint}")?;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "the host key of {host} must be confirmed: check that {fingerprint} is the \
             server's (your forge documents its fingerprints; on the server: \
             ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run init again with \
             --host-key {fingerprint}"
        );
    }
    write!(out, "     is this the server's key? type yes to pin it: ")?;
    out.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("host key not confirmed; nothing pinned");
    }
    Ok(vec![fingerprint])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_ssh_urls() {
        let h = |u| host_and_port(u);
        assert_eq!(
            h("ssh://git@example.org/x.git"),
            Some(("example.org".into(), 22))
        );
        assert_eq!(
            h("ssh://git@127.0.0.1:2222/x"),
            Some(("127.0.0.1".into(), 2222))
        );
        assert_eq!(
            h("git@example.org:infra/x.git"),
            Some(("example.org".into(), 22))
        );
    }

    #[test]
    fn known_hosts_lines_for_the_host_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPnMNZAdOzgcEHuW20gVcR9wyvFOZuYKBflowxavkk67";
        std::fs::write(
            &file,
            format!("other.org {key}\n[git.example.org]:2222,10.0.0.1 {key}\n"),
        )
        .unwrap();
        let lines = from_known_hosts(&file, "ssh://git@git.example.org:2222/x").unwrap();
        assert_eq!(lines, vec![key.to_string()]);
        let err = from_known_hosts(&file, "git@git.example.org:x").unwrap_err();
        assert!(
            err.to_string().contains("no entry for git.example.org"),
            "{err}"
        );
    }
}
