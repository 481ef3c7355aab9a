//! `berth exec`: run a process inside a running container with the
//! container's own confinement (namespaces, cgroup, capabilities,
//! no_new_privileges, seccomp, cwd inside its root, no inherited host
//! descriptors), through `runtime::exec`. The process is our child; we exit
//! with its status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::load_globals;
use crate::containers::{self as ct, ExecRequest};
use crate::runtime::{self, ExecOptions, Stdio};

/// Run a command inside a running container
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth exec web ps                      processes as the container sees them\n  berth exec -i web sh -c 'cat > /tmp/x' < file\n  berth exec -u 0 -w /etc -e DEBUG=1 web ls\n\nThe command runs with the container's user, environment, capabilities, seccomp\nfilter and namespaces, in its cgroup; -u, -w and -e change the first three.\nThe exit status is the command's."
)]
pub struct ExecArgs {
    /// Pass stdin to the command (otherwise it reads /dev/null)
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal (not supported yet; use -i)
    #[arg(short, long)]
    pub tty: bool,
    /// Run as USER (uid[:gid] or a name from the container's /etc/passwd)
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container (absolute)
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Set an environment variable (repeatable)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    pub name: String,
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

pub fn run(root: &Path, args: ExecArgs) -> anyhow::Result<ExitCode> {
    if args.tty {
        anyhow::bail!(
            "berth exec -t is not implemented yet in this version of berth; run without -t (use -i to pass stdin)"
        );
    }
    let mut env = Vec::new();
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .with_context(|| format!("environment \"{e}\": expected KEY=VALUE"))?;
        crate::config::values::validate_env_name(k)
            .map_err(|m| anyhow::anyhow!("environment \"{e}\": {m}"))?;
        env.push((k.to_string(), v.to_string()));
    }
    let g = load_globals(root)?;
    let def = ct::load_definition(root, &args.name)?;
    let run = ct::running(root, &g, &args.name)?;
    if run.state.definition_hash != def.hash {
        eprintln!(
            "berth: warning: definition \"{}\" changed since the container started; the command runs with the new definition's user, environment and security settings",
            args.name
        );
    }
    let req = ExecRequest {
        command: args.command.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        env,
        tty: false,
    };
    let plan = ct::plan_exec(root, &g, &def, &run, &req)?;
    let stdio = if args.interactive {
        Stdio::Inherit
    } else {
        let null = std::fs::File::open("/dev/null").context("open /dev/null")?;
        Stdio::Fds {
            stdin: Some(null.into()),
            stdout: None,
            stderr: None,
        }
    };
    let child = runtime::exec(ExecOptions {
        id: args.name.clone(),
        pid: runtime::Pid::from_raw(run.pid),
        process: plan.process,
        namespaces: plan.namespaces,
        cgroup: run.cgroup.clone(),
        seccomp: plan.seccomp,
        console_socket: None,
        stdio,
        preserve_fds: 0,
    })
    .with_context(|| {
        format!(
            "cannot exec {:?} in container \"{}\"",
            args.command, args.name
        )
    })?;
    let code = child.wait()?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
