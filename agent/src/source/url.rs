//! Remote URLs: which transport a URL uses, and the rule that keeps credentials out of it.
//!
//! Credentials never live in the URL (a token goes in a file, a key in a file), so the URL
//! can be printed in every log line and error message as it is. A URL that does carry a
//! password is refused, and the refusal prints it with the password masked.

use std::fmt;

/// How the agent talks to the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `ssh://[user@]host[:port]/path` or scp-like `[user@]host:path`.
    Ssh,
    /// `https://host/path`, verified against the system's CAs or a CA file (`tls.rs`).
    Https,
    /// `http://host/path`: accepted only without credentials.
    Http,
    /// `file:///path` or an absolute path.
    File,
}

/// A validated remote URL, safe to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUrl {
    url: String,
    transport: Transport,
}

impl RemoteUrl {
    /// Classify `url`; the error message is meant for the operator (the URL in it is
    /// already masked).
    pub fn parse(url: &str) -> Result<Self, String> {
        let transport = if let Some((scheme, rest)) = url.split_once("://") {
            let transport = match scheme.to_ascii_lowercase().as_str() {
                "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
                "https" => Transport::Https,
                "http" => Transport::Http,
                "file" => Transport::File,
                other => {
                    return Err(format!(
                        "{}: unsupported scheme `{other}://` (use ssh://, https:// or file://)",
                        redact(url)
                    ))
                }
            };
            let authority = rest.split('/').next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if userinfo.contains(':') {
                    return Err(format!(
                        "{}: the URL carries a password; put the token in a file and configure \
                         it as the token file instead",
                        redact(url)
                    ));
                }
            }
            transport
        } else if url.starts_with('/') {
            Transport::File
        } else if is_scp_like(url) {
            Transport::Ssh
        } else {
            return Err(format!(
                "`{url}` is neither a URL (ssh://, https://, file://), an scp-like \
                 `user@host:path` nor an absolute path"
            ));
        };
        Ok(Self {
            url: url.to_string(),
            transport,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// `host:path` with a non-empty host and no `/` before the colon (git's own rule, so that
/// `./a:b` stays a path).
fn is_scp_like(url: &str) -> bool {
    match url.split_once(':') {
        Some((host, path)) => !host.is_empty() && !host.contains('/') && !path.is_empty(),
        None => false,
    }
}

/// `url` with the password part of its user information replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_transports() {
        let t = |u: &str| RemoteUrl::parse(u).unwrap().transport();
        assert_eq!(t("ssh://git@example.org:2222/infra.git"), Transport::Ssh);
        assert_eq!(t("git@example.org:infra/cluster.git"), Transport::Ssh);
        assert_eq!(t("https://example.org/infra.git"), Transport::Https);
        assert_eq!(t("http://127.0.0.1/infra.git"), Transport::Http);
        assert_eq!(t("file:///srv/git/infra.git"), Transport::File);
        assert_eq!(t("/srv/git/infra.git"), Transport::File);
    }

    #[test]
    fn refuses_relative_paths_and_unknown_schemes() {
        assert!(RemoteUrl::parse("infra.git").is_err());
        assert!(RemoteUrl::parse("./a:b").is_err());
        let err = RemoteUrl::parse("git://example.org/x").unwrap_err();
        assert!(err.contains("unsupported scheme `git://`"), "{err}");
    }

    #[test]
    fn refuses_a_password_in_the_url_without_printing_it() {
        let err = RemoteUrl::parse("https://bot:s3cr3t-token@example.org/infra.git").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(
            err.starts_with("https://bot:***@example.org/infra.git:"),
            "{err}"
        );
        // A user name alone is fine (it is not a secret).
        assert!(RemoteUrl::parse("https://bot@example.org/infra.git").is_ok());
    }

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(
            redact("https://u:p@h/x@y"),
            "https://u:***@h/x@y".to_string()
        );
        assert_eq!(redact("ssh://git@h/x"), "ssh://git@h/x");
        assert_eq!(redact("/srv/x"), "/srv/x");
    }
}
