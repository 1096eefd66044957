//! Guests made concrete: one [`DesiredVm`] per VM and per set member, one
//! [`DesiredContainer`] per container.

use crate::desired::{DesiredContainer, DesiredVm, SetMember, SpecSource};
use crate::diag::{did_you_mean, Diagnostic, Diagnostics, ErrorKind};
use crate::ids::{Name, Tag, OWNER_TAG};
use crate::manifest::container::ContainerSpec;
use crate::manifest::set::{DEFAULT_NAME_PATTERN, MAX_REPLICAS};
use crate::manifest::vm::VmSpec;
use crate::manifest::{Document, Locator, SetDocument};
use crate::parse::{classify, deserialize_at};
use crate::source_map::YamlPath;
use std::collections::BTreeMap;

/// A standalone `VirtualMachine`.
pub fn single_vm(
    doc: &Document,
    spec: &VmSpec,
    locator: &Locator,
    diags: &mut Diagnostics,
) -> Option<DesiredVm> {
    let source = SpecSource {
        origin: doc.origin.clone(),
        spec_path: YamlPath::parse("spec"),
        override_path: None,
    };
    let Some(node) = spec.node.clone() else {
        diags.push(Diagnostic::new(
            ErrorKind::MissingField,
            locator.key(&doc.origin, &YamlPath::parse("spec")),
            format!("VirtualMachine/{} has no `node`", doc.name()),
        ));
        return None;
    };
    finish_vm(
        doc.name().clone(),
        spec.clone(),
        spec.vmid,
        node,
        None,
        doc,
        source,
        locator,
        diags,
    )
}

/// The members of a `VirtualMachineSet`.
pub fn set_members(
    doc: &Document,
    set: &SetDocument,
    locator: &Locator,
    diags: &mut Diagnostics,
) -> Vec<DesiredVm> {
    let spec = &set.spec;
    let pattern = spec.name_pattern.as_deref().unwrap_or(DEFAULT_NAME_PATTERN);
    let env = crate::templating::environment();
    let mut members = Vec::new();
    let mut seen_names = Vec::new();
    if spec.replicas > MAX_REPLICAS {
        diags.push(Diagnostic::new(
            ErrorKind::ImpossibleSize,
            locator.at(&doc.origin, "spec.replicas"),
            format!(
                "VirtualMachineSet/{}: {} replicas is more than the {MAX_REPLICAS} a set may have",
                doc.name(),
                spec.replicas
            ),
        ));
        return Vec::new();
    }
    for index in 0..spec.replicas as usize {
        let ctx =
            minijinja::context! { set => doc.name().as_str(), index => index, number => index + 1 };
        let name = match env.render_str(pattern, ctx) {
            Ok(n) => n,
            Err(e) => {
                let (msg, _) = crate::templating::describe(&e);
                diags.push(Diagnostic::new(
                    ErrorKind::Template,
                    locator.at(&doc.origin, "spec.namePattern"),
                    format!("namePattern does not render: {msg}"),
                ));
                return Vec::new();
            }
        };
        let name: Name = match name.parse() {
            Ok(n) => n,
            Err(e) => {
                diags.push(Diagnostic::new(
                    ErrorKind::InvalidIdentifier,
                    locator.at(&doc.origin, "spec.namePattern"),
                    format!(
                        "member {} of VirtualMachineSet/{}: {e}",
                        index + 1,
                        doc.name()
                    ),
                ));
                return Vec::new();
            }
        };
        seen_names.push(name.clone());
        if spec.exclude.contains(&name) {
            continue;
        }
        let override_path = YamlPath::parse("spec.overrides").key(name.as_str());
        let source = SpecSource {
            origin: doc.origin.clone(),
            spec_path: YamlPath::parse("spec.template"),
            override_path: spec
                .overrides
                .contains_key(&name)
                .then(|| override_path.clone()),
        };
        let member_spec = match spec.overrides.get(&name) {
            None => set.template.clone(),
            Some(patch) => {
                let mut merged = spec.template.clone();
                merge_patch(&mut merged, patch);
                match deserialize_at::<VmSpec>(merged) {
                    Ok(s) => s,
                    Err((path, err)) => {
                        let d = classify(&err, &path, |key| {
                            let p = override_path.join(&path);
                            if locator.contains(&doc.origin, &p) {
                                if key {
                                    locator.key(&doc.origin, &p)
                                } else {
                                    locator.value(&doc.origin, &p)
                                }
                            } else {
                                source.locate(locator, &path)
                            }
                        });
                        diags.push(d);
                        continue;
                    }
                }
            }
        };
        let vmid = match (member_spec.vmid, spec.vmid_start) {
            (Some(v), _) => Some(v),
            (None, Some(start)) => match start.offset(index) {
                Ok(v) => Some(v),
                Err(e) => {
                    diags.push(Diagnostic::new(
                        ErrorKind::InvalidValue,
                        locator.at(&doc.origin, "spec.vmidStart"),
                        e,
                    ));
                    continue;
                }
            },
            (None, None) => None,
        };
        let node = match (&member_spec.node, spec.nodes.is_empty()) {
            (Some(n), _) => n.clone(),
            (None, false) => spec.nodes[index % spec.nodes.len()].clone(),
            (None, true) => {
                diags.push(Diagnostic::new(
                    ErrorKind::MissingField,
                    locator.key(&doc.origin, &YamlPath::parse("spec")),
                    format!("VirtualMachineSet/{} places members nowhere: set `spec.nodes` or `spec.template.node`", doc.name()),
                ));
                return Vec::new();
            }
        };
        let member = SetMember {
            set: doc.name().clone(),
            index,
            max_parallel: spec.max_parallel,
        };
        let mut vm_spec = member_spec;
        vm_spec
            .depends_on
            .splice(0..0, spec.depends_on.iter().cloned());
        if let Some(vm) = finish_vm(
            name,
            vm_spec,
            vmid,
            node,
            Some(member),
            doc,
            source,
            locator,
            diags,
        ) {
            members.push(vm);
        }
    }
    for (list, what) in [(&spec.exclude, "exclude")] {
        for (i, n) in list.iter().enumerate() {
            if !seen_names.contains(n) {
                unknown_member(
                    doc,
                    locator,
                    diags,
                    &format!("spec.{what}[{i}]"),
                    n,
                    &seen_names,
                );
            }
        }
    }
    for n in spec.overrides.keys() {
        if !seen_names.contains(n) {
            let path = YamlPath::parse("spec.overrides").key(n.as_str());
            let mut d = Diagnostic::new(
                ErrorKind::UnresolvedReference,
                locator.key(&doc.origin, &path),
                format!(
                    "override for `{n}`, which is not a member of VirtualMachineSet/{}",
                    doc.name()
                ),
            );
            if let Some(s) = did_you_mean(n.as_str(), seen_names.iter().map(Name::as_str)) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            diags.push(d);
        } else if spec.exclude.contains(n) {
            diags.push(Diagnostic::new(
                ErrorKind::Conflict,
                locator.key(
                    &doc.origin,
                    &YamlPath::parse("spec.overrides").key(n.as_str()),
                ),
                format!("`{n}` has overrides but is also excluded"),
            ));
        }
    }
    members
}

fn unknown_member(
    doc: &Document,
    locator: &Locator,
    diags: &mut Diagnostics,
    path: &str,
    n: &Name,
    seen: &[Name],
) {
    let mut d = Diagnostic::new(
        ErrorKind::UnresolvedReference,
        locator.at(&doc.origin, path),
        format!("`{n}` is not a member of VirtualMachineSet/{}", doc.name()),
    );
    if let Some(s) = did_you_mean(n.as_str(), seen.iter().map(Name::as_str)) {
        d = d.with_hint(format!("did you mean `{s}`?"));
    }
    diags.push(d);
}

#[allow(clippy::too_many_arguments)]
fn finish_vm(
    name: Name,
    mut spec: VmSpec,
    vmid: Option<crate::ids::Vmid>,
    node: crate::ids::NodeName,
    member_of: Option<SetMember>,
    doc: &Document,
    source: SpecSource,
    locator: &Locator,
    diags: &mut Diagnostics,
) -> Option<DesiredVm> {
    let index = member_of.as_ref().map_or(0, |m| m.index);
    let mut ok = true;
    if let Some(ci) = spec.cloud_init.as_mut() {
        for (i, ipc) in ci.ip_config.iter_mut().enumerate() {
            if let Some(v4) = ipc.ipv4 {
                match v4.resolve(index) {
                    Ok(r) => ipc.ipv4 = Some(r),
                    Err(e) => {
                        ok = false;
                        diags.push(Diagnostic::new(
                            ErrorKind::IpOutsideSubnet,
                            source.at(locator, &format!("cloudInit.ipConfig[{i}].ipv4")),
                            format!("{name}: {e}"),
                        ));
                    }
                }
            }
            if let Some(v6) = ipc.ipv6 {
                match v6.resolve(index) {
                    Ok(r) => ipc.ipv6 = Some(r),
                    Err(e) => {
                        ok = false;
                        diags.push(Diagnostic::new(
                            ErrorKind::IpOutsideSubnet,
                            source.at(locator, &format!("cloudInit.ipConfig[{i}].ipv6")),
                            format!("{name}: {e}"),
                        ));
                    }
                }
            }
        }
    }
    let tags = match final_tags(&spec.tags, &spec.tags_from_labels, &doc.metadata.labels) {
        Ok(t) => t,
        Err((i, msg)) => {
            diags.push(Diagnostic::new(
                ErrorKind::UnresolvedReference,
                source.at(locator, &format!("tagsFromLabels[{i}]")),
                msg,
            ));
            return None;
        }
    };
    let depends_on = std::mem::take(&mut spec.depends_on);
    spec.vmid = None;
    spec.node = None;
    spec.tags.clear();
    spec.tags_from_labels.clear();
    ok.then(|| DesiredVm {
        name,
        vmid,
        node,
        member_of,
        labels: doc.metadata.labels.clone(),
        tags,
        depends_on,
        spec,
        source,
    })
}

/// A container with its addresses resolved and tags computed.
pub fn container(
    doc: &Document,
    spec: &ContainerSpec,
    locator: &Locator,
    diags: &mut Diagnostics,
) -> Option<DesiredContainer> {
    let mut spec = spec.clone();
    for (i, nic) in spec.network.iter_mut().enumerate() {
        if let Some(v4) = nic.ipv4 {
            match v4.resolve(0) {
                Ok(r) => nic.ipv4 = Some(r),
                Err(e) => {
                    diags.push(Diagnostic::new(
                        ErrorKind::IpOutsideSubnet,
                        locator.at(&doc.origin, &format!("spec.network[{i}].ipv4")),
                        e,
                    ));
                    return None;
                }
            }
        }
        if let Some(v6) = nic.ipv6 {
            match v6.resolve(0) {
                Ok(r) => nic.ipv6 = Some(r),
                Err(e) => {
                    diags.push(Diagnostic::new(
                        ErrorKind::IpOutsideSubnet,
                        locator.at(&doc.origin, &format!("spec.network[{i}].ipv6")),
                        e,
                    ));
                    return None;
                }
            }
        }
    }
    let tags = match final_tags(&spec.tags, &spec.tags_from_labels, &doc.metadata.labels) {
        Ok(t) => t,
        Err((i, msg)) => {
            diags.push(Diagnostic::new(
                ErrorKind::UnresolvedReference,
                locator.at(&doc.origin, &format!("spec.tagsFromLabels[{i}]")),
                msg,
            ));
            return None;
        }
    };
    spec.tags.clear();
    spec.tags_from_labels.clear();
    Some(DesiredContainer {
        name: doc.name().clone(),
        labels: doc.metadata.labels.clone(),
        tags,
        spec,
        origin: doc.origin.clone(),
    })
}

/// Tags a guest carries: its own, those derived from labels, and the ownership tag; sorted
/// and without duplicates so the comparison with PVE (which sorts too) never flaps.
///
/// A label `topology.ecoma.io/provider: proxmox` becomes `provider-proxmox`: the last segment
/// of the key, a dash, the value, sanitized to PVE's tag alphabet.
pub fn final_tags(
    tags: &[Tag],
    from_labels: &[String],
    labels: &BTreeMap<String, String>,
) -> Result<Vec<Tag>, (usize, String)> {
    let mut out: Vec<Tag> = tags.to_vec();
    for (i, key) in from_labels.iter().enumerate() {
        let Some(value) = labels.get(key) else {
            let mut msg =
                format!("tagsFromLabels names label `{key}`, which metadata.labels does not have");
            if let Some(s) = did_you_mean(key, labels.keys().map(String::as_str)) {
                msg.push_str(&format!(" (did you mean `{s}`?)"));
            }
            return Err((i, msg));
        };
        let short = key.rsplit('/').next().unwrap_or(key);
        out.push(Tag::sanitize(&format!("{short}-{value}")));
    }
    out.push(OWNER_TAG.parse().expect("owner tag is valid"));
    out.sort();
    out.dedup();
    Ok(out)
}

/// JSON merge patch (RFC 7386) on YAML values: mappings merge recursively, `null` removes a
/// key, anything else replaces.
pub fn merge_patch(base: &mut serde_yaml::Value, patch: &serde_yaml::Value) {
    use serde_yaml::Value;
    match (base, patch) {
        (Value::Mapping(b), Value::Mapping(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k) {
                    merge_patch(existing, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_semantics() {
        let mut base: serde_yaml::Value =
            serde_yaml::from_str("a: { b: 1, c: 2 }\nl: [1, 2]\nx: 1").unwrap();
        let patch: serde_yaml::Value =
            serde_yaml::from_str("a: { c: 3 }\nl: [9]\nx: null\ny: 5").unwrap();
        merge_patch(&mut base, &patch);
        let want: serde_yaml::Value =
            serde_yaml::from_str("a: { b: 1, c: 3 }\nl: [9]\ny: 5").unwrap();
        assert_eq!(base, want);
    }

    #[test]
    fn tags_from_labels() {
        let labels: BTreeMap<String, String> = [
            (
                "topology.ecoma.io/provider".to_string(),
                "Proxmox".to_string(),
            ),
            ("role".into(), "cpl".into()),
        ]
        .into();
        let tags = final_tags(
            &["zeta".parse().unwrap()],
            &["role".into(), "topology.ecoma.io/provider".into()],
            &labels,
        )
        .unwrap();
        let tags: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(tags, ["provider-proxmox", "pve-gitops", "role-cpl", "zeta"]);
        let err = final_tags(&[], &["rol".into()], &labels).unwrap_err();
        assert_eq!(err.0, 0);
        assert!(err.1.contains("did you mean `role`"), "{}", err.1);
    }
}
