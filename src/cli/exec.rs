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
    let mut plan = ct::plan_exec(root, &g, &run, &req)?;
    // -t: the runtime makes the pty inside the container and sends its
    // master over this socket (runc's console-socket protocol).
    let console = if args.tty {
        if let Some((rows, cols)) = tty::window_size() {
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
        id: args.name.clone(),
        pid: runtime::Pid::from_raw(run.pid),
        process: plan.process,
        namespaces: plan.namespaces,
        cgroup: run.cgroup.clone(),
        seccomp: plan.seccomp,
        console_socket: console.as_ref().map(|(_, p)| p.clone()),
        stdio,
        preserve_fds: 0,
    });
    let master = match (&console, &child) {
        (Some((l, p)), Ok(_)) => {
            let m = tty::receive_master(l);
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

/// The terminal of `berth exec -t`: receive the pty master, relay it to our
/// own terminal (raw while relaying) until the command closes its side.
// TODO(supervise): supervise/console.rs has the same steps for `berth run
// -t`, private to that module; one shared copy would serve both.
mod tty {
    use std::io::{IoSliceMut, Read, Write};
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixListener;

    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

    /// (rows, columns) of our terminal.
    pub fn window_size() -> Option<(u16, u16)> {
        // SAFETY: TIOCGWINSZ writes one winsize struct we own.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0).then_some((ws.ws_row, ws.ws_col))
        }
    }

    /// The master the runtime sent; it was sent before `exec` returned.
    pub fn receive_master(l: &UnixListener) -> std::io::Result<OwnedFd> {
        l.set_nonblocking(true)?;
        let (conn, _) = l.accept()?;
        conn.set_nonblocking(false)?;
        let mut buf = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(fd) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err(std::io::Error::other(
            "the console message carried no pty master",
        ))
    }

    /// Copy master → stdout and (with `stdin`) stdin → master until the
    /// master reports EOF or EIO (the command closed its terminal).
    pub fn relay(master: &OwnedFd, stdin: bool) {
        let Ok(dup) = master.try_clone() else {
            return;
        };
        let mut m = std::fs::File::from(dup);
        let input = std::io::stdin();
        let saved = tcgetattr(input.as_fd()).ok().filter(|_| stdin);
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(input.as_fd(), SetArg::TCSANOW, &raw);
        }
        let mut out = std::io::stdout();
        let mut stdin_open = stdin;
        let mut buf = [0u8; 8192];
        loop {
            let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
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
            let (m_ready, in_ready) = (ready(0), ready(1));
            drop(fds);
            if in_ready {
                match input.lock().read(&mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => {
                        let _ = m.write_all(&buf[..n]);
                    }
                }
            }
            if m_ready {
                match m.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                }
            }
        }
        if let Some(t) = &saved {
            let _ = tcsetattr(input.as_fd(), SetArg::TCSANOW, t);
        }
    }
}
