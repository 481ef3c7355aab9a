//! `berth compose convert`: read a compose file (and its `.env`), convert it
//! with `crate::compose` (pure), write the files, print the notes.
//!
//! Thin: this file reads, writes and prints; every decision is in `compose`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::compose::{self, interpolate, Level};

/// Work with compose files
#[derive(Debug, Args)]
pub struct ComposeArgs {
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    Convert(ConvertArgs),
}

/// Convert a compose file into berth definitions
///
/// Writes one definition per service (OUT/containers/SERVICE.toml), the
/// project's networks (OUT/networks/NAME.toml) and volumes with driver
/// options (OUT/volumes/NAME.toml). Every definition joins the group NAME,
/// so that `systemctl start berth-NAME.target` starts them all in dependency
/// order. Prints what could not be expressed, each with its service and line.
/// ${VAR} and ${VAR:-default} are read from the environment, then from the
/// .env file beside the compose file, as compose does.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth compose convert docker-compose.yml\n  berth compose convert --group shop --out ./berth compose.yaml\n  systemctl daemon-reload && systemctl start berth-shop.target"
)]
pub struct ConvertArgs {
    /// The compose file (default: compose.yaml, compose.yml,
    /// docker-compose.yaml or docker-compose.yml in the current directory)
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The group (default: the file's `name:`, else its directory's name)
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Where to write containers/, networks/ and volumes/ (default: /etc/berth
    /// under --root)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace files that already exist
    #[arg(long)]
    pub force: bool,
}

/// The largest compose file read (a definition's own limit is 1 MiB; a
/// compose file holds a whole project).
const MAX_FILE: u64 = 16 << 20;

const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Run `berth compose …`.
pub fn run(root: &Path, args: ComposeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ComposeCommand::Convert(a) => convert(root, a),
    }
}

fn find_file(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(f) = given {
        return Ok(f);
    }
    for name in DEFAULT_FILES {
        if Path::new(name).is_file() {
            return Ok(PathBuf::from(name));
        }
    }
    bail!(
        "no compose file given and none of {} in the current directory",
        DEFAULT_FILES.join(", ")
    )
}

/// The environment `${VAR}` sees: the process's over the project's `.env`.
fn environment(project_dir: &Path, file: &Path) -> BTreeMap<String, String> {
    let process: BTreeMap<String, String> = std::env::vars().collect();
    let dotenv = project_dir.join(".env");
    let mut env = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(&dotenv) {
        let (vars, bad) = interpolate::parse_dotenv(&text, &process);
        for (line, message) in bad {
            eprintln!(
                "{}:{line}: warning: {message}, ignoring (read for {})",
                dotenv.display(),
                file.display()
            );
        }
        env = vars;
    }
    env.extend(process);
    env
}

fn convert(root: &Path, args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let file = find_file(args.file)?;
    let size = std::fs::metadata(&file)
        .with_context(|| format!("cannot read \"{}\"", file.display()))?
        .len();
    if size > MAX_FILE {
        bail!(
            "\"{}\" is {size} bytes: a compose file of more than {MAX_FILE} bytes is refused",
            file.display()
        );
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read \"{}\"", file.display()))?;
    let abs = std::path::absolute(&file)
        .with_context(|| format!("cannot resolve \"{}\"", file.display()))?;
    let project_dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let env = environment(&project_dir, &file);
    let input = compose::Input {
        file: &file,
        text: &text,
        project_dir: &project_dir,
        env,
        group: args.group.as_deref(),
    };
    let conv = compose::convert(&input)?;
    for n in &conv.notes {
        eprintln!("{n}");
    }
    let out = args.out.unwrap_or_else(|| root.join("etc/berth"));
    let targets: Vec<(PathBuf, &String)> = conv
        .files
        .iter()
        .map(|(rel, text)| (out.join(rel), text))
        .collect();
    let existing: Vec<String> = targets
        .iter()
        .filter(|(p, _)| p.exists())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "not overwriting {} (use --force to replace)",
            existing.join(", ")
        );
    }
    for (path, text) in &targets {
        write_file(path, text)?;
        println!("wrote {}", path.display());
    }
    let warnings = conv
        .notes
        .iter()
        .filter(|n| n.level == Level::Warning)
        .count();
    println!(
        "converted {} into group \"{}\"{}; next: systemctl daemon-reload && systemctl start berth-{}.target",
        file.display(),
        conv.group,
        if warnings > 0 { format!(" with {warnings} warning(s) above") } else { String::new() },
        conv.group
    );
    Ok(ExitCode::SUCCESS)
}

/// Write through a temporary file and a rename, so a reader (the generator
/// at boot) never sees half a definition.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create \"{}\"", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut f = std::fs::File::create(&tmp)
        .with_context(|| format!("cannot write \"{}\"", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write \"{}\"", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write \"{}\"", path.display()))?;
    Ok(())
}
