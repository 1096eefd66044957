//! Storage endpoints: what a storage holds, and downloads into it.

use super::client::PveClient;
use super::error::PveError;
use super::form::{segment, Params};
use super::retry::Idempotency;
use super::types::StorageContent;
use super::upid::Upid;

/// `POST /nodes/{node}/storage/{storage}/download-url`: PVE fetches the file itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownloadUrl {
    pub url: String,
    /// `iso`, `vztmpl` or `import` (cloud images for `import-from`).
    pub content: String,
    pub filename: String,
    pub checksum: Option<String>,
    /// `md5`, `sha1`, `sha224`, `sha256`, `sha384`, `sha512`.
    pub checksum_algorithm: Option<String>,
    /// `gz`, `lzo`, `zst`, `bz2`: decompress after the download.
    pub compression: Option<String>,
    /// `None` keeps PVE's default (verify).
    pub verify_certificates: Option<bool>,
}

impl PveClient {
    /// The volumes on a storage as seen from `node`, optionally of one content type.
    pub async fn storage_content(
        &self,
        node: &str,
        storage: &str,
        content: Option<&str>,
    ) -> Result<Vec<StorageContent>, PveError> {
        let path = format!(
            "/nodes/{}/storage/{}/content",
            segment(node),
            segment(storage)
        );
        self.get(&path, &Params::new().with_opt("content", content))
            .await
    }

    /// Start a download. Not retried: a failed answer may still have started the task,
    /// so callers list the storage content before asking again.
    pub async fn download_url(
        &self,
        node: &str,
        storage: &str,
        request: &DownloadUrl,
    ) -> Result<Upid, PveError> {
        let path = format!(
            "/nodes/{}/storage/{}/download-url",
            segment(node),
            segment(storage)
        );
        let p = Params::new()
            .with("url", request.url.as_str())
            .with("content", request.content.as_str())
            .with("filename", request.filename.as_str())
            .with_opt("checksum", request.checksum.as_deref())
            .with_opt("checksum-algorithm", request.checksum_algorithm.as_deref())
            .with_opt("compression", request.compression.as_deref())
            .with_opt("verify-certificates", request.verify_certificates);
        self.post(&path, &p, Idempotency::NotIdempotent).await
    }
}

/// `GET /storage/{storage}`: the storage.cfg entry, as far as the agent uses it.
#[derive(Clone, Debug, serde::Deserialize, PartialEq, Eq)]
pub struct StorageConfig {
    pub storage: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Directory of file-based storages (`dir`, `nfs`, `cephfs`...): where `snippets/`,
    /// `template/iso/`, `import/` live on every node that has the storage.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    /// Marked shared by the operator (`dir` on a cluster filesystem); network storage types
    /// are shared whatever this says, see [`StorageConfig::is_shared`].
    #[serde(default, deserialize_with = "super::de::flag")]
    pub shared: bool,
}

impl StorageConfig {
    /// Every node sees the same files: network storage, or a `dir` marked `shared`.
    pub fn is_shared(&self) -> bool {
        self.shared
            || matches!(
                self.kind.as_str(),
                "nfs" | "cifs" | "cephfs" | "glusterfs" | "rbd" | "pbs"
            )
    }
}

impl PveClient {
    /// One storage's configuration (`path` for file storages).
    pub async fn storage_config(&self, storage: &str) -> Result<StorageConfig, PveError> {
        self.get(&format!("/storage/{}", segment(storage)), &Params::new())
            .await
    }
}
