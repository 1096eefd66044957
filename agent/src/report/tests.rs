//! The status files for a hand-made pass: exact bytes, so the format is deliberate.

use super::status::{after_pass, after_rejection, PassFacts};
use super::{commit_message, files};
use crate::apply::Report;
use crate::plan::{plan, Policy};
use pve_gitops_schema::{load, Repository};

fn desired() -> pve_gitops_schema::DesiredState {
    let mut repo = Repository::new();
    repo.add(
        "m.yaml",
        "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: { name: web, labels: { role: web } }
spec:
  replicas: 3
  vmidStart: 501
  nodes: [pve1, pve2]
  template:
    clone: { template: 9000 }
    cloudInit: { ipConfig: [ { ipv4: { cidr: 10.0.0.0/24, offset: 10 }, gateway: 10.0.0.1 } ] }
",
    );
    load(&repo).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_pass_renders_table_yaml_inventory_and_message() {
    let d = desired();
    let p = plan(&d, &[], &Policy::default());
    let mut report = Report::default();
    report
        .done
        .insert("web-1".into(), vec!["create 501".into()]);
    report
        .done
        .insert("web-2".into(), vec!["create 502".into()]);
    report
        .failed
        .insert("web-3".into(), "create web-3: boom | with a pipe".into());
    let s = after_pass(
        "prod",
        "0123456789abcdef",
        &PassFacts {
            desired: &d,
            actual: &[],
            plan: &p,
            report: &report,
        },
    );
    let f = files(&s, None);
    assert_eq!(
        f.keys().map(String::as_str).collect::<Vec<_>>(),
        ["STATUS.md", "inventory.yaml", "status.yaml"]
    );
    insta::assert_snapshot!(f["STATUS.md"], @r"
    # prod

    Applied revision: `0123456789abcdef`  
    Last apply: 2 created, 0 updated, 0 deleted, 1 failed

    3 resources, 1 need attention.

    | resource | node | vmid | IP | state | sync | message |
    |---|---|---|---|---|---|---|
    | VirtualMachine/web-1 | pve1 | 501 | 10.0.0.10 | running | changed |  |
    | VirtualMachine/web-2 | pve2 | 502 | 10.0.0.11 | running | changed |  |
    | VirtualMachine/web-3 | pve1 | 503 | 10.0.0.12 | absent | failed | create web-3: boom \| with a pipe |
    ");
    insta::assert_snapshot!(f["inventory.yaml"], @r"
    all:
      hosts:
        web-1:
          ansible_host: 10.0.0.10
          pve_vmid: 501
          pve_node: pve1
        web-2:
          ansible_host: 10.0.0.11
          pve_vmid: 502
          pve_node: pve2
        web-3:
          ansible_host: 10.0.0.12
          pve_vmid: 503
          pve_node: pve1
      children:
        web:
          hosts:
            web-1: {}
            web-2: {}
            web-3: {}
    ");
    let back: super::status::ClusterStatus = serde_yaml::from_str(&f["status.yaml"]).unwrap();
    assert_eq!(back, s, "status.yaml reads back");
    assert_eq!(
        commit_message(&s, "pve1"),
        "apply 0123456: 2 created, 0 updated, 0 deleted, 1 failed\n\nApplied-Commit: 0123456789abcdef\nCluster: prod\nNode: pve1\n"
    );

    // A refused revision keeps the applied state and adds errors.md.
    let r = after_rejection(
        Some(s),
        "prod",
        "fedcba9876543210",
        vec!["m.yaml:12:13: invalid-value: `1GB`".into()],
    );
    let f = files(&r, None);
    assert!(f["STATUS.md"].contains("**Revision `fedcba9876543210` was rejected** (1 error)"));
    insta::assert_snapshot!(f["errors.md"], @r"
    # Revision `fedcba9876543210` rejected

    Nothing from this revision was applied; the cluster stays at `0123456789abcdef`.

    ```
    m.yaml:12:13: invalid-value: `1GB`
    ```
    ");
    assert!(commit_message(&r, "pve1").starts_with("reject fedcba9: 1 error\n"));
}
