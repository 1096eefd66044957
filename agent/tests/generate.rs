//! `pve-gitops generate`: the man pages cover every visible subcommand and are valid
//! roff; the completion scripts parse in their shell.

use clap::CommandFactory;
use std::path::Path;
use std::process::Command;

fn generate(args: &[&str], dir: &Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_pve-gitops"))
        .arg("generate")
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The visible subcommands, as `--help` lists them.
fn subcommands() -> Vec<String> {
    pve_gitops::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

#[test]
fn man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let written = generate(&["man"], dir.path());
    let main = std::fs::read_to_string(dir.path().join("pve-gitops.1")).unwrap();
    assert!(
        main.starts_with(".ie \\n(.g .ds Aq"),
        "roff: {}",
        &main[..80]
    );
    let names = subcommands();
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        // The SUBCOMMANDS section of pve-gitops(1) refers to each page...
        assert!(
            main.contains(&format!("pve\\-gitops\\-{}(1)", name.replace('-', "\\-"))),
            "pve-gitops.1 does not list {name}"
        );
        // ...which exists, and documents its options.
        let page = dir.path().join(format!("pve-gitops-{name}.1"));
        assert!(
            written.contains(&page.display().to_string()),
            "{} not written: {written:?}",
            page.display()
        );
    }
    let run = std::fs::read_to_string(dir.path().join("pve-gitops-run.1")).unwrap();
    for flag in ["metrics\\-listen", "webhook\\-listen", "no\\-lease", "repo"] {
        assert!(
            run.contains(&format!("\\-\\-{flag}")),
            "run page lacks --{flag}"
        );
    }
    assert!(
        !main.contains("generate"),
        "the hidden subcommand is not documented"
    );

    // Every page is valid roff: groff has nothing to warn about (preconv for UTF-8).
    if Command::new("groff").arg("--version").output().is_err() {
        eprintln!("groff is not installed: roff validity not checked");
        return;
    }
    for page in &written {
        let out = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(page)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn completions_parse_and_know_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let bash = generate(&["completions", "bash"], dir.path());
    assert_eq!(
        bash,
        [dir.path().join("pve-gitops.bash").display().to_string()]
    );
    let script = std::fs::read_to_string(&bash[0]).unwrap();
    for name in subcommands() {
        assert!(script.contains(&name), "bash completion lacks {name}");
    }
    assert!(script.contains("--metrics-listen"));
    let check = Command::new("bash")
        .arg("-n")
        .arg(&bash[0])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // A script with a syntax error is caught by the same check (so it can fail).
    let broken = dir.path().join("broken.bash");
    std::fs::write(&broken, script.replacen("esac", "", 1)).unwrap();
    assert!(!Command::new("bash")
        .arg("-n")
        .arg(&broken)
        .output()
        .unwrap()
        .status
        .success());

    let zsh = generate(&["completions", "zsh"], dir.path());
    assert_eq!(zsh, [dir.path().join("_pve-gitops").display().to_string()]);
    let script = std::fs::read_to_string(&zsh[0]).unwrap();
    assert!(
        script.starts_with("#compdef pve-gitops"),
        "{}",
        &script[..40]
    );
    match Command::new("zsh").arg("-n").arg(&zsh[0]).output() {
        Ok(check) => assert!(
            check.status.success(),
            "zsh -n: {}",
            String::from_utf8_lossy(&check.stderr)
        ),
        Err(_) => eprintln!("zsh is not installed: the zsh script's syntax is not checked"),
    }
}
