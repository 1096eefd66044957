//! A revision ready to apply: the desired state, and the plaintext of every secret it
//! references, decrypted before anything is planned.
//!
//! A secret that does not decrypt (wrong key, tampered file, missing key in a SOPS
//! document) makes the whole revision invalid, like a schema error: nothing from it is
//! applied. Plaintext stays in [`Secrets`] (wiped on drop) and goes only into the API
//! request that sets it; plans, reports and errors show `(secret)` or the file's path.

use crate::secrets::{Decrypted, Decryptor, Plaintext};
use pve_gitops_schema::desired::DesiredState;
use pve_gitops_schema::repo::resolve;
use pve_gitops_schema::secret::SecretRef;
use pve_gitops_schema::source_map::{SourceMap, YamlPath};
use pve_gitops_schema::Repository;
use std::collections::BTreeMap;
use std::path::Path;

/// A valid revision.
#[derive(Debug)]
pub struct Revision {
    pub desired: DesiredState,
    /// Decrypted values; empty when no identity was given (then nothing secret is set).
    pub secrets: std::sync::Arc<Secrets>,
    /// Who secret outputs are encrypted to: the cluster directory's `recipients.txt`
    /// (`None`: there is none; the agent's own identity then receives them).
    pub recipients: Option<Vec<String>>,
}

impl Revision {
    /// The recipients of secret outputs: the repository's, else those of `identity`.
    pub fn output_recipients(&self, identity: Option<&Decryptor>) -> Vec<String> {
        match &self.recipients {
            Some(r) => r.clone(),
            None => identity
                .map(|d| d.identities().recipients())
                .unwrap_or_default(),
        }
    }
}

/// Plaintext values by VM and PVE config key (`cipassword`).
#[derive(Debug, Default)]
pub struct Secrets {
    decrypted: bool,
    values: BTreeMap<(String, &'static str), Plaintext>,
    /// Snippet files that use secrets, rendered with the plaintext, by volume id.
    snippets: BTreeMap<String, Plaintext>,
}

impl Secrets {
    /// Whether secrets were decrypted for this revision (an identity was configured).
    pub fn decrypted(&self) -> bool {
        self.decrypted
    }

    /// The value of `key` for VM `vm`.
    pub fn get(&self, vm: &str, key: &str) -> Option<&Plaintext> {
        self.values
            .iter()
            .find(|((v, k), _)| v == vm && *k == key)
            .map(|(_, p)| p)
    }

    /// The rendered bytes of the snippet file `volume` (`local:snippets/...`), for
    /// snippets that use secrets.
    pub fn snippet(&self, volume: &str) -> Option<&[u8]> {
        self.snippets.get(volume).map(Plaintext::as_bytes)
    }
}

/// Load `repo`: parse and validate it, then decrypt the secrets it references with
/// `decryptor` (none: secrets are left unset and reported by the plan). `Err` holds every
/// problem, one line each, located.
pub fn load(repo: &Repository, decryptor: Option<&Decryptor>) -> Result<Revision, Vec<String>> {
    let desired = pve_gitops_schema::load(repo).map_err(|d| {
        d.into_sorted()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    })?;
    use crate::outputs::seal::{parse_recipients, RECIPIENTS_FILE};
    let recipients = match repo.text(RECIPIENTS_FILE) {
        None if repo.exists(RECIPIENTS_FILE) => {
            return Err(vec![format!("{RECIPIENTS_FILE}: not a text file")])
        }
        None => None,
        Some(text) => {
            Some(parse_recipients(RECIPIENTS_FILE, text).map_err(|e| vec![e.to_string()])?)
        }
    };
    let Some(decryptor) = decryptor else {
        return Ok(Revision {
            desired,
            secrets: Default::default(),
            recipients,
        });
    };
    let mut files: BTreeMap<String, Result<Decrypted, String>> = BTreeMap::new();
    let mut secrets = Secrets {
        decrypted: true,
        values: BTreeMap::new(),
        snippets: BTreeMap::new(),
    };
    let mut errors = Vec::new();
    for vm in &desired.vms {
        let Some(reference) = vm
            .spec
            .cloud_init
            .as_ref()
            .and_then(|c| c.password.as_ref())
        else {
            continue;
        };
        let origin = &vm.source.origin.file;
        let at = format!(
            "{}: VirtualMachine/{}: cloudInit.password",
            password_position(repo, vm),
            vm.name
        );
        match reveal(repo, decryptor, &mut files, origin, reference) {
            Ok(p) => {
                secrets
                    .values
                    .insert((vm.name.to_string(), "cipassword"), p);
            }
            Err(e) => errors.push(format!("{at}: {e}")),
        }
    }
    for ct in &desired.containers {
        let Some(reference) = ct.spec.password.as_ref() else {
            continue;
        };
        let at = format!("{}: Container/{}: password", ct.origin.file, ct.name);
        // Repository-relative by now (see the schema's `load`).
        match reveal(repo, decryptor, &mut files, "", reference) {
            Ok(p) => {
                secrets.values.insert((ct.name.to_string(), "password"), p);
            }
            Err(e) => errors.push(format!("{at}: {e}")),
        }
    }
    render_snippets(
        repo,
        decryptor,
        &desired,
        &mut files,
        &mut secrets,
        &mut errors,
    );
    if errors.is_empty() {
        Ok(Revision {
            desired,
            secrets: std::sync::Arc::new(secrets),
            recipients,
        })
    } else {
        errors.dedup();
        Err(errors)
    }
}

/// `file:line:col` of the `cloudInit.password` a VM's secret comes from: in the member's
/// override if it sets one, else in its spec (a set's template), so a secret that does not
/// decrypt is reported where an editor jumps to it.
fn password_position(repo: &Repository, vm: &pve_gitops_schema::desired::DesiredVm) -> String {
    let source = &vm.source;
    let file = &source.origin.file;
    let Some(text) = repo.text(file) else {
        return file.clone();
    };
    let map = SourceMap::build(text);
    let doc = source.origin.doc;
    let at = |base: &YamlPath| base.key("cloudInit").key("password");
    let path = source
        .override_path
        .as_ref()
        .map(at)
        .filter(|p| map.contains(doc, p))
        .unwrap_or_else(|| at(&source.spec_path));
    let pos = map.value_pos(doc, &path);
    format!("{file}:{}:{}", pos.line, pos.column)
}

/// The value `reference` (relative to the manifest `origin`) names, one line for
/// passwords and tokens. Each file is decrypted once per revision.
fn reveal(
    repo: &Repository,
    decryptor: &Decryptor,
    files: &mut BTreeMap<String, Result<Decrypted, String>>,
    origin: &str,
    reference: &SecretRef,
) -> Result<Plaintext, String> {
    // Validation has checked the path stays inside the repository and exists.
    let path = resolve(origin, reference.path())
        .ok_or_else(|| format!("`{}` leaves the repository", reference.path()))?;
    let decrypted = files.entry(path.clone()).or_insert_with(|| {
        let bytes = repo
            .bytes(&path)
            .ok_or_else(|| format!("`{path}` cannot be read"))?;
        decryptor
            .decrypt_file(Path::new(&path), bytes)
            .map_err(|e| e.to_string())
    });
    let decrypted = decrypted.as_ref().map_err(Clone::clone)?;
    let value = decrypted.get(reference).map_err(|e| e.to_string())?;
    let line = value
        .line()
        .ok_or_else(|| format!("`{path}`: the value is not UTF-8 text"))?;
    Ok(Plaintext::new(line.as_bytes().to_vec()))
}

/// Render the snippets that use secrets again, with the plaintext (validation rendered
/// them with placeholders). Secret paths are repository-relative by now.
fn render_snippets(
    repo: &Repository,
    decryptor: &Decryptor,
    desired: &DesiredState,
    files: &mut BTreeMap<String, Result<Decrypted, String>>,
    secrets: &mut Secrets,
    errors: &mut Vec<String>,
) {
    use pve_gitops_schema::snippets::{render_all, SecretSource};
    if desired.snippets.iter().all(|s| s.spec.secrets.is_empty()) {
        return;
    }
    struct Reveal<'a> {
        repo: &'a Repository,
        decryptor: &'a Decryptor,
        files: std::cell::RefCell<&'a mut BTreeMap<String, Result<Decrypted, String>>>,
    }
    impl SecretSource for Reveal<'_> {
        fn reveal(&self, secret: &SecretRef) -> Result<String, String> {
            let mut files = self.files.borrow_mut();
            let path = secret.path().to_string();
            let decrypted = files.entry(path.clone()).or_insert_with(|| {
                let bytes = self
                    .repo
                    .bytes(&path)
                    .ok_or_else(|| format!("`{path}` cannot be read"))?;
                self.decryptor
                    .decrypt_file(Path::new(&path), bytes)
                    .map_err(|e| e.to_string())
            });
            let decrypted = decrypted.as_ref().map_err(Clone::clone)?;
            let value = decrypted.get(secret).map_err(|e| e.to_string())?;
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("`{path}`: the value is not UTF-8 text"))
        }
    }
    let source = Reveal {
        repo,
        decryptor,
        files: std::cell::RefCell::new(files),
    };
    let mut diags = pve_gitops_schema::diag::Diagnostics::default();
    let locator = pve_gitops_schema::manifest::Locator::default();
    let with_secrets: Vec<&str> = desired
        .snippets
        .iter()
        .filter(|s| !s.spec.secrets.is_empty())
        .map(|s| s.name.as_str())
        .collect();
    for f in render_all(desired, repo, &locator, &source, &mut diags) {
        if with_secrets.contains(&f.snippet.as_str()) {
            secrets
                .snippets
                .insert(f.volume, Plaintext::new(f.content.into_bytes()));
        }
    }
    // Messages name the snippet, the file and the secret's path, never a value.
    errors.extend(diags.into_sorted().iter().map(ToString::to_string));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Identities;
    use age::secrecy::ExposeSecret;

    fn encrypt(to: &age::x25519::Recipient, plain: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let enc =
            age::Encryptor::with_recipients(std::iter::once(to as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn a_secret_that_does_not_decrypt_is_located_without_its_plaintext() {
        let other = age::x25519::Identity::generate();
        let ours = age::x25519::Identity::generate();
        let mut repo = Repository::new();
        repo.add(
            "web.yaml",
            "apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: { name: web }
spec:
  replicas: 2
  vmidStart: 700
  nodes: [pve1]
  template:
    cloudInit:
      password: { file: pw.age }
  overrides:
    web-2:
      cloudInit:
        password: { file: pw.age }
",
        );
        repo.add_binary("pw.age", encrypt(&other.to_public(), b"canary-2c9d\n"));
        let mut ids = Identities::new();
        ids.add_age_identities(Path::new("key.txt"), ours.to_string().expose_secret())
            .unwrap();
        let errors = load(&repo, Some(&Decryptor::new(ids))).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("web.yaml:10:17: VirtualMachine/web-1: cloudInit.password: "),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("web.yaml:14:19: VirtualMachine/web-2: cloudInit.password: "),
            "{errors:?}"
        );
        assert!(errors.iter().all(|e| !e.contains("canary")), "{errors:?}");
    }
}
