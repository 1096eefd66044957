//! Comparing desired config values with what PVE reports, normalized so that nothing flaps:
//! option order, booleans spelled `1`/`on`/`true`, generated MACs, PVE-added options,
//! tag order and separators, URL-encoded `sshkeys`, hidden `cipassword`.

use super::pveconfig::{Compare, DesiredConfig, DesiredValue, Head};
use std::collections::BTreeMap;

/// A config key whose value must change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    /// What PVE has now (`None`: the key is not set).
    pub from: Option<String>,
    pub to: String,
}

/// The keys of `desired` whose value differs from `actual` (PVE's `GET .../config`). Keys
/// only PVE sets (`smbios1`, `vmgenid`, `meta`, `boot`, `digest`...) are never compared.
pub fn diff(desired: &DesiredConfig, actual: &BTreeMap<String, String>) -> Vec<Change> {
    desired
        .iter()
        .filter(|(key, want)| !matches(key, want, actual.get(key.as_str()).map(String::as_str)))
        .map(|(key, want)| {
            let from = actual.get(key.as_str()).cloned();
            let to = match (&from, want.compare) {
                (Some(have), Compare::Options(head @ (Head::Storage | Head::Model))) => {
                    keep_head(have, &want.text, head)
                }
                _ => want.text.clone(),
            };
            Change {
                key: key.clone(),
                from,
                to,
            }
        })
        .collect()
}

/// The value to send for an existing disk or NIC: PVE's head (the volume id, the MAC it
/// generated) and options, with the desired options over them. Sending `rbd:30` for an
/// existing `scsi0` would allocate a new disk; sending `virtio` would change the MAC.
fn keep_head(have: &str, want: &str, head: Head) -> String {
    let mut items = have.split(',').map(str::trim).filter(|s| !s.is_empty());
    let have_head = items.next().unwrap_or_default();
    let mut opts: Vec<(String, String)> = items
        .filter_map(|i| i.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut want_items = want.split(',');
    let want_head = want_items.next().unwrap_or_default();
    for (k, v) in want_items.filter_map(|i| i.split_once('=')) {
        match opts.iter_mut().find(|(ok, _)| ok == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => opts.push((k.to_string(), v.to_string())),
        }
    }
    // A NIC whose model changes keeps its MAC: `e1000=<mac>`.
    let head_text = match (head, have_head.split_once('=')) {
        (Head::Model, Some((_, mac))) => {
            format!("{}={mac}", want_head.split('=').next().unwrap_or(want_head))
        }
        _ => have_head.to_string(),
    };
    std::iter::once(head_text)
        .chain(opts.into_iter().map(|(k, v)| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether PVE's `actual` value already satisfies `want` for `key`.
pub fn matches(key: &str, want: &DesiredValue, actual: Option<&str>) -> bool {
    let Some(actual) = actual else {
        return false;
    };
    match want.compare {
        Compare::Exact => flag(want.text.trim()) == flag(actual.trim()),
        Compare::WriteOnce => true,
        Compare::Tags => tags(&want.text) == tags(actual),
        Compare::UrlEncoded => lines(&want.text) == lines(&decode(actual)),
        Compare::Options(head) => {
            let (want_head, want_opts) = options(key, &want.text, head);
            let (have_head, have_opts) = options(key, actual, head);
            let head_ok = match head {
                Head::None => true,
                Head::Exact => want_head.eq_ignore_ascii_case(&have_head),
                Head::Storage => want_head.split(':').next() == have_head.split(':').next(),
                Head::Model => want_head.split('=').next() == have_head.split('=').next(),
            };
            head_ok && want_opts.iter().all(|(k, v)| have_opts.get(k) == Some(v))
        }
    }
}

/// Booleans as PVE spells them in different places: `1`, `on`, `true`, `yes`.
fn flag(v: &str) -> String {
    match v {
        "1" | "on" | "true" | "yes" => "1".into(),
        "0" | "off" | "false" | "no" => "0".into(),
        other => other.to_string(),
    }
}

/// Split `head,k=v,k=v` (or, with [`Head::None`], only `k=v` pairs) into the head and the
/// options with normalized values.
fn options(key: &str, text: &str, head: Head) -> (String, BTreeMap<String, String>) {
    let mut items = text.split(',').map(str::trim).filter(|s| !s.is_empty());
    let mut first = match head {
        Head::None => String::new(),
        _ => items.next().unwrap_or_default().to_string(),
    };
    // `agent: 1` and `agent: enabled=1,fstrim_cloned_disks=1` say the same.
    if key == "agent" {
        if let Some(v) = first.strip_prefix("enabled=") {
            first = v.to_string();
        }
        first = flag(&first);
    }
    if head == Head::Exact && first.contains('=') {
        // A head `virtio=MAC` compares its MAC case-insensitively (done by the caller).
        first = first.to_uppercase();
    }
    let opts = items
        .filter_map(|i| i.split_once('='))
        .map(|(k, v)| (k.to_string(), flag(v)))
        .collect();
    (first, opts)
}

fn tags(text: &str) -> Vec<String> {
    let mut t: Vec<String> = text
        .split([';', ',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
        .collect();
    t.sort();
    t.dedup();
    t
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}
