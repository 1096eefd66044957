//! SOPS documents in dotenv form (`KEY=VALUE` lines, metadata as flattened `sops_*` keys).
//!
//! As sops reads them: lines split at the first `=`, a literal `\n` in a value is a newline,
//! `#` lines are comments (not part of the MAC; dropped here), and the metadata map is
//! flattened into keys like `sops_age__list_0__map_enc`.

use super::tree::{Map, Value};

const META_PREFIX: &str = "sops_";
const MAP_SEP: &str = "__map_";
const LIST_SEP: &str = "__list_";

/// The document's entries, and its metadata rebuilt as the nested map YAML would hold.
/// Errors name the line number only: a malformed line may hold a secret.
pub fn parse(text: &str) -> Result<(Map, Option<Value>), String> {
    let mut doc = Map::default();
    let mut meta = Value::Map(Map::default());
    let mut has_meta = false;
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} has no `=`", i + 1));
        };
        let value = value.replace("\\n", "\n");
        if let Some(flat) = key.strip_prefix(META_PREFIX) {
            has_meta = true;
            place(&mut meta, &tokenize(flat), Value::Str(value))
                .map_err(|e| format!("line {}: metadata key `{key}`: {e}", i + 1))?;
        } else {
            if doc.get(key).is_some() {
                return Err(format!("line {}: duplicate key `{key}`", i + 1));
            }
            doc.0.push((key.to_owned(), Value::Str(value)));
        }
    }
    Ok((doc, has_meta.then_some(meta)))
}

/// The document as dotenv text, as `sops -d` prints it.
pub fn render(doc: &Map) -> Result<String, String> {
    let mut out = String::new();
    for (key, value) in doc.iter() {
        let text = match value {
            Value::Str(s) => s.replace('\n', "\\n"),
            Value::Null => String::new(),
            Value::List(_) | Value::Map(_) => {
                return Err(format!(
                    "`{key}` is a {}; dotenv holds only strings",
                    value.kind()
                ))
            }
            scalar => {
                String::from_utf8_lossy(&scalar.scalar_bytes().unwrap_or_default()).into_owned()
            }
        };
        out.push_str(key);
        out.push('=');
        out.push_str(&text);
        out.push('\n');
    }
    Ok(out)
}

enum Token<'a> {
    Key(&'a str),
    Index(usize),
}

/// `age__list_0__map_enc` → `age`, `[0]`, `enc`.
fn tokenize(flat: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = flat;
    let mut is_index = false;
    loop {
        let next = [MAP_SEP, LIST_SEP]
            .iter()
            .filter_map(|sep| rest.find(sep).map(|at| (at, *sep)))
            .min_by_key(|(at, _)| *at);
        let (part, following) = match next {
            Some((at, sep)) => (&rest[..at], Some((sep, &rest[at + sep.len()..]))),
            None => (rest, None),
        };
        tokens.push(match (is_index, part.parse()) {
            (true, Ok(i)) => Token::Index(i),
            _ => Token::Key(part),
        });
        match following {
            Some((sep, after)) => {
                is_index = sep == LIST_SEP;
                rest = after;
            }
            None => return tokens,
        }
    }
}

fn place(node: &mut Value, path: &[Token], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    let child = match first {
        Token::Key(k) => {
            if matches!(node, Value::Null) {
                *node = Value::Map(Map::default());
            }
            let Value::Map(m) = node else {
                return Err(format!("`{k}` under a {}", node.kind()));
            };
            if m.get(k).is_none() {
                m.0.push(((*k).to_owned(), Value::Null));
            }
            let i =
                m.0.iter()
                    .position(|(key, _)| key == k)
                    .expect("just added");
            &mut m.0[i].1
        }
        Token::Index(i) => {
            if matches!(node, Value::Null) {
                *node = Value::List(Vec::new());
            }
            let Value::List(items) = node else {
                return Err(format!("list index {i} under a {}", node.kind()));
            };
            if *i > 4096 {
                return Err(format!("list index {i} is out of range"));
            }
            if items.len() <= *i {
                items.resize(*i + 1, Value::Null);
            }
            &mut items[*i]
        }
    };
    place(child, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflattens_metadata_and_unescapes_newlines() {
        let text = "b=x\\ny\n# c\na=1=2\nsops_age__list_1__map_recipient=r1\nsops_age__list_0__map_enc=E0\\n\nsops_age__list_0__map_recipient=r0\nsops_mac=M\n";
        let (doc, meta) = parse(text).unwrap();
        assert_eq!(
            doc.0,
            [
                ("b".to_string(), Value::Str("x\ny".into())),
                ("a".to_string(), Value::Str("1=2".into()))
            ]
        );
        let meta = serde_json::to_string(&meta.unwrap()).unwrap();
        assert_eq!(
            meta,
            r#"{"age":[{"enc":"E0\n","recipient":"r0"},{"recipient":"r1"}],"mac":"M"}"#
        );
        assert_eq!(render(&doc).unwrap(), "b=x\\ny\na=1=2\n");
    }

    #[test]
    fn a_line_without_equals_is_named_by_number_only() {
        let e = parse("a=1\nhunter2\n").unwrap_err();
        assert_eq!(e, "line 2 has no `=`");
    }
}
