//! Cluster-wide endpoints: resources, VMIDs, nodes, pools and the cluster firewall.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::client::PveClient;
use super::de;
use super::error::PveError;
use super::form::{segment, Params};
use super::retry::Idempotency;
use super::types::{ClusterResource, NodeInfo, NodeStatus, Pool};

/// The `type` filter of `/cluster/resources`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    /// VMs and containers.
    Vm,
    Node,
    Storage,
    Sdn,
}

impl ResourceType {
    fn as_str(self) -> &'static str {
        match self {
            ResourceType::Vm => "vm",
            ResourceType::Node => "node",
            ResourceType::Storage => "storage",
            ResourceType::Sdn => "sdn",
        }
    }
}

/// Changes of `PUT /pools`. Members listed in `vms`/`storage` are added, or removed
/// when `delete` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolUpdate {
    pub comment: Option<String>,
    pub vms: Vec<u32>,
    pub storage: Vec<String>,
    pub delete: bool,
    /// Move guests that are in another pool (instead of failing).
    pub allow_move: bool,
}

/// A rule of the cluster firewall or a security group.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FirewallRule {
    #[serde(deserialize_with = "de::u64_any")]
    pub pos: u64,
    /// `in`, `out`, `forward` or `group`.
    #[serde(rename = "type")]
    pub kind: String,
    pub action: String,
    #[serde(default, deserialize_with = "de::flag")]
    pub enable: bool,
    #[serde(default, rename = "macro")]
    pub macro_name: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub dest: Option<String>,
    #[serde(default)]
    pub proto: Option<String>,
    #[serde(default)]
    pub dport: Option<String>,
    #[serde(default)]
    pub sport: Option<String>,
    #[serde(default)]
    pub iface: Option<String>,
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// A security group (`GET /cluster/firewall/groups`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FirewallGroup {
    pub group: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

/// An IP set (`GET /cluster/firewall/ipset`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct IpSet {
    pub name: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

/// An alias (`GET /cluster/firewall/aliases`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FirewallAlias {
    pub name: String,
    pub cidr: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

impl PveClient {
    /// `GET /cluster/resources`, optionally of one type. One request shows every guest
    /// of the cluster with node, status, template flag, lock, pool and tags.
    pub async fn cluster_resources(
        &self,
        kind: Option<ResourceType>,
    ) -> Result<Vec<ClusterResource>, PveError> {
        let q = Params::new().with_opt("type", kind.map(ResourceType::as_str));
        self.get("/cluster/resources", &q).await
    }

    /// [`cluster_resources`](Self::cluster_resources) with the answer's envelope read by
    /// `decode` in place (see [`PveClient::get_with`]).
    pub async fn cluster_resources_with<R>(
        &self,
        kind: Option<ResourceType>,
        decode: impl Fn(&[u8]) -> serde_json::Result<R>,
    ) -> Result<R, PveError> {
        let q = Params::new().with_opt("type", kind.map(ResourceType::as_str));
        self.get_with("/cluster/resources", &q, decode).await
    }

    /// The next free VMID. PVE returns it as a string; only a hint, since another
    /// client may take it before the create.
    pub async fn nextid(&self) -> Result<u32, PveError> {
        let v: Value = self.get("/cluster/nextid", &Params::new()).await?;
        de::value_u64(&v)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| PveError::InvalidResponse {
                method: reqwest::Method::GET,
                path: "/cluster/nextid".into(),
                status: 200,
                detail: format!("not a VMID: {v}"),
            })
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, PveError> {
        self.get("/nodes", &Params::new()).await
    }

    pub async fn node_status(&self, node: &str) -> Result<NodeStatus, PveError> {
        self.get(&format!("/nodes/{}/status", segment(node)), &Params::new())
            .await
    }

    /// Every pool, without members.
    pub async fn pools(&self) -> Result<Vec<Pool>, PveError> {
        self.get("/pools", &Params::new()).await
    }

    /// One pool with its members, or `None` if it does not exist.
    pub async fn pool(&self, poolid: &str) -> Result<Option<Pool>, PveError> {
        let q = Params::new().with("poolid", poolid);
        match self.get::<Vec<Pool>>("/pools", &q).await {
            Ok(pools) => Ok(pools.into_iter().find(|p| p.poolid == poolid)),
            Err(PveError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create_pool(&self, poolid: &str, comment: Option<&str>) -> Result<(), PveError> {
        let p = Params::new()
            .with("poolid", poolid)
            .with_opt("comment", comment);
        let _: Value = self.post("/pools", &p, Idempotency::NotIdempotent).await?;
        Ok(())
    }

    pub async fn update_pool(&self, poolid: &str, update: &PoolUpdate) -> Result<(), PveError> {
        let mut p = Params::new()
            .with("poolid", poolid)
            .with_opt("comment", update.comment.as_deref());
        if !update.vms.is_empty() {
            let ids: Vec<String> = update.vms.iter().map(u32::to_string).collect();
            p.push("vms", ids.join(","));
        }
        if !update.storage.is_empty() {
            p.push("storage", update.storage.join(","));
        }
        if update.delete {
            p.push("delete", true);
        }
        if update.allow_move {
            p.push("allow-move", true);
        }
        let _: Value = self.put("/pools", &p, Idempotency::Idempotent).await?;
        Ok(())
    }

    /// Delete an empty pool.
    pub async fn delete_pool(&self, poolid: &str) -> Result<(), PveError> {
        let _: Value = self
            .delete("/pools", &Params::new().with("poolid", poolid))
            .await?;
        Ok(())
    }

    /// The datacenter's `max_workers` (datacenter.cfg): how many tasks PVE's own bulk
    /// actions run at once on a node; `None` when not set (PVE then uses 4).
    pub async fn max_workers(&self) -> Result<Option<u64>, PveError> {
        #[derive(Deserialize)]
        struct Options {
            #[serde(default, deserialize_with = "de::opt_u64")]
            max_workers: Option<u64>,
        }
        let o: Options = self.get("/cluster/options", &Params::new()).await?;
        Ok(o.max_workers)
    }

    /// `GET /cluster/firewall/options` (`enable`, `policy_in`, ...): an open map.
    pub async fn cluster_firewall_options(&self) -> Result<BTreeMap<String, Value>, PveError> {
        self.get("/cluster/firewall/options", &Params::new()).await
    }

    pub async fn cluster_firewall_rules(&self) -> Result<Vec<FirewallRule>, PveError> {
        self.get("/cluster/firewall/rules", &Params::new()).await
    }

    pub async fn firewall_groups(&self) -> Result<Vec<FirewallGroup>, PveError> {
        self.get("/cluster/firewall/groups", &Params::new()).await
    }

    pub async fn firewall_group_rules(&self, group: &str) -> Result<Vec<FirewallRule>, PveError> {
        self.get(
            &format!("/cluster/firewall/groups/{}", segment(group)),
            &Params::new(),
        )
        .await
    }

    pub async fn firewall_ipsets(&self) -> Result<Vec<IpSet>, PveError> {
        self.get("/cluster/firewall/ipset", &Params::new()).await
    }

    pub async fn firewall_aliases(&self) -> Result<Vec<FirewallAlias>, PveError> {
        self.get("/cluster/firewall/aliases", &Params::new()).await
    }
}
