//! Turning the text of a file into schema-checked documents, with every problem located.
//!
//! Each document is first read as a plain YAML value (syntax errors carry serde_yaml's
//! position), then each part is deserialized with `serde_path_to_error`, whose path is looked
//! up in the file's [`SourceMap`] to name the exact line and column of the bad value.

use crate::diag::{did_you_mean, Diagnostic, Diagnostics, ErrorKind, Location};
use crate::ids::Name;
use crate::manifest::{
    blueprint, container, firewall, misc, policy, sdn, set, snippet, storage, template, vm,
    Document, Kind, Locator, Metadata, Origin, SetDocument, Spec, API_VERSION,
};
use crate::source_map::{SourceMap, YamlPath};
use crate::unknown_fields;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;

const TOP_LEVEL_KEYS: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];

/// Parse one file. Problems go to `diags`; documents that parsed cleanly are returned.
pub fn parse_file(
    file: &str,
    text: &str,
    instance: Option<&Name>,
    locator: &mut Locator,
    diags: &mut Diagnostics,
) -> Vec<Document> {
    let map = SourceMap::build(text);
    let mut docs = Vec::new();
    let mut ctx = Ctx {
        file,
        instance,
        map: &map,
        diags,
    };
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = match serde_yaml::Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                ctx.push_syntax(&e, index);
                break; // the parser cannot resynchronise after a syntax error
            }
        };
        let origin = Origin {
            file: file.to_string(),
            doc: index,
            instance: instance.cloned(),
        };
        if let Some(doc) = ctx.document(value, origin) {
            docs.push(doc);
        }
    }
    locator.insert(file, instance.cloned(), map);
    docs
}

struct Ctx<'a> {
    file: &'a str,
    instance: Option<&'a Name>,
    map: &'a SourceMap,
    diags: &'a mut Diagnostics,
}

impl Ctx<'_> {
    fn loc(&self, doc: usize, path: &YamlPath, key: bool) -> Location {
        let p = if key {
            self.map.key_pos(doc, path)
        } else {
            self.map.value_pos(doc, path)
        };
        self.at(p.line, p.column)
    }

    fn at(&self, line: usize, column: usize) -> Location {
        let mut loc = Location::new(self.file, line, column);
        loc.instance = self.instance.map(ToString::to_string);
        loc
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn push_syntax(&mut self, e: &serde_yaml::Error, doc: usize) {
        let mut loc = e
            .location()
            .map(|l| self.at(l.line(), l.column()))
            .unwrap_or_else(|| self.at(1, 1));
        // serde_yaml appends " at line X column Y"; the location already says it.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        // serde_yaml places a duplicate key at the start of its mapping; the source map
        // keeps the last key of a path, which is the duplicate.
        if let Some(path) = duplicate_key(&msg) {
            let p = self.map.key_pos(doc, &path);
            loc = self.at(p.line, p.column);
        }
        self.push(Diagnostic::new(ErrorKind::Syntax, loc, msg));
    }

    fn document(&mut self, mut value: serde_yaml::Value, origin: Origin) -> Option<Document> {
        let doc = origin.doc;
        if value.is_null() {
            return None; // an empty document, e.g. a trailing `---`
        }
        // YAML merge keys (`<<: *defaults`) are resolved before anything reads the value.
        if let Err(e) = value.apply_merge() {
            self.push(Diagnostic::new(
                ErrorKind::Syntax,
                self.loc(doc, &YamlPath::root(), false),
                e.to_string(),
            ));
            return None;
        }
        let serde_yaml::Value::Mapping(top) = &value else {
            self.push(Diagnostic::new(
                ErrorKind::InvalidValue,
                self.loc(doc, &YamlPath::root(), false),
                "a manifest document must be a mapping with apiVersion, kind, metadata and spec",
            ));
            return None;
        };
        let mut ok = true;
        for key in top.keys() {
            let k = key.as_str().unwrap_or("<non-string key>");
            if !TOP_LEVEL_KEYS.contains(&k) {
                ok = false;
                let mut d = Diagnostic::new(
                    ErrorKind::UnknownField,
                    self.loc(doc, &YamlPath::root().key(k), true),
                    format!("unknown field `{k}` at the top of the document"),
                );
                if let Some(s) = did_you_mean(k, TOP_LEVEL_KEYS) {
                    d = d.with_hint(format!("did you mean `{s}`?"));
                }
                self.push(d);
            }
        }
        for key in TOP_LEVEL_KEYS {
            if !top.contains_key(key) {
                ok = false;
                self.push(Diagnostic::new(
                    ErrorKind::MissingField,
                    self.loc(doc, &YamlPath::root(), false),
                    format!("missing field `{key}`"),
                ));
            }
        }
        let api = top.get("apiVersion");
        if let Some(api) = api {
            if api.as_str() != Some(API_VERSION) {
                ok = false;
                self.push(
                    Diagnostic::new(
                        ErrorKind::UnsupportedApiVersion,
                        self.loc(doc, &YamlPath::parse("apiVersion"), false),
                        format!("unsupported apiVersion {}", show(api)),
                    )
                    .with_hint(format!("this build reads `{API_VERSION}`")),
                );
            }
        }
        let kind = match top.get("kind") {
            Some(k) => match k.as_str().map(str::parse::<Kind>) {
                Some(Ok(kind)) => Some(kind),
                _ => {
                    let text = show(k);
                    let mut d = Diagnostic::new(
                        ErrorKind::UnknownKind,
                        self.loc(doc, &YamlPath::parse("kind"), false),
                        format!("unknown kind {text}"),
                    );
                    if let Some(s) =
                        did_you_mean(k.as_str().unwrap_or(""), Kind::ALL.map(Kind::as_str))
                    {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    self.push(d);
                    None
                }
            },
            None => None,
        };
        let metadata: Option<Metadata> = top
            .get("metadata")
            .and_then(|m| self.typed(doc, &YamlPath::parse("metadata"), m.clone()));
        let spec_value = top.get("spec").cloned();
        let (kind, metadata, spec_value) = (kind?, metadata?, spec_value?);
        let spec = self.spec(kind, doc, spec_value)?;
        ok.then_some(Document {
            metadata,
            spec,
            origin,
        })
    }

    fn spec(&mut self, kind: Kind, doc: usize, value: serde_yaml::Value) -> Option<Spec> {
        let p = YamlPath::parse("spec");
        Some(match kind {
            Kind::VirtualMachine => Spec::VirtualMachine(self.typed::<vm::VmSpec>(doc, &p, value)?),
            Kind::VirtualMachineSet => {
                let spec: set::VirtualMachineSetSpec = self.typed(doc, &p, value)?;
                let template: vm::VmSpec =
                    self.typed(doc, &p.key("template"), spec.template.clone())?;
                Spec::VirtualMachineSet(SetDocument { spec, template })
            }
            Kind::Template => Spec::Template(self.typed::<template::TemplateSpec>(doc, &p, value)?),
            Kind::Container => {
                Spec::Container(self.typed::<container::ContainerSpec>(doc, &p, value)?)
            }
            Kind::StorageDownload => {
                Spec::StorageDownload(self.typed::<storage::StorageDownloadSpec>(doc, &p, value)?)
            }
            Kind::Snippet => Spec::Snippet(self.typed::<snippet::SnippetSpec>(doc, &p, value)?),
            Kind::SdnZone => Spec::SdnZone(self.typed::<sdn::SdnZoneSpec>(doc, &p, value)?),
            Kind::SdnVnet => Spec::SdnVnet(self.typed::<sdn::SdnVnetSpec>(doc, &p, value)?),
            Kind::SdnSubnet => Spec::SdnSubnet(self.typed::<sdn::SdnSubnetSpec>(doc, &p, value)?),
            Kind::Firewall => Spec::Firewall(self.typed::<firewall::FirewallSpec>(doc, &p, value)?),
            Kind::Pool => Spec::Pool(self.typed::<misc::PoolSpec>(doc, &p, value)?),
            Kind::External => Spec::External(self.typed::<misc::ExternalSpec>(doc, &p, value)?),
            Kind::Inventory => Spec::Inventory(self.typed::<misc::InventorySpec>(doc, &p, value)?),
            Kind::Blueprint => {
                Spec::Blueprint(self.typed::<blueprint::BlueprintSpec>(doc, &p, value)?)
            }
            Kind::BlueprintInstance => Spec::BlueprintInstance(
                self.typed::<blueprint::BlueprintInstanceSpec>(doc, &p, value)?,
            ),
            Kind::ClusterPolicy => {
                Spec::ClusterPolicy(self.typed::<policy::ClusterPolicySpec>(doc, &p, value)?)
            }
        })
    }

    /// Deserialize `value` (found at `at`) into `T`, reporting a failure where it happened.
    /// On failure, every other unknown field of the value is reported too, so a document
    /// with several typos is fixed in one round.
    fn typed<T: DeserializeOwned + JsonSchema>(
        &mut self,
        doc: usize,
        at: &YamlPath,
        value: serde_yaml::Value,
    ) -> Option<T> {
        match deserialize_at::<T>(value.clone()) {
            Ok(v) => Some(v),
            Err((path, err)) => {
                let full = at.join(&path);
                let first = classify(&err, &full, |key| self.loc(doc, &full, key));
                let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
                for unknown in unknown_fields::find(&value, &schema, at) {
                    if unknown.path == full && first.kind == ErrorKind::UnknownField {
                        continue; // the same error serde reported
                    }
                    let field = match unknown.path.0.last() {
                        Some(crate::source_map::Seg::Key(k)) => k.clone(),
                        _ => continue,
                    };
                    let mut parent = unknown.path.clone();
                    parent.0.pop();
                    let mut d = Diagnostic::new(
                        ErrorKind::UnknownField,
                        self.loc(doc, &unknown.path, true),
                        format!("unknown field `{field}` in {}", display_path(&parent)),
                    );
                    if let Some(s) =
                        did_you_mean(&field, unknown.allowed.iter().map(String::as_str))
                    {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    self.push(d);
                }
                self.push(first);
                None
            }
        }
    }
}

/// Deserialize with the path of the failing value.
pub fn deserialize_at<T: DeserializeOwned>(
    value: serde_yaml::Value,
) -> Result<T, (YamlPath, serde_yaml::Error)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = YamlPath::from_serde(e.path());
        (path, e.into_inner())
    })
}

/// Turn a serde error message into a diagnostic of the right kind, with a hint where one helps.
pub fn classify(
    err: &serde_yaml::Error,
    path: &YamlPath,
    loc: impl Fn(bool) -> Location,
) -> Diagnostic {
    let msg = err.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let options = backticked(expected);
        let mut d = Diagnostic::new(
            ErrorKind::UnknownField,
            loc(true),
            format!("unknown field `{field}` in {}", parent_name(path)),
        );
        d = match did_you_mean(field, options.iter().map(String::as_str)) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None if !options.is_empty() => {
                d.with_hint(format!("expected one of: {}", options.join(", ")))
            }
            None => d,
        };
        return d;
    }
    if msg.starts_with("missing field `") {
        return Diagnostic::new(
            ErrorKind::MissingField,
            loc(false),
            format!("{msg} in {}", display_path(path)),
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let options = backticked(expected);
        let mut d = Diagnostic::new(
            ErrorKind::InvalidValue,
            loc(false),
            format!(
                "{}: `{value}` is not one of {}",
                display_path(path),
                options.join(", ")
            ),
        );
        if let Some(s) = did_you_mean(value, options.iter().map(String::as_str)) {
            d = d.with_hint(format!("did you mean `{s}`?"));
        }
        return d;
    }
    let kind = if msg.contains("is not a valid") && !msg.contains("size") {
        ErrorKind::InvalidIdentifier
    } else {
        ErrorKind::InvalidValue
    };
    Diagnostic::new(kind, loc(false), format!("{}: {msg}", display_path(path)))
}

/// The path of the key a `[path: ]duplicate entry with key "k"` message names.
fn duplicate_key(msg: &str) -> Option<YamlPath> {
    let (head, rest) = msg.split_once("duplicate entry with key \"")?;
    let key = rest.strip_suffix('"')?;
    let parent = head.trim_end().trim_end_matches(':');
    Some(YamlPath::parse(parent).key(key))
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, p)| p.to_string())
        .collect()
}

fn display_path(path: &YamlPath) -> String {
    if path.0.is_empty() {
        "document".into()
    } else {
        format!("`{path}`")
    }
}

fn parent_name(path: &YamlPath) -> String {
    let mut p = path.clone();
    p.0.pop();
    display_path(&p)
}

fn show(v: &serde_yaml::Value) -> String {
    match v.as_str() {
        Some(s) => format!("`{s}`"),
        None => serde_yaml::to_string(v)
            .map(|s| format!("`{}`", s.trim()))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Document>, Vec<Diagnostic>) {
        let mut diags = Diagnostics::default();
        let mut loc = Locator::default();
        let docs = parse_file("m.yaml", text, None, &mut loc, &mut diags);
        (docs, diags.into_sorted())
    }

    fn one_error(text: &str) -> Diagnostic {
        let (_, d) = parse(text);
        assert_eq!(d.len(), 1, "{d:#?}");
        d.into_iter().next().unwrap()
    }

    const HEAD: &str =
        "apiVersion: pve-gitops/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: a\n";

    #[test]
    fn valid_document() {
        let (docs, d) = parse(&format!("{HEAD}spec:\n  node: pve1\n  memory: 2G\n"));
        assert!(d.is_empty(), "{d:#?}");
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn unknown_field_names_its_key_and_suggests() {
        let d = one_error(&format!("{HEAD}spec:\n  node: pve1\n  memroy: 2G\n"));
        assert_eq!(d.kind, ErrorKind::UnknownField);
        assert_eq!((d.location.line, d.location.column), (7, 3));
        assert_eq!(d.hint.as_deref(), Some("did you mean `memory`?"));
    }

    #[test]
    fn nested_bad_value_is_located() {
        let d = one_error(&format!(
            "{HEAD}spec:\n  disks:\n    - slot: scsi0\n      storage: rbd\n      size: 8GB\n"
        ));
        assert_eq!(d.kind, ErrorKind::InvalidValue);
        assert_eq!((d.location.line, d.location.column), (9, 13));
        assert!(d.message.contains("spec.disks[0].size"), "{}", d.message);
    }

    #[test]
    fn syntax_error_is_located() {
        let d = one_error("apiVersion: x\nkind: [\n");
        assert_eq!(d.kind, ErrorKind::Syntax);
        assert_eq!(d.location.line, 3, "{d}");
    }

    #[test]
    fn a_duplicate_key_is_located_at_the_duplicate() {
        let d = one_error(
            "apiVersion: pve-gitops/v1alpha1\nkind: VirtualMachine\nmetadata: { name: a }\nspec:\n  node: pve1\n  memory: 2G\n  cpu:\n    cores: 1\n    cores: 2\n  memory: 4G\n",
        );
        assert_eq!(d.kind, ErrorKind::Syntax);
        assert_eq!((d.location.line, d.location.column), (9, 5), "{d}");
        assert!(
            d.message
                .contains("spec.cpu: duplicate entry with key \"cores\""),
            "{d}"
        );
        let d = one_error("apiVersion: x\nkind: y\nkind: z\n");
        assert_eq!((d.location.line, d.location.column), (3, 1), "{d}");
    }

    #[test]
    fn set_template_errors_are_located_inside_the_template() {
        let d = one_error(
            "apiVersion: pve-gitops/v1alpha1\nkind: VirtualMachineSet\nmetadata: { name: w }\nspec:\n  replicas: 2\n  template:\n    cpu: { cores: 2, sokets: 1 }\n",
        );
        assert_eq!(d.kind, ErrorKind::UnknownField);
        assert_eq!((d.location.line, d.location.column), (7, 22));
        assert_eq!(d.hint.as_deref(), Some("did you mean `sockets`?"));
    }

    #[test]
    fn unknown_kind_and_api_version() {
        let (_, d) =
            parse("apiVersion: v2\nkind: VirtualMachin\nmetadata: { name: a }\nspec: {}\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(d[0].kind, ErrorKind::UnsupportedApiVersion);
        assert_eq!(d[1].kind, ErrorKind::UnknownKind);
        assert_eq!(d[1].location.line, 2);
        assert_eq!(d[1].hint.as_deref(), Some("did you mean `VirtualMachine`?"));
    }
}
