//! HTTPS (and plain HTTP) remotes: git's smart HTTP protocol, spoken by the agent over
//! reqwest and rustls and registered with libgit2 as its transport for `https://` and
//! `http://` URLs.
//!
//! TLS is the rustls stack the PVE API client uses (`tls.rs` says what is trusted; a CA
//! file is a real trust anchor, with the intermediates the server sends), and the
//! connection stays open between polls, so an idle poll is one request on it (libgit2's
//! own transport made a TLS handshake per poll).
//!
//! The protocol (git's `gitprotocol-http`, "smart" service, as libgit2 speaks it): listing
//! the refs is `GET <url>/info/refs?service=git-upload-pack` (`git-receive-pack` to push);
//! every negotiation round, and the push itself, is `POST <url>/git-upload-pack` with what
//! libgit2 wrote as the body. libgit2 writes a request whole before it reads, so the POST
//! goes out on the first read. A redirect of the listing (a forge adding `.git`) moves the
//! rest of the operation along with it, within the same scheme, host and port only: the
//! token is never sent anywhere else.
//!
//! A token is sent with every request as the password of basic authentication (as git
//! does for credentials it already has), read from its file each time so a rotated token
//! is picked up.

use super::timeout;
use super::tls::Trust;
use super::transport::{Failure, FailureSlot};
use super::url::{RemoteUrl, Transport as UrlTransport};
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{redirect, StatusCode, Url};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// User name sent with a token when the URL has none: forges accept any.
const DEFAULT_USER: &str = "git";
/// How long an idle connection is kept for the next poll (the default interval is 15 s).
const KEEP_IDLE: Duration = Duration::from_secs(90);
const USER_AGENT: &str = concat!("git/2.0 (pve-gitops ", env!("CARGO_PKG_VERSION"), ")");

/// One remote's HTTP client and credentials, shared by the [`Source`](super::Source)'s
/// operations (so the connection outlives each one).
pub(crate) struct HttpRemote {
    /// The URL as configured, for messages.
    url: RemoteUrl,
    user: String,
    /// The URL's host, for a refused certificate's message.
    host: String,
    token_file: Option<PathBuf>,
    trust: Trust,
    /// Built on first use, on the thread libgit2 calls from (reqwest's blocking client
    /// must not be built on an async runtime's thread).
    client: OnceLock<Client>,
    failures: FailureSlot,
}

impl std::fmt::Debug for HttpRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRemote")
            .field("url", &self.url.as_str())
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl HttpRemote {
    pub fn new(url: RemoteUrl, token_file: Option<PathBuf>, trust: Trust) -> Self {
        let parsed = Url::parse(url.as_str()).ok();
        let user = parsed
            .as_ref()
            .map(|u| u.username().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_USER.to_string());
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        Self {
            url,
            user,
            host,
            token_file,
            trust,
            client: OnceLock::new(),
            failures: FailureSlot::default(),
        }
    }

    pub fn failures(&self) -> &FailureSlot {
        &self.failures
    }

    fn client(&self) -> Result<&Client, Failure> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let bound = timeout::bound();
        let client = Client::builder()
            .tls_backend_preconfigured(self.trust.client_config())
            .https_only(self.url.transport() == UrlTransport::Https)
            .user_agent(USER_AGENT)
            // As libgit2 did: no proxy unless configured (there is no setting yet).
            .no_proxy()
            .redirect(same_origin_redirects())
            // Every wait is bounded (`timeout.rs`): until the answer starts, and each
            // read of it.
            .connect_timeout(bound)
            .timeout(bound)
            .pool_idle_timeout(KEEP_IDLE)
            .build()
            .map_err(|e| Failure::Unreachable(format!("cannot set up the HTTP client: {e}")))?;
        Ok(self.client.get_or_init(|| client))
    }

    /// `Basic user:token` if a token is configured (read now: it may have been rotated).
    fn authorization(&self) -> Result<Option<HeaderValue>, Failure> {
        use base64::Engine as _;
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path).map_err(|source| Failure::Credential {
            path: path.clone(),
            source,
        })?;
        let pair = format!("{}:{}", self.user, token.trim());
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
            .map_err(|e| Failure::Auth(format!("the token cannot go in a header: {e}")))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// Send `request` and check that the answer is the service's.
    fn exchange(&self, request: &Request, body: Vec<u8>) -> Result<Response, Failure> {
        let client = self.client()?;
        let mut builder = match request.method {
            Method::Get => client.get(request.url.clone()),
            Method::Post => client
                .post(request.url.clone())
                .header(
                    CONTENT_TYPE,
                    format!("application/x-{}-request", request.service),
                )
                .header(ACCEPT, request.content_type())
                .body(body),
        };
        if let Some(auth) = self.authorization()? {
            builder = builder.header(AUTHORIZATION, auth);
        }
        let response = builder.send().map_err(|e| self.classify(&e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(Failure::Auth(if self.token_file.is_some() {
                "the remote rejected the configured credential".to_string()
            } else {
                "the remote asks for credentials (user name and token) that are not configured"
                    .to_string()
            }));
        }
        if status == StatusCode::FORBIDDEN {
            return Err(Failure::Auth(format!(
                "the remote refused access to {} (HTTP 403): does the token grant it?",
                request.service
            )));
        }
        if !status.is_success() {
            return Err(Failure::Unreachable(format!(
                "HTTP {status} for {} {}",
                request.method.as_str(),
                request.url.path()
            )));
        }
        let expected = request.content_type();
        let got = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        if got != expected {
            return Err(Failure::Unreachable(format!(
                "not a smart git HTTP server: {} {} answered Content-Type `{got}`, not \
                 `{expected}` (is the URL a repository?)",
                request.method.as_str(),
                request.url.path()
            )));
        }
        Ok(response)
    }

    /// A reqwest error as a [`Failure`]: a wait that ran out, a refused certificate, or
    /// anything else that kept the answer from arriving.
    fn classify(&self, error: &reqwest::Error) -> Failure {
        if let Some(tls) = crate::pve::tls::tls_cause(error) {
            return Failure::Tls {
                host: self.host.clone(),
                message: self.trust.explain(tls),
            };
        }
        Failure::wait(error.is_timeout(), chain(error))
    }

    /// The error of a read of the answer's body.
    fn read_failed(&self, error: io::Error) -> io::Error {
        let ran_out = error.kind() == io::ErrorKind::TimedOut
            || error
                .get_ref()
                .and_then(|e| e.downcast_ref::<reqwest::Error>())
                .is_some_and(reqwest::Error::is_timeout);
        let detail = format!("reading the answer: {}", chain(&error));
        self.failures.keep(Failure::wait(ran_out, detail))
    }
}

/// libgit2's smart transport for `http`, stateless: every request its own.
pub(crate) fn transport(
    remote: &git2::Remote<'_>,
    http: Arc<HttpRemote>,
) -> Result<Transport, git2::Error> {
    Transport::smart(
        remote,
        true,
        Subtransport {
            http,
            base: Arc::new(Mutex::new(None)),
        },
    )
}

/// One connection's worth of libgit2's requests (listing, then negotiation or push).
struct Subtransport {
    http: Arc<HttpRemote>,
    /// Where the listing was redirected to, for the requests that follow it.
    base: Arc<Mutex<Option<Url>>>,
}

impl SmartSubtransport for Subtransport {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let (service, method) = match action {
            Service::UploadPackLs => ("git-upload-pack", Method::Get),
            Service::UploadPack => ("git-upload-pack", Method::Post),
            Service::ReceivePackLs => ("git-receive-pack", Method::Get),
            Service::ReceivePack => ("git-receive-pack", Method::Post),
        };
        let base = match self.base.lock().expect("base lock").clone() {
            Some(base) => base,
            None => base_url(url).map_err(|e| git2::Error::from_str(&e))?,
        };
        let url = match method {
            Method::Get => join(&base, &format!("info/refs?service={service}")),
            Method::Post => join(&base, service),
        }
        .map_err(|e| git2::Error::from_str(&e))?;
        let request = Request {
            url,
            service,
            method,
        };
        Ok(Box::new(Stream {
            http: self.http.clone(),
            listing: (method == Method::Get).then(|| (base, self.base.clone())),
            request,
            body: Vec::new(),
            response: None,
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

struct Request {
    url: Url,
    service: &'static str,
    method: Method,
}

impl Request {
    /// What a smart server answers this request with.
    fn content_type(&self) -> String {
        match self.method {
            Method::Get => format!("application/x-{}-advertisement", self.service),
            Method::Post => format!("application/x-{}-result", self.service),
        }
    }
}

/// One request: libgit2 writes its body (a POST's), then reads the answer.
struct Stream {
    http: Arc<HttpRemote>,
    /// A listing's base URL, to tell a redirect, and where to note the base the rest of
    /// the operation uses if it was.
    listing: Option<(Url, Arc<Mutex<Option<Url>>>)>,
    request: Request,
    body: Vec<u8>,
    response: Option<Response>,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            let body = std::mem::take(&mut self.body);
            let response = self
                .http
                .exchange(&self.request, body)
                .map_err(|f| self.http.failures.keep(f))?;
            if let Some((base, redirected)) = &self.listing {
                let mut landed = response.url().clone();
                landed.set_query(None);
                if join(base, "info/refs").ok().as_ref() != Some(&landed) {
                    let moved = base_url(landed.as_str().trim_end_matches("info/refs")).ok();
                    *redirected.lock().expect("base lock") = moved;
                }
            }
            self.response = Some(response);
        }
        let response = self.response.as_mut().expect("sent above");
        response.read(buf).map_err(|e| self.http.read_failed(e))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.response.is_some() {
            return Err(io::Error::other("write after the request was sent"));
        }
        self.body.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The repository URL as a base for joining: without user information (the token goes
/// in a header) and with a trailing slash.
fn base_url(url: &str) -> Result<Url, String> {
    let mut base = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let _ = base.set_username("");
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

fn join(base: &Url, relative: &str) -> Result<Url, String> {
    base.join(relative)
        .map_err(|e| format!("cannot make a URL of {base} and {relative}: {e}"))
}

/// Follow a redirect only within the scheme, host and port the request went to (a forge
/// adding `.git`, a path moved), at most 5 times.
fn same_origin_redirects() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(Url::origin);
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if first.as_ref() != Some(&attempt.url().origin()) {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(format!(
                "the remote redirects to {to}; configure that URL if it is to be trusted"
            ))
        } else {
            attempt.follow()
        }
    })
}

/// An error and its causes, as one line (reqwest's own message names only the first).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_drops_user_information_and_ends_with_a_slash() {
        let base = base_url("https://deploy@git.example.org/infra/cluster.git").unwrap();
        assert_eq!(base.as_str(), "https://git.example.org/infra/cluster.git/");
        assert_eq!(
            join(&base, "info/refs?service=git-upload-pack")
                .unwrap()
                .as_str(),
            "https://git.example.org/infra/cluster.git/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            join(&base_url("https://h/r.git/").unwrap(), "git-receive-pack")
                .unwrap()
                .as_str(),
            "https://h/r.git/git-receive-pack"
        );
    }

    #[test]
    fn the_user_is_the_urls_else_git() {
        let remote =
            |u: &str| HttpRemote::new(RemoteUrl::parse(u).unwrap(), None, Trust::System).user;
        assert_eq!(remote("https://deploy@h/r.git"), "deploy");
        assert_eq!(remote("https://h/r.git"), "git");
    }
}
