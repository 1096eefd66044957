//! Expansion: from documents to concrete desired state.
//!
//! - [`blueprints`] renders each `BlueprintInstance` into more documents;
//! - [`guests`] turns VMs and set members into [`DesiredVm`]s: names and vmids from the set,
//!   round-robin nodes, per-member overrides, `cidrhost` addresses, tags from labels.

pub mod blueprints;
pub mod guests;

use crate::desired::{DesiredState, Named, SpecSource};
use crate::diag::{Diagnostics, Location};
use crate::manifest::{Document, Locator, Spec};
use crate::source_map::YamlPath;

impl SpecSource {
    /// Where the value at `rel` (relative to the VM spec) is written: in the member's
    /// overrides if it sets it, else in the template or VM spec.
    pub fn locate(&self, locator: &Locator, rel: &YamlPath) -> Location {
        if let Some(o) = &self.override_path {
            let p = o.join(rel);
            if locator.contains(&self.origin, &p) {
                return locator.value(&self.origin, &p);
            }
        }
        locator.value(&self.origin, &self.spec_path.join(rel))
    }

    /// [`SpecSource::locate`] with a dotted path.
    pub fn at(&self, locator: &Locator, rel: &str) -> Location {
        self.locate(locator, &YamlPath::parse(rel))
    }
}

fn named<T: Clone>(doc: &Document, spec: &T) -> Named<T> {
    Named {
        name: doc.metadata.name.clone(),
        labels: doc.metadata.labels.clone(),
        annotations: doc.metadata.annotations.clone(),
        spec: spec.clone(),
        origin: doc.origin.clone(),
    }
}

/// Build the desired state from all documents. Problems go to `diags`; the returned state
/// holds whatever could be expanded (it is only used when `diags` stays empty).
pub fn desired_state(
    docs: &[Document],
    locator: &Locator,
    diags: &mut Diagnostics,
) -> DesiredState {
    let mut out = DesiredState::default();
    for doc in docs {
        match &doc.spec {
            Spec::VirtualMachine(spec) => {
                if let Some(vm) = guests::single_vm(doc, spec, locator, diags) {
                    out.vms.push(vm);
                }
            }
            Spec::VirtualMachineSet(set) => out
                .vms
                .extend(guests::set_members(doc, set, locator, diags)),
            Spec::Container(spec) => {
                if let Some(c) = guests::container(doc, spec, locator, diags) {
                    out.containers.push(c);
                }
            }
            Spec::Template(s) => out.templates.push(named(doc, s)),
            Spec::StorageDownload(s) => out.storage_downloads.push(named(doc, s)),
            Spec::Snippet(s) => out.snippets.push(named(doc, s)),
            Spec::SdnZone(s) => out.sdn_zones.push(named(doc, s)),
            Spec::SdnVnet(s) => out.sdn_vnets.push(named(doc, s)),
            Spec::SdnSubnet(s) => out.sdn_subnets.push(named(doc, s)),
            Spec::Firewall(s) => out.firewalls.push(named(doc, s)),
            Spec::Pool(s) => out.pools.push(named(doc, s)),
            Spec::Inventory(s) => out.inventories.push(named(doc, s)),
            // At most one (validated); a second is reported, the first kept.
            Spec::ClusterPolicy(s) => {
                out.policy.get_or_insert_with(|| named(doc, s));
            }
            Spec::External(_) | Spec::Blueprint(_) | Spec::BlueprintInstance(_) => {}
        }
    }
    // Stable order, whatever the file layout: by name.
    out.vms.sort_by(|a, b| a.name.cmp(&b.name));
    out.containers.sort_by(|a, b| a.name.cmp(&b.name));
    macro_rules! sort_named {
        ($($f:ident),*) => { $( out.$f.sort_by(|a, b| a.name.cmp(&b.name)); )* };
    }
    sort_named!(
        templates,
        storage_downloads,
        snippets,
        sdn_zones,
        sdn_vnets,
        sdn_subnets,
        firewalls,
        pools,
        inventories
    );
    out
}
