//! How the running agent reports on itself: to systemd (readiness, a status line,
//! watchdog pings: [`notify`], [`liveness`]), to Prometheus (`/metrics`: [`metrics`]) and
//! to the journal (structured fields: [`journal`]).
//!
//! These are mechanisms only; the daemon decides what to say (`daemon::service`).

pub mod journal;
pub mod liveness;
pub mod metrics;
pub mod notify;

use crate::pve::PveError;
use std::time::Duration;

/// One HTTP attempt to the PVE API ended (an answer, an error, a timeout): its latency
/// and error go to the metrics, and it counts as progress for the watchdog. Called by
/// the API client once per attempt, so retries are counted one by one.
pub fn api_request_done(method: &reqwest::Method, elapsed: Duration, error: Option<&PveError>) {
    liveness::mark();
    metrics::global().api_request(method.as_str(), elapsed, error.map(api_error_kind));
}

/// A fetch of the manifests repository failed (the daemon goes on with the last good head).
pub fn git_fetch_failed() {
    metrics::global().git_fetch_errors.inc();
}

/// One plan action ended: `kind` as `apply::action_kind` names it, `result` one of `ok`,
/// `failed`, `skipped` (for `pve_gitops_actions_total`).
pub fn action_done(kind: &'static str, result: &'static str) {
    metrics::global()
        .actions
        .get_or_create(&metrics::ActionLabels { kind, result })
        .inc();
}

/// The `kind` label of `pve_gitops_api_request_errors_total`: PVE's error classes, by
/// what an operator does about them.
pub fn api_error_kind(e: &PveError) -> &'static str {
    match e {
        PveError::ParameterVerification(_) => "parameter",
        PveError::Auth(_) => "auth",
        PveError::NotFound(_) => "not_found",
        PveError::ChecksumMismatch(_) => "checksum_mismatch",
        PveError::LockTimeout(_) => "lock_timeout",
        PveError::VmLocked { .. } => "locked",
        PveError::NoQuorum(_) => "no_quorum",
        PveError::NodeOffline(_) => "node_offline",
        PveError::Api(_) => "api",
        PveError::Transport { .. } => "transport",
        PveError::InvalidResponse { .. } => "invalid_response",
        PveError::TaskFailed { .. } => "task_failed",
        PveError::TaskDeadline { .. } => "task_deadline",
    }
}
