//! Firewalls against the API: read the cluster firewall (before the VMs) and each targeted
//! guest's (after the VMs exist, since a clone copies its template's firewall), run the
//! planned writes in order, each with the digest of the list it changes.
//!
//! A digest is valid until the list changes: the one read while observing is used for the
//! first write to a list, and after each write the list is read again before the next
//! write that needs one. A change by someone else in between makes PVE refuse the write
//! ("detected modified configuration"), the resource fails, and the next pass plans again.
//! Results go into the report under `Firewall/<name>`.

use super::{ApplyOptions, Report};
use crate::plan::firewall::{
    plan_guest_fw, ActualClusterFw, ActualGuestFw, ActualRule, Entry, Fields, FwStep, RuleStep,
    RULE_KEYS,
};
use crate::pve::firewall::{FwObject, FwScope, RuleTable};
use crate::pve::{de, Params, PveClient, PveError};
use pve_gitops_schema::desired::Named;
use pve_gitops_schema::manifest::firewall::FirewallSpec;
use serde_json::Value;
use std::collections::BTreeMap;

/// The lists a digest guards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum List {
    Options(FwScope),
    Rules(RuleTable),
    Aliases,
    IpSet(String),
}

/// Digests known to match PVE's lists now.
pub type Digests = BTreeMap<List, Option<String>>;

fn field_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        _ => None,
    }
}

fn digest_of(list: &[FwObject]) -> Option<String> {
    list.first()
        .and_then(|o| o.get("digest"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn comment(o: &FwObject) -> Option<String> {
    o.get("comment").and_then(field_text)
}

fn rules(list: &[FwObject]) -> Vec<ActualRule> {
    list.iter()
        .enumerate()
        .map(|(i, o)| ActualRule {
            pos: o.get("pos").and_then(de::value_u64).unwrap_or(i as u64),
            fields: RULE_KEYS
                .iter()
                .filter_map(|k| o.get(*k).and_then(field_text).map(|v| (k.to_string(), v)))
                .collect(),
        })
        .collect()
}

fn options(o: &FwObject) -> Fields {
    o.iter()
        .filter(|(k, _)| k.as_str() != "digest")
        .filter_map(|(k, v)| field_text(v).map(|t| (k.clone(), t)))
        .collect()
}

/// The cluster firewall as the declared cluster `Firewall`s need it: options, rules,
/// aliases, IP sets with entries, groups with rules. Nothing is read without one.
pub async fn observe_cluster(
    client: &PveClient,
    specs: &[&Named<FirewallSpec>],
    digests: &mut Digests,
) -> Result<ActualClusterFw, PveError> {
    let mut out = ActualClusterFw::default();
    if specs.is_empty() {
        return Ok(out);
    }
    let scope = FwScope::Cluster;
    let o = client.fw_options(&scope).await?;
    digests.insert(
        List::Options(scope.clone()),
        o.get("digest").and_then(field_text),
    );
    out.options = options(&o);
    let table = RuleTable::Scope(scope);
    let list = client.fw_rules(&table).await?;
    digests.insert(List::Rules(table), digest_of(&list));
    out.rules = rules(&list);
    let list = client.fw_aliases().await?;
    digests.insert(List::Aliases, digest_of(&list));
    for a in &list {
        let (Some(name), Some(cidr)) = (
            a.get("name").and_then(field_text),
            a.get("cidr").and_then(field_text),
        ) else {
            continue;
        };
        out.aliases.insert(name, (cidr, comment(a)));
    }
    for s in client.fw_ipsets().await? {
        let Some(name) = s.get("name").and_then(field_text) else {
            continue;
        };
        let list = client.fw_ipset_entries(&name).await?;
        digests.insert(List::IpSet(name.clone()), digest_of(&list));
        let entries = list
            .iter()
            .filter_map(|e| {
                Some(Entry {
                    cidr: e.get("cidr").and_then(field_text)?,
                    nomatch: e
                        .get("nomatch")
                        .and_then(field_text)
                        .is_some_and(|n| n != "0"),
                    comment: comment(e),
                })
            })
            .collect();
        out.ipsets.insert(name, (comment(&s), entries));
    }
    for g in client.fw_groups().await? {
        let Some(name) = g.get("group").and_then(field_text) else {
            continue;
        };
        let table = RuleTable::Group(name.clone());
        let list = client.fw_rules(&table).await?;
        digests.insert(List::Rules(table), digest_of(&list));
        out.groups.insert(name, (comment(&g), rules(&list)));
    }
    Ok(out)
}

/// A guest's options and rules.
pub async fn observe_guest(
    client: &PveClient,
    scope: &FwScope,
    digests: &mut Digests,
) -> Result<ActualGuestFw, PveError> {
    let o = client.fw_options(scope).await?;
    digests.insert(
        List::Options(scope.clone()),
        o.get("digest").and_then(field_text),
    );
    let table = RuleTable::Scope(scope.clone());
    let list = client.fw_rules(&table).await?;
    digests.insert(List::Rules(table), digest_of(&list));
    Ok(ActualGuestFw {
        options: options(&o),
        rules: rules(&list),
    })
}

/// The current digest of `list`: the known one, else read now.
async fn digest(
    client: &PveClient,
    list: &List,
    digests: &mut Digests,
) -> Result<Option<String>, PveError> {
    if let Some(d) = digests.get(list) {
        return Ok(d.clone());
    }
    let d = match list {
        List::Options(scope) => client
            .fw_options(scope)
            .await?
            .get("digest")
            .and_then(field_text),
        List::Rules(table) => digest_of(&client.fw_rules(table).await?),
        List::Aliases => digest_of(&client.fw_aliases().await?),
        List::IpSet(name) => digest_of(&client.fw_ipset_entries(name).await?),
    };
    digests.insert(list.clone(), d.clone());
    Ok(d)
}

fn fields_params(f: &Fields) -> Params {
    let mut p = Params::new();
    for (k, v) in f {
        p.push(k.as_str(), v.as_str());
    }
    p
}

/// Run one rule write; its digest is read first when the known one is stale.
async fn rule_step(
    client: &PveClient,
    table: &RuleTable,
    step: &RuleStep,
    digests: &mut Digests,
) -> Result<String, PveError> {
    let list = List::Rules(table.clone());
    let d = digest(client, &list, digests).await?;
    let with_digest = |mut p: Params| {
        if let Some(d) = &d {
            p.push("digest", d.as_str());
        }
        p
    };
    let done = match step {
        RuleStep::Create(f) => {
            client
                .fw_rule_create(table, &with_digest(fields_params(f)))
                .await?;
            "create rule".to_string()
        }
        RuleStep::Update { pos, set, delete } => {
            let mut p = fields_params(set);
            if !delete.is_empty() {
                p.push("delete", delete.join(","));
            }
            client.fw_rule_update(table, *pos, &with_digest(p)).await?;
            format!("update rule {pos}")
        }
        RuleStep::Move { pos, to } => {
            let p = Params::new().with("moveto", *to);
            client.fw_rule_update(table, *pos, &with_digest(p)).await?;
            format!("move rule {pos} to {to}")
        }
        RuleStep::Delete { pos } => {
            client
                .fw_rule_delete(table, *pos, &with_digest(Params::new()))
                .await?;
            format!("delete rule {pos}")
        }
    };
    digests.remove(&list);
    Ok(done)
}

/// Run one firewall write in `scope`; returns what the report says was done.
async fn step(
    client: &PveClient,
    scope: &FwScope,
    s: &FwStep,
    digests: &mut Digests,
) -> Result<Vec<String>, PveError> {
    let with = |p: Params, d: Option<String>| match d {
        Some(d) => p.with("digest", d),
        None => p,
    };
    let done = match s {
        FwStep::Options(set) => {
            let list = List::Options(scope.clone());
            let d = digest(client, &list, digests).await?;
            client
                .fw_set_options(scope, &with(fields_params(set), d))
                .await?;
            digests.remove(&list);
            let keys: Vec<&str> = set.keys().map(String::as_str).collect();
            format!("options {}", keys.join(", "))
        }
        FwStep::AliasCreate {
            name,
            cidr,
            comment,
        } => {
            let p = Params::new()
                .with("name", name.as_str())
                .with("cidr", cidr.as_str())
                .with("comment", comment.as_str());
            client.fw_alias_create(&p).await?;
            digests.remove(&List::Aliases);
            format!("create alias {name}")
        }
        FwStep::AliasUpdate {
            name,
            cidr,
            comment,
        } => {
            let d = digest(client, &List::Aliases, digests).await?;
            let p = Params::new()
                .with("cidr", cidr.as_str())
                .with("comment", comment.as_str());
            client.fw_alias_update(name, &with(p, d)).await?;
            digests.remove(&List::Aliases);
            format!("update alias {name}")
        }
        FwStep::AliasDelete { name } => {
            let d = digest(client, &List::Aliases, digests).await?;
            client
                .fw_alias_delete(name, &with(Params::new(), d))
                .await?;
            digests.remove(&List::Aliases);
            format!("delete alias {name}")
        }
        FwStep::IpSetCreate { name, comment } => {
            let p = Params::new()
                .with("name", name.as_str())
                .with("comment", comment.as_str());
            client.fw_ipset_create(&p).await?;
            // A new set has no entries: no digest to send.
            digests.insert(List::IpSet(name.clone()), None);
            format!("create ipset {name}")
        }
        FwStep::IpSetComment { name, comment } => {
            let p = Params::new()
                .with("name", name.as_str())
                .with("rename", name.as_str())
                .with("comment", comment.as_str());
            client.fw_ipset_create(&p).await?;
            format!("comment ipset {name}")
        }
        FwStep::IpSetDelete { name } => {
            client.fw_ipset_delete(name).await?;
            digests.remove(&List::IpSet(name.clone()));
            format!("delete ipset {name}")
        }
        FwStep::EntryAdd { set, entry } => {
            let p = Params::new()
                .with("cidr", entry.cidr.as_str())
                .with_opt("nomatch", entry.nomatch.then_some(true))
                .with_opt("comment", entry.comment.as_deref());
            client.fw_ipset_add(set, &p).await?;
            digests.remove(&List::IpSet(set.clone()));
            format!("add {} to ipset {set}", entry.cidr)
        }
        FwStep::EntryUpdate { set, entry } => {
            let list = List::IpSet(set.clone());
            let d = digest(client, &list, digests).await?;
            let p = Params::new()
                .with("nomatch", entry.nomatch)
                .with("comment", entry.comment.clone().unwrap_or_default());
            client
                .fw_ipset_entry_update(set, &entry.cidr, &with(p, d))
                .await?;
            digests.remove(&list);
            format!("update {} in ipset {set}", entry.cidr)
        }
        FwStep::EntryDelete { set, cidr } => {
            let list = List::IpSet(set.clone());
            let d = digest(client, &list, digests).await?;
            client
                .fw_ipset_entry_delete(set, cidr, &with(Params::new(), d))
                .await?;
            digests.remove(&list);
            format!("remove {cidr} from ipset {set}")
        }
        FwStep::GroupCreate { name, comment } => {
            let p = Params::new()
                .with("group", name.as_str())
                .with("comment", comment.as_str());
            client.fw_group_create(&p).await?;
            // A new group's rule list is empty: no digest to send.
            digests.insert(List::Rules(RuleTable::Group(name.clone())), None);
            format!("create group {name}")
        }
        FwStep::GroupComment { name, comment } => {
            let p = Params::new()
                .with("group", name.as_str())
                .with("rename", name.as_str())
                .with("comment", comment.as_str());
            client.fw_group_create(&p).await?;
            format!("comment group {name}")
        }
        FwStep::GroupDelete { name } => {
            client.fw_group_delete(name).await?;
            format!("delete group {name}")
        }
        FwStep::Rules { group, steps } => {
            let table = match group {
                Some(g) => RuleTable::Group(g.clone()),
                None => RuleTable::Scope(scope.clone()),
            };
            let prefix = group
                .as_ref()
                .map_or(String::new(), |g| format!("group {g}: "));
            let mut out = Vec::new();
            for r in steps {
                out.push(format!(
                    "{prefix}{}",
                    rule_step(client, &table, r, digests).await?
                ));
            }
            return Ok(out);
        }
    };
    Ok(vec![done])
}

/// Run `steps` in `scope` for report key `resource`, stopping at the first failure.
/// `label` prefixes each done entry (a guest's vmid).
pub async fn execute(
    client: &PveClient,
    resource: &str,
    scope: &FwScope,
    steps: &[FwStep],
    digests: &mut Digests,
    options: &ApplyOptions,
    report: &mut Report,
) {
    let label = match scope {
        FwScope::Cluster => String::new(),
        FwScope::Vm { vmid, .. } => format!("{vmid}: "),
    };
    for s in steps {
        if !super::may_write(options) {
            report.skipped.insert(
                resource.to_string(),
                super::ApplyError::NotLeader.to_string(),
            );
            return;
        }
        match step(client, scope, s, digests).await {
            Ok(done) => report
                .done
                .entry(resource.to_string())
                .or_default()
                .extend(done.into_iter().map(|d| format!("{label}{d}"))),
            Err(e) => {
                report
                    .failed
                    .insert(resource.to_string(), format!("{label}{e}"));
                return;
            }
        }
    }
}

/// One guest's firewall: read, plan, write.
pub async fn reconcile_guest(
    client: &PveClient,
    fw: &Named<FirewallSpec>,
    scope: FwScope,
    options: &ApplyOptions,
    report: &mut Report,
) {
    let resource = format!("Firewall/{}", fw.name);
    let mut digests = Digests::new();
    let actual = match observe_guest(client, &scope, &mut digests).await {
        Ok(a) => a,
        Err(e) => {
            report
                .failed
                .insert(resource, format!("reading the firewall: {e}"));
            return;
        }
    };
    let (steps, ignored) = plan_guest_fw(&fw.spec, &actual);
    if !ignored.is_empty() {
        tracing::warn!(firewall = %fw.name, options = ?ignored, "options PVE has no place for on a guest are not set");
    }
    execute(
        client,
        &resource,
        &scope,
        &steps,
        &mut digests,
        options,
        report,
    )
    .await;
}
