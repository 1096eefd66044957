//! Planning: pure functions from (desired, actual, policy) to the changes to make. No I/O,
//! so every rule is tested table-driven without a cluster.
//!
//! - [`pveconfig`]: a desired VM in PVE's own config spelling;
//! - [`compare`]: desired values against what PVE reports, normalized so nothing flaps;
//! - [`actual`]: the observed state the plan is made against;
//! - [`vm`]: actions per VM (create, configure, grow, power, rebuild, prune);
//! - [`policy`]: what the operator allows (`ClusterPolicy` and command-line flags);
//! - [`marker`]: what was last applied to a VM, recorded in the VM;
//! - [`drift`]: differences made behind the agent's back, and ignored fields;
//! - [`prune`]: owned VMs no longer declared, and the delete guard;
//! - [`rollout`]: dependency waves, `maxParallel` and health gates.

pub mod actual;
pub mod compare;
pub mod drift;
pub mod firewall;
pub mod marker;
pub mod policy;
pub mod pool;
pub mod prune;
pub mod pveconfig;
pub mod rollout;
pub mod sdn;
pub mod vm;

pub use drift::Drift;
pub use policy::{PolicyOverrides, ORPHAN_TAG};
pub use vm::{plan, Action, Finding, Kept, Plan, Policy, RebootPolicy};

#[cfg(test)]
mod drift_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod tests;
