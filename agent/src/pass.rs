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
    /// `Err` when the cluster cannot take the plan: nothing may be applied.
    pub preflight: Result<(), Vec<PreflightProblem>>,
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
    let preflight = preflight::check(&plan, &facts).or_else(|p| {
        let p = crate::kinds::excuse(&kinds, p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    });
    Ok(Prepared {
        observed,
        plan,
        kinds,
        preflight,
    })
}

/// Apply a prepared plan whose pre-flight passed.
pub async fn execute(client: &PveClient, prepared: &Prepared, options: &ApplyOptions) -> Report {
    debug_assert!(
        prepared.preflight.is_ok(),
        "execute after a failed pre-flight"
    );
    let mut templates = prepared.observed.templates.clone();
    let (report, blocked) = crate::kinds::before_vms(
        client,
        &prepared.kinds,
        &prepared.plan,
        &mut templates,
        options,
    )
    .await;
    let mut report = blocked.iter().fold(report, |mut r, (vm, why)| {
        r.skipped.insert(vm.clone(), why.clone());
        r
    });
    report = apply_continuing(
        client,
        &crate::kinds::without(&prepared.plan, &blocked),
        &templates,
        options,
        report,
    )
    .await;
    crate::kinds::after_vms(client, &prepared.kinds, options, &mut report).await;
    report
}

/// A follower's share of a pass: write this node's snippet files (local file writes, no
/// API write, so no lease is needed) for the VMs the leader creates or starts here.
pub fn follow(prepared: &Prepared, options: &ApplyOptions) -> Report {
    crate::kinds::write_local_snippets(&prepared.kinds, options)
}
