//! Prometheus metrics (`GET /metrics`, OpenMetrics text) and the loopback server for them.
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `pve_gitops_reconcile_duration_seconds{outcome}` | histogram | one pass, by outcome (`reconciled`, `unchanged`, `following`, `invalid`, `refused`, `error`) |
//! | `pve_gitops_actions_total{kind,result}` | counter | plan actions applied (`create`, `configure`, `resize`, `migrate`, `start`, `stop`, `reboot`, `delete`) by result (`ok`, `failed`, `skipped`) |
//! | `pve_gitops_plan_actions` | gauge | actions the last full pass planned: how far the cluster was from the manifests |
//! | `pve_gitops_findings{kind}` | gauge | what the last full pass reported but did not change (`orphan`, `pending_reboot`, `locked`, ...) |
//! | `pve_gitops_leader` | gauge | 1 while this agent may apply (leads, or runs without election) |
//! | `pve_gitops_last_success_timestamp_seconds` | gauge | end of the last pass that did its job (reconciled without failures, unchanged, or followed) |
//! | `pve_gitops_git_fetch_errors_total` | counter | failed fetches of the manifests repository |
//! | `pve_gitops_api_request_duration_seconds{method}` | histogram | each HTTP attempt to the PVE API |
//! | `pve_gitops_api_request_errors_total{method,kind}` | counter | attempts that failed, by PVE error class |
//!
//! The metrics live in one process-wide registry ([`global`]), next to the watchdog's
//! progress (see [`super::liveness`] for why); tests build their own with [`Metrics::new`].

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Where `run` serves `/metrics` unless told otherwise: loopback only (a node's local
/// Prometheus agent or an SSH tunnel); `--metrics-listen 0.0.0.0:9596` opens it up.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9596";

/// `Content-Type` of OpenMetrics text, which Prometheus negotiates and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabels {
    pub method: String,
    pub kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the agent exports (see the module doc for each).
pub struct Metrics {
    registry: Registry,
    pub reconcile_duration: HistogramFamily<OutcomeLabel>,
    pub actions: Family<ActionLabels, Counter>,
    pub plan_actions: Gauge,
    pub findings: Family<KindLabel, Gauge>,
    pub leader: Gauge,
    pub last_success: Gauge<f64, AtomicU64>,
    pub git_fetch_errors: Counter,
    pub api_request_duration: HistogramFamily<MethodLabel>,
    pub api_request_errors: Family<ApiErrorLabels, Counter>,
}

/// Passes: 50 ms (an unchanged pass) to ~14 min (a large apply).
fn pass_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

/// API attempts: 1 ms to ~65 s (a synchronous config write allocating a disk).
fn api_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("pve_gitops"),
            reconcile_duration: Family::new_with_constructor(pass_histogram),
            actions: Family::default(),
            plan_actions: Gauge::default(),
            findings: Family::default(),
            leader: Gauge::default(),
            last_success: Gauge::default(),
            git_fetch_errors: Counter::default(),
            api_request_duration: Family::new_with_constructor(api_histogram),
            api_request_errors: Family::default(),
        };
        let registry = &mut m.registry;
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of one reconcile pass, by outcome",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        registry.register(
            "actions",
            "Plan actions applied, by kind and result",
            m.actions.clone(),
        );
        registry.register(
            "plan_actions",
            "Actions the last full pass planned (drift between the manifests and the cluster)",
            m.plan_actions.clone(),
        );
        registry.register(
            "findings",
            "What the last full pass reported but did not change, by kind",
            m.findings.clone(),
        );
        registry.register(
            "leader",
            "1 while this agent may apply (it leads, or runs without leader election)",
            m.leader.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time at the end of the last pass that did its job",
            m.last_success.clone(),
        );
        registry.register(
            "git_fetch_errors",
            "Failed fetches of the manifests repository",
            m.git_fetch_errors.clone(),
        );
        registry.register_with_unit(
            "api_request_duration",
            "Duration of each HTTP attempt to the Proxmox VE API",
            Unit::Seconds,
            m.api_request_duration.clone(),
        );
        registry.register(
            "api_request_errors",
            "Failed HTTP attempts to the Proxmox VE API, by error class",
            m.api_request_errors.clone(),
        );
        m
    }

    /// One API attempt: its latency, and its error class if it failed.
    pub fn api_request(&self, method: &str, elapsed: Duration, error: Option<&'static str>) {
        let method = method.to_string();
        self.api_request_duration
            .get_or_create(&MethodLabel {
                method: method.clone(),
            })
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.api_request_errors
                .get_or_create(&ApiErrorLabels { method, kind })
                .inc();
        }
    }

    /// The OpenMetrics text Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// `--metrics-listen`: where to serve `/metrics`; `None` for nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

/// Parses `--metrics-listen`: an address, or `off`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    match s.trim() {
        "off" | "none" | "" => Ok(Listen(None)),
        addr => addr
            .parse()
            .map(|a| Listen(Some(a)))
            .map_err(|e| format!("{addr:?}: {e} (an address like 127.0.0.1:9596, or off)")),
    }
}

/// Serve [`global`] metrics on `addr` (`GET /metrics`); returns the bound address (a
/// port of 0 picks a free one) once listening.
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    crate::listen::spawn(
        listener,
        crate::listen::Limits::default(),
        |req, _peer| async move { answer(&req) },
    );
    tracing::info!(%bound, "metrics listening on http://{bound}/metrics");
    Ok(bound)
}

fn answer<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("valid response")
    };
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "text/plain", "see /metrics\n".into());
    }
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics\n".into(),
        );
    }
    reply(StatusCode::OK, CONTENT_TYPE, global().encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.actions
            .get_or_create(&ActionLabels {
                kind: "create",
                result: "ok",
            })
            .inc_by(3);
        m.leader.set(1);
        m.api_request("GET", Duration::from_millis(3), Some("transport"));
        m.git_fetch_errors.inc();
        m.reconcile_duration
            .get_or_create(&OutcomeLabel {
                outcome: "reconciled",
            })
            .observe(1.5);
        let text = m.encode();
        for line in [
            "pve_gitops_actions_total{kind=\"create\",result=\"ok\"} 3",
            "pve_gitops_leader 1",
            "pve_gitops_git_fetch_errors_total 1",
            "pve_gitops_api_request_errors_total{method=\"GET\",kind=\"transport\"} 1",
            "pve_gitops_api_request_duration_seconds_count{method=\"GET\"} 1",
            "# TYPE pve_gitops_reconcile_duration_seconds histogram",
            "pve_gitops_reconcile_duration_seconds_bucket{le=\"1.6\",outcome=\"reconciled\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("off"), Ok(Listen(None)));
        assert_eq!(
            parse_listen(DEFAULT_LISTEN),
            Ok(Listen(Some("127.0.0.1:9596".parse().unwrap())))
        );
        assert!(parse_listen("localhost").is_err());
    }

    #[test]
    fn only_metrics_is_served() {
        let req = |method: &str, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap()
        };
        assert_eq!(answer(&req("GET", "/metrics")).status(), StatusCode::OK);
        assert_eq!(
            answer(&req("GET", "/metrics")).headers()[hyper::header::CONTENT_TYPE],
            CONTENT_TYPE
        );
        assert_eq!(answer(&req("GET", "/")).status(), StatusCode::NOT_FOUND);
        assert_eq!(
            answer(&req("POST", "/metrics")).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
