//! SDN endpoints: zones, vnets, subnets and the apply (`PUT /cluster/sdn`).
//!
//! PVE stages every SDN write in its config files; nothing reaches the nodes until
//! `PUT /cluster/sdn` (a `reloadnetworkall` task) copies the config to the running config.
//! The index endpoints with `pending=1` show the running values of each object, a
//! `pending` object with what the next apply changes, and a `state` (`new`, `changed`,
//! `deleted`): one read shows both what is staged and whether an apply is outstanding.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::client::PveClient;
use super::error::PveError;
use super::form::{segment, Params};
use super::retry::Idempotency;
use super::upid::Upid;

/// Which SDN collection an object lives in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SdnCollection {
    Zones,
    Vnets,
    /// The subnets of one vnet.
    Subnets {
        vnet: String,
    },
}

impl SdnCollection {
    /// `/cluster/sdn/zones`, `/cluster/sdn/vnets`, `/cluster/sdn/vnets/{vnet}/subnets`.
    pub fn path(&self) -> String {
        match self {
            SdnCollection::Zones => "/cluster/sdn/zones".into(),
            SdnCollection::Vnets => "/cluster/sdn/vnets".into(),
            SdnCollection::Subnets { vnet } => {
                format!("/cluster/sdn/vnets/{}/subnets", segment(vnet))
            }
        }
    }

    /// The key naming an object's id in answers (`zone`, `vnet`, `subnet`).
    pub fn id_key(&self) -> &'static str {
        match self {
            SdnCollection::Zones => "zone",
            SdnCollection::Vnets => "vnet",
            SdnCollection::Subnets { .. } => "subnet",
        }
    }
}

/// One entry of an index read with `pending=1`: the running values at the top level,
/// what the next apply changes in `pending` (`"deleted"` for a removed key).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SdnPendingEntry {
    /// `new`, `changed`, `deleted`; absent when config and running config agree.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub pending: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub values: Map<String, Value>,
}

impl SdnPendingEntry {
    pub fn id(&self, collection: &SdnCollection) -> Option<&str> {
        self.values.get(collection.id_key()).and_then(Value::as_str)
    }
}

impl PveClient {
    /// Every object of `collection`, with its pending changes (`?pending=1`).
    pub async fn sdn_pending(
        &self,
        collection: &SdnCollection,
    ) -> Result<Vec<SdnPendingEntry>, PveError> {
        self.get(&collection.path(), &Params::new().with("pending", true))
            .await
    }

    /// Stage a new object; `params` carries its id and options.
    pub async fn sdn_create(
        &self,
        collection: &SdnCollection,
        params: &Params,
    ) -> Result<(), PveError> {
        let _: Value = self
            .post(&collection.path(), params, Idempotency::NotIdempotent)
            .await?;
        Ok(())
    }

    /// Stage changes to object `id`: `params` sets options, a `delete` list removes them.
    pub async fn sdn_update(
        &self,
        collection: &SdnCollection,
        id: &str,
        params: &Params,
    ) -> Result<(), PveError> {
        let path = format!("{}/{}", collection.path(), segment(id));
        let _: Value = self.put(&path, params, Idempotency::Idempotent).await?;
        Ok(())
    }

    /// Stage the removal of object `id`.
    pub async fn sdn_delete(&self, collection: &SdnCollection, id: &str) -> Result<(), PveError> {
        let path = format!("{}/{}", collection.path(), segment(id));
        let _: Value = self.delete(&path, &Params::new()).await?;
        Ok(())
    }

    /// `PUT /cluster/sdn`: commit the staged config and reload the network of every node.
    pub async fn sdn_apply(&self) -> Result<Upid, PveError> {
        self.put("/cluster/sdn", &Params::new(), Idempotency::Idempotent)
            .await
    }
}
