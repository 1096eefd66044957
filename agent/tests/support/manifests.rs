//! Manifest texts many tests start from: the `External` declaration of template 9000 and
//! bridge vmbr0, and a `VirtualMachineSet` named `web` cloned from it.

/// Declares template 9000 and bridge vmbr0 as existing outside the manifests.
pub const EXTERNAL: &str = "apiVersion: pve-gitops/v1alpha1
kind: External
metadata: { name: x }
spec: { templates: [9000], bridges: [vmbr0] }
";

/// [`EXTERNAL`] and the set `web`: `replicas` clones of 9000 with `memory`, vmids from
/// `vmid_start`, spread over `nodes` (a YAML list such as `[pve1, pve2]`).
pub fn web_set(replicas: u32, vmid_start: u32, nodes: &str, memory: &str) -> String {
    format!(
        "{EXTERNAL}---
apiVersion: pve-gitops/v1alpha1
kind: VirtualMachineSet
metadata: {{ name: web }}
spec:
  replicas: {replicas}
  vmidStart: {vmid_start}
  nodes: {nodes}
  template: {{ clone: {{ template: 9000 }}, memory: {memory} }}
"
    )
}
