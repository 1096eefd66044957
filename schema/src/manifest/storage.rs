//! `StorageDownload`: an ISO, cloud image or container template fetched into storage with
//! PVE's `download-url`, on the chosen nodes.

use super::common::NodeSelector;
use crate::ids::StorageId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StorageDownloadSpec {
    pub storage: StorageId,
    pub content: DownloadContent,
    pub url: String,
    /// File name in the storage, e.g. `talos-v1.11.5-nocloud-amd64.iso`.
    pub file_name: String,
    /// Verified by PVE after the download; strongly recommended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    /// Decompress after download (`compression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decompress: Option<Decompress>,
    /// Nodes to download to: `all`, or a list (only needed for node-local storage).
    pub nodes: NodeSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_certificates: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DownloadContent {
    Iso,
    /// Disk images for `import-from` (PVE 8.2+).
    Import,
    Vztmpl,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl ChecksumAlgorithm {
    /// Length of the hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Md5 => 32,
            ChecksumAlgorithm::Sha1 => 40,
            ChecksumAlgorithm::Sha224 => 56,
            ChecksumAlgorithm::Sha256 => 64,
            ChecksumAlgorithm::Sha384 => 96,
            ChecksumAlgorithm::Sha512 => 128,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decompress {
    Gz,
    Lzo,
    Zst,
    Bz2,
}
