//! What each subcommand does. Each returns the process exit code.

use crate::cli::Format;
use crate::secrets;
use anyhow::Result;
use pve_gitops_schema::{load, DesiredState, Diagnostics};
use std::io::Write;
use std::path::Path;

/// Exit code of `validate` for an invalid revision.
pub const EXIT_INVALID: i32 = 1;

fn load_dir(dir: &Path) -> Result<Result<DesiredState, Diagnostics>> {
    let repo = crate::manifests::read_dir(dir)?;
    Ok(load(&repo))
}

/// Diagnostics name files relative to the manifests directory; show them as the user
/// passed the directory, so `path:line:col` opens in an editor from the current directory.
fn print_diagnostics(
    dir: &Path,
    diags: Diagnostics,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let mut list = diags.into_sorted();
    for d in &mut list {
        d.location.file = dir.join(&d.location.file).display().to_string();
    }
    match format {
        Format::Text => {
            for d in &list {
                writeln!(out, "{d}")?;
            }
            writeln!(
                out,
                "{} error{}; nothing from this revision would be applied",
                list.len(),
                if list.len() == 1 { "" } else { "s" }
            )?;
        }
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
    }
    Ok(())
}

pub fn validate(dir: &Path, format: Format) -> Result<i32> {
    match load_dir(dir)? {
        Ok(desired) => {
            if format == Format::Json {
                println!("[]");
            } else {
                println!(
                    "{}: valid ({} VMs, {} templates, {} containers)",
                    dir.display(),
                    desired.vms.len(),
                    desired.templates.len(),
                    desired.containers.len()
                );
            }
            Ok(0)
        }
        Err(diags) => {
            match format {
                Format::Json => print_diagnostics(dir, diags, format, &mut std::io::stdout())?,
                Format::Text => print_diagnostics(dir, diags, format, &mut std::io::stderr())?,
            }
            Ok(EXIT_INVALID)
        }
    }
}

/// The desired state as YAML, as `render` prints it.
pub fn render_yaml(desired: &DesiredState) -> Result<String> {
    Ok(serde_yaml::to_string(desired)?)
}

/// One line per guest: what an operator checks first (placement, address, size).
pub fn render_summary(desired: &DesiredState) -> String {
    let mut out = format!(
        "{:<16} {:>6}  {:<8} {:<20} {:>5} {:>7}  {}\n",
        "NAME", "VMID", "NODE", "IPV4", "CORES", "MEMORY", "TAGS"
    );
    for vm in &desired.vms {
        let s = &vm.spec;
        let ip = s
            .cloud_init
            .as_ref()
            .and_then(|c| c.ip_config.first())
            .and_then(|c| c.ipv4)
            .map_or("-".to_string(), |a| a.to_string());
        let tags: Vec<&str> = vm.tags.iter().map(|t| t.as_str()).collect();
        out.push_str(&format!(
            "{:<16} {:>6}  {:<8} {:<20} {:>5} {:>7}  {}\n",
            vm.name.as_str(),
            vm.vmid.map_or("auto".into(), |v| v.to_string()),
            vm.node.as_str(),
            ip,
            s.cpu.as_ref().map_or("-".into(), |c| c.cores.to_string()),
            s.memory.map_or("-".into(), |m| m.size.to_string()),
            tags.join(",")
        ));
    }
    for t in &desired.templates {
        out.push_str(&format!(
            "{:<16} {:>6}  {:<8} (template)\n",
            t.name.as_str(),
            t.spec.vmid.to_string(),
            t.spec.node.as_str()
        ));
    }
    for c in &desired.containers {
        let vmid = c.spec.vmid.map_or("auto".into(), |v| v.to_string());
        out.push_str(&format!(
            "{:<16} {:>6}  {:<8} (container)\n",
            c.name.as_str(),
            vmid,
            c.spec.node.as_str()
        ));
    }
    out.push_str(&format!(
        "{} VMs, {} templates, {} containers, {} snippet files, {} SDN vnets, {} firewalls\n",
        desired.vms.len(),
        desired.templates.len(),
        desired.containers.len(),
        desired.snippet_files.len(),
        desired.sdn_vnets.len(),
        desired.firewalls.len()
    ));
    out
}

pub fn render(dir: &Path, summary: bool) -> Result<i32> {
    match load_dir(dir)? {
        Ok(desired) => {
            if summary {
                print!("{}", render_summary(&desired));
            } else {
                print!("{}", render_yaml(&desired)?);
            }
            Ok(0)
        }
        Err(diags) => {
            print_diagnostics(dir, diags, Format::Text, &mut std::io::stderr())?;
            Ok(EXIT_INVALID)
        }
    }
}

pub fn schema() -> Result<i32> {
    println!(
        "{}",
        serde_json::to_string_pretty(&pve_gitops_schema::schema::document_schema())?
    );
    Ok(0)
}

fn load_identities(
    files: &[std::path::PathBuf],
) -> Result<secrets::Identities, secrets::SecretError> {
    let mut ids = secrets::Identities::new();
    for f in files {
        ids.add_file(f)?;
    }
    Ok(ids)
}

/// `secrets decrypt`: the plaintext on stdout, or the reason on stderr and exit status 1.
pub fn secrets_decrypt(identities: &[std::path::PathBuf], path: &Path) -> Result<i32> {
    let rendered = load_identities(identities)
        .map(secrets::Decryptor::new)
        .and_then(|d| d.read_file(path)?.render());
    match rendered {
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
            Ok(0)
        }
        Err(e) => {
            eprintln!("pve-gitops: {e}");
            Ok(EXIT_INVALID)
        }
    }
}

/// `secrets recipients`: one recipient per line.
pub fn secrets_recipients(identities: &[std::path::PathBuf]) -> Result<i32> {
    match load_identities(identities) {
        Ok(ids) => {
            for r in ids.recipients() {
                println!("{r}");
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("pve-gitops: {e}");
            Ok(EXIT_INVALID)
        }
    }
}

/// `status`: the local status of every cluster this node's agent reconciles.
pub fn status(state_dir: &Path) -> Result<i32> {
    use crate::report::status::Sync;
    let all = crate::report::local::load_all(state_dir)?;
    if all.is_empty() {
        eprintln!(
            "no status in {}: the agent has not completed a pass on this node",
            state_dir.display()
        );
        return Ok(1);
    }
    let mut attention = false;
    for s in &all {
        print!("{}", crate::report::markdown::status_md(s));
        if let Some(e) = crate::report::markdown::errors_md(s) {
            print!("\n{e}");
        }
        println!();
        attention |= s.rejected.is_some()
            || s.resources
                .iter()
                .any(|r| !matches!(r.sync, Sync::InSync | Sync::Changed));
    }
    Ok(if attention { 2 } else { 0 })
}
