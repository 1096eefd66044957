//! Signed-commit mode: which keys may sign the head the agent applies, and the check itself.
//!
//! The allowed-signers file has `ssh-keygen`'s ALLOWED SIGNERS format (the file git's
//! `gpg.ssh.allowedSignersFile` names): `principals [options] keytype base64key [comment]`,
//! with the options `namespaces="…"`, `valid-after="…"` and `valid-before="…"`. As in
//! `git verify-commit`, a signature is accepted when its key is listed (principals are not
//! matched against the committer: they name the signer in reports), the signature is for
//! namespace `git`, and the commit's committer time falls inside the key's validity window.
//! Times without a trailing `Z` are read as UTC (ssh-keygen reads them as local time; nodes
//! of a cluster should run in UTC anyway).
//!
//! OpenPGP signatures are refused as unsupported. Verifying them soundly needs a whole
//! OpenPGP certificate model (subkey binding signatures, expiry, revocation) that only a
//! full implementation such as Sequoia provides; that is a large dependency tree, with a C
//! crypto backend, for a second way of doing what SSH signatures already do, and git and the
//! forges support SSH signing. `cert-authority` lines are refused for the same reason: the
//! agent pins keys, not certificate authorities.

use super::error::{ParseError, SignatureProblem};
use ssh_key::{HashAlg, PublicKey, SshSig};
use std::path::Path;
use std::str::FromStr;

/// The namespace git signs commits in.
const GIT_NAMESPACE: &str = "git";

/// The keys allowed to sign heads.
#[derive(Clone, Debug)]
pub struct AllowedSigners {
    entries: Vec<Signer>,
}

#[derive(Clone, Debug)]
struct Signer {
    principals: String,
    key: PublicKey,
    /// Patterns from `namespaces="…"`; `None` means any namespace.
    namespaces: Option<Vec<String>>,
    /// Unix seconds from `valid-after` / `valid-before`.
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

impl AllowedSigners {
    /// Read an allowed-signers file.
    pub fn load(path: &Path) -> Result<Self, ParseError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ParseError::at(0, format!("cannot read: {e}")).in_file(path))?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parse allowed-signers text; blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            entries.push(parse_line(line).map_err(|m| ParseError::at(i + 1, m))?);
        }
        if entries.is_empty() {
            return Err(ParseError::at(0, "no allowed signer listed".to_string()));
        }
        Ok(Self { entries })
    }

    /// Check `signature` (the armored signature git stores in the commit header) over
    /// `signed_data` (the commit without that header) for a commit made at `commit_time`
    /// (Unix seconds). Returns the signer's principals.
    pub fn verify(
        &self,
        signature: &[u8],
        signed_data: &[u8],
        commit_time: i64,
    ) -> Result<&str, SignatureProblem> {
        let sig = parse_signature(signature)?;
        if sig.namespace() != GIT_NAMESPACE {
            return Err(SignatureProblem::WrongNamespace(
                sig.namespace().to_string(),
            ));
        }
        let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
        let mut listed = self
            .entries
            .iter()
            .filter(|s| s.key.key_data() == sig.public_key())
            .peekable();
        let Some(first) = listed.peek().copied() else {
            return Err(SignatureProblem::UnknownKey { fingerprint });
        };
        let Some(signer) = listed.find(|s| s.allows(commit_time)) else {
            return Err(SignatureProblem::OutsideRestriction {
                fingerprint,
                principals: first.principals.clone(),
                restriction: first.restriction(),
            });
        };
        signer
            .key
            .verify(GIT_NAMESPACE, signed_data, &sig)
            .map_err(|_| SignatureProblem::Invalid { fingerprint })?;
        Ok(&signer.principals)
    }
}

impl Signer {
    fn allows(&self, time: i64) -> bool {
        let namespace_ok = self.namespaces.as_ref().is_none_or(|patterns| {
            patterns
                .iter()
                .any(|p| glob_match(p.as_bytes(), GIT_NAMESPACE.as_bytes()))
        });
        namespace_ok
            && self.valid_after.is_none_or(|t| time >= t)
            && self.valid_before.is_none_or(|t| time < t)
    }

    /// The key's restrictions in words, for a refusal.
    fn restriction(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ns) = &self.namespaces {
            parts.push(format!("for namespaces {}", ns.join(",")));
        }
        if let Some(t) = self.valid_after {
            parts.push(format!("for commits made from {t} (Unix time)"));
        }
        if let Some(t) = self.valid_before {
            parts.push(format!("for commits made before {t} (Unix time)"));
        }
        parts.join(" and ")
    }
}

fn parse_signature(armored: &[u8]) -> Result<SshSig, SignatureProblem> {
    let text = String::from_utf8_lossy(armored);
    let text = text.trim_start();
    if text.starts_with("-----BEGIN SSH SIGNATURE-----") {
        SshSig::from_pem(text.as_bytes()).map_err(|e| SignatureProblem::Malformed(e.to_string()))
    } else if text.starts_with("-----BEGIN PGP SIGNATURE-----") {
        Err(SignatureProblem::Unsupported("OpenPGP"))
    } else if text.starts_with("-----BEGIN SIGNED MESSAGE-----") {
        Err(SignatureProblem::Unsupported("X.509"))
    } else {
        Err(SignatureProblem::Malformed(
            "unknown signature format".to_string(),
        ))
    }
}

fn parse_line(line: &str) -> Result<Signer, String> {
    let fields = split_fields(line);
    let principals = unquote(&fields[0]).to_string();
    let rest = &fields[1..];
    let (options, key_fields) = match rest.first() {
        Some(f) if ssh_key::Algorithm::from_str(f).is_ok() => (None, rest),
        Some(f) => (Some(f.as_str()), &rest[1..]),
        None => return Err("a principal with no key".to_string()),
    };
    if key_fields.len() < 2 {
        return Err("expected `principals [options] keytype base64key`".to_string());
    }
    let key = PublicKey::from_openssh(&key_fields.join(" "))
        .map_err(|e| format!("cannot parse the public key: {e}"))?;
    let mut signer = Signer {
        principals,
        key,
        namespaces: None,
        valid_after: None,
        valid_before: None,
    };
    for option in options.map(split_options).unwrap_or_default() {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(unquote(v))),
            None => (option.to_ascii_lowercase(), None),
        };
        match (name.as_str(), value) {
            ("namespaces", Some(v)) => {
                signer.namespaces = Some(v.split(',').map(|s| s.trim().to_string()).collect())
            }
            ("valid-after", Some(v)) => signer.valid_after = Some(parse_time(v)?),
            ("valid-before", Some(v)) => signer.valid_before = Some(parse_time(v)?),
            ("cert-authority", None) => {
                return Err("cert-authority is not supported: list the signing keys".to_string())
            }
            _ => return Err(format!("unknown option `{option}`")),
        }
    }
    Ok(signer)
}

/// Whitespace-separated fields, keeping double-quoted runs (with their quotes) together.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    fields.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        fields.push(cur);
    }
    fields
}

/// Comma-separated options, commas inside quotes kept.
fn split_options(field: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in field.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// `YYYYMMDD[HHMM[SS]][Z]` as Unix seconds (UTC).
fn parse_time(s: &str) -> Result<i64, String> {
    let digits = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    let bad = || format!("`{s}` is not a time of the form YYYYMMDD[HHMM[SS]][Z]");
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).map_or(0, |d| d.parse::<i64>().unwrap());
    let (y, mo, d) = (num(0..4), num(4..6), num(6..8));
    let (h, mi, sec) = (num(8..10), num(10..12), num(12..14));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return Err(bad());
    }
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `*` and `?` wildcards, as ssh-keygen matches namespace patterns.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPnMNZAdOzgcEHuW20gVcR9wyvFOZuYKBflowxavkk67";

    #[test]
    fn parses_principals_options_and_comments() {
        let text = format!(
            "# who may sign\n\
             alice@example.org {KEY} laptop\n\
             \"bob@example.org,ci@example.org\" namespaces=\"git,file\",valid-after=\"20240101\" {KEY}\n"
        );
        let s = AllowedSigners::parse(&text).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[0].principals, "alice@example.org");
        assert_eq!(s.entries[1].principals, "bob@example.org,ci@example.org");
        assert_eq!(
            s.entries[1].namespaces,
            Some(vec!["git".to_string(), "file".to_string()])
        );
        assert_eq!(s.entries[1].valid_after, Some(1_704_067_200));
    }

    #[test]
    fn refuses_unusable_lines_with_their_number() {
        let err = AllowedSigners::parse(&format!("\nx cert-authority {KEY}")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("cert-authority"), "{err}");
        assert!(AllowedSigners::parse("x").is_err());
        assert!(AllowedSigners::parse(&format!("x nope=1 {KEY}")).is_err());
        assert!(AllowedSigners::parse("").is_err());
    }

    #[test]
    fn restrictions_apply_to_the_commit_time_and_namespace() {
        let s = AllowedSigners::parse(&format!(
            "a valid-after=\"20240101\",valid-before=\"202401020000Z\" {KEY}"
        ))
        .unwrap();
        let e = &s.entries[0];
        assert!(!e.allows(1_704_067_199));
        assert!(e.allows(1_704_067_200));
        assert!(!e.allows(1_704_153_600));
        let ns = AllowedSigners::parse(&format!("a namespaces=\"file,g?t\" {KEY}")).unwrap();
        assert!(ns.entries[0].allows(0));
        let ns = AllowedSigners::parse(&format!("a namespaces=\"file\" {KEY}")).unwrap();
        assert!(!ns.entries[0].allows(0));
    }

    #[test]
    fn times_and_globs() {
        assert_eq!(parse_time("19700101").unwrap(), 0);
        assert_eq!(parse_time("20000229123456Z").unwrap(), 951_827_696);
        assert!(parse_time("2024").is_err());
        assert!(parse_time("20241301").is_err());
        assert!(glob_match(b"g*", b"git"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"gi", b"git"));
    }

    #[test]
    fn refuses_pgp_and_garbage_signatures() {
        let s = AllowedSigners::parse(&format!("a {KEY}")).unwrap();
        let pgp = b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        assert_eq!(
            s.verify(pgp, b"data", 0),
            Err(SignatureProblem::Unsupported("OpenPGP"))
        );
        assert!(matches!(
            s.verify(
                b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
                b"d",
                0
            ),
            Err(SignatureProblem::Malformed(_))
        ));
    }
}
