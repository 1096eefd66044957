//! `pve-gitops generate`: the man pages and shell completions, made from the same clap
//! definitions as `--help` (`make deb` runs it and packages the result).

use crate::cli::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// Write `pve-gitops.1` and one page per visible subcommand (`pve-gitops-run.1`, ...)
/// into `dir`; returns the files written, sorted.
pub fn man(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "1")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("pve-gitops"))
        })
        .collect();
    pages.sort();
    Ok(pages)
}

/// Write the completion script for `shell` into `dir`, named as that shell looks it up
/// (`pve-gitops.bash`, `_pve-gitops`, `pve-gitops.fish`); returns its path.
pub fn completions(shell: clap_complete::Shell, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    clap_complete::generate_to(shell, &mut cmd, "pve-gitops", dir)
        .with_context(|| format!("writing {shell} completions to {}", dir.display()))
}

/// `pve-gitops generate man DIR`.
pub fn man_command(dir: &Path) -> Result<i32> {
    for page in man(dir)? {
        println!("{}", page.display());
    }
    Ok(0)
}

/// `pve-gitops generate completions SHELL DIR`.
pub fn completions_command(shell: clap_complete::Shell, dir: &Path) -> Result<i32> {
    println!("{}", completions(shell, dir)?.display());
    Ok(0)
}
