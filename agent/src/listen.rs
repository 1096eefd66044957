//! The accept loop of the agent's two small HTTP endpoints, `/metrics` and the push
//! webhook. The webhook's port usually faces the internet (a hosted forge posts from
//! it), so the loop holds up against clients that are slow or hostile, not only against
//! the forge:
//!
//! - **At most [`Limits::connections`] at once.** Each connection is a task and a file
//!   descriptor, which the agent also needs for the API and git; more clients wait in the
//!   kernel's backlog.
//! - **Each connection lives at most [`Limits::lifetime`]**, then is closed gracefully
//!   (an answer being written is finished, a few seconds at most). A client that
//!   connects and never sends, or sends a byte at a time, cannot hold a slot for good;
//!   a scraper's keep-alive connection is simply opened again.
//! - **A failed accept backs off** (up to a second) instead of retrying at once: out of
//!   descriptors (`EMFILE`), `accept` fails at once every time, and an immediate retry
//!   spins a core.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a connection closed at the end of its lifetime may take to finish what it is
/// answering.
const GRACE: Duration = Duration::from_secs(5);

/// The first and the longest wait after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Bounds on the connections one endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// How long one connection is served.
    pub lifetime: Duration,
}

impl Default for Limits {
    /// A forge sends one request per push and Prometheus one connection per target: 32
    /// leaves room for both and for retries, and costs few descriptors. 30 s is far
    /// beyond what a forge or a scraper needs for one request.
    fn default() -> Self {
        Limits {
            connections: 32,
            lifetime: Duration::from_secs(30),
        }
    }
}

/// Serve HTTP/1 on `listener` in a task of its own: `handler` answers each request, with
/// the client's address. Returns at once.
pub fn spawn<H, F>(listener: TcpListener, limits: Limits, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.connections));
    tokio::spawn(async move {
        let mut backoff: Option<Duration> = None;
        loop {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => {
                    backoff = None;
                    accepted
                }
                Err(e) => {
                    let wait = match backoff {
                        None => {
                            tracing::warn!("cannot accept connections: {e}; retrying");
                            ACCEPT_BACKOFF.0
                        }
                        Some(w) => (w * 2).min(ACCEPT_BACKOFF.1),
                    };
                    backoff = Some(wait);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |req| {
                    let answer = handler(req, peer);
                    async move { Ok::<_, std::convert::Infallible>(answer.await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = tokio::time::sleep(limits.lifetime) => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(GRACE, conn).await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// A loopback endpoint answering every request with `ok`, under `limits`.
    async fn endpoint(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        spawn(listener, limits, |_req, _peer| async {
            Response::new(Full::new(Bytes::from_static(b"ok")))
        });
        addr
    }

    /// Whether the server closed `stream`, waiting at most 30 s.
    fn closed_by_server(mut stream: std::net::TcpStream) -> bool {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 64];
        matches!(stream.read(&mut buf), Ok(0))
    }

    /// A GET of `/` on `addr` (a new connection), answered within 30 s.
    fn get(addr: SocketAddr) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    /// Clients that connect and say nothing take every slot, and more of them wait:
    /// each is closed at the end of its lifetime, and a real request is answered after
    /// them. Without the bound on lifetime they would hold the slots (or, without the
    /// bound on connections, tasks and descriptors) for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_clients_are_closed_and_cannot_hold_the_endpoint() {
        let limits = Limits {
            connections: 4,
            lifetime: Duration::from_millis(300),
        };
        let addr = endpoint(limits).await;
        let result = tokio::task::spawn_blocking(move || {
            let silent: Vec<_> = (0..10)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            let started = Instant::now();
            let answer = get(addr);
            let waited = started.elapsed();
            let closed = silent
                .into_iter()
                .filter(|s| closed_by_server(s.try_clone().unwrap()))
                .count();
            (answer, waited, closed)
        })
        .await
        .unwrap();
        let (answer, waited, closed) = result;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
        assert_eq!(closed, 10, "every silent client is closed by the server");
        // 10 silent clients, 4 at a time: the request waited for at least two lifetimes.
        assert!(waited >= limits.lifetime * 2, "{waited:?}");
    }
}
