//! Rule tables run through a model of PVE's own list operations (insert at 0, update,
//! delete, move in front of), so each case checks the outcome, not just the steps.

use super::*;
use pve_gitops_schema::manifest::firewall::{Alias, IpSet, IpSetEntry};

fn rule(action: &str, dport: &str, comment: &str) -> Fields {
    Fields::from([
        ("type".to_string(), "in".to_string()),
        ("action".to_string(), action.to_string()),
        ("proto".to_string(), "tcp".to_string()),
        ("dport".to_string(), dport.to_string()),
        ("enable".to_string(), "1".to_string()),
        ("comment".to_string(), comment.to_string()),
    ])
}

fn ours(dport: &str) -> Fields {
    rule("ACCEPT", dport, &mark(Some(dport)))
}

fn foreign(dport: &str) -> Fields {
    rule("ACCEPT", dport, "by hand")
}

fn listed(table: &[Fields]) -> Vec<ActualRule> {
    table
        .iter()
        .enumerate()
        .map(|(pos, fields)| ActualRule {
            pos: pos as u64,
            fields: fields.clone(),
        })
        .collect()
}

/// PVE's rule list operations (pve-firewall API2/Firewall/Rules.pm).
fn run(table: &mut Vec<Fields>, steps: &[RuleStep]) {
    for s in steps {
        match s {
            RuleStep::Create(f) => table.insert(0, f.clone()),
            RuleStep::Update { pos, set, delete } => {
                let r = &mut table[*pos as usize];
                r.extend(set.clone());
                for k in delete {
                    r.remove(k);
                }
            }
            RuleStep::Delete { pos } => {
                table.remove(*pos as usize);
            }
            RuleStep::Move { pos, to } => {
                let moved = table[*pos as usize].clone();
                let mut out = Vec::new();
                for (i, r) in table.iter().enumerate() {
                    if i == *pos as usize {
                        continue;
                    }
                    if i == *to as usize {
                        out.push(moved.clone());
                    }
                    out.push(r.clone());
                }
                if *to as usize >= table.len() {
                    out.push(moved);
                }
                *table = out;
            }
        }
    }
}

#[test]
fn rule_tables_converge_and_leave_foreign_rules_alone() {
    let cases: Vec<(&str, Vec<Fields>, Vec<Fields>, usize)> = vec![
        (
            "from empty",
            vec![],
            vec![ours("22"), ours("80"), ours("443")],
            5,
        ),
        (
            "below foreign rules",
            vec![foreign("1"), foreign("2")],
            vec![ours("22"), ours("80")],
            3,
        ),
        (
            "one changed rule is one update",
            vec![
                foreign("1"),
                ours("22"),
                ours("81"),
                foreign("2"),
                ours("443"),
            ],
            vec![ours("22"), ours("80"), ours("443")],
            1,
        ),
        (
            "surplus owned rules go",
            vec![ours("22"), foreign("1"), ours("80"), ours("443")],
            vec![ours("22")],
            2,
        ),
        (
            "an appended rule lands below the last owned one",
            vec![ours("22"), foreign("1"), ours("80"), foreign("2")],
            vec![ours("22"), ours("80"), ours("443")],
            2,
        ),
        (
            "converged: nothing",
            vec![ours("22"), foreign("1")],
            vec![ours("22")],
            0,
        ),
    ];
    for (what, start, desired, writes) in cases {
        let steps = plan_rules(&desired, &listed(&start), Ownership::Marked);
        assert_eq!(steps.len(), writes, "{what}: {steps:?}");
        let mut table = start.clone();
        run(&mut table, &steps);
        let owned: Vec<&Fields> = table
            .iter()
            .filter(|r| marked(r.get("comment").map(String::as_str)))
            .collect();
        assert_eq!(owned, desired.iter().collect::<Vec<_>>(), "{what}");
        let kept: Vec<&Fields> = table.iter().filter(|r| r["comment"] == "by hand").collect();
        let before: Vec<&Fields> = start.iter().filter(|r| r["comment"] == "by hand").collect();
        assert_eq!(kept, before, "{what}");
        assert!(
            plan_rules(&desired, &listed(&table), Ownership::Marked).is_empty(),
            "{what}: a second plan is empty"
        );
    }
}

#[test]
fn full_ownership_takes_the_whole_table() {
    let start = vec![foreign("1"), ours("22")];
    let desired = vec![ours("22")];
    let steps = plan_rules(&desired, &listed(&start), Ownership::Full);
    let mut table = start;
    run(&mut table, &steps);
    assert_eq!(table, desired);
}

#[test]
fn a_removed_field_is_deleted() {
    let mut have = ours("22");
    have.insert("log".into(), "info".into());
    let steps = plan_rules(&[ours("22")], &listed(&[have]), Ownership::Marked);
    assert_eq!(
        steps,
        [RuleStep::Update {
            pos: 0,
            set: Fields::new(),
            delete: vec!["log".into()]
        }]
    );
}

#[test]
fn declared_rules_in_pve_spelling() {
    let r: Rule = serde_yaml::from_str(
        "{ direction: in, action: ACCEPT, macro: SSH, source: mgmt, log: nolog }",
    )
    .unwrap();
    let f = rule_fields(&r);
    assert_eq!(f["type"], "in");
    assert_eq!(f["macro"], "SSH");
    assert_eq!(f["log"], "nolog");
    assert_eq!(f["enable"], "1", "PVE would create it disabled");
    assert_eq!(f["comment"], "pve-gitops");
    assert!(marked(Some("pve-gitops: ssh")) && !marked(Some("pve-gitopsx")));
}

#[test]
fn options_only_where_declared_and_enable_time_stamps_count_as_on() {
    let o = FirewallOptions {
        enable: Some(true),
        policy_in: Some(pve_gitops_schema::manifest::firewall::Policy::Drop),
        log_level_in: Some(pve_gitops_schema::manifest::firewall::LogLevel::Nolog),
        ..FirewallOptions::default()
    };
    let (cluster, ignored) = option_fields(&o, true);
    assert_eq!(ignored, ["log_level_in"]);
    let actual = Fields::from([
        ("enable".to_string(), "1732531200".to_string()),
        ("policy_in".to_string(), "DROP".to_string()),
        ("policy_out".to_string(), "REJECT".to_string()),
    ]);
    assert!(options_diff(&cluster, &actual).is_empty());
    let (guest, ignored) = option_fields(&o, false);
    assert!(ignored.is_empty());
    assert_eq!(
        options_diff(&guest, &actual).keys().collect::<Vec<_>>(),
        ["log_level_in"]
    );
}

#[test]
fn cluster_objects_by_name_and_mark() {
    let spec = FirewallSpec {
        target: None,
        ownership: Ownership::Marked,
        options: None,
        aliases: vec![Alias {
            name: "mgmt".into(),
            cidr: "10.10.0.0/24".into(),
            comment: None,
        }],
        ipsets: vec![IpSet {
            name: "nodes".into(),
            comment: None,
            entries: vec![
                IpSetEntry {
                    cidr: "10.10.10.11/32".into(),
                    nomatch: false,
                    comment: None,
                },
                IpSetEntry {
                    cidr: "mgmt".into(),
                    nomatch: false,
                    comment: None,
                },
            ],
        }],
        security_groups: vec![],
        rules: vec![],
    };
    let mut actual = ActualClusterFw::default();
    actual
        .aliases
        .insert("MGMT".into(), ("10.10.0.0/24".into(), Some(MARK.into())));
    actual
        .aliases
        .insert("old".into(), ("10.9.0.0/24".into(), Some(MARK.into())));
    actual
        .aliases
        .insert("theirs".into(), ("10.8.0.0/24".into(), None));
    actual.ipsets.insert(
        "nodes".into(),
        (
            Some(MARK.into()),
            vec![
                Entry {
                    cidr: "10.10.10.11".into(),
                    nomatch: false,
                    comment: None,
                },
                Entry {
                    cidr: "10.10.10.99".into(),
                    nomatch: false,
                    comment: None,
                },
            ],
        ),
    );
    let (steps, _) = plan_cluster_fw(&spec, &actual);
    assert_eq!(
        steps,
        [
            FwStep::EntryAdd {
                set: "nodes".into(),
                entry: Entry {
                    cidr: "mgmt".into(),
                    nomatch: false,
                    comment: None
                }
            },
            FwStep::EntryDelete {
                set: "nodes".into(),
                cidr: "10.10.10.99".into()
            },
            FwStep::AliasDelete { name: "old".into() },
        ]
    );
    let full = FirewallSpec {
        ownership: Ownership::Full,
        ..spec
    };
    let (steps, _) = plan_cluster_fw(&full, &actual);
    assert!(steps.contains(&FwStep::AliasDelete {
        name: "theirs".into()
    }));
}
