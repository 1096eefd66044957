//! A loopback TCP relay in front of a server, that can be told to go silent: while hung,
//! it forwards no byte on any connection, and accepts new ones without ever forwarding
//! or answering on them (a hung forge, a proxy dropping the traffic). Connections made
//! before it hung forward again when it resumes; those made while hung never do.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

pub struct Relay {
    pub port: u16,
    hung: Arc<Hung>,
}

/// Whether the relay is hung, and a wake-up for the pipes waiting for it to resume.
#[derive(Default)]
struct Hung {
    now: Mutex<bool>,
    resumed: Condvar,
}

impl Hung {
    fn set(&self, hung: bool) {
        *self.now.lock().unwrap() = hung;
        self.resumed.notify_all();
    }

    fn is(&self) -> bool {
        *self.now.lock().unwrap()
    }

    /// Until the relay is not hung.
    fn wait(&self) {
        let mut hung = self.now.lock().unwrap();
        while *hung {
            hung = self.resumed.wait(hung).unwrap();
        }
    }
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
        let hung = Arc::new(Hung::default());
        hung.set(target.is_none());
        let held = Arc::new(Mutex::new(Vec::new()));
        let flag = hung.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let target = match target {
                    Some(t) if !flag.is() => t,
                    _ => {
                        held.lock().unwrap().push(client);
                        continue;
                    }
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    &flag,
                );
                pipe(server, client, &flag);
            }
        });
        Relay { port, hung }
    }

    /// Every connection gets silence from now on.
    pub fn hang(&self) {
        self.hung.set(true);
    }

    /// New connections reach the server again, and those made before it hung forward
    /// again (what they sent meanwhile included).
    pub fn resume(&self) {
        self.hung.set(false);
    }
}

/// Copy `from` to `to` on a thread until `from` ends, holding what it reads while the
/// relay is hung.
fn pipe(mut from: TcpStream, mut to: TcpStream, hung: &Arc<Hung>) {
    let hung = hung.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            hung.wait();
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
