//! `berth generate`: what the systemd generator would write (`--dry-run`), or
//! write it into a directory.
//!
//! Thin: rendering is `generator::render`, writing `generator::generate_into`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::config;
use crate::generator::{self, RenderContext};

/// Show or write the systemd units generated from the definitions.
///
/// For each valid definition the generator writes the drop-in
/// berth@NAME.service.d/50-berth-generated.conf (dependencies, limits,
/// restart policy, credentials, timeouts) and a TARGET.wants/berth@NAME.service
/// link per `wanted_by` target. systemd runs it at boot and on
/// `systemctl daemon-reload`; this command shows the same output.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth generate --dry-run          print every generated file\n  berth generate --dry-run web      only web's\n  berth generate /tmp/units         write the files under /tmp/units\n\nExit status: 1 when a definition has errors (it is skipped), 0 otherwise."
)]
pub struct GenerateArgs {
    /// Print the files (each under a "# FILE PATH" header) instead of writing them
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the definitions to show (default: all).
    /// Without: the directory to write into.
    #[arg(value_name = "NAME|DIR")]
    pub args: Vec<String>,
}

/// Run `berth generate`.
pub fn run(root: &Path, args: GenerateArgs) -> anyhow::Result<ExitCode> {
    if !args.dry_run {
        let [dir] = args.args.as_slice() else {
            anyhow::bail!("expected exactly one output directory (or --dry-run [NAME...])");
        };
        let report = generator::generate_into(root, &PathBuf::from(dir));
        for (_, lines) in &report.skipped {
            for l in lines {
                eprintln!("{l}");
            }
        }
        for (name, _) in &report.skipped {
            eprintln!("berth generate: \"{name}\" has errors, skipped");
        }
        return Ok(if report.skipped.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let mut failed = false;
    let defs = if args.args.is_empty() {
        let loaded = config::load_all(root);
        for (_, d) in &loaded.errors {
            super::check::print_diagnostics(d);
            failed = true;
        }
        loaded.definitions
    } else {
        let mut defs = Vec::new();
        for name in &args.args {
            match config::load_definition(root, name) {
                Ok(Some(d)) => defs.push(d),
                Ok(None) => {
                    eprintln!("error: no definition \"{name}\" (or it is masked)");
                    failed = true;
                }
                Err(d) => {
                    super::check::print_diagnostics(&d);
                    failed = true;
                }
            }
        }
        defs
    };
    let globals = config::load_globals(root).unwrap_or_default();
    let store = generator::image_store(root, &globals);
    let present = |image: &config::Reference| generator::image_present(store.as_ref(), image);
    let no_dns = generator::networks_without_dns(root);
    let network_dns = |n: &str| !no_dns.contains(n);
    let credential_encrypted = |c: &str| generator::credential_encrypted(root, c);
    let build_may_pull = |b: &config::Build| generator::build_may_pull(root, store.as_ref(), b);
    let ctx = RenderContext {
        image_present: &present,
        network_dns: &network_dns,
        credential_encrypted: &credential_encrypted,
        build_may_pull: &build_may_pull,
    };
    let mut out = String::new();
    let mut shared = std::collections::BTreeMap::new();
    for def in &defs {
        let g = generator::render(def, &ctx);
        shared.extend(g.shared);
        for (path, content) in &g.files {
            out.push_str(&format!("# FILE {}\n{content}\n", path.display()));
        }
        for (link, target) in &g.links {
            out.push_str(&format!(
                "# LINK {} -> {}\n\n",
                link.display(),
                target.display()
            ));
        }
    }
    // Group targets once, after their members.
    for (path, content) in &shared {
        out.push_str(&format!("# FILE {}\n{content}\n", path.display()));
    }
    print!("{out}");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
