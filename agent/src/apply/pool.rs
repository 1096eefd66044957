//! Pools against the API: read the declared pools with their members, create them and set
//! their comments before the VMs, fix membership after. Results go into the report under
//! `Pool/<name>`.

use super::{ApplyOptions, Report};
use crate::plan::pool::{ActualPool, PoolStep};
use crate::pve::{PoolUpdate, PveClient, PveError, ResourceType};
use pve_gitops_schema::DesiredState;
use std::collections::BTreeSet;

/// The pools declared or named by a declared VM, as PVE has them (absent ones left out).
/// Nothing is read when no pool is declared or named.
pub async fn observe(
    client: &PveClient,
    desired: &DesiredState,
) -> Result<Vec<ActualPool>, PveError> {
    let wanted: BTreeSet<String> = desired
        .pools
        .iter()
        .map(|p| p.name.to_string())
        .chain(
            desired
                .vms
                .iter()
                .filter_map(|v| v.spec.pool.as_ref().map(|p| p.to_string())),
        )
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // Comments from the pool list, members from the guest listing (its `pool` field):
    // two reads however many pools the cluster has.
    let mut out: Vec<ActualPool> = client
        .pools()
        .await?
        .into_iter()
        .map(|p| ActualPool {
            id: p.poolid,
            comment: p.comment,
            members: BTreeSet::new(),
        })
        .collect();
    for r in client.cluster_resources(Some(ResourceType::Vm)).await? {
        let (Some(pool), Some(vmid)) = (r.pool, r.vmid) else {
            continue;
        };
        if let Some(p) = out.iter_mut().find(|p| p.id == pool) {
            p.members.insert(vmid as u32);
        }
    }
    Ok(out)
}

/// Run pool steps in order; a step of a pool that failed earlier in the pass is skipped.
pub async fn execute(
    client: &PveClient,
    steps: &[PoolStep],
    options: &ApplyOptions,
    report: &mut Report,
) {
    for step in steps {
        let resource = format!("Pool/{}", step.pool());
        if report.failed.contains_key(&resource) {
            continue;
        }
        if !super::may_write(options) {
            report
                .skipped
                .insert(resource, super::ApplyError::NotLeader.to_string());
            continue;
        }
        let (done, result) = match step {
            PoolStep::Create { pool, comment } => (
                "create".to_string(),
                client.create_pool(pool, comment.as_deref()).await,
            ),
            PoolStep::Comment { pool, comment } => (
                "comment".to_string(),
                client
                    .update_pool(
                        pool,
                        &PoolUpdate {
                            comment: Some(comment.clone()),
                            ..PoolUpdate::default()
                        },
                    )
                    .await,
            ),
            PoolStep::Join { pool, vmids } => (
                format!("add {}", list(vmids)),
                client
                    .update_pool(
                        pool,
                        &PoolUpdate {
                            vms: vmids.clone(),
                            allow_move: true,
                            ..PoolUpdate::default()
                        },
                    )
                    .await,
            ),
            PoolStep::Leave { pool, vmids } => (
                format!("remove {}", list(vmids)),
                client
                    .update_pool(
                        pool,
                        &PoolUpdate {
                            vms: vmids.clone(),
                            delete: true,
                            ..PoolUpdate::default()
                        },
                    )
                    .await,
            ),
        };
        match result {
            Ok(()) => report.done.entry(resource).or_default().push(done),
            Err(e) => {
                report.failed.insert(resource, format!("{done}: {e}"));
            }
        }
    }
}

fn list(vmids: &[u32]) -> String {
    vmids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
