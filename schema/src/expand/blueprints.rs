//! Rendering `BlueprintInstance`s: each instance renders its blueprint's template file with
//! its values, and the result is parsed like any other file (errors name the blueprint's
//! lines, with the instance in the message).

use crate::diag::{did_you_mean, Diagnostic, Diagnostics, ErrorKind, Location};
use crate::manifest::blueprint::{BlueprintInstanceSpec, BlueprintSpec, ParamType};
use crate::manifest::{Document, Kind, Locator, Spec};
use crate::parse::parse_file;
use crate::repo::{resolve, Repository};
use crate::source_map::YamlPath;
use std::collections::{BTreeMap, BTreeSet};

/// Render every instance and append the documents they produce to `docs`.
pub fn expand(
    docs: &mut Vec<Document>,
    repo: &Repository,
    locator: &mut Locator,
    diags: &mut Diagnostics,
) {
    let blueprints: BTreeMap<&str, (&Document, &BlueprintSpec)> = docs
        .iter()
        .filter_map(|d| match &d.spec {
            Spec::Blueprint(b) => Some((d.name().as_str(), (d, b))),
            _ => None,
        })
        .collect();
    let mut rendered = Vec::new();
    let mut reported_blocks = BTreeSet::new();
    for doc in docs.iter() {
        let Spec::BlueprintInstance(inst) = &doc.spec else {
            continue;
        };
        let Some((bp_doc, bp)) = blueprints.get(inst.blueprint.as_str()) else {
            let mut d = Diagnostic::new(
                ErrorKind::UnresolvedReference,
                locator.at(&doc.origin, "spec.blueprint"),
                format!("no Blueprint named `{}`", inst.blueprint),
            );
            if let Some(s) = did_you_mean(inst.blueprint.as_str(), blueprints.keys().copied()) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            diags.push(d);
            continue;
        };
        let Some(values) = check_values(doc, inst, bp, locator, diags) else {
            continue;
        };
        let Some(path) = resolve(&bp_doc.origin.file, &bp.template_file) else {
            diags.push(Diagnostic::new(
                ErrorKind::UnresolvedReference,
                locator.at(&bp_doc.origin, "spec.templateFile"),
                format!(
                    "Blueprint/{}: template file `{}` leaves the manifests directory",
                    bp_doc.name(),
                    bp.template_file
                ),
            ));
            continue;
        };
        let Some(text) = repo.text(&path) else {
            let why = repo.problem(&path, true).unwrap_or_default();
            diags.push(Diagnostic::new(
                if repo.exists(&path) {
                    ErrorKind::UnreadableFile
                } else {
                    ErrorKind::UnresolvedReference
                },
                locator.at(&bp_doc.origin, "spec.templateFile"),
                format!("Blueprint/{}: template file `{path}` {why}", bp_doc.name()),
            ));
            continue;
        };
        if let Some(line) = text.lines().position(|l| l.contains("{%")) {
            if reported_blocks.insert(path.clone()) {
                diags.push(
                    Diagnostic::new(
                        ErrorKind::Template,
                        Location::new(&path, line + 1, 1),
                        "blueprints allow only `{{ expressions }}`, not `{% blocks %}`",
                    )
                    .with_hint("keep one rendered line per template line; use a VirtualMachineSet for repetition"),
                );
            }
            continue;
        }
        let env = crate::templating::environment();
        let mut ctx = values;
        ctx.insert(
            "instance".into(),
            serde_yaml::Value::from(doc.name().as_str()),
        );
        match env.render_str(text, minijinja::Value::from(minijinja::value::Serde(&ctx))) {
            Ok(out) => {
                for d in parse_file(&path, &out, Some(doc.name()), locator, diags) {
                    if matches!(d.kind(), Kind::Blueprint | Kind::BlueprintInstance) {
                        diags.push(Diagnostic::new(
                            ErrorKind::Conflict,
                            locator.at(&d.origin, "kind"),
                            "a blueprint cannot declare Blueprints or BlueprintInstances",
                        ));
                    } else {
                        rendered.push(d);
                    }
                }
            }
            Err(e) => {
                let (msg, line) = crate::templating::describe(&e);
                let mut loc = Location::new(&path, line.unwrap_or(1), 1);
                loc.instance = Some(doc.name().to_string());
                diags.push(Diagnostic::new(ErrorKind::Template, loc, msg));
            }
        }
    }
    docs.extend(rendered);
}

/// Check an instance's values against the blueprint's parameters; return the full set of
/// values (defaults filled in) when they are all valid.
fn check_values(
    doc: &Document,
    inst: &BlueprintInstanceSpec,
    bp: &BlueprintSpec,
    locator: &Locator,
    diags: &mut Diagnostics,
) -> Option<BTreeMap<String, serde_yaml::Value>> {
    let before = diags.len();
    let values_path = YamlPath::parse("spec.values");
    for key in inst.values.keys() {
        if !bp.parameters.contains_key(key) {
            let mut d = Diagnostic::new(
                ErrorKind::UnknownField,
                locator.key(&doc.origin, &values_path.key(key)),
                format!("Blueprint/{} has no parameter `{key}`", inst.blueprint),
            );
            if let Some(s) = did_you_mean(key, bp.parameters.keys().map(String::as_str)) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            diags.push(d);
        }
    }
    let mut out = BTreeMap::new();
    for (name, param) in &bp.parameters {
        let Some(value) = inst.values.get(name).or(param.default.as_ref()) else {
            diags.push(Diagnostic::new(
                ErrorKind::MissingField,
                locator.at(&doc.origin, "spec.values"),
                format!(
                    "missing value for parameter `{name}` of Blueprint/{}",
                    inst.blueprint
                ),
            ));
            continue;
        };
        let at = || locator.value(&doc.origin, &values_path.key(name));
        let type_ok = match param.param_type {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Boolean => value.is_bool(),
            ParamType::List => value.is_sequence(),
            ParamType::Map => value.is_mapping(),
        };
        if !type_ok {
            diags.push(Diagnostic::new(
                ErrorKind::InvalidValue,
                at(),
                format!("parameter `{name}` must be of type {:?}", param.param_type).to_lowercase(),
            ));
            continue;
        }
        if let Some(n) = value.as_i64() {
            let below = param.minimum.is_some_and(|m| n < m);
            let above = param.maximum.is_some_and(|m| n > m);
            if below || above {
                diags.push(Diagnostic::new(
                    ErrorKind::InvalidValue,
                    at(),
                    format!(
                        "parameter `{name}` = {n} is outside {}..={}",
                        param.minimum.map_or("".into(), |m| m.to_string()),
                        param.maximum.map_or("".into(), |m| m.to_string())
                    ),
                ));
                continue;
            }
        }
        out.insert(name.clone(), value.clone());
    }
    (diags.len() == before).then_some(out)
}
