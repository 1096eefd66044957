//! The manifest language of pve-gitops: types, parsing with `file:line:column` errors,
//! expansion into concrete desired state, and whole-revision validation. No I/O: the caller
//! hands in a [`Repository`] of file texts.
//!
//! ```
//! use pve_gitops_schema::{load, Repository};
//! let mut repo = Repository::new();
//! repo.add("vm.yaml", "\
//! apiVersion: pve-gitops/v1alpha1
//! kind: VirtualMachine
//! metadata: { name: k3s }
//! spec: { vmid: 300, node: pve1, cpu: { cores: 2 }, memory: 4G }
//! ");
//! let desired = load(&repo).expect("valid");
//! assert_eq!(desired.vms[0].vmid.unwrap().get(), 300);
//! ```

pub mod desired;
pub mod diag;
pub mod expand;
pub mod ids;
mod load;
pub mod manifest;
pub mod net;
pub mod parse;
pub mod repo;
pub mod schema;
pub mod secret;
pub mod snippets;
pub mod source_map;
pub mod templating;
pub mod units;
pub mod unknown_fields;
pub mod validate;

pub use desired::DesiredState;
pub use diag::{Diagnostic, Diagnostics, ErrorKind, Location};
pub use load::load;
pub use repo::Repository;
