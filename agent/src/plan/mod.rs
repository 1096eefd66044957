//! Planning: pure functions from (desired, actual, policy) to the changes to make. No I/O,
//! so every rule is tested table-driven without a cluster.
//!
//! - [`pveconfig`]: a desired VM in PVE's own config spelling;
//! - [`compare`]: desired values against what PVE reports, normalized so nothing flaps;
//! - [`actual`]: the observed state the plan is made against;
//! - [`vm`]: actions per VM (create, configure, grow, power, prune);
//! - [`rollout`]: dependency waves, `maxParallel` and health gates.

pub mod actual;
pub mod compare;
pub mod firewall;
pub mod pool;
pub mod pveconfig;
pub mod rollout;
pub mod sdn;
pub mod vm;

pub use vm::{plan, Action, Finding, Plan, Policy, RebootPolicy};

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod tests;
