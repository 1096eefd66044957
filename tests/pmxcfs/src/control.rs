//! The control channel of the `pmxcfs-emu` binary: a Unix socket, one request line and
//! one answer line per connection, so a test in any language (or `socat`) can drive it.
//!
//! | request                      | answer                                          |
//! |------------------------------|-------------------------------------------------|
//! | `quorum <node> on` / `off`   | `ok`                                            |
//! | `lifetime <milliseconds>`    | `ok`                                            |
//! | `locks`                      | `ok <name>:<owner>:<mtime>:<age ms> …`          |
//! | `status`                     | `ok lifetime_ms=<ms> no_quorum=<node>,…`        |
//! | `shutdown`                   | `ok`, then the binary unmounts and exits        |
//!
//! Errors answer `err <message>`. The socket lives outside the mounts so that the
//! filesystem under test holds nothing but what the code under test put there.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Emulator, LockInfo};

/// Answers one request line; `Ok(None)` for `shutdown`.
pub fn handle(emulator: &Emulator, line: &str) -> Result<Option<String>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["quorum", node, state] => {
            let quorate = match *state {
                "on" => true,
                "off" => false,
                other => return Err(format!("quorum state must be on or off, not {other:?}")),
            };
            emulator.set_quorate(node, quorate);
            Ok(Some("ok".into()))
        }
        ["lifetime", ms] => {
            let ms: u64 = ms
                .parse()
                .map_err(|_| format!("lifetime wants milliseconds, not {ms:?}"))?;
            emulator.set_lifetime(Duration::from_millis(ms));
            Ok(Some("ok".into()))
        }
        ["locks"] => {
            let locks: Vec<String> = emulator
                .locks()
                .iter()
                .map(|l| format!("{}:{}:{}:{}", l.name, l.owner, l.mtime, l.age.as_millis()))
                .collect();
            Ok(Some(
                format!("ok {}", locks.join(" ")).trim_end().to_string(),
            ))
        }
        ["status"] => {
            let model = emulator.model();
            let no_quorum: Vec<&str> = model.nodes_without_quorum().collect();
            Ok(Some(format!(
                "ok lifetime_ms={} no_quorum={}",
                model.lifetime().as_millis(),
                no_quorum.join(",")
            )))
        }
        ["shutdown"] => Ok(None),
        _ => Err(format!("unknown request {line:?}")),
    }
}

/// Serves the control socket at `path` on a thread; a `shutdown` request is passed
/// on to `shutdown` after it is answered.
pub fn serve(emulator: Emulator, path: &Path, shutdown: Sender<()>) -> io::Result<JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    Ok(std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Ok(false) = answer(&emulator, stream) {
                let _ = shutdown.send(());
                return;
            }
        }
    }))
}

/// Reads one request and answers it; false after `shutdown`.
fn answer(emulator: &Emulator, stream: UnixStream) -> io::Result<bool> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let (reply, keep_running) = match handle(emulator, line.trim()) {
        Ok(Some(reply)) => (reply, true),
        Ok(None) => ("ok".to_string(), false),
        Err(e) => (format!("err {e}"), true),
    };
    (&stream).write_all(format!("{reply}\n").as_bytes())?;
    Ok(keep_running)
}

/// A client of the control socket.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
}

impl Client {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Client { path: path.into() }
    }

    /// Sends one request; the answer after `ok`, or the `err` text as an error.
    pub fn request(&self, line: &str) -> io::Result<String> {
        let mut stream = UnixStream::connect(&self.path)?;
        stream.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer)?;
        let answer = answer.trim_end();
        match answer.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim_start().to_string()),
            None => Err(io::Error::other(format!("pmxcfs-emu: {line}: {answer}"))),
        }
    }

    pub fn set_quorate(&self, node: &str, quorate: bool) -> io::Result<()> {
        let state = if quorate { "on" } else { "off" };
        self.request(&format!("quorum {node} {state}")).map(drop)
    }

    pub fn set_lifetime(&self, lifetime: Duration) -> io::Result<()> {
        self.request(&format!("lifetime {}", lifetime.as_millis()))
            .map(drop)
    }

    pub fn locks(&self) -> io::Result<Vec<LockInfo>> {
        let answer = self.request("locks")?;
        answer
            .split_whitespace()
            .map(|item| {
                let parts: Vec<&str> = item.split(':').collect();
                let bad = || io::Error::other(format!("pmxcfs-emu: bad lock entry {item:?}"));
                let [name, owner, mtime, age] = parts.as_slice() else {
                    return Err(bad());
                };
                Ok(LockInfo {
                    name: name.to_string(),
                    owner: owner.to_string(),
                    mtime: mtime.parse().map_err(|_| bad())?,
                    age: Duration::from_millis(age.parse().map_err(|_| bad())?),
                })
            })
            .collect()
    }

    pub fn shutdown(&self) -> io::Result<()> {
        self.request("shutdown").map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_change_the_emulator_and_bad_ones_are_refused() {
        let emu = Emulator::new(Duration::from_secs(120));
        assert_eq!(handle(&emu, "quorum pve2 off"), Ok(Some("ok".into())));
        assert!(!emu.quorate("pve2"));
        assert_eq!(handle(&emu, "lifetime 2500"), Ok(Some("ok".into())));
        assert_eq!(emu.lifetime(), Duration::from_millis(2500));
        assert_eq!(
            handle(&emu, "status"),
            Ok(Some("ok lifetime_ms=2500 no_quorum=pve2".into()))
        );
        assert_eq!(handle(&emu, "locks"), Ok(Some("ok".into())));
        assert_eq!(handle(&emu, "shutdown"), Ok(None));
        assert!(handle(&emu, "quorum pve2 maybe").is_err());
        assert!(handle(&emu, "lifetime soon").is_err());
        assert!(handle(&emu, "reboot").is_err());
    }
}
