//! The dependency graph between resources: explicit `dependsOn` plus the edges a reference
//! implies (a VM after its template, snippets, pool and vnet; a template after its download;
//! a vnet after its zone...). It must be acyclic, or nothing could be applied first.

use super::Context;
use crate::diag::{Diagnostic, Diagnostics, ErrorKind};
use crate::manifest::vm::{SnippetSource, TemplateRef, VmSpec};
use crate::manifest::{Document, Kind, ResourceRef, Spec};
use std::collections::{BTreeMap, BTreeSet};

/// Why an edge exists: an explicit `dependsOn` entry (with its path) or an implied reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeCause {
    DependsOn(String),
    Implied,
}

/// Edges of the graph: resource → what it needs first.
pub type Graph = BTreeMap<ResourceRef, BTreeSet<(ResourceRef, EdgeCause)>>;

/// Build the graph from the documents. References that resolve to nothing are left out
/// (reported by the reference checks).
pub fn build(docs: &[Document]) -> Graph {
    let exists: BTreeSet<ResourceRef> = docs.iter().map(Document::reference).collect();
    let template_by_vmid: BTreeMap<u32, ResourceRef> = docs
        .iter()
        .filter_map(|d| match &d.spec {
            Spec::Template(t) => Some((t.vmid.get(), d.reference())),
            _ => None,
        })
        .collect();
    let mut g = Graph::new();
    for doc in docs {
        let me = doc.reference();
        let mut deps: Vec<(ResourceRef, EdgeCause)> = Vec::new();
        let r = |kind: Kind, name: &str| name.parse().ok().map(|name| ResourceRef { kind, name });
        let vm_edges = |spec: &VmSpec, prefix: &str, deps: &mut Vec<(ResourceRef, EdgeCause)>| {
            for (i, d) in spec.depends_on.iter().enumerate() {
                deps.push((
                    d.clone(),
                    EdgeCause::DependsOn(format!("{prefix}.dependsOn[{i}]")),
                ));
            }
            if let Some(c) = &spec.clone {
                let t = match &c.template {
                    TemplateRef::Name(n) => r(Kind::Template, n.as_str()),
                    TemplateRef::Vmid(v) => template_by_vmid.get(&v.get()).cloned(),
                };
                deps.extend(t.map(|t| (t, EdgeCause::Implied)));
            }
            if let Some(ci) = &spec.cloud_init {
                for (_, s) in ci.custom_data() {
                    let Some(s) = s else { continue };
                    if let SnippetSource::Snippet { snippet } = s {
                        deps.extend(
                            r(Kind::Snippet, snippet.as_str()).map(|x| (x, EdgeCause::Implied)),
                        );
                    }
                }
            }
            if let Some(p) = &spec.pool {
                deps.extend(r(Kind::Pool, p.as_str()).map(|x| (x, EdgeCause::Implied)));
            }
            if let Some(dl) = spec.cdrom.as_ref().and_then(|c| c.download.as_ref()) {
                deps.extend(r(Kind::StorageDownload, dl.as_str()).map(|x| (x, EdgeCause::Implied)));
            }
            for n in &spec.network {
                deps.extend(r(Kind::SdnVnet, n.bridge.as_str()).map(|x| (x, EdgeCause::Implied)));
            }
        };
        match &doc.spec {
            Spec::VirtualMachine(s) => vm_edges(s, "spec", &mut deps),
            Spec::VirtualMachineSet(set) => {
                for (i, d) in set.spec.depends_on.iter().enumerate() {
                    deps.push((
                        d.clone(),
                        EdgeCause::DependsOn(format!("spec.dependsOn[{i}]")),
                    ));
                }
                vm_edges(&set.template, "spec.template", &mut deps);
            }
            Spec::Container(c) => {
                for (i, d) in c.depends_on.iter().enumerate() {
                    deps.push((
                        d.clone(),
                        EdgeCause::DependsOn(format!("spec.dependsOn[{i}]")),
                    ));
                }
                if let Some(dl) = &c.os_template.download {
                    deps.extend(
                        r(Kind::StorageDownload, dl.as_str()).map(|x| (x, EdgeCause::Implied)),
                    );
                }
                if let Some(p) = &c.pool {
                    deps.extend(r(Kind::Pool, p.as_str()).map(|x| (x, EdgeCause::Implied)));
                }
                for n in &c.network {
                    deps.extend(
                        r(Kind::SdnVnet, n.bridge.as_str()).map(|x| (x, EdgeCause::Implied)),
                    );
                }
            }
            Spec::Template(t) => {
                if let Some(dl) = &t.image.download {
                    deps.extend(
                        r(Kind::StorageDownload, dl.as_str()).map(|x| (x, EdgeCause::Implied)),
                    );
                }
                for n in &t.network {
                    deps.extend(
                        r(Kind::SdnVnet, n.bridge.as_str()).map(|x| (x, EdgeCause::Implied)),
                    );
                }
            }
            Spec::SdnVnet(v) => {
                deps.extend(r(Kind::SdnZone, v.zone.as_str()).map(|x| (x, EdgeCause::Implied)))
            }
            Spec::SdnSubnet(s) => {
                deps.extend(r(Kind::SdnVnet, s.vnet.as_str()).map(|x| (x, EdgeCause::Implied)))
            }
            Spec::Firewall(f) => deps.extend(f.target.clone().map(|t| (t, EdgeCause::Implied))),
            _ => {}
        }
        let entry = g.entry(me).or_default();
        entry.extend(deps.into_iter().filter(|(d, _)| exists.contains(d)));
    }
    g
}

pub fn check(ctx: &Context<'_>, diags: &mut Diagnostics) {
    let g = build(ctx.docs);
    let by_ref: BTreeMap<ResourceRef, &Document> =
        ctx.docs.iter().map(|d| (d.reference(), d)).collect();
    let mut state: BTreeMap<&ResourceRef, u8> = BTreeMap::new(); // 1 = on stack, 2 = done
    let mut reported: BTreeSet<Vec<ResourceRef>> = BTreeSet::new();
    for start in g.keys() {
        let mut stack: Vec<(&ResourceRef, Vec<&(ResourceRef, EdgeCause)>)> = Vec::new();
        if state.contains_key(start) {
            continue;
        }
        state.insert(start, 1);
        stack.push((start, g[start].iter().collect()));
        while let Some((node, pending)) = stack.last_mut() {
            let node = *node;
            let Some(edge) = pending.pop() else {
                state.insert(node, 2);
                stack.pop();
                continue;
            };
            let next = &edge.0;
            match state.get(next) {
                Some(1) => {
                    // A cycle: from `next` along the stack back to `node`, then the edge.
                    let pos = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut cycle: Vec<ResourceRef> =
                        stack[pos..].iter().map(|(n, _)| (*n).clone()).collect();
                    let mut key = cycle.clone();
                    key.sort();
                    if reported.insert(key) {
                        cycle.push(next.clone());
                        let text = cycle
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" -> ");
                        let doc = by_ref[node];
                        let loc = match &edge.1 {
                            EdgeCause::DependsOn(path) => ctx.locator.at(&doc.origin, path),
                            EdgeCause::Implied => ctx.locator.at(&doc.origin, "metadata.name"),
                        };
                        diags.push(
                            Diagnostic::new(
                                ErrorKind::DependencyCycle,
                                loc,
                                format!("dependency cycle: {text}"),
                            )
                            .with_hint("remove one of these dependsOn entries"),
                        );
                    }
                }
                Some(_) => {}
                None => {
                    state.insert(next, 1);
                    let edges = g.get(next).map(|e| e.iter().collect()).unwrap_or_default();
                    stack.push((next, edges));
                }
            }
        }
    }
}
