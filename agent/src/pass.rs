//! One reconcile pass, the same for `apply --once` and the daemon: observe the cluster,
//! plan, allocate vmids and run pre-flight ([`prepare`]), then apply ([`execute`]).
//!
//! The daemon puts its leadership check between the two halves: every agent prepares (so
//! followers stay warm and report the same plan), only the leader executes. New resource
//! kinds hook in here — observed in [`prepare`], applied in [`execute`] in the order their
//! dependents need — so both commands and the daemon get them at once.

use crate::apply::{allocate_vmids, apply_continuing, ApplyOptions, Report};
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
    /// Downloads, templates, snippet files and containers.
    pub kinds: crate::kinds::KindsPlan,
    /// SDN, pools and firewalls: before the VMs, and after them.
    pub cluster: crate::apply::cluster::ClusterPlan,
    /// `Err` when the cluster cannot take the plan: nothing may be applied.
    pub preflight: Result<(), Vec<PreflightProblem>>,
    /// Storage id → shared, from pre-flight's listing (`None`: it listed nothing), so
    /// that apply does not list the storages again.
    pub storages_shared: Option<std::sync::Arc<std::collections::BTreeMap<String, bool>>>,
}

/// Observe, plan and check, without writing anything.
pub async fn prepare(
    client: &PveClient,
    desired: &DesiredState,
    policy: &Policy,
) -> Result<Prepared> {
    let mut observed = observe(client, desired)
        .await
        .context("observing the cluster")?;
    let kinds = crate::kinds::prepare(client, desired, &mut observed.vms, policy)
        .await
        .context("observing downloads, templates, snippets and containers")?;
    let mut plan = plan(desired, &observed.vms, policy);
    allocate_vmids(&mut plan, &observed.used_vmids);
    let facts = preflight::gather(client, &plan, &observed)
        .await
        .context("pre-flight: reading the cluster")?;
    // Templates this pass builds are not missing.
    let preflight = preflight::check(&plan, &facts).or_else(|p| {
        let p = crate::kinds::excuse(&kinds, p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    });
    let cluster = crate::apply::cluster::prepare(client, desired, policy)
        .await
        .context("observing SDN, pools and firewalls")?;
    Ok(Prepared {
        storages_shared: facts.storages_shared().map(std::sync::Arc::new),
        observed,
        plan,
        kinds,
        cluster,
        preflight,
    })
}

/// Apply a prepared plan whose pre-flight passed, in the order dependents need: SDN,
/// cluster firewall and pools; downloads, templates and snippet files; the VMs;
/// containers; then pool membership and guest firewalls. A prerequisite that fails
/// skips the guests that need it (and their dependents).
pub async fn execute(client: &PveClient, prepared: &Prepared, options: &ApplyOptions) -> Report {
    debug_assert!(
        prepared.preflight.is_ok(),
        "execute after a failed pre-flight"
    );
    use crate::apply::cluster;
    let plan = &prepared.plan;
    let options = &ApplyOptions {
        storages_shared: prepared.storages_shared.clone(),
        per_node: match options.per_node {
            None if !plan.is_empty() => Some(datacenter_max_workers(client).await),
            given => given,
        },
        ..options.clone()
    };
    let mut report = cluster::before_vms(client, &prepared.cluster, plan, options).await;
    let mut templates = prepared.observed.templates.clone();
    let (kinds_report, blocked) =
        crate::kinds::before_vms(client, &prepared.kinds, plan, &mut templates, options).await;
    report.done.extend(kinds_report.done);
    report.failed.extend(kinds_report.failed);
    report.skipped.extend(kinds_report.skipped);
    report.skipped.extend(blocked.clone());
    report = apply_continuing(
        client,
        &crate::kinds::without(plan, &blocked),
        &templates,
        options,
        report,
    )
    .await;
    crate::kinds::after_vms(client, &prepared.kinds, options, &mut report).await;
    cluster::after_vms(
        client,
        &prepared.cluster,
        plan,
        &prepared.observed.vms,
        options,
        &mut report,
    )
    .await;
    report
}

/// VMs at once per node as the datacenter's `max_workers` says, or PVE's default where
/// it says nothing or cannot be read (a token without `Sys.Audit` on `/`): bounding the
/// apply is no reason to fail it.
async fn datacenter_max_workers(client: &PveClient) -> usize {
    match client.max_workers().await {
        // The semaphores keep it within what they can hold.
        Ok(Some(n)) => usize::try_from(n).unwrap_or(usize::MAX),
        Ok(None) => crate::apply::DEFAULT_PER_NODE,
        Err(e) => {
            tracing::warn!(error = %e, default = crate::apply::DEFAULT_PER_NODE, "cannot read the datacenter's max_workers; changing that many VMs at once per node");
            crate::apply::DEFAULT_PER_NODE
        }
    }
}

/// A follower's share of a pass: write this node's snippet files (local file writes, no
/// API write, so no lease is needed) for the VMs the leader creates or starts here.
pub fn follow(prepared: &Prepared, options: &ApplyOptions) -> Report {
    crate::kinds::write_local_snippets(&prepared.kinds, options)
}
