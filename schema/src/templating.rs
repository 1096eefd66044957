//! The template engine shared by member names, snippets and blueprints: minijinja with
//! strict undefined values (a typo in a variable name is an error, not an empty string) and a
//! few filters for the values infrastructure templates need.

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// An environment with the pve-gitops filters:
/// - `pad(width)`: zero-pad a number, `{{ number | pad(2) }}` → `07`;
/// - `address`: the address of a `10.0.0.5/24` value, without its prefix;
/// - `cidrhost(cidr, offset)`: Terraform's function, as a global.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Blocks (`{% for %}`) leave no blank lines behind, as Ansible users expect of Jinja.
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.add_filter("pad", |n: i64, width: usize| format!("{n:0width$}"));
    env.add_filter("address", |s: String| {
        s.split('/').next().unwrap_or_default().to_string()
    });
    env.add_function(
        "cidrhost",
        |cidr: String, offset: i64| -> Result<String, Error> {
            let net = cidr.parse().map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("`{cidr}` is not a CIDR"),
                )
            })?;
            crate::net::cidrhost(net, offset)
                .map(|a| a.to_string())
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e))
        },
    );
    env
}

/// A render error's message without minijinja's multi-line source excerpt, and the 1-based
/// line it names within the template, if any.
pub fn describe(err: &Error) -> (String, Option<usize>) {
    let mut msg = err.kind().to_string();
    if let Some(detail) = err.detail() {
        msg = format!("{msg}: {detail}");
    }
    (msg, err.line())
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn filters_and_strictness() {
        let env = environment();
        let out = env
            .render_str(
                "w{{ n | pad(2) }} {{ ip | address }} {{ cidrhost('10.0.1.0/24', 5) }}",
                context! { n => 3, ip => "10.0.0.5/24" },
            )
            .unwrap();
        assert_eq!(out, "w03 10.0.0.5 10.0.1.5");
        let err = env.render_str("a\n{{ nope }}", context! {}).unwrap_err();
        let (msg, line) = describe(&err);
        assert!(msg.contains("undefined"), "{msg}");
        assert_eq!(line, Some(2));
    }
}
