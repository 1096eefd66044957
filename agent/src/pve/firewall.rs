//! Firewall endpoints the reconciler writes: options, rules (cluster, security group,
//! guest), aliases, IP sets and their entries, security groups.
//!
//! Reads return PVE's objects as open maps (`digest` included: every list entry carries
//! the digest of the whole list), because the planner compares them key by key. Writes
//! that PVE guards with a digest take it as a parameter; PVE answers a stale one with
//! "detected modified configuration - file changed by other user? Try again.".

use serde_json::{Map, Value};

use super::client::PveClient;
use super::error::PveError;
use super::form::{segment, Params};
use super::retry::Idempotency;

/// An object of a firewall read.
pub type FwObject = Map<String, Value>;

/// Whose firewall: the cluster's (datacenter) or one guest's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FwScope {
    Cluster,
    Vm { node: String, vmid: u32 },
}

impl FwScope {
    pub fn base(&self) -> String {
        match self {
            FwScope::Cluster => "/cluster/firewall".into(),
            FwScope::Vm { node, vmid } => {
                format!("/nodes/{}/qemu/{vmid}/firewall", segment(node))
            }
        }
    }
}

/// A list of rules: a scope's own, or a security group's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleTable {
    Scope(FwScope),
    Group(String),
}

impl RuleTable {
    pub fn path(&self) -> String {
        match self {
            RuleTable::Scope(s) => format!("{}/rules", s.base()),
            RuleTable::Group(g) => format!("/cluster/firewall/groups/{}", segment(g)),
        }
    }
}

impl PveClient {
    async fn fw_write(
        &self,
        method: reqwest::Method,
        path: &str,
        p: &Params,
    ) -> Result<(), PveError> {
        let idempotency = if method == reqwest::Method::PUT {
            Idempotency::Idempotent
        } else {
            Idempotency::NotIdempotent
        };
        let _: Value = self.request(method, path, p, idempotency).await?;
        Ok(())
    }

    pub async fn fw_options(&self, scope: &FwScope) -> Result<FwObject, PveError> {
        self.get(&format!("{}/options", scope.base()), &Params::new())
            .await
    }

    pub async fn fw_set_options(&self, scope: &FwScope, p: &Params) -> Result<(), PveError> {
        let path = format!("{}/options", scope.base());
        self.fw_write(reqwest::Method::PUT, &path, p).await
    }

    /// The rules in order (`pos` 0 first).
    pub async fn fw_rules(&self, table: &RuleTable) -> Result<Vec<FwObject>, PveError> {
        self.get(&table.path(), &Params::new()).await
    }

    /// A new rule; PVE puts it at position 0 whatever `pos` says.
    pub async fn fw_rule_create(&self, table: &RuleTable, p: &Params) -> Result<(), PveError> {
        self.fw_write(reqwest::Method::POST, &table.path(), p).await
    }

    /// Change the rule at `pos`, or move it (`moveto`: in front of the rule now there).
    pub async fn fw_rule_update(
        &self,
        table: &RuleTable,
        pos: u64,
        p: &Params,
    ) -> Result<(), PveError> {
        let path = format!("{}/{pos}", table.path());
        self.fw_write(reqwest::Method::PUT, &path, p).await
    }

    pub async fn fw_rule_delete(
        &self,
        table: &RuleTable,
        pos: u64,
        p: &Params,
    ) -> Result<(), PveError> {
        let path = format!("{}/{pos}", table.path());
        let _: Value = self.delete(&path, p).await?;
        Ok(())
    }

    pub async fn fw_aliases(&self) -> Result<Vec<FwObject>, PveError> {
        self.get("/cluster/firewall/aliases", &Params::new()).await
    }

    pub async fn fw_alias_create(&self, p: &Params) -> Result<(), PveError> {
        self.fw_write(reqwest::Method::POST, "/cluster/firewall/aliases", p)
            .await
    }

    pub async fn fw_alias_update(&self, name: &str, p: &Params) -> Result<(), PveError> {
        let path = format!("/cluster/firewall/aliases/{}", segment(name));
        self.fw_write(reqwest::Method::PUT, &path, p).await
    }

    pub async fn fw_alias_delete(&self, name: &str, p: &Params) -> Result<(), PveError> {
        let path = format!("/cluster/firewall/aliases/{}", segment(name));
        let _: Value = self.delete(&path, p).await?;
        Ok(())
    }

    pub async fn fw_ipsets(&self) -> Result<Vec<FwObject>, PveError> {
        self.get("/cluster/firewall/ipset", &Params::new()).await
    }

    /// Create an IP set, or with `rename` = `name` change its comment.
    pub async fn fw_ipset_create(&self, p: &Params) -> Result<(), PveError> {
        self.fw_write(reqwest::Method::POST, "/cluster/firewall/ipset", p)
            .await
    }

    /// Delete an IP set with its entries.
    pub async fn fw_ipset_delete(&self, name: &str) -> Result<(), PveError> {
        let path = format!("/cluster/firewall/ipset/{}", segment(name));
        let _: Value = self
            .delete(&path, &Params::new().with("force", true))
            .await?;
        Ok(())
    }

    pub async fn fw_ipset_entries(&self, name: &str) -> Result<Vec<FwObject>, PveError> {
        let path = format!("/cluster/firewall/ipset/{}", segment(name));
        self.get(&path, &Params::new()).await
    }

    pub async fn fw_ipset_add(&self, name: &str, p: &Params) -> Result<(), PveError> {
        let path = format!("/cluster/firewall/ipset/{}", segment(name));
        self.fw_write(reqwest::Method::POST, &path, p).await
    }

    pub async fn fw_ipset_entry_update(
        &self,
        name: &str,
        cidr: &str,
        p: &Params,
    ) -> Result<(), PveError> {
        let path = format!(
            "/cluster/firewall/ipset/{}/{}",
            segment(name),
            segment(cidr)
        );
        self.fw_write(reqwest::Method::PUT, &path, p).await
    }

    pub async fn fw_ipset_entry_delete(
        &self,
        name: &str,
        cidr: &str,
        p: &Params,
    ) -> Result<(), PveError> {
        let path = format!(
            "/cluster/firewall/ipset/{}/{}",
            segment(name),
            segment(cidr)
        );
        let _: Value = self.delete(&path, p).await?;
        Ok(())
    }

    pub async fn fw_groups(&self) -> Result<Vec<FwObject>, PveError> {
        self.get("/cluster/firewall/groups", &Params::new()).await
    }

    /// Create a security group, or with `rename` = `group` change its comment.
    pub async fn fw_group_create(&self, p: &Params) -> Result<(), PveError> {
        self.fw_write(reqwest::Method::POST, "/cluster/firewall/groups", p)
            .await
    }

    /// Delete an empty security group.
    pub async fn fw_group_delete(&self, name: &str) -> Result<(), PveError> {
        let path = format!("/cluster/firewall/groups/{}", segment(name));
        let _: Value = self.delete(&path, &Params::new()).await?;
        Ok(())
    }
}
