//! Planning: pure functions from (desired, actual, policy) to the changes to make. No I/O,
//! so every rule is tested table-driven without a cluster.
//!
//! - [`pveconfig`]: a desired VM in PVE's own config spelling;
//! - [`compare`]: desired values against what PVE reports, normalized so nothing flaps.

pub mod compare;
pub mod pveconfig;

#[cfg(test)]
mod tests;
