//! `berth cleanup NAME`: the ExecStopPost= of `berth@NAME.service`.
//! Thin: calls `crate::supervise::cleanup` and prints every error.

use std::path::Path;
use std::process::ExitCode;

use crate::supervise::{self, CleanupOptions};

#[derive(Debug, clap::Args)]
#[command(
    about = "Remove what a container's last start left behind (cgroups, overlay dirs, state); run by berth@NAME.service as ExecStopPost="
)]
pub struct CleanupArgs {
    /// Container name
    pub name: String,
}

pub fn run(root: &Path, args: CleanupArgs) -> anyhow::Result<ExitCode> {
    let opts = CleanupOptions {
        root: root.to_path_buf(),
        name: args.name,
    };
    match supervise::cleanup(&opts) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(errors) => {
            for e in &errors {
                eprintln!("berth: cleanup of \"{}\": {e}", opts.name);
            }
            Ok(ExitCode::from(1))
        }
    }
}
