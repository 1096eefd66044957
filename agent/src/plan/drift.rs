//! Drift: a converged VM that no longer matches what was applied, changed behind the
//! agent's back (in the GUI, with `qm`, by another tool). What the plan does with it
//! depends on the VM's drift mode: `ignore` (nothing), `report` (a finding, no write),
//! `heal` (the change is applied and reported as healed).
//!
//! Field paths name what drifted and what an operator may ignore: a `qm` key
//! (`memory`, `tags`, `description`), one option of it (`net0.tag`, `net0.macaddr`,
//! `scsi0.size`), or `node` and `powerState`.

use super::compare::{matches, Change};
use super::pveconfig::{Compare, DesiredConfig, DesiredValue, Head};
use std::collections::BTreeMap;

/// One drifted field of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub name: String,
    /// `None` for a VM that is missing.
    pub vmid: Option<u32>,
    pub field: String,
    pub desired: String,
    pub actual: String,
    /// Applied back to the manifests' value in this pass (`heal`).
    pub healed: bool,
}

/// The field path of a VM that is gone: desired `present`, actual `missing`.
pub const EXISTENCE: &str = "vm";

/// Whether `path` is ignored by `ignore` (exactly, or a whole key ignoring its options).
pub fn ignored(ignore: &[String], path: &str) -> bool {
    ignore.iter().any(|i| {
        i == path
            || path
                .strip_prefix(i.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Config changes without the ones `ignore` covers. A whole key (`description`) drops its
/// change; an option (`net0.tag`, `net0.macaddr`) is left out of the comparison, so the
/// change stays only if something else of the key differs.
pub fn unignored(
    changes: Vec<Change>,
    config: &DesiredConfig,
    actual: &BTreeMap<String, String>,
    ignore: &[String],
) -> Vec<Change> {
    changes
        .into_iter()
        .filter(|c| {
            if ignored(ignore, &c.key) {
                return false;
            }
            let options: Vec<&str> = ignore
                .iter()
                .filter_map(|i| i.strip_prefix(c.key.as_str())?.strip_prefix('.'))
                .collect();
            let Some(want) = config.get(&c.key).filter(|_| !options.is_empty()) else {
                return true;
            };
            let relaxed = without_options(want, &options);
            !matches(&c.key, &relaxed, actual.get(&c.key).map(String::as_str))
        })
        .collect()
}

/// `want` with `options` left out of what is compared; `macaddr` relaxes a fixed MAC to
/// the model only.
fn without_options(want: &DesiredValue, options: &[&str]) -> DesiredValue {
    let Compare::Options(head) = want.compare else {
        return want.clone();
    };
    let mut items = want.text.split(',');
    let first = match head {
        Head::None => None,
        _ => items.next(),
    };
    let mut head = head;
    let first = first.map(|f| {
        if options.contains(&"macaddr") && f.contains('=') {
            head = Head::Model;
        }
        f.to_string()
    });
    let rest = items.filter(|i| i.split_once('=').is_none_or(|(k, _)| !options.contains(&k)));
    let text = first
        .into_iter()
        .chain(rest.map(str::to_string))
        .collect::<Vec<_>>()
        .join(",");
    DesiredValue {
        text,
        compare: Compare::Options(head),
    }
}

/// A value as the drift report shows it: `sshkeys` decoded, secrets hidden, unset named.
pub fn shown(key: &str, value: Option<&str>) -> String {
    match value {
        _ if key == "cipassword" => "(secret)".into(),
        None => "(unset)".into(),
        Some(v) if key == "sshkeys" => percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .trim()
            .replace('\n', " / "),
        Some(v) => v.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compare::diff;

    fn config(pairs: &[(&str, &str, Compare)]) -> DesiredConfig {
        pairs
            .iter()
            .map(|(k, v, c)| {
                (
                    k.to_string(),
                    DesiredValue {
                        text: v.to_string(),
                        compare: *c,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn ignored_fields_drop_keys_and_options() {
        let want = config(&[
            ("description", "web", Compare::Exact),
            (
                "net0",
                "virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=14",
                Compare::Options(Head::Exact),
            ),
            ("memory", "2048", Compare::Exact),
        ]);
        let have: BTreeMap<String, String> = [
            ("description", "edited in the GUI"),
            ("net0", "virtio=BC:24:11:99:99:99,bridge=vmbr0,tag=15"),
            ("memory", "4096"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let keys = |ignore: &[&str]| -> Vec<String> {
            let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
            unignored(diff(&want, &have), &want, &have, &ignore)
                .into_iter()
                .map(|c| c.key)
                .collect()
        };
        assert_eq!(keys(&[]), ["description", "memory", "net0"]);
        assert_eq!(keys(&["description", "memory"]), ["net0"]);
        // The MAC alone ignored: the VLAN still differs.
        assert_eq!(keys(&["net0.macaddr"]), ["description", "memory", "net0"]);
        assert_eq!(
            keys(&["net0.macaddr", "net0.tag"]),
            ["description", "memory"]
        );
        assert_eq!(keys(&["net0"]), ["description", "memory"]);
        assert!(ignored(&["scsi0".into()], "scsi0.size"));
        assert!(!ignored(&["scsi".into()], "scsi0.size"));
    }
}
