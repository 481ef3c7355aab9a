//! `berth volume ls|inspect|rm`: named volumes under `STORAGE/volumes/NAME/_data`.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::load_globals;
use crate::containers as ct;
use crate::supervise::{remove_volume, volume, volumes};

/// Manage named volumes (created on first use by a container)
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth volume ls\n  berth volume inspect webdata\n  berth volume rm webdata          refused while a running container uses it\n  berth volume rm --force webdata"
)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List named volumes and the containers that mount them
    Ls {
        /// Print only names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and their data
    Rm {
        /// Remove even when a running container uses it
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn run(root: &Path, args: VolumeArgs) -> anyhow::Result<ExitCode> {
    let g = load_globals(root)?;
    let running = |c: &str| ct::running(root, &g, c).is_ok();
    let store = g.storage_root.as_path();
    match args.command {
        VolumeCommand::Ls { quiet } => {
            let vols = volumes(root, store, &running);
            if !quiet {
                println!("{:<24}  USED BY", "NAME");
            }
            for v in vols {
                if quiet {
                    println!("{}", v.name);
                    continue;
                }
                let users: Vec<String> = v
                    .used_by
                    .iter()
                    .map(|u| {
                        if v.running.contains(u) {
                            format!("{u} (running)")
                        } else {
                            u.clone()
                        }
                    })
                    .collect();
                let users = if users.is_empty() {
                    "-".to_string()
                } else {
                    users.join(", ")
                };
                println!("{:<24}  {users}", v.name);
            }
        }
        VolumeCommand::Inspect { names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(volume(root, store, &running, n)?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        VolumeCommand::Rm { force, names } => {
            for n in &names {
                remove_volume(root, store, &running, n, force)?;
                println!("{n}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
