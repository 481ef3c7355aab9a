//! `berth kill [-s SIG] NAME…`: a signal to each container's main process,
//! as `docker kill` does (containerd → `runc kill`: the container's init,
//! never the shim).
//!
//! Why not systemd's KillUnit: its whoms are `main` (the unit's main
//! process is berth's supervisor, which forwards only TERM, INT and HUP) and
//! `all` (the supervisor too, so SIGKILL would take the supervisor down with
//! the container and lose its exit status). The container's PID comes from
//! its record and is signalled through a pidfd checked against the recorded
//! start time (`runtime::process::ProcessHandle`), so a reused PID is never
//! hit. With `init = true` that process is berth's init, which forwards the
//! signal to the program as docker's `--init` (tini) does.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use nix::unistd::Pid;

use crate::config::load_globals;
use crate::containers as ct;
use crate::runtime::{parse_signal, signal_name, ProcessHandle};

/// Send a signal to the main process of running containers
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth kill web              SIGKILL, as docker kill\n  berth kill -s HUP web       make it reload its configuration\n  berth kill -s SIGUSR1 web db\n  berth kill -s 10 web        by number\n\nThe signal goes to the container's main process (its PID 1; with init = true,\nberth's init, which passes it on). What happens next is the unit's business:\nwith restart = \"on-failure\" or \"always\", systemd starts it again.\n`berth stop` stops it for good (the stop signal, then SIGKILL after stop_timeout)."
)]
pub struct KillArgs {
    /// Signal, by name (KILL, SIGHUP, RTMIN+3) or number
    #[arg(short, long, value_name = "SIG", default_value = "KILL")]
    pub signal: String,
    /// Containers to signal
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

pub fn run(root: &Path, args: KillArgs) -> anyhow::Result<ExitCode> {
    let signo = parse_signal(&args.signal).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown signal \"{}\" (give a name such as KILL, TERM, HUP, USR1, RTMIN+3, or a number)",
            args.signal
        )
    })?;
    let g = load_globals(root)?;
    // Every name is checked before any is signalled: a typo does not leave
    // half of the list killed.
    let mut targets = Vec::new();
    for name in &args.names {
        let running = match ct::running(root, &g, name) {
            Ok(r) => r,
            Err(e) => {
                ct::load_definition(root, name)?;
                return Err(e.into());
            }
        };
        targets.push(running);
    }
    for r in targets {
        let gone = || ct::ContainerError::NotRunning {
            name: r.name.clone(),
        };
        let handle = ProcessHandle::open(Pid::from_raw(r.pid), r.state.container_start_time)
            .ok_or_else(gone)?;
        handle.signal(signo).map_err(|e| {
            anyhow::anyhow!(
                "cannot send {} to container \"{}\" (pid {}): {e}",
                signal_name(signo),
                r.name,
                r.pid
            )
        })?;
        println!("{}", r.name);
    }
    Ok(ExitCode::SUCCESS)
}
