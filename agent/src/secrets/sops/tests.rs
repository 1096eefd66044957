//! The SOPS rules that the real-sops vectors (agent/tests/secrets.rs) do not exercise:
//! documents made here by a small encryptor that follows sops's Encrypt walk.

use super::*;
use crate::secrets::sops::cipher::seal;
use std::io::Write;

/// Encrypts like sops: MAC over the plaintext first, then each value the rules select is
/// sealed with its key path as additional data.
struct Encryptor {
    key: DataKey,
    rules: Rules,
    mac: Mac,
    keys: Vec<String>,
}

impl Encryptor {
    fn walk(&mut self, v: &mut Value) {
        match v {
            Value::Map(m) => {
                for (k, child) in m.0.iter_mut() {
                    self.keys.push(k.clone());
                    self.walk(child);
                    self.keys.pop();
                }
            }
            Value::List(items) => items.iter_mut().for_each(|c| self.walk(c)),
            Value::Null => {}
            leaf => {
                let encrypted = self.rules.is_encrypted(&self.keys);
                self.mac.add(leaf, encrypted);
                if encrypted && *leaf != Value::Str(String::new()) {
                    let kind = match leaf {
                        Value::Str(_) => "str",
                        Value::Int(_) => "int",
                        Value::Float(_) => "float",
                        Value::Bool(_) => "bool",
                        _ => "bytes",
                    };
                    let aad = format!("{}:", self.keys.join(":"));
                    let plain = leaf.scalar_bytes().unwrap();
                    *leaf = Value::Str(seal(&plain, kind, &self.key, aad.as_bytes()));
                }
            }
        }
    }
}

struct Made {
    text: String,
    identity: Identities,
}

/// A SOPS document of `plain` (YAML text) with `settings` (YAML lines of the sops section).
fn make(plain: &str, settings: &str, format: Format) -> Made {
    let identity = age::x25519::Identity::generate();
    let key: DataKey = zeroize::Zeroizing::new(rand_key());
    let settings_value: Value =
        serde_yaml::from_str(if settings.is_empty() { "{}" } else { settings }).unwrap();
    let Value::Map(mut sops) = settings_value else {
        panic!()
    };
    let mut probe = sops.clone();
    probe.0.push((
        "lastmodified".into(),
        Value::Str("2025-01-01T00:00:00Z".into()),
    ));
    let rules = Metadata::from_value(&Value::Map(probe)).ok().unwrap().rules;
    let mut tree: Value = serde_yaml::from_str(plain).unwrap();
    let mut enc = Encryptor {
        key: key.clone(),
        mac: Mac::new(rules.mac_only_encrypted),
        rules,
        keys: Vec::new(),
    };
    enc.walk(&mut tree);
    let lastmodified = "2025-01-01T00:00:00Z";
    let mac = seal(
        enc.mac.finish().as_bytes(),
        "str",
        &key,
        lastmodified.as_bytes(),
    );
    let wrapped = armor_encrypt(&identity.to_public(), key.as_ref());
    let age_entry = Value::Map(Map(vec![
        (
            "recipient".into(),
            Value::Str(identity.to_public().to_string()),
        ),
        ("enc".into(), Value::Str(wrapped)),
    ]));
    sops.0.push(("age".into(), Value::List(vec![age_entry])));
    sops.0
        .push(("lastmodified".into(), Value::Str(lastmodified.into())));
    sops.0.push(("mac".into(), Value::Str(mac)));
    let Value::Map(mut doc) = tree else { panic!() };
    let text = match format {
        Format::Dotenv => {
            let mut out = dotenv::render(&doc).unwrap();
            for (k, v) in sops.iter() {
                match v {
                    Value::List(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let Value::Map(m) = item else { panic!() };
                            for (field, fv) in m.iter() {
                                let Value::Str(s) = fv else { panic!() };
                                out += &format!(
                                    "sops_{k}__list_{i}__map_{field}={}\n",
                                    s.replace('\n', "\\n")
                                );
                            }
                        }
                    }
                    Value::Bool(b) => out += &format!("sops_{k}={b}\n"),
                    Value::Str(s) => out += &format!("sops_{k}={s}\n"),
                    _ => panic!(),
                }
            }
            out
        }
        _ => {
            doc.0.push(("sops".into(), Value::Map(sops)));
            match format {
                Format::Json => serde_json::to_string_pretty(&Value::Map(doc)).unwrap(),
                _ => serde_yaml::to_string(&Value::Map(doc)).unwrap(),
            }
        }
    };
    let mut ids = Identities::new();
    ids.push_x25519(Path::new("test.key"), identity);
    Made {
        text,
        identity: ids,
    }
}

fn rand_key() -> [u8; 32] {
    use aes_gcm::aead::KeyInit;
    aes_gcm::Aes256Gcm::generate_key(&mut aes_gcm::aead::OsRng).into()
}

fn armor_encrypt(r: &age::x25519::Recipient, plain: &[u8]) -> String {
    let enc = age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let armored =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
    let mut w = enc.wrap_output(armored).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap().finish().unwrap();
    String::from_utf8(out).unwrap()
}

fn open(made: &Made, name: &str) -> Result<SopsDocument, SecretError> {
    decrypt(Path::new(name), made.text.as_bytes(), &made.identity)
}

const PLAIN: &str = "\
db:
  user_unencrypted: admin
  password: hunter2
  port: 5432
  ratio: 0.5
  enabled: true
  empty: ''
  nothing: null
servers:
  - name: a
    token: t1
  - name: b
    token: t2
tls.crt: CERT
";

#[test]
fn json_yaml_and_dotenv_round_trip_with_types_and_order() {
    for (format, name) in [(Format::Yaml, "s.yaml"), (Format::Json, "s.json")] {
        let made = make(PLAIN, "unencrypted_suffix: _unencrypted", format);
        assert!(made.text.contains("user_unencrypted"), "{}", made.text);
        assert!(!made.text.contains("hunter2"));
        let doc = open(&made, name).unwrap();
        assert_eq!(doc.format(), format);
        let want: Value = serde_yaml::from_str(PLAIN).unwrap();
        assert_eq!(Value::Map(doc.tree().clone()), want, "{name}");
        assert_eq!(doc.value("db.password").unwrap().as_str(), Some("hunter2"));
        assert_eq!(doc.value("db.port").unwrap().as_str(), Some("5432"));
        assert_eq!(doc.value("db.enabled").unwrap().as_str(), Some("true"));
        assert_eq!(doc.value("servers.1.token").unwrap().as_str(), Some("t2"));
        assert_eq!(doc.value("tls.crt").unwrap().as_str(), Some("CERT"));
        let e = doc.value("db").unwrap_err().to_string();
        assert_eq!(e, format!("{name}: `db` is a map, not a single value"));
        let e = doc.value("db.pasword").unwrap_err().to_string();
        assert_eq!(e, format!("{name}: no value at `db.pasword`"));
    }
    let made = make("A: one\nB: \"two\\nlines\"\n", "", Format::Dotenv);
    let doc = open(&made, "s.env").unwrap();
    assert_eq!(doc.value("B").unwrap().as_str(), Some("two\nlines"));
    assert_eq!(doc.render().unwrap(), "A=one\nB=two\\nlines\n");
}

#[test]
fn list_items_add_nothing_to_the_additional_data() {
    let made = make("servers:\n  - token: t1\n", "", Format::Yaml);
    let Value::Map(m) = serde_yaml::from_str::<Value>(&made.text).unwrap() else {
        panic!()
    };
    let Some(Value::List(items)) = m.get("servers") else {
        panic!()
    };
    let Value::Map(item) = &items[0] else {
        panic!()
    };
    let Some(Value::Str(sealed)) = item.get("token") else {
        panic!()
    };
    // Moving the sealed value to a path with the same map keys and no list still opens...
    let moved = made
        .text
        .replace("servers:\n- token:", "servers:\n  token:");
    let moved = Made {
        text: moved,
        identity: made.identity,
    };
    assert!(sealed.starts_with("ENC["));
    assert_eq!(
        open(&moved, "m.yaml")
            .unwrap()
            .value("servers.token")
            .unwrap()
            .as_str(),
        Some("t1")
    );
    // ...but under another key it does not, and the error names the path.
    let renamed = moved.text.replace("  token:", "  tokens:");
    let renamed = Made {
        text: renamed,
        identity: moved.identity,
    };
    let e = open(&renamed, "m.yaml").unwrap_err();
    assert!(
        matches!(&e, SecretError::ValueTampered { key, .. } if key == "servers.tokens"),
        "{e}"
    );
}

#[test]
fn regex_and_suffix_rules_select_the_encrypted_values() {
    let plain = "metadata:\n  name: web\nstringData:\n  key: value\nkind: Secret\n";
    let made = make(plain, "encrypted_regex: ^(data|stringData)$", Format::Yaml);
    assert!(made.text.contains("name: web") && made.text.contains("kind: Secret"));
    assert!(!made.text.contains("key: value"));
    assert_eq!(
        open(&made, "s.yaml")
            .unwrap()
            .value("stringData.key")
            .unwrap()
            .as_str(),
        Some("value")
    );

    let made = make(plain, "unencrypted_regex: ^(name|kind)$", Format::Yaml);
    assert!(made.text.contains("name: web") && !made.text.contains("key: value"));
    assert!(open(&made, "s.yaml").is_ok());

    let plain = "db_secret:\n  pw: x\nhost: h\n";
    let made = make(plain, "encrypted_suffix: _secret", Format::Yaml);
    assert!(made.text.contains("host: h") && !made.text.contains("pw: x"));
    assert_eq!(
        open(&made, "s.yaml")
            .unwrap()
            .value("db_secret.pw")
            .unwrap()
            .as_str(),
        Some("x")
    );

    // A value the rules say is encrypted but that is in clear text is refused.
    let tampered = made
        .text
        .replace("host: h", "host: h\nother_secret:\n  pw: clear");
    let e = open(
        &Made {
            text: tampered,
            identity: made.identity,
        },
        "s.yaml",
    )
    .unwrap_err();
    assert!(
        matches!(&e, SecretError::ValueNotEncrypted { key, .. } if key == "other_secret.pw"),
        "{e}"
    );
}

#[test]
fn mac_only_encrypted_ignores_clear_values_and_the_default_does_not() {
    let plain = "name_unencrypted: web\npw: x\n";
    let only = make(
        plain,
        "unencrypted_suffix: _unencrypted\nmac_only_encrypted: true",
        Format::Yaml,
    );
    let changed = only
        .text
        .replace("name_unencrypted: web", "name_unencrypted: db");
    assert!(open(
        &Made {
            text: changed,
            identity: only.identity
        },
        "s.yaml"
    )
    .is_ok());

    let all = make(plain, "unencrypted_suffix: _unencrypted", Format::Yaml);
    let changed = all
        .text
        .replace("name_unencrypted: web", "name_unencrypted: db");
    let e = open(
        &Made {
            text: changed,
            identity: all.identity,
        },
        "s.yaml",
    )
    .unwrap_err();
    assert!(matches!(e, SecretError::MacMismatch { .. }), "{e}");

    // The dotenv spelling of the flag is text.
    let env = make("A: x\n", "mac_only_encrypted: true", Format::Dotenv);
    assert!(
        env.text.contains("sops_mac_only_encrypted=true"),
        "{}",
        env.text
    );
    assert!(open(&env, "s.env").is_ok());
}

#[test]
fn missing_sops_section_or_mac_and_wrong_identity_are_told_apart() {
    let made = make("pw: x\n", "", Format::Yaml);
    let e = decrypt(Path::new("p.yaml"), b"pw: x\n", &made.identity).unwrap_err();
    assert_eq!(
        e.to_string(),
        "p.yaml: not a SOPS document: there is no top-level `sops` metadata section"
    );

    let no_mac: String = made
        .text
        .lines()
        .filter(|l| !l.trim_start().starts_with("mac:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = open(
        &Made {
            text: no_mac,
            identity: made.identity,
        },
        "s.yaml",
    )
    .unwrap_err();
    assert!(matches!(e, SecretError::MacMissing { .. }), "{e}");

    let other = make("pw: x\n", "", Format::Yaml);
    let e = decrypt(Path::new("s.yaml"), made.text.as_bytes(), &other.identity).unwrap_err();
    assert!(
        matches!(e, SecretError::SopsNoMatchingIdentity { .. }),
        "{e}"
    );
}
