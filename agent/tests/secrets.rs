//! Secrets against files made by the real tools: the sops vectors (real `sops` output from
//! public repositories, `tests/data/sops/SOURCES.md`), age files made by Debian's `age` CLI,
//! files made here through the age crate, and the examples' secrets.

use pve_gitops::secrets::sops::tree::Value;
use pve_gitops::secrets::{Decrypted, Decryptor, Identities, SecretError};
use pve_gitops_schema::secret::SecretRef;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// git keeps key files at 0644, which the agent refuses: copy them to a 0600 file.
struct Keys(tempfile::TempDir);

impl Keys {
    fn new() -> Self {
        Keys(tempfile::tempdir().unwrap())
    }

    fn private(&self, src: &Path) -> PathBuf {
        let dst = self.0.path().join(src.file_name().unwrap());
        std::fs::copy(src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
        dst
    }

    fn decryptor(&self, srcs: &[PathBuf]) -> Decryptor {
        let mut ids = Identities::new();
        for s in srcs {
            ids.add_file(&self.private(s)).unwrap();
        }
        Decryptor::new(ids)
    }
}

fn decrypt(d: &Decryptor, path: &Path) -> Result<Decrypted, SecretError> {
    d.decrypt_file(path, &std::fs::read(path).unwrap())
}

fn sops_tree(d: Decrypted) -> Value {
    match d {
        Decrypted::Sops(doc) => Value::Map(doc.tree().clone()),
        other => panic!("not SOPS: {other:?}"),
    }
}

/// Every age-encrypted sops vector and the document `sopsref.py` decrypted it to (JSON,
/// compared as ordered trees: key order and value types count).
const VECTORS: &[(&str, &str, &str)] = &[
    (
        "humphd-sops-age/secret.enc.yaml",
        "humphd-sops-age/key.txt",
        "humphd-secret.enc.yaml.json",
    ),
    (
        "humphd-sops-age/secret.enc.env",
        "humphd-sops-age/key.txt",
        "humphd-secret.enc.env.json",
    ),
    (
        "sops-nix/secrets.yaml",
        "sops-nix/age-keys.txt",
        "sops-nix-secrets.yaml.json",
    ),
    (
        "flux-kustomize-controller/algorithms/age.yaml",
        "flux-kustomize-controller/keys/age.txt",
        "flux-algorithms-age.yaml.json",
    ),
    (
        "flux-kustomize-controller/patches/merge1.yaml",
        "flux-kustomize-controller/keys/age.txt",
        "flux-patches-merge1.yaml.json",
    ),
    (
        "flux-kustomize-controller/patches/merge2.yaml",
        "flux-kustomize-controller/keys/age.txt",
        "flux-patches-merge2.yaml.json",
    ),
    (
        "flux-kustomize-controller/envs/env.env",
        "flux-kustomize-controller/keys/age.txt",
        "flux-envs-env.env.json",
    ),
    (
        "flux-kustomize-controller/component/env.env",
        "flux-kustomize-controller/keys/age.txt",
        "flux-component-env.env.json",
    ),
    (
        "flux-kustomize-controller/remote/env.env",
        "flux-kustomize-controller/keys/age.txt",
        "flux-remote-env.env.json",
    ),
];

#[test]
fn every_sops_vector_decrypts_to_the_expected_document() {
    let keys = Keys::new();
    for (file, key, expected) in VECTORS {
        let d = keys.decryptor(&[data(&format!("sops/{key}"))]);
        let got = sops_tree(
            decrypt(&d, &data(&format!("sops/{file}"))).unwrap_or_else(|e| panic!("{e}")),
        );
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(data(&format!("sops/expected/{expected}"))).unwrap(),
        )
        .unwrap();
        assert_eq!(got, want, "{file}");
    }
    // Every document the vector set has an expected decryption for is in the list above,
    // so a vector added to the set cannot go unchecked.
    for entry in std::fs::read_dir(data("sops/expected")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            VECTORS.iter().any(|(_, _, expected)| *expected == name),
            "sops/expected/{name} has no entry in VECTORS"
        );
    }
}

#[test]
fn the_sops_nix_document_opens_with_the_ssh_host_key_alone() {
    // One of its recipients is the ssh-to-age conversion of this host key.
    let keys = Keys::new();
    let d = keys.decryptor(&[data("sops/sops-nix/ssh-ed25519-key")]);
    let got = sops_tree(decrypt(&d, &data("sops/sops-nix/secrets.yaml")).unwrap());
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(data("sops/expected/sops-nix-secrets.yaml.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(got, want);
}

#[test]
fn every_negative_vector_fails_with_its_own_error_and_no_plaintext() {
    let keys = Keys::new();
    let d = keys.decryptor(&[data("sops/humphd-sops-age/key.txt")]);
    let run = |name: &str| {
        let path = data(&format!("sops/negative/{name}"));
        decrypt(&d, &path).expect_err(name)
    };
    let tampered = run("tampered-value.enc.yaml");
    assert!(
        matches!(&tampered, SecretError::ValueTampered { key, .. } if key == "secret"),
        "{tampered}"
    );
    let renamed = run("renamed-key.enc.yaml");
    assert!(
        matches!(&renamed, SecretError::ValueTampered { key, .. } if key == "strung"),
        "{renamed}"
    );
    let mac = run("tampered-mac.enc.yaml");
    assert!(matches!(mac, SecretError::MacUndecryptable { .. }), "{mac}");
    let removed = run("removed-value.enc.yaml");
    assert!(
        matches!(removed, SecretError::MacMismatch { .. }),
        "{removed}"
    );
    let wrong = run("wrong-key.enc.yaml");
    match &wrong {
        SecretError::SopsNoMatchingIdentity { recipients, .. } => assert_eq!(
            recipients,
            &["age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29"]
        ),
        _ => panic!("{wrong}"),
    }

    let mut files: Vec<String> = std::fs::read_dir(data("sops/negative"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "removed-value.enc.yaml",
            "renamed-key.enc.yaml",
            "tampered-mac.enc.yaml",
            "tampered-value.enc.yaml",
            "wrong-key.enc.yaml"
        ],
        "every negative vector is checked above"
    );

    let messages: Vec<String> = [&tampered, &renamed, &mac, &removed, &wrong]
        .iter()
        .map(|e| e.to_string())
        .collect();
    for m in &messages {
        assert!(m.contains("negative/"), "names the file: {m}");
        for plain in ["this is a secret", "three", "3.14"] {
            assert!(!m.contains(plain), "plaintext in: {m}");
        }
    }
    // A changed value and a renamed key are both a value that fails authentication (named by
    // its key path); the other defects each read differently.
    let kind = |s: &String| s.split_once(": ").unwrap().1.to_string();
    let kinds: std::collections::BTreeSet<String> =
        [&messages[0], &messages[2], &messages[3], &messages[4]]
            .into_iter()
            .map(kind)
            .collect();
    assert_eq!(kinds.len(), 4, "{messages:#?}");
    assert!(messages[0].contains("`secret`") && messages[1].contains("`strung`"));
}

#[test]
fn post_quantum_recipients_and_identities_are_refused_clearly() {
    let keys = Keys::new();
    let d = keys.decryptor(&[data("sops/flux-kustomize-controller/keys/age.txt")]);
    let e = decrypt(
        &d,
        &data("sops/flux-kustomize-controller/algorithms/age-pq.yaml"),
    )
    .unwrap_err();
    assert!(matches!(e, SecretError::UnsupportedRecipient { .. }), "{e}");
    assert!(e.to_string().contains("unsupported recipient type"), "{e}");
    assert!(e.to_string().contains("post-quantum"), "{e}");

    let pq = keys.private(&data("sops/flux-kustomize-controller/keys/age-pq.txt"));
    let e = Identities::load(&pq).unwrap_err();
    assert!(
        matches!(e, SecretError::IdentityUnsupported { line: 3, .. }),
        "{e}"
    );
    assert!(!e.to_string().contains("Z8QMHKS"), "key material in: {e}");
}

/// The files `tests/data/age/README.md` says how it made with Debian's age CLI.
#[test]
fn age_files_made_by_the_age_cli_decrypt() {
    let keys = Keys::new();
    let cases = [
        (
            "x25519.armored.age",
            "test-age.key",
            "x25519 armored: s3cret-1\n",
        ),
        (
            "x25519.binary.age",
            "test-age.key",
            "x25519 binary: s3cret-2\n",
        ),
        (
            "ssh-ed25519.armored.age",
            "test-ssh-ed25519",
            "ssh-ed25519 armored: s3cret-3\n",
        ),
        (
            "ssh-rsa.binary.age",
            "test-ssh-rsa",
            "ssh-rsa binary: s3cret-4\n",
        ),
        (
            "ssh-ed25519.binary.age",
            "test-ssh-ed25519",
            "ssh-ed25519 binary: s3cret-5\n",
        ),
    ];
    for (file, key, want) in cases {
        let d = keys.decryptor(&[data(&format!("age/{key}"))]);
        let got = decrypt(&d, &data(&format!("age/{file}"))).unwrap_or_else(|e| panic!("{e}"));
        let secret = got.get(&SecretRef::File { file: file.into() }).unwrap();
        assert_eq!(secret.as_str(), Some(want), "{file}");
        assert_eq!(secret.line(), Some(want.trim_end()));
        // No identity of another kind opens it.
        let other = if key == "test-age.key" {
            "test-ssh-ed25519"
        } else {
            "test-age.key"
        };
        let e = decrypt(
            &keys.decryptor(&[data(&format!("age/{other}"))]),
            &data(&format!("age/{file}")),
        )
        .unwrap_err();
        assert!(
            matches!(e, SecretError::AgeNoMatchingIdentity { .. }),
            "{e}"
        );
    }
}

fn age_encrypt(recipient: &dyn age::Recipient, plain: &[u8], armor: bool) -> Vec<u8> {
    let enc = age::Encryptor::with_recipients(std::iter::once(recipient)).unwrap();
    let mut out = Vec::new();
    let format = if armor {
        age::armor::Format::AsciiArmor
    } else {
        age::armor::Format::Binary
    };
    let w = age::armor::ArmoredWriter::wrap_output(&mut out, format).unwrap();
    let mut w = enc.wrap_output(w).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap().finish().unwrap();
    out
}

#[test]
fn age_files_made_through_the_age_crate_decrypt_with_each_kind_of_identity() {
    let keys = Keys::new();
    let ssh_pub = std::fs::read_to_string(data("age/test-ssh-ed25519.pub")).unwrap();
    let ssh_pub: Vec<&str> = ssh_pub.split_whitespace().take(2).collect();
    let ssh: age::ssh::Recipient = ssh_pub.join(" ").parse().unwrap();
    let ssh_ids = keys.decryptor(&[data("age/test-ssh-ed25519")]);
    // The X25519 recipient derived from the same host key (ssh-to-age), as recipients prints it.
    let derived: age::x25519::Recipient = ssh_ids.identities().recipients()[1].parse().unwrap();
    let age_ids = keys.decryptor(&[data("age/test-age.key")]);
    let x25519: age::x25519::Recipient = age_ids.identities().recipients()[0].parse().unwrap();
    // The committed CLI file and the crate's output agree on the recipient.
    assert_eq!(
        x25519.to_string(),
        "age1zr4an6wy6yn9n5zmpra8zre2sqtjfpcf3g6f8937k4ycxz8ak9fqg3nlem"
    );

    let cases: [(&dyn age::Recipient, &Decryptor); 3] =
        [(&x25519, &age_ids), (&ssh, &ssh_ids), (&derived, &ssh_ids)];
    for (i, (recipient, d)) in cases.into_iter().enumerate() {
        for armor in [true, false] {
            let plain = format!("case {i} armor {armor}\n");
            let ct = age_encrypt(recipient, plain.as_bytes(), armor);
            let path = Path::new("made.age");
            let got = d
                .decrypt_file(path, &ct)
                .unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(got.render().unwrap(), plain.as_bytes());
            // Flip one payload byte: refused as tampered, not handed out.
            let mut bad = age_encrypt(recipient, plain.as_bytes(), false);
            let n = bad.len();
            bad[n - 20] ^= 0x40;
            let e = d.decrypt_file(path, &bad).unwrap_err();
            assert!(
                matches!(e, SecretError::AgeTampered { .. }),
                "case {i}: {e}"
            );
        }
    }
}

#[test]
fn the_examples_secrets_decrypt_with_the_demo_key() {
    let keys = Keys::new();
    let d = keys.decryptor(&[repo("examples/keys/demo-age.key")]);
    let mut seen = 0;
    for example in std::fs::read_dir(repo("examples")).unwrap() {
        let dir = example.unwrap().path().join("secrets");
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for f in files {
            let path = f.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let got = decrypt(&d, &path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
            match got {
                Decrypted::Age { plaintext, .. } => {
                    let line = plaintext.line().unwrap();
                    match name.as_str() {
                        // A SHA-512 crypt hash, `openssl passwd -6`.
                        "admin-password.age" => assert!(line.starts_with("$6$"), "{name}"),
                        // `consul keygen`: base64 of 32 bytes.
                        "consul-gossip-key.age" => {
                            use base64::Engine;
                            let key = base64::prelude::BASE64_STANDARD.decode(line).unwrap();
                            assert_eq!(key.len(), 32, "{name}");
                        }
                        _ => assert!(!line.is_empty(), "{name}"),
                    }
                }
                Decrypted::Sops(doc) => {
                    // Every key the Talos blueprint references resolves to a value.
                    let blueprint = std::fs::read_to_string(repo(
                        "examples/001-talos-multicluster/blueprints/talos-cluster.yaml.j2",
                    ))
                    .unwrap();
                    let refs: Vec<&str> = blueprint
                        .split("enc.yaml, key: ")
                        .skip(1)
                        .map(|s| s.split(' ').next().unwrap())
                        .collect();
                    assert!(refs.len() >= 10, "{refs:?}");
                    for key in refs {
                        let v = doc.value(key).unwrap_or_else(|e| panic!("{e}"));
                        assert!(!v.is_empty(), "{name} {key}");
                    }
                }
            }
        }
    }
    assert_eq!(
        seen, 6,
        "the examples have 3 age files and 3 SOPS documents"
    );
}

#[test]
fn secret_refs_resolve_to_values_and_not_across_kinds() {
    let keys = Keys::new();
    let d = keys.decryptor(&[data("sops/humphd-sops-age/key.txt")]);
    let doc = decrypt(&d, &data("sops/humphd-sops-age/secret.enc.yaml")).unwrap();
    let get = |key: &str| {
        doc.get(&SecretRef::Sops {
            sops: "s".into(),
            key: key.into(),
        })
    };
    assert_eq!(
        get("complex.value").unwrap().as_str(),
        Some("this is a secret")
    );
    assert_eq!(get("complex.array.2").unwrap().as_str(), Some("three"));
    assert_eq!(get("int").unwrap().as_str(), Some("7"));
    assert_eq!(get("boolean").unwrap().as_str(), Some("true"));
    assert!(matches!(
        get("complex.array.3"),
        Err(SecretError::KeyNotFound { .. })
    ));
    let e = doc.get(&SecretRef::File { file: "s".into() }).unwrap_err();
    assert!(e.to_string().contains("use { sops: …, key: … }"), "{e}");
    // Debug output shows structure, never values.
    let debug = format!("{doc:?}");
    assert!(!debug.contains("this is a secret"), "{debug}");
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_decrypt_prints_the_document_like_sops_d_and_fails_clearly() {
    let keys = Keys::new();
    let key = keys.private(&data("sops/humphd-sops-age/key.txt"));
    let key = key.to_str().unwrap();
    let file = data("sops/humphd-sops-age/secret.enc.yaml");
    let out = cli(&[
        "secrets",
        "decrypt",
        "--identity",
        key,
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "secret: this is a secret\nstring: string\nint: 7\nfloat: 3.14\nboolean: true\ncomplex:\n  value: this is a secret\n  array:\n  - one\n  - two\n  - three\n"
    );

    let env = data("sops/humphd-sops-age/secret.enc.env");
    let out = cli(&["secrets", "decrypt", "-i", key, env.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "secret=this is a secret\nanother_secret=7\n"
    );

    let bad = data("sops/negative/tampered-value.enc.yaml");
    let out = cli(&["secrets", "decrypt", "-i", key, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("tampered-value.enc.yaml: value at `secret` failed authentication"),
        "{err}"
    );

    let age = data("age/x25519.binary.age");
    let age_key = keys.private(&data("age/test-age.key"));
    let out = cli(&[
        "secrets",
        "decrypt",
        "-i",
        age_key.to_str().unwrap(),
        age.to_str().unwrap(),
    ]);
    assert_eq!(out.stdout, b"x25519 binary: s3cret-2\n");
}

#[test]
fn cli_recipients_prints_each_identitys_recipient_and_refuses_open_keys() {
    let keys = Keys::new();
    let age_key = keys.private(&data("age/test-age.key"));
    let ssh_key = keys.private(&data("sops/sops-nix/ssh-ed25519-key"));
    let out = cli(&[
        "secrets",
        "recipients",
        "-i",
        age_key.to_str().unwrap(),
        "-i",
        ssh_key.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "age1zr4an6wy6yn9n5zmpra8zre2sqtjfpcf3g6f8937k4ycxz8ak9fqg3nlem\n\
         ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBI1+Q+ntzANebtnicCiAY29uqLGWOaOGLEa8bUqOVmS\n\
         age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs\n"
    );

    std::fs::set_permissions(&age_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cli(&[
        "secrets",
        "recipients",
        "--identity",
        age_key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("accessible by group or others (mode 0644)") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("AGE-SECRET-KEY"), "{err}");
}
