//! `pmxcfs-emu`: serve the pmxcfs emulation at one mount point per simulated node until
//! told to stop, for tests that run agents as separate processes.
//!
//! ```text
//! pmxcfs-emu --node pve1=/tmp/c/pve1 --node pve2=/tmp/c/pve2 \
//!            --control /tmp/c/control.sock --lifetime 5s --exit-on-eof
//! ```
//!
//! It prints `ready` on stdout once every mount answers. It stops (and unmounts) on a
//! `shutdown` request, or with `--exit-on-eof` when its stdin closes, so a test that
//! dies does not leave mounts behind. After a SIGKILL, `umount -l` the mount points.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use pmxcfs_emu::{control, Emulator};

#[derive(Parser)]
#[command(
    version,
    about = "FUSE emulation of pmxcfs locks, one mount per simulated node"
)]
struct Args {
    /// A simulated node and its mount point, as NODE=PATH (repeat for each node).
    #[arg(long = "node", value_name = "NODE=PATH", required = true, value_parser = parse_node)]
    nodes: Vec<(String, PathBuf)>,
    /// The control socket (quorum switches, lifetime, lock listing, shutdown).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Lock lifetime (pmxcfs: 120s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    lifetime: Duration,
    /// Unmount and exit when stdin reaches end of file.
    #[arg(long)]
    exit_on_eof: bool,
}

fn parse_node(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((node, path)) if !node.is_empty() && !path.is_empty() => {
            Ok((node.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NODE=PATH, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmxcfs-emu: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> io::Result<()> {
    let emulator = Emulator::new(args.lifetime);
    let mut mounts = Vec::new();
    for (node, path) in &args.nodes {
        std::fs::create_dir_all(path)?;
        mounts.push(emulator.mount(node, path)?);
    }

    let (stop, stopped) = mpsc::channel();
    if let Some(path) = &args.control {
        control::serve(emulator.clone(), path, stop.clone())?;
    }
    if args.exit_on_eof {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = stop.send(());
        });
    }

    let mut stdout = io::stdout();
    writeln!(stdout, "ready")?;
    stdout.flush()?;

    // Without a control socket or --exit-on-eof this waits until killed.
    let _ = stopped.recv();
    for mount in mounts {
        let path = mount.path().display().to_string();
        if let Err(e) = mount.unmount() {
            eprintln!("pmxcfs-emu: unmounting {path}: {e}");
        }
    }
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
