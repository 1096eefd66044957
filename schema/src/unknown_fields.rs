//! Every unknown field of a document, found by walking its value against the JSON Schema of
//! its type.
//!
//! serde stops at the first error of a document; a typo-ridden document would then take one
//! push per typo. When a document fails, this walk finds all keys the schema does not allow
//! (the most common mistake), so they are reported together.

use crate::source_map::YamlPath;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// An unknown key: where it is, and the keys allowed beside it (for suggestions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    pub path: YamlPath,
    pub allowed: Vec<String>,
}

/// Walk `value` (found at `at`) against `schema` (a schemars root with `$defs`).
pub fn find(value: &Yaml, schema: &Json, at: &YamlPath) -> Vec<UnknownField> {
    let mut out = Vec::new();
    walk(value, schema, schema, at, &mut out);
    out
}

fn resolve<'a>(root: &'a Json, mut s: &'a Json) -> &'a Json {
    // Follow `$ref: "#/$defs/Name"` chains.
    for _ in 0..16 {
        match s
            .get("$ref")
            .and_then(Json::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            Some(name) => match root.get("$defs").and_then(|d| d.get(name)) {
                Some(next) => s = next,
                None => return s,
            },
            None => return s,
        }
    }
    s
}

/// The object branches of a schema (itself, or its anyOf/oneOf alternatives).
fn object_branches<'a>(root: &'a Json, s: &'a Json) -> Vec<&'a Json> {
    let s = resolve(root, s);
    if s.get("properties").is_some() || s.get("additionalProperties").is_some() {
        return vec![s];
    }
    ["anyOf", "oneOf"]
        .iter()
        .filter_map(|k| s.get(*k).and_then(Json::as_array))
        .flatten()
        .flat_map(|b| object_branches(root, b))
        .collect()
}

fn walk(value: &Yaml, schema: &Json, root: &Json, at: &YamlPath, out: &mut Vec<UnknownField>) {
    match value {
        Yaml::Mapping(map) => {
            let branches = object_branches(root, schema);
            if branches.is_empty() {
                return;
            }
            let closed = branches
                .iter()
                .all(|b| b.get("additionalProperties") == Some(&Json::Bool(false)));
            let mut allowed: Vec<String> = branches
                .iter()
                .filter_map(|b| b.get("properties").and_then(Json::as_object))
                .flat_map(|p| p.keys().cloned())
                .collect();
            allowed.sort();
            allowed.dedup();
            for (k, v) in map {
                let Some(key) = k.as_str() else { continue };
                let sub = branches
                    .iter()
                    .find_map(|b| b.get("properties").and_then(|p| p.get(key)));
                match sub {
                    Some(sub) => walk(v, sub, root, &at.key(key), out),
                    None if closed => out.push(UnknownField {
                        path: at.key(key),
                        allowed: allowed.clone(),
                    }),
                    None => {
                        // A map type: every value follows `additionalProperties`.
                        if let Some(extra) = branches
                            .iter()
                            .find_map(|b| b.get("additionalProperties").filter(|a| a.is_object()))
                        {
                            walk(v, extra, root, &at.key(key), out);
                        }
                    }
                }
            }
        }
        Yaml::Sequence(items) => {
            let s = resolve(root, schema);
            let item_schema = s.get("items").or_else(|| {
                ["anyOf", "oneOf"]
                    .iter()
                    .filter_map(|k| s.get(*k).and_then(Json::as_array))
                    .flatten()
                    .find_map(|b| resolve(root, b).get("items"))
            });
            if let Some(item) = item_schema {
                for (i, v) in items.iter().enumerate() {
                    walk(v, item, root, &at.index(i), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::vm::VmSpec;

    #[test]
    fn finds_every_unknown_key_at_any_depth() {
        let schema = serde_json::to_value(schemars::schema_for!(VmSpec)).unwrap();
        let v: Yaml = serde_yaml::from_str(
            "memroy: 2G\ncpu: { cores: 2, sokets: 1 }\ndisks: [ { slot: scsi0, storage: rbd, size: 8G, iothreads: true } ]\ncloudInit: { password: { file: x, sops: y }, ipConfig: [ { ipv4: dhcp, gw: 1.2.3.4 } ] }\nextraConfig: { anything: 1 }\n",
        )
        .unwrap();
        let found: Vec<String> = find(&v, &schema, &YamlPath::parse("spec"))
            .into_iter()
            .map(|u| u.path.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "spec.memroy",
                "spec.cpu.sokets",
                "spec.disks[0].iothreads",
                "spec.cloudInit.ipConfig[0].gw"
            ]
        );
    }
}
