//! One reconcile pass, the same for `apply --once` and the daemon: observe the cluster,
//! plan, allocate vmids and run pre-flight ([`prepare`]), then apply ([`execute`]).
//!
//! The daemon puts its leadership check between the two halves: every agent prepares (so
//! followers stay warm and report the same plan), only the leader executes. New resource
//! kinds hook in here — observed in [`prepare`], applied in [`execute`] in the order their
//! dependents need — so both commands and the daemon get them at once.

use crate::apply::{allocate_vmids, apply_after, ApplyOptions, Report};
use crate::observe::{observe, Observed};
use crate::plan::{plan, Plan, Policy};
use crate::preflight::{self, PreflightProblem};
use crate::pve::PveClient;
use anyhow::{Context, Result};
use pve_gitops_schema::DesiredState;

/// What a pass found before its first write.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub observed: Observed,
    pub plan: Plan,
    /// `Err` when the cluster cannot take the plan: nothing may be applied.
    pub preflight: Result<(), Vec<PreflightProblem>>,
    /// SDN, pools and firewalls: before the VMs, and after them.
    pub cluster: crate::apply::cluster::ClusterPlan,
}

/// Observe, plan and check, without writing anything.
pub async fn prepare(
    client: &PveClient,
    desired: &DesiredState,
    policy: &Policy,
) -> Result<Prepared> {
    let observed = observe(client, desired)
        .await
        .context("observing the cluster")?;
    let mut plan = plan(desired, &observed.vms, policy);
    allocate_vmids(&mut plan, &observed.used_vmids);
    let facts = preflight::gather(client, &plan, &observed)
        .await
        .context("pre-flight: reading the cluster")?;
    let preflight = preflight::check(&plan, &facts);
    let cluster = crate::apply::cluster::prepare(client, desired, policy)
        .await
        .context("observing SDN, pools and firewalls")?;
    Ok(Prepared {
        observed,
        plan,
        preflight,
        cluster,
    })
}

/// Apply a prepared plan whose pre-flight passed.
pub async fn execute(client: &PveClient, prepared: &Prepared, options: &ApplyOptions) -> Report {
    debug_assert!(
        prepared.preflight.is_ok(),
        "execute after a failed pre-flight"
    );
    use crate::apply::cluster;
    let (plan, observed) = (&prepared.plan, &prepared.observed);
    let before = cluster::before_vms(client, &prepared.cluster, plan, options).await;
    let mut report = apply_after(client, plan, &observed.templates, options, before).await;
    cluster::after_vms(
        client,
        &prepared.cluster,
        plan,
        &observed.vms,
        options,
        &mut report,
    )
    .await;
    report
}
