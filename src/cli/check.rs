//! `berth check [NAME…]`: validate definitions (and, when checking all, the
//! networks and global settings), print every error like a compiler, exit 1
//! on any error.
//!
//! Thin: loading and validation live in `config`; this file only prints.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::config::{self, Diagnostics};

/// Validate container definitions.
///
/// Reads NAME.toml and its drop-ins from /etc/berth/containers,
/// /run/berth/containers and /usr/lib/berth/containers (the first found wins; an
/// empty file or a symlink to /dev/null masks a lower one), merges the drop-ins
/// and checks every key. Each error names the file, line and column, the key,
/// what was found and what was expected. Without names, every definition,
/// every network (/etc/berth/networks/) and /etc/berth/berth.toml are checked.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth check               check everything\n  berth check web db        check two definitions\n  berth --root ./pkgroot check   check the tree of a package being built\n\nExit status: 0 when everything is valid, 1 otherwise."
)]
pub struct CheckArgs {
    /// Definitions to check (default: all)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

/// Print diagnostics to stderr; return how many there were.
pub(crate) fn print_diagnostics(d: &Diagnostics) -> usize {
    for line in d {
        eprintln!("{line}");
    }
    d.len()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Host paths a valid definition names that do not exist (yet): not errors,
/// since they may be created before the container starts, but its start
/// fails while they are missing.
fn missing_host_paths(root: &Path, def: &config::Definition) -> Vec<String> {
    let under_root = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mut out = Vec::new();
    for v in &def.volumes {
        if let config::VolumeSource::Bind(p) = &v.source {
            if !under_root(p).exists() {
                out.push(format!(
                    "warning: {}: [[volume]] source \"{}\" does not exist; the container will not start until it does",
                    def.source_path.display(),
                    p.display()
                ));
            }
        }
    }
    if let config::Seccomp::Profile(p) = &def.security.seccomp {
        if !under_root(p).exists() {
            out.push(format!(
                "warning: {}: [security] seccomp profile \"{}\" does not exist; the container will not start until it does",
                def.source_path.display(),
                p.display()
            ));
        }
    }
    out
}

/// A `[build]`'s context and Containerfile, as its start will read them:
/// the directory exists, the file is there, and it parses and plans
/// (stages, `target`, ARGs). Errors, not warnings: unlike a bind source,
/// nothing creates these at start, and every start would fail.
fn build_errors(root: &Path, def: &config::Definition) -> Diagnostics {
    let mut out = Diagnostics::default();
    let config::ImageSource::Build(b) = &def.image else {
        return out;
    };
    let under_root = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let at = |k: &config::KeyAt, key: &str, message: String| config::Diagnostic {
        file: k.file.clone(),
        line: k.line,
        column: k.column,
        key: key.to_string(),
        message,
    };
    let ctx = under_root(&b.context);
    if !ctx.is_dir() {
        let what = if ctx.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        out.push(at(
            &b.context_at,
            "[build] context",
            format!(
                "\"{}\" {what}: create it with the Containerfile and the files it copies, or set context to that directory",
                b.context.display()
            ),
        ));
        return out;
    }
    let path = b.containerfile(|p| under_root(p).is_file());
    let text = match std::fs::read_to_string(under_root(&path)) {
        Ok(t) => t,
        Err(e) => {
            out.push(match &b.file_at {
                Some(k) => at(
                    k,
                    "[build] file",
                    format!(
                        "cannot read the Containerfile \"{}\": {e}: fix file, or remove it to use the context's Containerfile",
                        path.display()
                    ),
                ),
                None => at(
                    &b.context_at,
                    "[build] context",
                    format!(
                        "no Containerfile or Dockerfile in \"{}\" ({e}): add one there, or name it with file = \"...\"",
                        b.context.display()
                    ),
                ),
            });
            return out;
        }
    };
    let file = under_root(&path).display().to_string();
    let planned = crate::build::containerfile::parse(&file, &text)
        .and_then(|cf| crate::build::plan::plan(&file, &cf, &b.args, b.target.as_deref()));
    match (planned, &b.target_at) {
        (Ok(_), _) => {}
        // `target` names no stage: the definition's key is what to fix.
        (Err(e), Some(k)) if e.message.starts_with("--target ") => out.push(at(
            k,
            "[build] target",
            format!(
                "{} in \"{}\": expected the name of one of its FROM ... AS NAME stages",
                e.message.trim_start_matches("--target "),
                path.display()
            ),
        )),
        // Elsewhere, the Containerfile's own line and column.
        (Err(e), _) => out.push(config::Diagnostic {
            file: e.file.into(),
            line: e.line,
            column: e.column,
            key: String::new(),
            message: format!(
                "{} (the Containerfile of [build] in {})",
                e.message,
                def.source_path.display()
            ),
        }),
    }
    out
}

/// Run `berth check`.
pub fn run(root: &Path, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut errors = 0usize;
    let mut broken = 0usize;
    let mut checked = 0usize;
    let mut networks_checked = 0usize;
    if args.names.is_empty() {
        let globals = config::load_globals(root);
        if let Err(e) = &globals {
            eprintln!("error: {e}");
            errors += 1;
        }
        let loaded = config::load_all(root);
        checked = loaded.definitions.len() + loaded.errors.len();
        for (_, d) in &loaded.errors {
            errors += print_diagnostics(d);
            broken += 1;
        }
        for def in &loaded.definitions {
            for w in missing_host_paths(root, def) {
                eprintln!("{w}");
            }
            let d = build_errors(root, def);
            if !d.is_empty() {
                errors += print_diagnostics(&d);
                broken += 1;
            }
        }
        for cycle in config::validate::requires_cycles(&loaded.definitions) {
            eprintln!(
                "warning: [service] requires forms a cycle: {} (systemd will break it at start, so one of them will not start)",
                cycle.join(" -> ")
            );
        }
        // Volume files (`/etc/berth/volumes/NAME.toml`), each on its own.
        for (_, d) in config::load_all_volumes(root).1 {
            errors += print_diagnostics(&d);
            broken += 1;
        }
        let (nets, net_errors) = config::load_all_networks(root);
        networks_checked = nets.len() + net_errors.len();
        for (_, d) in &net_errors {
            errors += print_diagnostics(d);
            broken += 1;
        }
        // Clashes between network files (overlapping subnets, a full
        // default_subnet) show only with all of them resolved together.
        if let Ok(g) = &globals {
            let path = root.join(config::global::GLOBAL_FILE);
            let (resolved, d) =
                crate::network::config::plan_networks(&nets, &g.default_subnet, &path);
            errors += print_diagnostics(&d);
            // A fixed `ip` outside its network's subnet shows only with
            // the subnets resolved (a carved one has no file to read).
            let ips = crate::network::config::check_fixed_ips(&loaded.definitions, &resolved);
            errors += print_diagnostics(&ips);
            broken += ips
                .iter()
                .map(|d| &d.file)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            broken += d
                .iter()
                .filter(|d| d.key != "[network] default_subnet")
                .count();
        }
    } else {
        for name in &args.names {
            checked += 1;
            match config::load_definition(root, name) {
                Ok(Some(def)) => {
                    for w in missing_host_paths(root, &def) {
                        eprintln!("{w}");
                    }
                    let d = build_errors(root, &def);
                    if !d.is_empty() {
                        errors += print_diagnostics(&d);
                        broken += 1;
                    }
                }
                Ok(None) => {
                    let dirs: Vec<String> = config::CONTAINER_DIRS
                        .iter()
                        .map(|d| root.join(d).display().to_string())
                        .collect();
                    eprintln!(
                        "error: no definition \"{name}\": no {name}.toml in {} (or it is masked)",
                        dirs.join(", ")
                    );
                    errors += 1;
                    broken += 1;
                }
                Err(d) => {
                    errors += print_diagnostics(&d);
                    broken += 1;
                }
            }
        }
    }
    let what = if networks_checked > 0 {
        format!(
            "{} and {}",
            plural(checked, "definition"),
            plural(networks_checked, "network")
        )
    } else {
        plural(checked, "definition")
    };
    if errors == 0 {
        println!("berth check: {what}, all valid");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "berth check: {}; {broken} of {what} invalid",
            plural(errors, "error")
        );
        Ok(ExitCode::from(1))
    }
}
