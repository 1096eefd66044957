//! The `pve-gitops` binary as a user runs it: exit codes and the `path:line:col: message`
//! lines of `validate`, JSON output for CI, and the JSON Schema.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const VM: &str = "apiVersion: pve-gitops/v1alpha1
kind: VirtualMachine
metadata: { name: web }
spec:
  vmid: 500
  node: pve1
  memory: 2G
";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn valid_directory_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "vm.yaml", VM);
    let out = run(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (1 VMs"));
}

#[test]
fn syntax_error_unknown_field_and_duplicate_vmid_exit_one_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-syntax.yaml", "apiVersion: pve-gitops/v1alpha1\nkind: Pool\nmetadata: { name: p }\nspec:\n  comment: x\n   bad: indent\n");
    write(
        dir.path(),
        "b-unknown.yaml",
        &VM.replace("memory: 2G", "memroy: 2G")
            .replace("vmid: 500", "vmid: 501")
            .replace("web", "db"),
    );
    write(dir.path(), "c-dup.yaml", &VM.replace("web", "app"));
    write(dir.path(), "d.yaml", VM);
    let root = dir.path().display().to_string();
    let out = run(&["validate", &root]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("{root}/a-syntax.yaml:6:")), "{err}");
    assert!(err.contains(&format!("{root}/b-unknown.yaml:7:3: unknown-field: unknown field `memroy` in `spec`\n  hint: did you mean `memory`?")), "{err}");
    let dup =
        format!("{root}/d.yaml:5:9: duplicate-vmid: vmid 500 of `web` is already used by `app`");
    assert!(err.contains(&dup), "{err}");
    assert!(
        err.ends_with("3 errors; nothing from this revision would be applied\n"),
        "{err}"
    );
}

#[test]
fn json_format_for_ci() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "vm.yaml",
        &VM.replace("memory: 2G", "memory: 2GB"),
    );
    let out = run(&["validate", "--format", "json", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v[0]["kind"], "invalid-value");
    assert_eq!(v[0]["line"], 7);
    assert_eq!(v[0]["column"], 11);
    assert!(v[0]["file"].as_str().unwrap().ends_with("vm.yaml"));
}

#[test]
fn render_prints_the_desired_state_and_never_plaintext_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    write(
        dir.path(),
        "secrets/pw.age",
        "-----BEGIN AGE ENCRYPTED FILE-----\nx\n-----END AGE ENCRYPTED FILE-----\n",
    );
    write(
        dir.path(),
        "vm.yaml",
        &VM.replace(
            "  memory: 2G\n",
            "  memory: 2G\n  cloudInit:\n    password: { file: secrets/pw.age }\n",
        ),
    );
    let out = run(&["render", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let y: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(y["vms"][0]["name"], "web");
    assert_eq!(y["vms"][0]["spec"]["memory"]["size"], "2G");
    assert_eq!(
        y["vms"][0]["spec"]["cloudInit"]["password"]["file"],
        "secrets/pw.age"
    );
}

#[test]
fn missing_directory_is_a_clear_error() {
    let out = run(&["validate", "/nonexistent/manifests"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/manifests"),
        "{}",
        stderr(&out)
    );
}

/// The schema file editors point at (`# yaml-language-server: $schema=...`) is what the
/// binary prints; regenerate it with `pve-gitops schema > schema/pve-gitops.schema.json`.
#[test]
fn checked_in_schema_is_current() {
    let out = run(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/pve-gitops.schema.json");
    let checked_in: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert!(
        printed == checked_in,
        "schema/pve-gitops.schema.json is stale: run `make schema`"
    );
    assert_eq!(
        printed["properties"]["apiVersion"]["const"],
        "pve-gitops/v1alpha1"
    );
    assert!(printed["$defs"]["VmSpec"]["properties"]["disks"].is_object());
}
