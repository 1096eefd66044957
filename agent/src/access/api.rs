//! The `/access` endpoints `init` and `doctor` use, typed. PVE's answers are read
//! leniently (only the fields used), its booleans as `0`/`1` or `true`/`false`.

use crate::pve::form::segment;
use crate::pve::{Idempotency, Params, PveClient, PveError};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// An ACL entry as `GET /access/acl` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AclEntry {
    pub path: String,
    /// `user`, `group` or `token`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The user, group or token id.
    pub ugid: String,
    pub roleid: String,
    #[serde(default = "yes", deserialize_with = "crate::pve::de::flag")]
    pub propagate: bool,
}

fn yes() -> bool {
    true
}

/// `GET /version`: PVE's version, e.g. `9.0.3`.
pub async fn version(c: &PveClient) -> Result<String, PveError> {
    #[derive(Deserialize)]
    struct V {
        version: String,
    }
    let v: V = c.get("/version", &Params::new()).await?;
    Ok(v.version)
}

/// The user ids PVE knows.
pub async fn users(c: &PveClient) -> Result<BTreeSet<String>, PveError> {
    #[derive(Deserialize)]
    struct U {
        userid: String,
    }
    let list: Vec<U> = c.get("/access/users", &Params::new()).await?;
    Ok(list.into_iter().map(|u| u.userid).collect())
}

/// A user without a password: it acts only through API tokens.
pub async fn create_user(c: &PveClient, userid: &str, comment: &str) -> Result<(), PveError> {
    let p = Params::new()
        .with("userid", userid)
        .with("comment", comment);
    let _: Value = c
        .post("/access/users", &p, Idempotency::NotIdempotent)
        .await?;
    Ok(())
}

/// Every role with its privileges.
pub async fn roles(c: &PveClient) -> Result<BTreeMap<String, BTreeSet<String>>, PveError> {
    #[derive(Deserialize)]
    struct R {
        roleid: String,
        #[serde(default)]
        privs: Option<String>,
    }
    let list: Vec<R> = c.get("/access/roles", &Params::new()).await?;
    Ok(list
        .into_iter()
        .map(|r| (r.roleid, split(r.privs.as_deref().unwrap_or(""))))
        .collect())
}

fn split(privs: &str) -> BTreeSet<String> {
    privs
        .split([',', ';', ' '])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

pub async fn create_role(c: &PveClient, roleid: &str, privs: &[&str]) -> Result<(), PveError> {
    let p = Params::new()
        .with("roleid", roleid)
        .with("privs", privs.join(","));
    let _: Value = c
        .post("/access/roles", &p, Idempotency::NotIdempotent)
        .await?;
    Ok(())
}

/// Replace a role's privileges.
pub async fn set_role(c: &PveClient, roleid: &str, privs: &[&str]) -> Result<(), PveError> {
    let p = Params::new().with("privs", privs.join(","));
    let path = format!("/access/roles/{}", segment(roleid));
    let _: Value = c.put(&path, &p, Idempotency::Idempotent).await?;
    Ok(())
}

/// The names of `userid`'s API tokens.
pub async fn tokens(c: &PveClient, userid: &str) -> Result<BTreeSet<String>, PveError> {
    #[derive(Deserialize)]
    struct T {
        tokenid: String,
    }
    let path = format!("/access/users/{}/token", segment(userid));
    let list: Vec<T> = c.get(&path, &Params::new()).await?;
    Ok(list.into_iter().map(|t| t.tokenid).collect())
}

#[derive(Deserialize)]
struct TokenSecret {
    value: String,
}

/// Create a token; PVE shows its secret this once.
pub async fn create_token(
    c: &PveClient,
    userid: &str,
    tokenid: &str,
    privsep: bool,
    comment: &str,
) -> Result<String, PveError> {
    let path = format!(
        "/access/users/{}/token/{}",
        segment(userid),
        segment(tokenid)
    );
    let p = Params::new()
        .with("privsep", privsep)
        .with("comment", comment);
    let t: TokenSecret = c.post(&path, &p, Idempotency::NotIdempotent).await?;
    Ok(t.value)
}

/// A new secret for an existing token (the old one stops working).
pub async fn regenerate_token(
    c: &PveClient,
    userid: &str,
    tokenid: &str,
) -> Result<String, PveError> {
    let path = format!(
        "/access/users/{}/token/{}",
        segment(userid),
        segment(tokenid)
    );
    let p = Params::new().with("regenerate", true);
    let t: TokenSecret = c.put(&path, &p, Idempotency::NotIdempotent).await?;
    Ok(t.value)
}

pub async fn acl(c: &PveClient) -> Result<Vec<AclEntry>, PveError> {
    c.get("/access/acl", &Params::new()).await
}

/// Grant `role` on `path` (propagated) to these users and tokens.
pub async fn grant(
    c: &PveClient,
    path: &str,
    role: &str,
    users: &[&str],
    tokens: &[&str],
) -> Result<(), PveError> {
    let p = Params::new()
        .with("path", path)
        .with("roles", role)
        .with("propagate", true)
        .with_opt("users", (!users.is_empty()).then(|| users.join(",")))
        .with_opt("tokens", (!tokens.is_empty()).then(|| tokens.join(",")));
    let _: Value = c.put("/access/acl", &p, Idempotency::Idempotent).await?;
    Ok(())
}

/// The privileges the caller (this client's token) holds on `path`, as PVE computes
/// them (for a privilege-separated token: what both the token and its user hold).
pub async fn permissions(c: &PveClient, path: &str) -> Result<BTreeSet<String>, PveError> {
    let map: BTreeMap<String, BTreeMap<String, Value>> = c
        .get("/access/permissions", &Params::new().with("path", path))
        .await?;
    Ok(map
        .get(path)
        .map(|privs| privs.keys().cloned().collect())
        .unwrap_or_default())
}

/// `GET /nodes/{node}/time`: the node's clock, seconds since the epoch.
pub async fn node_time(c: &PveClient, node: &str) -> Result<i64, PveError> {
    #[derive(Deserialize)]
    struct T {
        time: i64,
    }
    let t: T = c
        .get(&format!("/nodes/{}/time", segment(node)), &Params::new())
        .await?;
    Ok(t.time)
}
