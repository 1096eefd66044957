//! The systemd notification protocol (`sd_notify(3)`): `READY=1`, `STATUS=` and
//! `WATCHDOG=1` datagrams to `$NOTIFY_SOCKET`. Outside systemd (no `NOTIFY_SOCKET`)
//! every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Talks to the service manager, if there is one.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service: `NOTIFY_SOCKET`, and
    /// `WATCHDOG_USEC` (meant for this process only when `WATCHDOG_PID` is unset or names
    /// it, as `sd_watchdog_enabled(3)` reads them).
    pub fn from_env() -> Self {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
            watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
        }
    }

    /// A notifier that says nothing (tests, one-shot commands).
    pub fn off() -> Self {
        Notifier {
            enabled: false,
            watchdog: None,
        }
    }

    /// The watchdog period systemd expects pings within, if it set one.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled)
    }

    /// Start-up is complete; `status` says what the agent does now.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// The one-line status `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// The loop is alive (see [`super::liveness`] for when to call this).
    pub fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Shutting down: systemd stops expecting pings.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!("sd_notify: {e}");
        }
    }
}

/// A status line for `STATUS=`: one line, at most `max` characters (systemd shows the
/// first line only, and a long one is cut by the terminal anyway).
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() <= max {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_one_short_line() {
        assert_eq!(one_line("a\nb", 80), "a");
        assert_eq!(one_line("  spaced  ", 80), "spaced");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("", 4), "");
    }
}
