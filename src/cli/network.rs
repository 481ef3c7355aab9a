//! `berth network ls|inspect`: the networks of `/etc/berth/networks/` (and
//! the built-in `default`), with the containers that join them.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::NetworkDefinition;

/// Show bridge networks (bridge networking itself is not implemented yet)
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  berth network ls\n  berth network inspect default")]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List networks
    Ls,
    /// Show networks as JSON
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn members(root: &Path, net: &str) -> Vec<String> {
    crate::config::load_all(root)
        .definitions
        .into_iter()
        .filter(|d| d.network.networks.iter().any(|n| n == net))
        .map(|d| d.name)
        .collect()
}

fn json(root: &Path, n: &NetworkDefinition) -> serde_json::Value {
    serde_json::json!({
        "name": n.name,
        "source_path": n.source_path,
        "subnet": n.subnet.as_ref().map(|s| s.to_string()),
        "gateway": n.gateway,
        "driver": "bridge",
        "containers": members(root, &n.name),
        "implemented": false,
        "note": "bridge networking is not implemented yet: a container in bridge mode gets its own network namespace with loopback only",
    })
}

pub fn run(root: &Path, args: NetworkArgs) -> anyhow::Result<ExitCode> {
    let (nets, errors) = crate::config::load_all_networks(root);
    for (name, diags) in &errors {
        for d in diags.iter() {
            eprintln!("berth: warning: network \"{name}\": {d}, skipping");
        }
    }
    match args.command {
        NetworkCommand::Ls => {
            println!("{:<20}  {:<20}  CONTAINERS", "NAME", "SUBNET");
            for n in &nets {
                let subnet = n
                    .subnet
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "(automatic)".into());
                let m = members(root, &n.name);
                println!(
                    "{:<20}  {:<20}  {}",
                    n.name,
                    subnet,
                    if m.is_empty() {
                        "-".into()
                    } else {
                        m.join(", ")
                    }
                );
            }
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            for name in &names {
                let n = nets.iter().find(|n| &n.name == name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "no network \"{name}\" (define it in /etc/berth/networks/{name}.toml; see `berth network ls`)"
                    )
                })?;
                out.push(json(root, n));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
