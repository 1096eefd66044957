//! `Snippet`: cloud-init data rendered per VM from a template, written to a snippet storage
//! and referenced by `cicustom`.

use crate::ids::StorageId;
use crate::secret::SecretRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnippetSpec {
    /// Storage with `snippets` content where the rendered files go.
    pub storage: StorageId,
    /// A template file (minijinja syntax), relative to this manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_file: Option<String>,
    /// The template inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Values available to the template as `vars.<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub variables: BTreeMap<String, serde_yaml::Value>,
    /// Secrets available to the template as `secrets.<name>`, decrypted by the agent only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
}
