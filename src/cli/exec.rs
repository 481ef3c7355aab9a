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
use crate::containers as ct;
use crate::runtime::{self, ExecOptions, Stdio};
use crate::supervise::exec::{plan_exec, ExecRequest};

/// Run a command inside a running container
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth exec web ps                      processes as the container sees them\n  berth exec -i web sh -c 'cat > /tmp/x' < file\n  berth exec -u 0 -w /etc -e DEBUG=1 web ls\n\nThe command runs with the container's user, environment, capabilities, seccomp\nfilter and namespaces, in its cgroup; -u, -w and -e change the first three.\nThe exit status is the command's."
)]
pub struct ExecArgs {
    /// Pass stdin to the command (otherwise it reads /dev/null)
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal (a pty inside the container), relayed to ours
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
    /// Container name (a definition in /etc/berth/containers/NAME.toml)
    pub name: String,
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    /// The program and its arguments, looked up in the container's PATH
    pub command: Vec<String>,
}

pub fn run(root: &Path, args: ExecArgs) -> anyhow::Result<ExitCode> {
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
    // The container's definition must still exist (a clear error if not);
    // the command is confined as the container was at its start.
    ct::load_definition(root, &args.name)?;
    let run = ct::running(root, &g, &args.name)?;
    let req = ExecRequest {
        command: args.command.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        env,
        tty: args.tty,
    };
    let run_dir = ct::paths(root, &g, &args.name).run_dir;
    let mut plan = plan_exec(&run_dir, &run.name, run.pid, &req)?;
    // -t: the runtime makes the pty inside the container and sends its
    // master over this socket (runc's console-socket protocol).
    let console = if args.tty {
        if let Some((rows, cols)) = crate::supervise::console::window_size() {
            if let Ok(b) = oci_spec::runtime::BoxBuilder::default()
                .height(rows as u32)
                .width(cols as u32)
                .build()
            {
                plan.process.set_console_size(Some(b));
            }
        }
        let dir = ct::paths(root, &g, &args.name).run_dir;
        let path = dir.join(format!("exec-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on console socket \"{}\"", path.display()))?;
        Some((l, path))
    } else {
        None
    };
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
        cgroup: run.cgroup.clone(),
        console_socket: console.as_ref().map(|(_, p)| p.clone()),
        stdio,
        seccomp_cache: Some(crate::supervise::run_root(root).join(crate::supervise::SECCOMP_CACHE)),
        ..ExecOptions::new(
            &args.name,
            runtime::Pid::from_raw(run.pid),
            run.state.container_start_time,
            plan.process,
            plan.confinement,
        )
    });
    let master = match (&console, &child) {
        (Some((l, p)), Ok(_)) => {
            let m = crate::supervise::console::receive_master(l, p);
            let _ = std::fs::remove_file(p);
            Some(m.with_context(|| format!("no terminal from container \"{}\"", args.name))?)
        }
        (Some((_, p)), Err(_)) => {
            let _ = std::fs::remove_file(p);
            None
        }
        _ => None,
    };
    let child = child.with_context(|| {
        format!(
            "cannot exec {:?} in container \"{}\"",
            args.command, args.name
        )
    })?;
    if let Some(m) = master {
        tty::relay(&m, args.interactive);
    }
    let code = child.wait()?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// The terminal of `berth exec -t`: the same pieces as `berth run -t`
/// (`supervise::console`), with a relay loop that blocks in poll(2).
mod tty {
    use std::io::Write;
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};

    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};

    use crate::supervise::console::{pump, sync_size, Pumped, RawMode};

    /// Copy master → stdout and (with `stdin`) stdin → master until the
    /// master reports EOF or EIO (the command closed its terminal); our
    /// terminal is raw meanwhile when stdin is passed, and a resize of it
    /// (SIGWINCH) is passed on to the container's terminal.
    pub fn relay(master: &OwnedFd, stdin: bool) {
        let _raw = stdin.then(RawMode::enter);
        // The child is already running: blocking SIGWINCH here changes only
        // our own mask, and its default action (ignore) loses nothing before.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGWINCH);
        let mut winch = mask.thread_block().ok().and_then(|_| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
        });
        // A resize between the exec and this point would otherwise be lost.
        sync_size(master);
        let input = std::io::stdin();
        let mut out = std::io::stdout();
        let Ok(dup) = master.try_clone() else {
            return;
        };
        let mut to_master = std::fs::File::from(dup);
        let mut stdin_open = stdin;
        loop {
            let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
            if let Some(w) = &winch {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            let input_at = fds.len();
            if stdin_open {
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
            }
            if let Err(e) = poll(&mut fds, PollTimeout::NONE) {
                if e == nix::errno::Errno::EINTR {
                    continue;
                }
                break;
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let (m_ready, in_ready) = (ready(0), stdin_open && ready(input_at));
            let resized = winch.is_some() && ready(1);
            drop(fds);
            if resized {
                if let Some(w) = winch.as_mut() {
                    while let Ok(Some(_)) = w.read_signal() {}
                }
                sync_size(master);
            }
            if in_ready && pump(input.as_raw_fd(), &mut to_master as &mut dyn Write) == Pumped::Done
            {
                stdin_open = false;
            }
            if m_ready && pump(master.as_raw_fd(), &mut out) == Pumped::Done {
                break;
            }
        }
    }
}
