//! Planning firewalls: a `Firewall` manifest against what PVE has, to the writes that make
//! them equal.
//!
//! Ownership (the manifest's `ownership`):
//! - `marked` (default): the agent owns the rules whose comment carries its mark
//!   (`pve-gitops`, or `pve-gitops: <comment>`), and the aliases, IP sets and security
//!   groups whose comment does. Everything else in a table is left where it is.
//! - `full`: the manifest is the whole table; unmarked rules and undeclared objects go.
//!
//! Declared aliases, IP sets and groups are taken by name (and get the mark); an IP set's
//! entries are exactly the declared ones. Options are set only where declared.
//!
//! Rules keep the declared order among the owned rules. PVE inserts a new rule at
//! position 0 (disabled unless `enable` is sent, so `enable` is always sent): the plan
//! updates owned rules in place index by index, deletes surplus ones from the bottom, and
//! creates missing ones, each moved right below its predecessor. So changing one rule is
//! exactly one update of that rule. Positions in the steps are those PVE will have when
//! the step runs (the steps run in order).

use pve_gitops_schema::manifest::firewall::{FirewallOptions, FirewallSpec, Ownership, Rule};
use std::collections::BTreeMap;

/// The mark in the comment of everything the agent owns.
pub const MARK: &str = "pve-gitops";

/// Fields of a rule or an options object in PVE's spelling, as text.
pub type Fields = BTreeMap<String, String>;

/// The rule keys the agent manages (all of them: an owned rule is exactly as declared).
pub const RULE_KEYS: &[&str] = &[
    "type",
    "action",
    "macro",
    "proto",
    "source",
    "dest",
    "sport",
    "dport",
    "iface",
    "log",
    "enable",
    "comment",
    "icmp-type",
];

/// Whether a comment carries the agent's mark.
pub fn marked(comment: Option<&str>) -> bool {
    comment.is_some_and(|c| c == MARK || c.starts_with(&format!("{MARK}:")))
}

/// A comment with the agent's mark.
pub fn mark(comment: Option<&str>) -> String {
    match comment.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => format!("{MARK}: {c}"),
        None => MARK.to_string(),
    }
}

fn text<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A declared rule as PVE shows it once created.
pub fn rule_fields(r: &Rule) -> Fields {
    let mut f = Fields::new();
    f.insert("type".into(), text(&r.direction));
    f.insert("action".into(), r.action.clone());
    let opt = [
        ("macro", &r.macro_name),
        ("proto", &r.proto),
        ("source", &r.source),
        ("dest", &r.dest),
        ("sport", &r.sport),
        ("dport", &r.dport),
        ("iface", &r.iface),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            f.insert(k.into(), v.clone());
        }
    }
    if let Some(l) = &r.log {
        f.insert("log".into(), text(l));
    }
    f.insert(
        "enable".into(),
        if r.enable == Some(false) { "0" } else { "1" }.into(),
    );
    f.insert("comment".into(), mark(r.comment.as_deref()));
    f
}

/// Declared options in PVE's spelling. The cluster firewall has no log levels (they are
/// per node in PVE); those are returned as ignored.
pub fn option_fields(o: &FirewallOptions, cluster: bool) -> (Fields, Vec<&'static str>) {
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    let mut f = Fields::new();
    let mut ignored = Vec::new();
    let mut put = |k: &'static str, v: Option<String>, cluster_ok: bool, guest_ok: bool| {
        let Some(v) = v else { return };
        if (cluster && cluster_ok) || (!cluster && guest_ok) {
            f.insert(k.to_string(), v);
        } else {
            ignored.push(k);
        }
    };
    put("enable", o.enable.map(flag), true, true);
    put("policy_in", o.policy_in.as_ref().map(text), true, true);
    put("policy_out", o.policy_out.as_ref().map(text), true, true);
    put(
        "log_level_in",
        o.log_level_in.as_ref().map(text),
        false,
        true,
    );
    put(
        "log_level_out",
        o.log_level_out.as_ref().map(text),
        false,
        true,
    );
    put("ebtables", o.ebtables.map(flag), true, false);
    for (k, v) in [
        ("dhcp", o.dhcp),
        ("ndp", o.ndp),
        ("radv", o.radv),
        ("macfilter", o.macfilter),
        ("ipfilter", o.ipfilter),
    ] {
        put(k, v.map(flag), false, true);
    }
    (f, ignored)
}

/// The declared options that differ from PVE's (`enable` counts as on for any non-zero
/// value: the cluster firewall keeps a time stamp there).
pub fn options_diff(desired: &Fields, actual: &Fields) -> Fields {
    desired
        .iter()
        .filter(|(k, v)| {
            let have = actual.get(*k).map(|a| {
                if k.as_str() == "enable" && a != "0" {
                    "1".to_string()
                } else {
                    a.clone()
                }
            });
            have.as_ref() != Some(*v)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A rule as PVE lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualRule {
    pub pos: u64,
    pub fields: Fields,
}

/// One write to a rule table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleStep {
    /// Insert at position 0.
    Create(Fields),
    Update {
        pos: u64,
        set: Fields,
        delete: Vec<String>,
    },
    /// Move the rule at `pos` in front of the rule now at `to`.
    Move {
        pos: u64,
        to: u64,
    },
    Delete {
        pos: u64,
    },
}

/// The writes that make the owned rules of a table the declared ones, in order.
pub fn plan_rules(
    desired: &[Fields],
    actual: &[ActualRule],
    ownership: Ownership,
) -> Vec<RuleStep> {
    let owns = |r: &ActualRule| {
        ownership == Ownership::Full || marked(r.fields.get("comment").map(String::as_str))
    };
    // The table as it will be: `Some(i)` is owned rule i (in declared order), `None` a
    // rule left alone.
    let mut table: Vec<Option<usize>> = Vec::new();
    let mut owned: Vec<&ActualRule> = Vec::new();
    let mut sorted: Vec<&ActualRule> = actual.iter().collect();
    sorted.sort_by_key(|r| r.pos);
    for r in sorted {
        if owns(r) {
            table.push(Some(owned.len()));
            owned.push(r);
        } else {
            table.push(None);
        }
    }
    let position = |table: &[Option<usize>], i: usize| {
        table
            .iter()
            .position(|t| *t == Some(i))
            .expect("owned rule") as u64
    };
    let mut steps = Vec::new();
    for (i, (want, have)) in desired.iter().zip(&owned).enumerate() {
        let set: Fields = want
            .iter()
            .filter(|(k, v)| have.fields.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let delete: Vec<String> = RULE_KEYS
            .iter()
            .filter(|k| !want.contains_key(**k) && have.fields.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        if !set.is_empty() || !delete.is_empty() {
            let pos = position(&table, i);
            steps.push(RuleStep::Update { pos, set, delete });
        }
    }
    for i in (desired.len()..owned.len()).rev() {
        let pos = position(&table, i);
        table.remove(pos as usize);
        steps.push(RuleStep::Delete { pos });
    }
    for (i, want) in desired.iter().enumerate().skip(owned.len()) {
        steps.push(RuleStep::Create(want.clone()));
        table.insert(0, Some(i));
        if i > 0 {
            // Right below the previous owned rule.
            let below = position(&table, i - 1) + 1;
            steps.push(RuleStep::Move { pos: 0, to: below });
            table.remove(0);
            table.insert(below as usize - 1, Some(i));
        }
    }
    steps
}

/// An IP set entry in PVE's spelling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub cidr: String,
    pub nomatch: bool,
    pub comment: Option<String>,
}

/// How PVE stores an entry's address: host bits cleared, `/32` and `/128` dropped; alias
/// names as given.
pub fn clean_cidr(cidr: &str) -> String {
    if let Ok(net) = cidr.parse::<ipnet::IpNet>() {
        let net = net.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            return net.addr().to_string();
        }
        return net.to_string();
    }
    cidr.to_string()
}

/// Security groups, IP sets and aliases of the cluster firewall as PVE has them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualClusterFw {
    pub options: Fields,
    pub rules: Vec<ActualRule>,
    /// Name → (cidr, comment).
    pub aliases: BTreeMap<String, (String, Option<String>)>,
    /// Name → (comment, entries).
    pub ipsets: BTreeMap<String, (Option<String>, Vec<Entry>)>,
    /// Name → (comment, rules).
    pub groups: BTreeMap<String, (Option<String>, Vec<ActualRule>)>,
}

/// A guest's firewall as PVE has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualGuestFw {
    pub options: Fields,
    pub rules: Vec<ActualRule>,
}

/// One write to a firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FwStep {
    Options(Fields),
    AliasCreate {
        name: String,
        cidr: String,
        comment: String,
    },
    AliasUpdate {
        name: String,
        cidr: String,
        comment: String,
    },
    AliasDelete {
        name: String,
    },
    IpSetCreate {
        name: String,
        comment: String,
    },
    IpSetComment {
        name: String,
        comment: String,
    },
    IpSetDelete {
        name: String,
    },
    EntryAdd {
        set: String,
        entry: Entry,
    },
    EntryUpdate {
        set: String,
        entry: Entry,
    },
    EntryDelete {
        set: String,
        cidr: String,
    },
    GroupCreate {
        name: String,
        comment: String,
    },
    GroupComment {
        name: String,
        comment: String,
    },
    GroupDelete {
        name: String,
    },
    /// Rule writes to the scope's own table (`group: None`) or a security group's.
    Rules {
        group: Option<String>,
        steps: Vec<RuleStep>,
    },
}

/// The cluster firewall's writes: options, aliases, IP sets, groups (with their rules)
/// and the cluster rules; then what is owned but no longer declared. Also returns the
/// declared options PVE has no place for.
pub fn plan_cluster_fw(
    spec: &FirewallSpec,
    actual: &ActualClusterFw,
) -> (Vec<FwStep>, Vec<&'static str>) {
    let mut steps = Vec::new();
    let owns = |comment: Option<&String>| {
        spec.ownership == Ownership::Full || marked(comment.map(String::as_str))
    };
    let mut ignored = Vec::new();
    if let Some(o) = &spec.options {
        let (want, skip) = option_fields(o, true);
        ignored = skip;
        let set = options_diff(&want, &actual.options);
        if !set.is_empty() {
            steps.push(FwStep::Options(set));
        }
    }
    let lower = |s: &str| s.to_ascii_lowercase();
    for a in &spec.aliases {
        let comment = mark(a.comment.as_deref());
        let have = actual
            .aliases
            .iter()
            .find(|(n, _)| lower(n) == lower(&a.name));
        match have {
            None => steps.push(FwStep::AliasCreate {
                name: a.name.clone(),
                cidr: a.cidr.clone(),
                comment,
            }),
            Some((_, (cidr, c))) if *cidr != a.cidr || c.as_ref() != Some(&comment) => {
                steps.push(FwStep::AliasUpdate {
                    name: a.name.clone(),
                    cidr: a.cidr.clone(),
                    comment,
                })
            }
            Some(_) => {}
        }
    }
    for s in &spec.ipsets {
        let comment = mark(s.comment.as_deref());
        let have = actual.ipsets.get(&s.name);
        match have {
            None => steps.push(FwStep::IpSetCreate {
                name: s.name.clone(),
                comment,
            }),
            Some((c, _)) if c.as_ref() != Some(&comment) => steps.push(FwStep::IpSetComment {
                name: s.name.clone(),
                comment,
            }),
            Some(_) => {}
        }
        let entries: &[Entry] = have.map_or(&[], |(_, e)| e.as_slice());
        let want: Vec<Entry> = s
            .entries
            .iter()
            .map(|e| Entry {
                cidr: clean_cidr(&e.cidr),
                nomatch: e.nomatch,
                comment: e.comment.clone(),
            })
            .collect();
        for w in &want {
            match entries.iter().find(|e| e.cidr == w.cidr) {
                None => steps.push(FwStep::EntryAdd {
                    set: s.name.clone(),
                    entry: w.clone(),
                }),
                Some(e) if e != w => steps.push(FwStep::EntryUpdate {
                    set: s.name.clone(),
                    entry: w.clone(),
                }),
                Some(_) => {}
            }
        }
        for e in entries
            .iter()
            .filter(|e| !want.iter().any(|w| w.cidr == e.cidr))
        {
            steps.push(FwStep::EntryDelete {
                set: s.name.clone(),
                cidr: e.cidr.clone(),
            });
        }
    }
    for g in &spec.security_groups {
        let comment = mark(g.comment.as_deref());
        let have = actual.groups.get(&g.name);
        match have {
            None => steps.push(FwStep::GroupCreate {
                name: g.name.clone(),
                comment,
            }),
            Some((c, _)) if c.as_ref() != Some(&comment) => steps.push(FwStep::GroupComment {
                name: g.name.clone(),
                comment,
            }),
            Some(_) => {}
        }
        let want: Vec<Fields> = g.rules.iter().map(rule_fields).collect();
        let rules = plan_rules(
            &want,
            have.map_or(&[], |(_, r)| r.as_slice()),
            spec.ownership,
        );
        if !rules.is_empty() {
            steps.push(FwStep::Rules {
                group: Some(g.name.clone()),
                steps: rules,
            });
        }
    }
    let want: Vec<Fields> = spec.rules.iter().map(rule_fields).collect();
    let rules = plan_rules(&want, &actual.rules, spec.ownership);
    if !rules.is_empty() {
        steps.push(FwStep::Rules {
            group: None,
            steps: rules,
        });
    }
    // Owned, no longer declared: groups (emptied first), IP sets, aliases.
    for (name, (comment, rules)) in &actual.groups {
        if spec.security_groups.iter().any(|g| &g.name == name) || !owns(comment.as_ref()) {
            continue;
        }
        let empty = plan_rules(&[], rules, Ownership::Full);
        if !empty.is_empty() {
            steps.push(FwStep::Rules {
                group: Some(name.clone()),
                steps: empty,
            });
        }
        steps.push(FwStep::GroupDelete { name: name.clone() });
    }
    for (name, (comment, _)) in &actual.ipsets {
        if !spec.ipsets.iter().any(|s| &s.name == name) && owns(comment.as_ref()) {
            steps.push(FwStep::IpSetDelete { name: name.clone() });
        }
    }
    for (name, (_, comment)) in &actual.aliases {
        let declared = spec.aliases.iter().any(|a| lower(&a.name) == lower(name));
        if !declared && owns(comment.as_ref()) {
            steps.push(FwStep::AliasDelete { name: name.clone() });
        }
    }
    (steps, ignored)
}

/// A guest's writes: options, then its rules. Also returns the declared options PVE has
/// no place for on a guest.
pub fn plan_guest_fw(
    spec: &FirewallSpec,
    actual: &ActualGuestFw,
) -> (Vec<FwStep>, Vec<&'static str>) {
    let mut steps = Vec::new();
    let mut ignored = Vec::new();
    if let Some(o) = &spec.options {
        let (want, skip) = option_fields(o, false);
        ignored = skip;
        let set = options_diff(&want, &actual.options);
        if !set.is_empty() {
            steps.push(FwStep::Options(set));
        }
    }
    let want: Vec<Fields> = spec.rules.iter().map(rule_fields).collect();
    let rules = plan_rules(&want, &actual.rules, spec.ownership);
    if !rules.is_empty() {
        steps.push(FwStep::Rules {
            group: None,
            steps: rules,
        });
    }
    (steps, ignored)
}

#[cfg(test)]
#[path = "firewall_tests.rs"]
mod tests;
