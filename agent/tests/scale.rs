//! CI's guard on the call-count targets that `make bench` measures at scale (issue 4):
//! 20 VMs converge from an empty cluster; the pass after that writes nothing and reads at
//! most one call per owned VM plus a constant; an idle daemon pass costs at most two
//! calls. At time scale 0 the counts are deterministic. Wall time is the benchmark's
//! business and is not asserted here.

#[macro_use]
mod support;

use support::control::text;
use support::fakepve::{FakePve, Options};
use support::scale;

const N: u32 = 20;

#[tokio::test]
async fn twenty_vms_converge_then_cost_one_read_each_and_no_write() {
    let pve = fake!(Options {
        time_scale: 0.0,
        ..Options::default()
    });
    scale::prepare(&pve).await;

    let converged = scale::converge(&pve, N, 4).await;
    assert!(
        converged.report.failed.is_empty() && converged.report.skipped.is_empty(),
        "{:?}",
        converged.report
    );
    assert_eq!(converged.report.done.len(), N as usize);
    // Clone, read the clone's config (which shows its task is over), configure, start,
    // a look at the start's task (often answered by another's look at the node's task
    // list), the record: six per VM at most, plus the pass's listings.
    assert!(
        converged.calls.total <= 6 * u64::from(N) + scale::CONVERGE_CONSTANT,
        "converging {N} VMs took {} calls: {:?}",
        converged.calls.total,
        converged.calls.by_endpoint
    );
    let state = pve.control.state().await;
    let guests: Vec<_> = state["guests"]
        .as_array()
        .expect("guests")
        .iter()
        .filter(|g| g["template"] != true)
        .collect();
    assert_eq!(guests.len(), N as usize);
    for (i, g) in guests.iter().enumerate() {
        let i = i as u32;
        let c = &g["config"];
        assert_eq!(g["vmid"], scale::VMID_START + i, "{g}");
        assert_eq!(g["node"], format!("pve{}", i % 3 + 1), "{g}");
        assert_eq!(g["status"], "running", "{g}");
        assert_eq!(text(&c["cores"]), "2", "{g}");
        assert_eq!(text(&c["memory"]), "2048", "{g}");
        assert_eq!(text(&c["ipconfig0"]), scale::ipconfig(i), "{g}");
        assert_eq!(text(&c["ciuser"]), "ops", "{g}");
    }

    let drift = scale::drift_check(&pve, N).await;
    assert_eq!(drift.writes, 0, "{:?}", drift.by_endpoint);
    assert!(
        drift.reads <= u64::from(N) + scale::DRIFT_READS_CONSTANT,
        "a drift check of {N} owned VMs read {} times: {:?}",
        drift.reads,
        drift.by_endpoint
    );
    assert!(scale::drift_target_met(&drift, u64::from(N)));

    let idle = scale::idle_pass(&pve, N).await;
    assert!(
        scale::idle_target_met(&idle),
        "an idle pass made {} calls ({} writes): {:?}",
        idle.total,
        idle.writes,
        idle.by_endpoint
    );
}
