//! Every example system validates, and its rendered desired state is pinned as a snapshot:
//! a change in expansion (names, vmids, nodes, addresses, snippet contents) shows up as a
//! reviewed diff in `agent/tests/snapshots/`.

use pve_gitops::commands::render_yaml;
use pve_gitops::manifests::read_dir;
use std::path::Path;

const EXAMPLES: [&str; 5] = [
    "000-hashicorp-cluster",
    "001-talos-multicluster",
    "002-rancher",
    "003-k3s-single",
    "004-tiered-storage",
];

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn every_example_validates_and_renders_as_snapshotted() {
    for name in EXAMPLES {
        let repo = read_dir(&examples_dir().join(name)).unwrap();
        let desired = match pve_gitops_schema::load(&repo) {
            Ok(d) => d,
            Err(e) => panic!("examples/{name} does not validate:\n{e}"),
        };
        assert!(!desired.vms.is_empty(), "examples/{name} declares no VM");
        insta::assert_snapshot!(name, render_yaml(&desired).unwrap());
    }
}

/// The examples directory holds exactly the seed systems (plus the demo key).
#[test]
fn examples_are_the_seed_systems() {
    let mut dirs: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "keys" && !n.ends_with(".md"))
        .collect();
    dirs.sort();
    assert_eq!(dirs, EXAMPLES);
}
