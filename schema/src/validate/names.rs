//! Names and vmids must be unique: guests share one namespace (their names become PVE VM
//! names and hostnames), every other kind has its own.

use super::Context;
use crate::diag::{Diagnostic, Diagnostics, ErrorKind, Location};
use crate::manifest::Kind;
use std::collections::BTreeMap;

pub fn check(ctx: &Context<'_>, diags: &mut Diagnostics) {
    // Resource names per namespace.
    let mut seen: BTreeMap<(Option<Kind>, &str), Location> = BTreeMap::new();
    for doc in ctx.docs {
        let kind = doc.kind();
        if kind == Kind::VirtualMachine {
            continue; // checked below as concrete guests, together with set members
        }
        let ns = if kind.is_guest() { None } else { Some(kind) };
        let here = ctx.locator.at(&doc.origin, "metadata.name");
        if let Some(first) = seen.get(&(ns, doc.name().as_str())) {
            diags.push(
                Diagnostic::new(
                    ErrorKind::DuplicateName,
                    here,
                    format!("{kind}/{} is declared twice", doc.name()),
                )
                .with_hint(format!("first declared at {first}")),
            );
        } else {
            seen.insert((ns, doc.name().as_str()), here);
        }
    }

    // Concrete guest names and vmids (VMs, set members, templates, containers).
    let mut names: BTreeMap<&str, Location> = BTreeMap::new();
    let mut vmids: BTreeMap<u32, (String, Location)> = BTreeMap::new();
    let mut guests: Vec<(&str, Option<u32>, Location, Location)> = Vec::new();
    for vm in &ctx.desired.vms {
        // A member's name comes from the set's namePattern, or from the set's name by default.
        let pattern = crate::source_map::YamlPath::parse("spec.namePattern");
        let name_loc =
            if vm.member_of.is_some() && ctx.locator.contains(&vm.source.origin, &pattern) {
                ctx.locator.value(&vm.source.origin, &pattern)
            } else {
                ctx.locator.at(&vm.source.origin, "metadata.name")
            };
        let vmid_loc = match &vm.member_of {
            Some(_)
                if !ctx
                    .locator
                    .contains(&vm.source.origin, &vm.source.spec_path.key("vmid")) =>
            {
                ctx.locator.at(&vm.source.origin, "spec.vmidStart")
            }
            _ => vm.source.at(ctx.locator, "vmid"),
        };
        guests.push((
            vm.name.as_str(),
            vm.vmid.map(|v| v.get()),
            name_loc,
            vmid_loc,
        ));
    }
    for t in &ctx.desired.templates {
        guests.push((
            t.name.as_str(),
            Some(t.spec.vmid.get()),
            ctx.locator.at(&t.origin, "metadata.name"),
            ctx.locator.at(&t.origin, "spec.vmid"),
        ));
    }
    for c in &ctx.desired.containers {
        guests.push((
            c.name.as_str(),
            c.spec.vmid.map(|v| v.get()),
            ctx.locator.at(&c.origin, "metadata.name"),
            ctx.locator.at(&c.origin, "spec.vmid"),
        ));
    }
    for (name, vmid, name_loc, vmid_loc) in guests {
        if let Some(first) = names.get(name) {
            let mut d = Diagnostic::new(
                ErrorKind::DuplicateName,
                name_loc.clone(),
                format!("guest name `{name}` is used twice"),
            );
            d = if *first == name_loc {
                d.with_hint("a set's namePattern must differ per member, e.g. include {{ number }}")
            } else {
                d.with_hint(format!("also at {first}"))
            };
            diags.push(d);
        } else {
            names.insert(name, name_loc);
        }
        if let Some(v) = vmid {
            if let Some((other, first)) = vmids.get(&v) {
                diags.push(
                    Diagnostic::new(
                        ErrorKind::DuplicateVmid,
                        vmid_loc,
                        format!("vmid {v} of `{name}` is already used by `{other}`"),
                    )
                    .with_hint(format!("`{other}` is declared at {first}")),
                );
            } else {
                vmids.insert(v, (name.to_string(), vmid_loc));
            }
        }
    }
}
