//! The whole pipeline for one revision: parse every file, render blueprints, expand, validate,
//! render snippets. A revision with any error is rejected as a whole.

use crate::desired::DesiredState;
use crate::diag::{Diagnostic, Diagnostics, ErrorKind, Location};
use crate::manifest::Locator;
use crate::parse::parse_file;
use crate::repo::{resolve, Repository};
use crate::snippets::{render_all, Placeholders};
use crate::validate::{validate, Context};

/// Read a revision into its desired state, or every problem it has.
pub fn load(repo: &Repository) -> Result<DesiredState, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut locator = Locator::default();
    let mut docs = Vec::new();
    for (path, why) in repo.unreadable_manifests() {
        diags.push(Diagnostic::new(
            ErrorKind::UnreadableFile,
            Location::file_start(path),
            format!("manifest file {why}: nothing from this revision is applied"),
        ));
    }
    for (path, text) in repo.manifests() {
        docs.extend(parse_file(path, text, None, &mut locator, &mut diags));
    }
    crate::expand::blueprints::expand(&mut docs, repo, &mut locator, &mut diags);
    let mut desired = crate::expand::desired_state(&docs, &locator, &mut diags);
    validate(&Context::new(&docs, &desired, repo, &locator), &mut diags);
    // From here on paths name files from the repository root (validation resolved them
    // relative to their manifests itself), so rendered placeholders show the real file.
    repository_relative_paths(&mut desired);
    desired.snippet_files = render_all(&desired, repo, &locator, &Placeholders, &mut diags);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(desired)
}

/// Paths in manifests are relative to the manifest; the desired state names them from the
/// repository root so the agent and the reader need no other context.
fn repository_relative_paths(desired: &mut DesiredState) {
    let fix = |base: &str, p: &mut String| {
        if let Some(r) = resolve(base, p) {
            *p = r;
        }
    };
    for vm in &mut desired.vms {
        if let Some(pw) = vm
            .spec
            .cloud_init
            .as_mut()
            .and_then(|c| c.password.as_mut())
        {
            fix(&vm.source.origin.file, pw.path_mut());
        }
    }
    for c in &mut desired.containers {
        if let Some(pw) = c.spec.password.as_mut() {
            fix(&c.origin.file, pw.path_mut());
        }
    }
    for s in &mut desired.snippets {
        let base = s.origin.file.clone();
        for secret in s.spec.secrets.values_mut() {
            fix(&base, secret.path_mut());
        }
        if let Some(f) = s.spec.template_file.as_mut() {
            fix(&base, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Skipped;

    #[test]
    fn a_manifest_that_cannot_be_read_rejects_the_revision() {
        let mut repo = Repository::new();
        repo.add_binary("garbage.yaml", vec![0xff, 0x00, 0xfe]);
        repo.add_skipped("db.yaml", Skipped::SymbolicLink);
        repo.add_skipped("huge.yml", Skipped::TooLarge(10 << 20));
        let errors: Vec<String> = load(&repo)
            .unwrap_err()
            .into_sorted()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "db.yaml:1:1: unreadable-file: manifest file is a symbolic link (links are not followed): nothing from this revision is applied",
                "garbage.yaml:1:1: unreadable-file: manifest file is not UTF-8 text: nothing from this revision is applied",
                "huge.yml:1:1: unreadable-file: manifest file is too large to load (10485760 bytes): nothing from this revision is applied",
            ]
        );
    }
}
