//! A loopback TCP relay in front of a server, that can be told to go silent: while hung,
//! it accepts new connections and never forwards or answers a byte (a hung forge, a
//! proxy dropping the traffic). Connections made while it forwards keep forwarding.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Relay {
    pub port: u16,
    hung: Arc<AtomicBool>,
}

impl Relay {
    /// Relay a fresh loopback port to `127.0.0.1:target`.
    pub fn start(target: u16) -> Relay {
        Relay::open(Some(target))
    }

    /// A fresh loopback port that is silent from the start, in front of nothing.
    pub fn silent() -> Relay {
        Relay::open(None)
    }

    /// Hung from the start without a `target` (it is never connected to then).
    fn open(target: Option<u16>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hung = Arc::new(AtomicBool::new(target.is_none()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let flag = hung.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let target = match target {
                    Some(t) if !flag.load(Ordering::SeqCst) => t,
                    _ => {
                        held.lock().unwrap().push(client);
                        continue;
                    }
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Relay { port, hung }
    }

    /// New connections get silence from now on.
    pub fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }

    /// New connections reach the server again.
    pub fn resume(&self) {
        self.hung.store(false, Ordering::SeqCst);
    }
}

/// Copy `from` to `to` on a thread until `from` ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
