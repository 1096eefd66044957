//! The file formats a SOPS document comes in: reading one into a tree plus its `sops`
//! metadata, and writing the decrypted tree back out (`secrets decrypt`).

use super::dotenv;
use super::tree::{Map, Value};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
}

/// Why a file cannot be read as a SOPS document.
pub(crate) enum ParseFailure {
    /// Not parseable in its format; the reason never quotes the file's content.
    Syntax(String),
    /// Parsed, but there is no `sops` section.
    NoMetadata,
    /// A format sops writes that this agent does not read.
    Unsupported(&'static str),
}

impl Format {
    /// The format sops would pick: by extension (`.json`, `.env`, `.yaml`/`.yml`), else by
    /// content (JSON starts with `{`; anything else is read as YAML).
    pub fn detect(path: &Path, bytes: &[u8]) -> Result<Format, &'static str> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = name.rsplit('.').next().unwrap_or("");
        match ext {
            "json" => Ok(Format::Json),
            "env" => Ok(Format::Dotenv),
            "yaml" | "yml" => Ok(Format::Yaml),
            "ini" => Err("INI form"),
            _ if bytes.trim_ascii_start().starts_with(b"{") => Ok(Format::Json),
            _ => Ok(Format::Yaml),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Dotenv => "dotenv",
        }
    }

    /// The document's entries (the `sops` key taken out) and its metadata section.
    pub(crate) fn parse(self, bytes: &[u8]) -> Result<(Map, Value), ParseFailure> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ParseFailure::Syntax(format!("not UTF-8 (at byte {})", e.valid_up_to()))
        })?;
        let (mut doc, meta) = match self {
            Format::Dotenv => dotenv::parse(text).map_err(ParseFailure::Syntax)?,
            Format::Yaml | Format::Json => {
                let root: Value = match self {
                    Format::Json => serde_json::from_str(text).map_err(|e| syntax(&e))?,
                    _ => serde_yaml::from_str(text).map_err(|e| syntax(&e))?,
                };
                let Value::Map(map) = root else {
                    return Err(ParseFailure::Syntax(format!(
                        "the top level is a {}, not a map",
                        root.kind()
                    )));
                };
                (map, None)
            }
        };
        let meta = match meta {
            Some(m) => m,
            None => doc.remove("sops").ok_or(ParseFailure::NoMetadata)?,
        };
        if self == Format::Json && is_binary_store(&doc) {
            return Err(ParseFailure::Unsupported(
                "binary form (`sops` of a non-text file)",
            ));
        }
        Ok((doc, meta))
    }

    /// The decrypted document as text, keys in document order.
    pub fn render(self, doc: &Map) -> Result<String, String> {
        let root = Value::Map(doc.clone());
        let out = match self {
            Format::Yaml => serde_yaml::to_string(&root).map_err(|e| e.to_string()),
            Format::Json => serde_json::to_string_pretty(&root)
                .map(|s| s + "\n")
                .map_err(|e| e.to_string()),
            Format::Dotenv => dotenv::render(doc),
        };
        let mut root = root;
        zeroize::Zeroize::zeroize(&mut root);
        out
    }
}

/// A parse error as position and kind only: serde's messages may quote a scalar, and the
/// scalar may be a secret stored in clear by mistake.
fn syntax(e: &dyn std::fmt::Display) -> ParseFailure {
    let msg = e.to_string();
    // serde_json: "... at line L column C"; serde_yaml: "... at line L column C" too.
    let at = msg
        .rfind(" at line ")
        .map(|i| msg[i + 1..].to_string())
        .unwrap_or_default();
    let kind = if msg.contains("duplicate key") {
        "duplicate key"
    } else if msg.contains("string key") {
        "a map key that is not a string (SOPS supports only string keys)"
    } else if msg.contains("more than one document") {
        "more than one YAML document (not supported)"
    } else if msg.contains("YAML tags") {
        "a YAML tag (not supported)"
    } else if msg.contains("does not fit in 64 bits") {
        "an integer that does not fit in 64 bits"
    } else {
        "syntax error"
    };
    ParseFailure::Syntax(if at.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} {at}")
    })
}

/// sops stores a file that is neither YAML, JSON, dotenv nor INI as `{"data": ENC[…]}`.
fn is_binary_store(doc: &Map) -> bool {
    doc.0.len() == 1 && doc.0[0].0 == "data"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_extension_then_content() {
        let d = |p: &str, b: &str| Format::detect(Path::new(p), b.as_bytes());
        assert_eq!(d("a.enc.yaml", "{"), Ok(Format::Yaml));
        assert_eq!(d("a.json", "x: 1"), Ok(Format::Json));
        assert_eq!(d("a.env", ""), Ok(Format::Dotenv));
        assert_eq!(d("secret", " {\"a\": 1}"), Ok(Format::Json));
        assert_eq!(d("secret", "a: 1"), Ok(Format::Yaml));
        assert!(d("a.ini", "").is_err());
    }

    #[test]
    fn syntax_errors_never_quote_the_content() {
        let Err(ParseFailure::Syntax(e)) = Format::Yaml.parse(b"pw: [hunter2\n") else {
            panic!()
        };
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.starts_with("syntax error at line"), "{e}");
        let Err(ParseFailure::Syntax(e)) = Format::Yaml.parse(b"pw: a\npw: hunter2\n") else {
            panic!()
        };
        assert!(e.starts_with("duplicate key"), "{e}");
        assert!(matches!(
            Format::Yaml.parse(b"a: 1\n"),
            Err(ParseFailure::NoMetadata)
        ));
    }
}
