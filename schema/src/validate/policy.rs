//! `ClusterPolicy`: one per cluster, and schedules that parse.

use super::Context;
use crate::diag::{Diagnostic, Diagnostics, ErrorKind};
use crate::manifest::policy::OVERRIDE_WINDOWS_UNTIL;
use crate::manifest::{Kind, Spec};
use crate::source_map::YamlPath;
use std::str::FromStr;

pub fn check(ctx: &Context<'_>, diags: &mut Diagnostics) {
    let mut first = None;
    for (doc, spec) in ctx.of(|s| match s {
        Spec::ClusterPolicy(p) => Some(p),
        _ => None,
    }) {
        let here = ctx.locator.at(&doc.origin, "metadata.name");
        match &first {
            Some(at) => diags.push(
                Diagnostic::new(
                    ErrorKind::Conflict,
                    here,
                    format!(
                        "{}/{} is a second policy for this cluster",
                        Kind::ClusterPolicy,
                        doc.name()
                    ),
                )
                .with_hint(format!(
                    "a cluster has one ClusterPolicy; the first is at {at}"
                )),
            ),
            None => first = Some(here),
        }
        if let Some(until) = doc.metadata.annotations.get(OVERRIDE_WINDOWS_UNTIL) {
            if humantime::parse_rfc3339(until).is_err() {
                diags.push(Diagnostic::new(
                    ErrorKind::InvalidValue,
                    ctx.locator.value(
                        &doc.origin,
                        &YamlPath::parse("metadata.annotations").key(OVERRIDE_WINDOWS_UNTIL),
                    ),
                    format!(
                        "`{until}` is not an RFC 3339 UTC instant such as 2026-11-26T06:00:00Z"
                    ),
                ));
            }
        }
        if spec.prune.max_delete_share > 100 {
            diags.push(Diagnostic::new(
                ErrorKind::InvalidValue,
                ctx.locator.at(&doc.origin, "spec.prune.maxDeleteShare"),
                format!(
                    "maxDeleteShare is a percentage of the owned guests: {} is more than 100",
                    spec.prune.max_delete_share
                ),
            ));
        }
        for (i, f) in spec.drift.ignore_fields.iter().enumerate() {
            if !crate::manifest::vm::is_field_path(f) {
                diags.push(
                    Diagnostic::new(
                        ErrorKind::InvalidValue,
                        ctx.locator
                            .at(&doc.origin, &format!("spec.drift.ignoreFields[{i}]")),
                        format!("`{f}` is not a config field path"),
                    )
                    .with_hint(
                        "a `qm` key or `key.option`: `description`, `net0.macaddr`, `powerState`",
                    ),
                );
            }
        }
        for (i, w) in spec.sync_windows.iter().enumerate() {
            if let Err(e) = cron::Schedule::from_str(&w.schedule) {
                diags.push(
                    Diagnostic::new(
                        ErrorKind::InvalidValue,
                        ctx.locator.at(&doc.origin, &format!("spec.syncWindows[{i}].schedule")),
                        format!("`{}` is not a cron schedule: {e}", w.schedule),
                    )
                    .with_hint("six fields with seconds, in UTC: `sec min hour day-of-month month day-of-week`, e.g. `0 0 22 * * Mon-Fri`"),
                );
            }
            if w.duration.0.is_zero() {
                diags.push(Diagnostic::new(
                    ErrorKind::InvalidValue,
                    ctx.locator
                        .at(&doc.origin, &format!("spec.syncWindows[{i}].duration")),
                    "a window of zero duration never opens",
                ));
            }
        }
    }
}
