//! What a client is built from: the API token and the connection options.

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderValue;

use super::error::ClientBuildError;
use super::retry::RetryPolicy;
use super::task::TaskPollPolicy;
use super::tls::TlsTrust;

/// An API token: `USER@REALM!TOKENID` and its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    id: String,
    secret: String,
}

impl ApiToken {
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Result<Self, ClientBuildError> {
        let (id, secret) = (id.into(), secret.into());
        let (user, name) = id
            .split_once('!')
            .ok_or_else(|| ClientBuildError::Token(format!("{id:?} is not USER@REALM!TOKENID")))?;
        if !user.contains('@') || name.is_empty() || id.contains('=') {
            return Err(ClientBuildError::Token(format!(
                "{id:?} is not USER@REALM!TOKENID"
            )));
        }
        if secret.is_empty() || secret.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
            return Err(ClientBuildError::Token(format!(
                "the secret of {id} is empty or has white space"
            )));
        }
        Ok(ApiToken { id, secret })
    }

    /// From the `USER@REALM!TOKENID=SECRET` form PVE's docs and `pveum` output use.
    pub fn parse(text: &str) -> Result<Self, ClientBuildError> {
        let (id, secret) = text
            .trim()
            .split_once('=')
            .ok_or_else(|| ClientBuildError::Token("expected USER@REALM!TOKENID=SECRET".into()))?;
        Self::new(id, secret)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn header(&self) -> Result<HeaderValue, ClientBuildError> {
        let mut value = HeaderValue::from_str(&format!("PVEAPIToken={}={}", self.id, self.secret))
            .map_err(|_| {
                ClientBuildError::Token("token has characters HTTP cannot carry".into())
            })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("secret", &"***")
            .finish()
    }
}

/// Everything a client is built from. `ClientOptions::new(token)` has the defaults for
/// the agent on a PVE node: `https://127.0.0.1:8006`, the cluster CA.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `https://HOST[:PORT]` (a trailing `/api2/json` is accepted).
    pub base_url: String,
    pub token: ApiToken,
    pub tls: TlsTrust,
    pub connect_timeout: Duration,
    /// Per HTTP request. Long operations return a UPID at once, so this only needs to
    /// cover synchronous calls (a config PUT that allocates a disk can take a while).
    pub request_timeout: Duration,
    /// Requests in flight for the whole client.
    pub max_in_flight: usize,
    /// Requests in flight per node (`/nodes/{node}/...`).
    pub max_in_flight_per_node: usize,
    pub retry: RetryPolicy,
    pub task_poll: TaskPollPolicy,
}

impl ClientOptions {
    pub fn new(token: ApiToken) -> Self {
        ClientOptions {
            base_url: "https://127.0.0.1:8006".into(),
            token,
            tls: TlsTrust::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_in_flight: 16,
            max_in_flight_per_node: 4,
            retry: RetryPolicy::default(),
            task_poll: TaskPollPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = ApiToken::parse("root@pam!ci=abc-123").unwrap();
        assert_eq!(t.id(), "root@pam!ci");
        assert!(!format!("{t:?}").contains("abc-123"));
        assert!(ApiToken::parse("root@pam=abc").is_err());
        assert!(ApiToken::new("root!x", "s").is_err());
        assert!(ApiToken::new("root@pam!x", "a b").is_err());
    }
}
