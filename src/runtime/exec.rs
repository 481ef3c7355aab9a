//! Run another process in a running container with the container's
//! confinement: its namespaces (setns on /proc/PID/ns/*), its cgroup (at clone
//! time), rlimits, no_new_privileges, seccomp, user and capabilities, a cwd
//! inside its root, and no inherited host descriptors.

use std::convert::Infallible;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Process};

use super::channel::{self, Channel, Message};
use super::init::{
    apply_rlimits, apply_user_and_caps, build_exec, close_fds_on_exec, reset_signals,
    set_no_new_privs, set_personality,
};
use super::{console, cwd, fds, process, seccomp, RuntimeError, Stdio};

/// What [`exec`] needs.
#[derive(Debug)]
pub struct ExecOptions {
    /// The container, for messages.
    pub id: String,
    /// The container's init (its namespaces are joined through /proc/PID/ns).
    pub pid: Pid,
    /// The init's start time when known: its namespaces are joined only
    /// while a pidfd shows it is that process (see process::ProcessHandle).
    pub start_time: Option<u64>,
    pub process: Process,
    /// The namespace types the container has (from its spec).
    pub namespaces: Vec<LinuxNamespaceType>,
    pub cgroup: Option<PathBuf>,
    pub seccomp: Option<LinuxSeccomp>,
    pub console_socket: Option<PathBuf>,
    pub stdio: Stdio,
    /// Descriptors 3..3+N of the caller pass into the process.
    pub preserve_fds: u32,
    /// The container's `linux.personality` persona ([`super::init::plan_personality`]).
    pub personality: Option<u64>,
}

/// A process started by [`exec`]; a direct child of the caller.
#[derive(Debug)]
pub struct ExecProcess {
    pub pid: Pid,
}

impl ExecProcess {
    pub fn wait(&self) -> Result<i32, RuntimeError> {
        super::wait_exit_code(self.pid)
    }
}

fn ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Joining order: the user namespace owns the others; the mount namespace
/// goes last because it moves our root into the container.
fn join_rank(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 9,
        _ => 5,
    }
}

/// Start `opts.process` inside the running container; returns once it has
/// exec'd (or with the step that failed).
pub fn exec(opts: ExecOptions) -> Result<ExecProcess, RuntimeError> {
    process::assert_single_threaded()?;
    super::lsm::refuse_unenforced(Some(&opts.process), None).map_err(|reason| {
        RuntimeError::InvalidSpec {
            id: opts.id.clone(),
            reason,
        }
    })?;
    let gone = || RuntimeError::InitGone {
        id: opts.id.clone(),
        expected: "its namespaces were joined",
    };
    let init = process::ProcessHandle::open(opts.pid, opts.start_time).ok_or_else(gone)?;
    let mut joins: Vec<(LinuxNamespaceType, File)> = Vec::new();
    for t in &opts.namespaces {
        let theirs = format!("/proc/{}/ns/{}", opts.pid, ns_file(*t));
        let f = File::open(&theirs).map_err(|e| RuntimeError::io("open namespace", &theirs, e))?;
        // setns into the namespace we are already in fails for user namespaces
        // and is pointless for the others.
        let ours = std::fs::metadata(format!("/proc/self/ns/{}", ns_file(*t)))
            .map(|m| m.ino())
            .ok();
        if ours == f.metadata().map(|m| m.ino()).ok() {
            continue;
        }
        joins.push((*t, f));
    }
    // Not reaped meanwhile, so no other process took its PID: the
    // namespace files opened above are the init's.
    if !init.still_there() {
        return Err(gone());
    }
    joins.sort_by_key(|(t, _)| join_rank(*t));

    let cgroup_fd = match &opts.cgroup {
        Some(p) => Some(File::open(p).map_err(|e| RuntimeError::io("open cgroup", p, e))?),
        None => None,
    };
    let terminal = opts.process.terminal().unwrap_or(false);
    let console = match (terminal, &opts.console_socket) {
        (true, Some(p)) => Some(console::connect_console_socket(p)?),
        (true, None) => {
            return Err(RuntimeError::InvalidSpec {
                id: opts.id.clone(),
                reason: "process.terminal is true but no console socket was given".into(),
            })
        }
        _ => None,
    };
    let (parent_end, child_end) = channel::pair()?;

    // A PID namespace applies to children only: join it here for the clone.
    let pid_guard = match joins
        .iter()
        .position(|(t, _)| *t == LinuxNamespaceType::Pid)
    {
        Some(i) => {
            let (_, f) = joins.remove(i);
            let own = File::open("/proc/self/ns/pid")
                .map_err(|e| RuntimeError::io("open", "/proc/self/ns/pid", e))?;
            setns(&f, CloneFlags::CLONE_NEWPID)
                .map_err(|e| RuntimeError::sys("join pid namespace", e))?;
            Some(own)
        }
        None => None,
    };
    let cloned = process::clone3(0, cgroup_fd.as_ref().map(|f| f.as_raw_fd()));
    if let Some(own) = &pid_guard {
        let _ = setns(own, CloneFlags::CLONE_NEWPID);
    }
    match cloned? {
        process::Cloned::Child => {
            drop(parent_end);
            process::set_name("berth:[exec]");
            let Err((step, message)) = exec_sequence(&opts, &joins, console, &child_end);
            let _ = child_end.send(&Message::Error { step, message });
            // SAFETY: see init::run.
            unsafe { libc::_exit(127) }
        }
        process::Cloned::Parent { pid, in_cgroup } => {
            drop(child_end);
            if let (Some(p), false) = (&opts.cgroup, in_cgroup) {
                super::cgroup::add_process(p, pid)?;
            }
            super::set_oom_score_adj(pid, opts.process.oom_score_adj())?;
            let proceed = Message::Proceed {
                hook_state: String::new(),
            };
            parent_end.send(&proceed).map_err(|e| {
                RuntimeError::io("sync socket of exec in", PathBuf::from(&opts.id), e)
            })?;
            match parent_end.recv() {
                Ok(None) => Ok(ExecProcess { pid }),
                Ok(Some(Message::Error { step, message })) => {
                    let _ = waitpid(pid, None);
                    Err(RuntimeError::Init {
                        id: opts.id.clone(),
                        step: format!("exec: {step}"),
                        message,
                    })
                }
                Ok(Some(other)) => Err(RuntimeError::Protocol {
                    id: opts.id.clone(),
                    expected: "exec",
                    got: format!("{other:?}"),
                }),
                Err(e) => Err(RuntimeError::io(
                    "sync socket of exec in",
                    PathBuf::from(&opts.id),
                    e,
                )),
            }
        }
    }
}

fn exec_sequence(
    opts: &ExecOptions,
    joins: &[(LinuxNamespaceType, File)],
    console: Option<OwnedFd>,
    channel: &Channel,
) -> Result<Infallible, (String, String)> {
    let step = |name: &str| {
        let name = name.to_string();
        move |e: RuntimeError| (name, e.to_string())
    };
    let p = &opts.process;
    // Only what this child was given stays open: the caller's cgroup fd,
    // signalfd, notify socket and pty (a supervisor's) are closed before any
    // path of the container is touched (CVE-2024-21626, see fds.rs).
    let passed = || {
        fds::passed(opts.preserve_fds)
            .chain([std::os::fd::AsFd::as_fd(channel).as_raw_fd()])
            .chain(console.as_ref().map(|c| c.as_raw_fd()))
    };
    let keep: Vec<_> = passed()
        .chain(joins.iter().map(|(_, f)| f.as_raw_fd()))
        .chain(fds::stdio_sources(&opts.stdio))
        .collect();
    fds::close_all_except(&keep).map_err(step("close host fds"))?;
    // Sync point 1 (exec): placed in the cgroup.
    channel
        .wait_for_proceed()
        .map_err(|m| ("waiting for the parent".to_string(), m))?;
    for (t, f) in joins {
        setns(f, CloneFlags::from_bits_retain(*t as i32))
            .map_err(|e| RuntimeError::sys(format!("join {t} namespace"), e))
            .map_err(step("join namespaces"))?;
    }
    match &opts.stdio {
        Stdio::Inherit => {}
        Stdio::Null => {
            let null = File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| ("stdio".to_string(), e.to_string()))?;
            for t in 0..3 {
                nix::unistd::dup2(null.as_raw_fd(), t)
                    .map_err(|e| ("stdio".to_string(), e.to_string()))?;
            }
        }
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            for (fd, t) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
                if let Some(fd) = fd {
                    nix::unistd::dup2(fd.as_raw_fd(), t)
                        .map_err(|e| ("stdio".to_string(), e.to_string()))?;
                }
            }
        }
    }
    // Namespace files and stdio sources are used up.
    fds::close_all_except(&passed().collect::<Vec<_>>()).map_err(step("close host fds"))?;
    if let Some(sock) = &console {
        let size = p
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        console::setup_console(sock, size, console::Console::Private).map_err(step("console"))?;
    }
    drop(console);
    // The console socket too: the process inherits only stdio and what was passed.
    let keep: Vec<_> = fds::passed(opts.preserve_fds)
        .chain([std::os::fd::AsFd::as_fd(channel).as_raw_fd()])
        .collect();
    fds::close_all_except(&keep).map_err(step("close host fds"))?;
    apply_rlimits(p).map_err(step("rlimits"))?;
    if let Some(persona) = opts.personality {
        set_personality(persona).map_err(step("personality"))?;
    }
    let nnp = p.no_new_privileges().unwrap_or(false);
    if nnp {
        set_no_new_privs().map_err(step("no_new_privileges"))?;
    }
    if let (false, Some(profile)) = (nnp, &opts.seccomp) {
        seccomp::apply_seccomp(profile).map_err(step("seccomp"))?;
    }
    apply_user_and_caps(p).map_err(step("user and capabilities"))?;
    // Resolved in the container's root and verified (CVE-2024-21626, cwd.rs).
    cwd::enter(p.cwd()).map_err(step("cwd"))?;
    let (path, argv, envp) = build_exec(p).map_err(step("resolve program"))?;
    reset_signals();
    close_fds_on_exec(opts.preserve_fds).map_err(step("close inherited fds"))?;
    if let (true, Some(profile)) = (nnp, &opts.seccomp) {
        seccomp::apply_seccomp(profile).map_err(step("seccomp"))?;
    }
    let e = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err((
        "exec".to_string(),
        super::init::program_error(&path.to_string_lossy(), e).to_string(),
    ))
}
