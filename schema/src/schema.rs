//! The JSON Schema of a manifest document, for editors (yaml-language-server) and CI linters.

use crate::manifest::{self, Kind, API_VERSION};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde_json::{json, Value};

/// JSON Schema (draft 2020-12) accepting any one manifest document; `kind` selects the spec.
pub fn document_schema() -> Schema {
    let mut gen = SchemaSettings::draft2020_12().into_generator();
    let metadata = gen.subschema_for::<manifest::Metadata>();
    let mut variants = Vec::new();
    for kind in Kind::ALL {
        let spec = match kind {
            Kind::VirtualMachine => gen.subschema_for::<manifest::vm::VmSpec>(),
            Kind::VirtualMachineSet => gen.subschema_for::<manifest::set::VirtualMachineSetSpec>(),
            Kind::Template => gen.subschema_for::<manifest::template::TemplateSpec>(),
            Kind::Container => gen.subschema_for::<manifest::container::ContainerSpec>(),
            Kind::StorageDownload => gen.subschema_for::<manifest::storage::StorageDownloadSpec>(),
            Kind::Snippet => gen.subschema_for::<manifest::snippet::SnippetSpec>(),
            Kind::SdnZone => gen.subschema_for::<manifest::sdn::SdnZoneSpec>(),
            Kind::SdnVnet => gen.subschema_for::<manifest::sdn::SdnVnetSpec>(),
            Kind::SdnSubnet => gen.subschema_for::<manifest::sdn::SdnSubnetSpec>(),
            Kind::Firewall => gen.subschema_for::<manifest::firewall::FirewallSpec>(),
            Kind::Pool => gen.subschema_for::<manifest::misc::PoolSpec>(),
            Kind::External => gen.subschema_for::<manifest::misc::ExternalSpec>(),
            Kind::Inventory => gen.subschema_for::<manifest::misc::InventorySpec>(),
            Kind::Blueprint => gen.subschema_for::<manifest::blueprint::BlueprintSpec>(),
            Kind::BlueprintInstance => {
                gen.subschema_for::<manifest::blueprint::BlueprintInstanceSpec>()
            }
            Kind::ClusterPolicy => gen.subschema_for::<manifest::policy::ClusterPolicySpec>(),
        };
        variants.push(json!({
            "if": { "properties": { "kind": { "const": kind.as_str() } }, "required": ["kind"] },
            "then": { "properties": { "spec": spec } }
        }));
    }
    let defs: serde_json::Map<String, Value> = gen.take_definitions(true).into_iter().collect();
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let value = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pve-gitops manifest",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": false,
        "properties": {
            "apiVersion": { "const": API_VERSION },
            "kind": { "enum": kinds },
            "metadata": metadata,
            "spec": { "type": "object" }
        },
        "allOf": variants,
        "$defs": defs,
    });
    Schema::try_from(value).expect("an object is a schema")
}

// Keep `JsonSchema` in scope for the derive-generated impls used above.
#[allow(dead_code)]
fn _assert_schema<T: JsonSchema>() {}
