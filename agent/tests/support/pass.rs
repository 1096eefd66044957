//! One reconcile pass as the daemon runs it (load, observe, plan, allocate, apply), for
//! tests that drive the engine directly.

use pve_gitops::apply::{allocate_vmids, apply, ApplyOptions, Report};
use pve_gitops::observe::observe;
use pve_gitops::plan::{plan, Plan, Policy};
use pve_gitops::pve::PveClient;
use pve_gitops_schema::{load, Repository};

/// A repository of one file `m.yaml`.
pub fn repo(text: &str) -> Repository {
    let mut repo = Repository::new();
    repo.add("m.yaml", text.to_string());
    repo
}

/// Observe, plan and apply once; failures are in the report, not a panic.
pub async fn pass(
    client: &PveClient,
    repo: &Repository,
    policy: &Policy,
    options: &ApplyOptions,
) -> (Plan, Report) {
    let desired = load(repo).unwrap_or_else(|e| panic!("{e}"));
    let observed = observe(client, &desired).await.expect("observe");
    let mut p = plan(&desired, &observed.vms, policy);
    allocate_vmids(&mut p, &observed.used_vmids);
    let report = apply(client, &p, &observed.templates, options).await;
    (p, report)
}
