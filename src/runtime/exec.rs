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
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};

use super::channel::{self, Channel, Message};
use super::init::{
    apply_rlimits, apply_user_and_caps, build_exec, close_fds_on_exec, reset_signals,
    set_no_new_privs, set_personality,
};
use super::trampoline::FinalExec;
use super::{console, cwd, fds, process, seccomp, RuntimeError, Stdio};

/// What every process joining a container shares with its init, taken from
/// the container's spec: `berth-runtime exec`, `berth exec` and health
/// checks all build their [`ExecOptions`] from one of these, so none of them
/// confines less than another. Saved in service mode's `exec.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Confinement {
    /// The namespace types the container has.
    pub namespaces: Vec<LinuxNamespaceType>,
    /// The container's seccomp filter.
    pub seccomp: Option<LinuxSeccomp>,
    /// The container's `linux.personality` persona ([`super::init::plan_personality`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personality: Option<u64>,
    /// The spec's `process.oomScoreAdj`, for a process that sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
}

impl Confinement {
    /// The confinement of container `id`, planned or created from `spec`.
    pub fn from_spec(id: &str, spec: &Spec) -> Result<Confinement, RuntimeError> {
        let linux = spec.linux().as_ref();
        Ok(Confinement {
            namespaces: super::spec_namespaces(spec)
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
            seccomp: linux.and_then(|l| l.seccomp().clone()),
            personality: linux
                .and_then(|l| l.personality().as_ref())
                .map(super::init::plan_personality)
                .transpose()
                .map_err(|reason| RuntimeError::InvalidSpec {
                    id: id.to_string(),
                    reason,
                })?,
            oom_score_adj: spec.process().as_ref().and_then(|p| p.oom_score_adj()),
        })
    }
}

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
    /// Where compiled seccomp programs are kept (`seccomp::Compiled`).
    pub seccomp_cache: Option<PathBuf>,
}

impl ExecOptions {
    /// The one way to exec into a container: `process` under the
    /// container's `confinement`. A process that sets no oom_score_adj gets
    /// the container's (runc gives an exec'd process the container's, not
    /// the shim's: Docker's process.json has none): the spec's, else the
    /// init's (see [`exec`]). No cgroup, console or preserved fds, inherited
    /// stdio: the caller sets those it has.
    pub fn new(
        id: impl Into<String>,
        pid: Pid,
        start_time: Option<u64>,
        mut process: Process,
        confinement: Confinement,
    ) -> ExecOptions {
        if process.oom_score_adj().is_none() {
            process.set_oom_score_adj(confinement.oom_score_adj);
        }
        ExecOptions {
            id: id.into(),
            pid,
            start_time,
            process,
            namespaces: confinement.namespaces,
            cgroup: None,
            seccomp: confinement.seccomp,
            console_socket: None,
            stdio: Stdio::Inherit,
            preserve_fds: 0,
            personality: confinement.personality,
            seccomp_cache: None,
        }
    }
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
    let mut joins = open_namespaces(opts.pid, &opts.namespaces)?;
    // A process that sets none gets the init's oom_score_adj (the spec's
    // value, or in service mode the unit's OOMScoreAdjust= it inherited),
    // not the caller's: runc's exec does the same.
    let (oom_score_adj, inherited) = match opts.process.oom_score_adj() {
        Some(adj) => (Some(adj), false),
        None => (init_oom_score_adj(opts.pid)?, true),
    };
    // Not reaped meanwhile, so no other process took its PID: the
    // namespace files (and oom_score_adj) read above are the init's.
    if !init.still_there() {
        return Err(gone());
    }
    joins.sort_by_key(|(t, _)| join_rank(*t));

    let cgroup_fd = match &opts.cgroup {
        Some(p) => Some(File::open(p).map_err(|e| RuntimeError::io("open cgroup", p, e))?),
        None => None,
    };
    let console = open_console(&opts)?;
    // Compiled here, before clone: the child only loads it (seccomp.rs).
    let filter = opts
        .seccomp
        .as_ref()
        .map(|p| seccomp::Compiled::compile(p, opts.seccomp_cache.as_deref()))
        .transpose()?;
    // Decided before clone, like the filter: the memfd is made once.
    let final_exec = super::trampoline::plan(&opts.process, false, opts.seccomp.as_ref(), false)?;
    let (parent_end, child_end) = channel::pair()?;

    // A PID namespace applies to children only: join it here for the clone.
    let pid_guard = enter_pid_namespace(&mut joins)?;
    let cloned = process::clone3(0, cgroup_fd.as_ref().map(|f| f.as_raw_fd()));
    if let Some(own) = &pid_guard {
        let _ = setns(own, CloneFlags::CLONE_NEWPID);
    }
    match cloned? {
        process::Cloned::Child => {
            drop(parent_end);
            process::set_name("berth:[exec]");
            let Err((step, message)) = exec_sequence(
                &opts,
                (filter.as_ref(), final_exec),
                &joins,
                console,
                &child_end,
            );
            let _ = child_end.send(&Message::Error { step, message });
            // SAFETY: see init::run.
            unsafe { libc::_exit(127) }
        }
        process::Cloned::Parent { pid, in_cgroup } => {
            drop(child_end);
            let oom = (oom_score_adj, inherited);
            release_child(&opts, pid, in_cgroup, oom, &parent_end)
        }
    }
}

/// The console socket's connection when the process has a terminal; a
/// terminal without a socket is refused.
fn open_console(opts: &ExecOptions) -> Result<Option<OwnedFd>, RuntimeError> {
    let terminal = opts.process.terminal().unwrap_or(false);
    Ok(match (terminal, &opts.console_socket) {
        (true, Some(p)) => Some(console::connect_console_socket(p)?),
        (true, None) => {
            return Err(RuntimeError::InvalidSpec {
                id: opts.id.clone(),
                reason: "process.terminal is true but no console socket was given".into(),
            })
        }
        _ => None,
    })
}

/// Join the init's PID namespace (taken out of `joins`) for the clone;
/// returns our own, to go back to right after it.
fn enter_pid_namespace(
    joins: &mut Vec<(LinuxNamespaceType, File)>,
) -> Result<Option<File>, RuntimeError> {
    let Some(i) = joins
        .iter()
        .position(|(t, _)| *t == LinuxNamespaceType::Pid)
    else {
        return Ok(None);
    };
    let (_, f) = joins.remove(i);
    let own = File::open("/proc/self/ns/pid")
        .map_err(|e| RuntimeError::io("open", "/proc/self/ns/pid", e))?;
    setns(&f, CloneFlags::CLONE_NEWPID).map_err(|e| RuntimeError::sys("join pid namespace", e))?;
    Ok(Some(own))
}

/// Parent side after the clone: place the child in the cgroup, set its
/// oom_score_adj (and whether it is the init's, inherited), release it
/// (sync point 1) and wait for its execve or its failing step.
fn release_child(
    opts: &ExecOptions,
    pid: Pid,
    in_cgroup: bool,
    (oom_score_adj, inherited): (Option<i32>, bool),
    parent_end: &Channel,
) -> Result<ExecProcess, RuntimeError> {
    if let (Some(p), false) = (&opts.cgroup, in_cgroup) {
        super::cgroup::add_process(p, pid)?;
    }
    match super::set_oom_score_adj(pid, oom_score_adj) {
        // Lowering it below the caller's needs CAP_SYS_RESOURCE: a
        // value asked for fails the exec, an inherited one only warns.
        Err(e) if inherited => super::warn(&format!("{e}, ignoring")),
        r => r?,
    }
    let proceed = Message::Proceed {
        hook_state: String::new(),
    };
    parent_end
        .send(&proceed)
        .map_err(|e| RuntimeError::io("sync socket of exec in", PathBuf::from(&opts.id), e))?;
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

/// The init's namespaces of `types` that differ from ours, to join.
fn open_namespaces(
    pid: Pid,
    types: &[LinuxNamespaceType],
) -> Result<Vec<(LinuxNamespaceType, File)>, RuntimeError> {
    let mut joins = Vec::new();
    for t in types {
        let theirs = format!("/proc/{}/ns/{}", pid, ns_file(*t));
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
    Ok(joins)
}

/// The container init's oom_score_adj; None when it is gone (then the
/// pidfd check that follows reports it).
fn init_oom_score_adj(pid: Pid) -> Result<Option<i32>, RuntimeError> {
    let path = format!("/proc/{pid}/oom_score_adj");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|e| {
            RuntimeError::io(
                "read oom_score_adj",
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::io("read oom_score_adj", &path, e)),
    }
}

fn exec_sequence(
    opts: &ExecOptions,
    (filter, final_exec): (Option<&seccomp::Compiled>, FinalExec),
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
            .chain(final_exec.fd())
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
        .chain(final_exec.fd())
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
    if let (false, Some(filter)) = (nnp, filter) {
        filter.load().map_err(step("seccomp"))?;
    }
    apply_user_and_caps(p).map_err(step("user and capabilities"))?;
    // Resolved in the container's root and verified (CVE-2024-21626, cwd.rs).
    cwd::enter(p.cwd()).map_err(step("cwd"))?;
    let (path, argv, envp) = build_exec(p).map_err(step("resolve program"))?;
    reset_signals();
    close_fds_on_exec(opts.preserve_fds).map_err(step("close inherited fds"))?;
    if let (true, Some(filter)) = (nnp, filter) {
        filter.load().map_err(step("seccomp"))?;
    }
    let channel = std::os::fd::AsFd::as_fd(channel).as_raw_fd();
    let e = final_exec.execute(channel, &path, &argv, &envp);
    Err((
        "exec".to_string(),
        super::init::program_error(&path.to_string_lossy(), e).to_string(),
    ))
}
