//! Sync windows: whether a change may be applied now (`ClusterPolicy.spec.syncWindows`).
//!
//! Argo CD's rule, per scope (applies, reboots): with no window for the scope, always
//! open; a matching `deny` window that is active closes it; when `allow` windows exist,
//! one of them must be active. A window is active from each time its cron schedule fires
//! until `duration` later. Pure functions of the policy and a time, so tests drive them
//! with any clock.

use chrono::{DateTime, Utc};
use pve_gitops_schema::desired::Named;
use pve_gitops_schema::manifest::policy::{
    ClusterPolicySpec, SyncWindow, WindowKind, WindowScope, OVERRIDE_WINDOWS_UNTIL,
};
use std::str::FromStr;
use std::sync::Arc;

/// The time window decisions are made at: the wall clock, or a test's simulated one.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(Arc::new(Utc::now))
    }

    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// The state of `scope` under a cluster's policy (none: always open), honouring the
/// override annotation.
pub fn for_policy(
    policy: Option<&Named<ClusterPolicySpec>>,
    scope: WindowScope,
    now: DateTime<Utc>,
) -> WindowState {
    let Some(p) = policy else {
        return WindowState::Open;
    };
    let annotation = p
        .annotations
        .get(OVERRIDE_WINDOWS_UNTIL)
        .map(String::as_str);
    if overridden(annotation, now) {
        return WindowState::Open;
    }
    state(&p.spec.sync_windows, scope, now)
}

/// Where a scope stands at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    Open,
    /// Closed; `next_open` is the next time an allow window starts (if any starts in the
    /// searched horizon and is not inside a deny window).
    Closed {
        next_open: Option<DateTime<Utc>>,
    },
}

impl WindowState {
    pub fn is_open(&self) -> bool {
        matches!(self, WindowState::Open)
    }
}

/// How far ahead [`state`] looks for the next opening.
const HORIZON_DAYS: i64 = 366;

/// The state of `scope` at `now`. Schedules that do not parse were rejected at validation;
/// one that still fails here is treated as never firing.
pub fn state(windows: &[SyncWindow], scope: WindowScope, now: DateTime<Utc>) -> WindowState {
    let relevant: Vec<&SyncWindow> = windows
        .iter()
        .filter(|w| w.applies.contains(&scope))
        .collect();
    if open_at(&relevant, now) {
        return WindowState::Open;
    }
    WindowState::Closed {
        next_open: next_open(&relevant, now),
    }
}

fn open_at(windows: &[&SyncWindow], t: DateTime<Utc>) -> bool {
    if windows
        .iter()
        .any(|w| w.kind == WindowKind::Deny && active(w, t))
    {
        return false;
    }
    let allows: Vec<&&SyncWindow> = windows
        .iter()
        .filter(|w| w.kind == WindowKind::Allow)
        .collect();
    allows.is_empty() || allows.iter().any(|w| active(w, t))
}

/// Whether `t` lies in `[start, start + duration)` of some firing of `w`.
fn active(w: &SyncWindow, t: DateTime<Utc>) -> bool {
    let Ok(schedule) = cron::Schedule::from_str(&w.schedule) else {
        return false;
    };
    let Ok(len) = chrono::Duration::from_std(w.duration.0) else {
        return false;
    };
    // The first firing after t - len is the only one that can still cover t.
    schedule
        .after(&(t - len))
        .next()
        .is_some_and(|start| start <= t)
}

/// The earliest instant after `now` at which the scope opens: candidate instants are the
/// starts of allow windows and the ends of deny windows.
fn next_open(windows: &[&SyncWindow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let horizon = now + chrono::Duration::days(HORIZON_DAYS);
    let mut candidates: Vec<DateTime<Utc>> = Vec::new();
    for w in windows {
        let (Ok(schedule), Ok(len)) = (
            cron::Schedule::from_str(&w.schedule),
            chrono::Duration::from_std(w.duration.0),
        ) else {
            continue;
        };
        let shift = match w.kind {
            WindowKind::Allow => chrono::Duration::zero(),
            WindowKind::Deny => len,
        };
        // Enough firings to cover a day-granular schedule for the horizon without
        // walking a per-second one forever.
        candidates.extend(
            schedule
                .after(&(now - shift))
                .take(512)
                .map(|s| s + shift)
                .filter(|c| *c > now)
                .take_while(|c| *c <= horizon),
        );
    }
    candidates.sort();
    candidates.into_iter().find(|c| open_at(windows, *c))
}

/// Whether the `ClusterPolicy` override annotation ([`OVERRIDE_WINDOWS_UNTIL`]) is in
/// force at `now`. An unparsable value does not override (validation rejects it).
pub fn overridden(annotation: Option<&str>, now: DateTime<Utc>) -> bool {
    annotation
        .and_then(|v| humantime::parse_rfc3339(v).ok())
        .is_some_and(|until| now < DateTime::<Utc>::from(until))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pve_gitops_schema::units::Duration;

    fn w(kind: WindowKind, schedule: &str, minutes: u64, applies: &[WindowScope]) -> SyncWindow {
        SyncWindow {
            kind,
            schedule: schedule.into(),
            duration: Duration(std::time::Duration::from_secs(minutes * 60)),
            applies: applies.to_vec(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const APPLY: &[WindowScope] = &[WindowScope::Apply];

    #[test]
    fn no_windows_is_always_open() {
        assert!(state(&[], WindowScope::Apply, at("2026-11-25T12:00:00Z")).is_open());
    }

    #[test]
    fn allow_window_opens_at_its_start_and_closes_after_its_duration() {
        // 22:00-02:00 every weekday.
        let ws = [w(WindowKind::Allow, "0 0 22 * * Mon-Fri", 240, APPLY)];
        let cases = [
            ("2026-11-25T21:59:59Z", false),
            ("2026-11-25T22:00:00Z", true),
            ("2026-11-26T01:59:59Z", true),
            ("2026-11-26T02:00:00Z", false), // the end instant is outside
            // Saturday night: no window started.
            ("2026-11-28T23:00:00Z", false),
        ];
        for (t, open) in cases {
            assert_eq!(state(&ws, WindowScope::Apply, at(t)).is_open(), open, "{t}");
        }
    }

    #[test]
    fn closed_state_names_the_next_opening() {
        let ws = [w(WindowKind::Allow, "0 0 22 * * Mon-Fri", 240, APPLY)];
        assert_eq!(
            state(&ws, WindowScope::Apply, at("2026-11-28T03:00:00Z")),
            WindowState::Closed {
                next_open: Some(at("2026-11-30T22:00:00Z")) // Saturday 03:00 → Monday 22:00
            }
        );
    }

    #[test]
    fn deny_wins_over_allow_and_its_end_is_an_opening() {
        let ws = [
            w(WindowKind::Allow, "0 0 0 * * *", 24 * 60, APPLY), // all day, every day
            w(WindowKind::Deny, "0 0 12 * * *", 60, APPLY),      // but not 12:00-13:00
        ];
        assert!(state(&ws, WindowScope::Apply, at("2026-11-25T11:59:00Z")).is_open());
        assert_eq!(
            state(&ws, WindowScope::Apply, at("2026-11-25T12:30:00Z")),
            WindowState::Closed {
                next_open: Some(at("2026-11-25T13:00:00Z"))
            }
        );
    }

    #[test]
    fn only_deny_windows_leave_the_rest_open() {
        let ws = [w(WindowKind::Deny, "0 0 12 * * *", 60, APPLY)];
        assert!(state(&ws, WindowScope::Apply, at("2026-11-25T11:00:00Z")).is_open());
        assert!(!state(&ws, WindowScope::Apply, at("2026-11-25T12:10:00Z")).is_open());
    }

    #[test]
    fn scopes_are_separate() {
        let ws = [w(
            WindowKind::Allow,
            "0 0 3 * * *",
            60,
            &[WindowScope::Reboot],
        )];
        let noon = at("2026-11-25T12:00:00Z");
        assert!(state(&ws, WindowScope::Apply, noon).is_open());
        assert!(!state(&ws, WindowScope::Reboot, noon).is_open());
        assert!(state(&ws, WindowScope::Reboot, at("2026-11-25T03:30:00Z")).is_open());
    }

    #[test]
    fn override_holds_until_its_instant() {
        let now = at("2026-11-25T12:00:00Z");
        assert!(overridden(Some("2026-11-25T13:00:00Z"), now));
        assert!(!overridden(Some("2026-11-25T11:00:00Z"), now));
        assert!(!overridden(Some("tomorrow"), now));
        assert!(!overridden(None, now));
    }
}
