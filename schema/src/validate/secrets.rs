//! Secrets must exist, be encrypted, and (for SOPS) hold the named key: checked without
//! decrypting anything, since SOPS keeps its keys in clear text.

use super::Context;
use crate::diag::{did_you_mean, Diagnostic, Diagnostics, ErrorKind, Location};
use crate::manifest::Origin;
use crate::repo::resolve;
use crate::secret::SecretRef;

/// A secret must exist, be encrypted, and hold the named key.
pub fn check(
    ctx: &Context<'_>,
    origin: &Origin,
    secret: &SecretRef,
    loc: Location,
    diags: &mut Diagnostics,
) {
    let Some(path) = resolve(&origin.file, secret.path()) else {
        diags.push(Diagnostic::new(
            ErrorKind::UnresolvedReference,
            loc,
            format!("secret `{}` leaves the repository", secret.path()),
        ));
        return;
    };
    if let Some(why) = ctx.repo.problem(&path, false) {
        let kind = if ctx.repo.exists(&path) {
            ErrorKind::UnreadableFile
        } else {
            ErrorKind::UnresolvedReference
        };
        diags.push(Diagnostic::new(
            kind,
            loc,
            format!("secret file `{path}` {why}"),
        ));
        return;
    }
    let text = ctx.repo.text(&path);
    match secret {
        SecretRef::File { .. } => {
            if let Some(t) = text {
                if !t.starts_with("age-encryption.org/v1")
                    && !t.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
                {
                    diags.push(
                        Diagnostic::new(ErrorKind::InvalidValue, loc, format!("secret file `{path}` is not age-encrypted"))
                            .with_hint("encrypt it with `age -r <recipient>`; never commit a secret in plain text"),
                    );
                }
            }
        }
        SecretRef::Sops { key, .. } => {
            let Some(t) = text.filter(|t| crate::repo::is_sops_document(t)) else {
                diags.push(Diagnostic::new(
                    ErrorKind::InvalidValue,
                    loc,
                    format!("`{path}` is not a SOPS document"),
                ));
                return;
            };
            if let Err(msg) = sops_has_key(&path, t, key) {
                diags.push(Diagnostic::new(ErrorKind::UnresolvedReference, loc, msg));
            }
        }
    }
}

/// SOPS keeps keys in clear text, so a key's existence can be checked without decrypting.
fn sops_has_key(path: &str, text: &str, key: &str) -> Result<(), String> {
    if path.ends_with(".env") {
        let found = text
            .lines()
            .any(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key));
        return if found {
            Ok(())
        } else {
            Err(format!("SOPS document `{path}` has no key `{key}`"))
        };
    }
    let mut node: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| format!("SOPS document `{path}` does not parse: {e}"))?;
    for part in key.split('.') {
        let next = match &node {
            serde_yaml::Value::Mapping(m) => m.get(part).cloned(),
            serde_yaml::Value::Sequence(s) => {
                part.parse::<usize>().ok().and_then(|i| s.get(i).cloned())
            }
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => {
                let keys: Vec<String> = match &node {
                    serde_yaml::Value::Mapping(m) => m
                        .keys()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .filter(|k| k != "sops")
                        .collect(),
                    _ => Vec::new(),
                };
                let mut msg = format!("SOPS document `{path}` has no key `{key}`");
                if let Some(s) = did_you_mean(part, keys.iter().map(String::as_str)) {
                    msg.push_str(&format!(" (did you mean `{s}`?)"));
                }
                return Err(msg);
            }
        }
    }
    Ok(())
}
