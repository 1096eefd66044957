//! The HTTP core: authentication, the `{"data": ...}` envelope, errors, retries, limits.
//!
//! Every typed endpoint (qemu.rs, cluster.rs, ...) goes through [`PveClient::request`],
//! so authentication, error classification, retry rules and concurrency bounds hold for
//! all of them alike.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::board::TaskBoard;
use super::error::{classify, ClientBuildError, HttpFailure, PveError, TransportKind};
use super::form::Params;
use super::limits::{node_of, Limits};
use super::options::ClientOptions;
use super::pace::TaskPace;
use super::retry::{should_retry, Idempotency, RetryPolicy};
use super::task::TaskPollPolicy;
use super::tls::client_config;

/// A PVE API client; cheap to clone (clones share connections and limits).
#[derive(Clone)]
pub struct PveClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `https://host:port/api2/json`
    api: String,
    /// `api` parsed once: a request's URL is this with its path and query set, so the
    /// scheme and host are not parsed again (and run through IDNA) for every request.
    api_url: reqwest::Url,
    auth: HeaderValue,
    token_id: String,
    limits: Limits,
    retry: RetryPolicy,
    task_poll: TaskPollPolicy,
    /// How long tasks of each type took so far (clones of this client share it).
    pace: TaskPace,
    /// The tasks being waited for, per node (clones of this client share it).
    board: TaskBoard,
}

impl fmt::Debug for PveClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PveClient")
            .field("api", &self.inner.api)
            .field("token", &self.inner.token_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

/// The `data` of PVE's `{"data": ...}` envelope in `body`, which `T` may borrow from.
pub(crate) fn envelope_data<'a, T: Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    serde_json::from_slice::<Envelope<T>>(body).map(|e| e.data)
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Option<BTreeMap<String, serde_json::Value>>,
}

impl PveClient {
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        let api = api_base(&options.base_url)?;
        let api_url = reqwest::Url::parse(&api)
            .map_err(|_| ClientBuildError::BaseUrl(options.base_url.clone()))?;
        let tls = client_config(&options.tls)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            // The API is local (or named explicitly): an http_proxy from the
            // environment must not capture it.
            .no_proxy()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            // reqwest's own retries are for HTTP/2's refused streams, which this HTTP/1
            // client never sees (retries are `request_with`'s); off, a request is not
            // cloned (headers, extensions) for a retry that cannot come.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .build()?;
        Ok(PveClient {
            inner: Arc::new(Inner {
                http,
                api,
                api_url,
                auth: options.token.header()?,
                token_id: options.token.id().to_string(),
                limits: Limits::new(options.max_in_flight, options.max_in_flight_per_node),
                retry: options.retry,
                task_poll: options.task_poll,
                pace: TaskPace::default(),
                board: TaskBoard::default(),
            }),
        })
    }

    /// `https://host:port/api2/json`
    pub fn api_url(&self) -> &str {
        &self.inner.api
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(crate) fn task_poll(&self) -> TaskPollPolicy {
        self.inner.task_poll
    }

    pub(crate) fn task_pace(&self) -> &TaskPace {
        &self.inner.pace
    }

    pub(crate) fn task_board(&self) -> &TaskBoard {
        &self.inner.board
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Params,
    ) -> Result<T, PveError> {
        self.request(Method::GET, path, query, Idempotency::Idempotent)
            .await
    }

    /// A PUT; callers pass the idempotency, since a relative resize or a disk
    /// allocation is a PUT too.
    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Params,
        idempotency: Idempotency,
    ) -> Result<T, PveError> {
        self.request(Method::PUT, path, params, idempotency).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Params,
        idempotency: Idempotency,
    ) -> Result<T, PveError> {
        self.request(Method::POST, path, params, idempotency).await
    }

    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Params,
    ) -> Result<T, PveError> {
        self.request(Method::DELETE, path, query, Idempotency::NotIdempotent)
            .await
    }

    /// One API call, retried per [`should_retry`]. `path` is below `/api2/json` with
    /// its segments already escaped (see [`super::form::segment`]).
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &Params,
        idempotency: Idempotency,
    ) -> Result<T, PveError> {
        self.request_with(method, path, params, idempotency, |body| {
            envelope_data::<T>(body)
        })
        .await
    }

    /// A GET whose successful body `decode` reads in place, so the answer may be read
    /// without building owned values for every field (the idle daemon's guest listing:
    /// see `crate::observe::listing`). The body is PVE's whole envelope
    /// (`envelope_data` opens it).
    pub async fn get_with<R>(
        &self,
        path: &str,
        query: &Params,
        decode: impl Fn(&[u8]) -> serde_json::Result<R>,
    ) -> Result<R, PveError> {
        self.request_with(Method::GET, path, query, Idempotency::Idempotent, decode)
            .await
    }

    /// [`request`](Self::request) with the decoding of a successful body up to `decode`.
    async fn request_with<R>(
        &self,
        method: Method,
        path: &str,
        params: &Params,
        idempotency: Idempotency,
        decode: impl Fn(&[u8]) -> serde_json::Result<R>,
    ) -> Result<R, PveError> {
        let retry = self.inner.retry;
        let mut attempt = 1;
        loop {
            let started = std::time::Instant::now();
            let result = self.send_once(&method, path, params, &decode).await;
            crate::telemetry::api_request_done(&method, started.elapsed(), result.as_ref().err());
            match result {
                Err(err) if attempt < retry.max_attempts && should_retry(&err, idempotency) => {
                    let delay = retry.delay(attempt);
                    tracing::debug!(%method, path, attempt, ?delay, error = %err, "retrying PVE request");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once<R>(
        &self,
        method: &Method,
        path: &str,
        params: &Params,
        decode: impl Fn(&[u8]) -> serde_json::Result<R>,
    ) -> Result<R, PveError> {
        let inner = &self.inner;
        let in_query = matches!(*method, Method::GET | Method::DELETE | Method::HEAD);
        let mut url = inner.api_url.clone();
        url.set_path(&format!("{}{path}", inner.api_url.path()));
        if in_query && !params.is_empty() {
            url.set_query(Some(&params.encode()));
        }
        let mut req = inner
            .http
            .request(method.clone(), url)
            .header(AUTHORIZATION, inner.auth.clone());
        if !in_query {
            req = req
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(params.encode());
        }
        let transport = |source: reqwest::Error| PveError::Transport {
            method: method.clone(),
            path: path.to_string(),
            kind: transport_kind(&source),
            source,
        };
        let permit = inner.limits.acquire(node_of(path)).await;
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        let body = resp.bytes().await.map_err(transport)?;
        drop(permit);

        if status.is_success() {
            return decode(&body).map_err(|e| PveError::InvalidResponse {
                method: method.clone(),
                path: path.to_string(),
                status: status.as_u16(),
                detail: e.to_string(),
            });
        }
        Err(classify(failure(method, path, status, reason, &body)))
    }
}

/// PVE's refusal: the message from the body, else the reason phrase (where PVE also puts
/// it), else the start of a non-JSON body (a proxy's page), else the status text.
fn failure(
    method: &Method,
    path: &str,
    status: StatusCode,
    reason: Option<String>,
    body: &[u8],
) -> HttpFailure {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let text = || {
        let t = String::from_utf8_lossy(body);
        let t = t.trim();
        (!t.is_empty() && !t.starts_with('{')).then(|| t.chars().take(200).collect::<String>())
    };
    let message = parsed
        .message
        .filter(|m| !m.trim().is_empty())
        .or(reason)
        .or_else(text)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let errors = parsed
        .errors
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text.trim_end().to_string())
        })
        .collect();
    HttpFailure {
        method: method.clone(),
        path: path.to_string(),
        status: status.as_u16(),
        message: message.trim_end().to_string(),
        errors,
    }
}

/// Whether the request can have reached PVE, and whether it was the certificate.
fn transport_kind(err: &reqwest::Error) -> TransportKind {
    if super::tls::tls_cause(err).is_some() {
        TransportKind::Tls
    } else if err.is_connect() {
        TransportKind::Connect
    } else if err.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Other
    }
}

/// `https://host:port/api2/json` from what the operator configured.
fn api_base(base: &str) -> Result<String, ClientBuildError> {
    let trimmed = base.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/api2/json").unwrap_or(trimmed);
    let rest = trimmed
        .strip_prefix("https://")
        .ok_or_else(|| ClientBuildError::BaseUrl(base.to_string()))?;
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(ClientBuildError::BaseUrl(base.to_string()));
    }
    Ok(format!("{trimmed}/api2/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            api_base("https://127.0.0.1:8006").unwrap(),
            "https://127.0.0.1:8006/api2/json"
        );
        assert_eq!(
            api_base("https://pve1:8006/api2/json/").unwrap(),
            "https://pve1:8006/api2/json"
        );
        assert!(api_base("http://127.0.0.1:8006").is_err());
        assert!(api_base("https://x/y").is_err());
    }

    #[test]
    fn failure_message_sources() {
        let m = Method::PUT;
        let f = failure(
            &m,
            "/p",
            StatusCode::BAD_REQUEST,
            Some("Parameter verification failed.".into()),
            br#"{"data":null,"errors":{"memory":"invalid format\n"}}"#,
        );
        assert_eq!(f.message, "Parameter verification failed.");
        assert_eq!(f.errors["memory"], "invalid format");
        let f = failure(
            &m,
            "/p",
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("reason".into()),
            b"{\"data\":null,\"message\":\"checksum mismatch\\n\"}",
        );
        assert_eq!(f.message, "checksum mismatch");
        let f = failure(&m, "/p", StatusCode::BAD_GATEWAY, None, b"<html>bad</html>");
        assert_eq!(f.message, "<html>bad</html>");
        let f = failure(&m, "/p", StatusCode::BAD_GATEWAY, None, b"");
        assert_eq!(f.message, "Bad Gateway");
    }
}
