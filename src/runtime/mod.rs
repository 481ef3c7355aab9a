//! runtime: the privileged container runtime. It executes a given OCI runtime
//! `Spec`: clone into namespaces, mounts, pivot_root, rlimits, capabilities,
//! user, seccomp, exec; cgroup v2 placement and limits; a record of every
//! resource it created so [`cleanup`] can undo a crashed start.
//!
//! It must not decide what a container should look like (that is the pure
//! planner in `spec`), talk to systemd, or keep threads: [`create`] and
//! [`exec`] clone, so the caller must be single-threaded.
//!
//! The start sequence reads top to bottom in `init.rs`; the parent's half is
//! [`create`] below. Sync points carry the same numbers on both sides.

mod caps;
mod cgroup;
mod cgroup_delegate;
mod cgroup_devices;
mod channel;
mod console;
mod cwd;
mod devices;
mod exe;
mod exec;
mod fds;
mod fifo;
pub mod hooks;
mod idmap;
mod init;
mod lsm;
mod mount;
mod net;
mod process;
mod procfs;
mod reaper;
mod record;
pub mod seccomp;
mod signal;
mod trampoline;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
pub use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::teardown::Resource;
pub use cgroup::apply_resources;
pub use cgroup::{
    blkio_to_io_weight, cgroup_freeze, cgroup_kill, cgroup_pids, cgroup_state, remove_cgroup,
    shares_to_weight, CgroupState, CGROUP_ROOT,
};
use channel::{Channel, Message};
pub use exe::{
    ensure_protected, execute, protected as exe_protected, protection as exe_protection,
    sealed_program, Protection,
};
pub use exec::{exec, Confinement, ExecOptions, ExecProcess};
pub use fifo::start_fifo;
pub use init::plan_personality;
pub use mount::parse_mount_options;
pub use mount::topmost_distinct;
pub use process::{
    exit_status, proc_start_time, process_alive, release_resident_code,
    set_name as set_process_name, ProcessHandle,
};
pub use signal::{parse_signal, send_signal, signal_name};
pub use trampoline::allowed as trampoline_allowed;

type WarningSink = Box<dyn Fn(&str) + Send + Sync>;
static WARNING_SINK: std::sync::OnceLock<WarningSink> = std::sync::OnceLock::new();

/// Send the runtime's warnings (non-fatal problems, ending in ", ignoring")
/// to `sink` instead of stderr; the first call wins. The OCI command line
/// points it at `--log`, as runc and crun do: during `create` stderr is
/// the container's own, and a warning there would land in its log.
pub fn set_warning_sink(sink: WarningSink) {
    let _ = WARNING_SINK.set(sink);
}

/// Report a non-fatal problem.
pub(crate) fn warn(msg: &str) {
    match WARNING_SINK.get() {
        Some(sink) => sink(msg),
        None => eprintln!("berth: warning: {msg}"),
    }
}

/// Errors of the runtime. Every variant names the object it failed on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `clone` from a multi-threaded process would copy only one thread and
    /// leave locks held by the others forever.
    #[error("the calling process has {threads} threads; containers can only be created from a single-threaded process")]
    MultiThreaded { threads: usize },
    #[error("invalid spec for container '{id}': {reason}")]
    InvalidSpec { id: String, reason: String },
    #[error("{op} '{path}': {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },
    /// The process's program cannot be executed; `reason` in runc's words.
    /// A working directory refused before the program runs (CVE-2024-21626).
    #[error("working directory '{cwd}' {reason}")]
    Cwd { cwd: PathBuf, reason: String },
    #[error("exec '{program}': {reason}")]
    Program { program: String, reason: String },
    #[error("seccomp: {context}: {source}")]
    Seccomp {
        context: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("capability '{name}': {reason}")]
    Capability { name: String, reason: String },
    #[error("seccomp profile '{path}': {reason}")]
    SeccompProfile { path: PathBuf, reason: String },
    #[error("seccomp: cannot build the {what}: {reason}")]
    SeccompBuild { what: String, reason: String },
    /// An error the container's init hit, sent back over the sync socket.
    #[error("container '{id}': {step}: {message}")]
    Init {
        id: String,
        step: String,
        message: String,
    },
    /// Neither protected copy of the runtime binary could be made
    /// (CVE-2019-5736, see exe.rs).
    #[error("cannot run from a protected copy of the runtime binary: overlayfs: {overlay}; memfd: {memfd}")]
    Unprotected { overlay: String, memfd: String },
    /// A clone from berth's binary on disk whose process may not use the
    /// trampoline (trampoline.rs): the caller had to re-execute first.
    #[error("berth runs from its binary on disk and cannot start this container's process through its trampoline: {reason}; it must re-execute from a protected copy first")]
    NeedsProtectedCopy { reason: String },
    #[error("container '{id}': init exited before {expected}")]
    InitGone { id: String, expected: &'static str },
    #[error("container '{id}': sync protocol: expected {expected}, got {got}")]
    Protocol {
        id: String,
        expected: &'static str,
        got: String,
    },
    #[error("record '{path}': {reason}")]
    Record { path: PathBuf, reason: String },
    /// The caller's [`CreateOptions::while_init_sets_up`] failed.
    #[error("container '{id}': {reason}")]
    Caller { id: String, reason: String },
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("{point} hook '{path}': {reason}")]
    Hook {
        point: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("container '{id}' was not started within the wait, or it died")]
    StartTimeout { id: String },
    #[error("place the init in cgroup '{path}': {source}")]
    CgroupPlacement {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl RuntimeError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            op,
            path: path.into(),
            source,
        }
    }
    pub(crate) fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        RuntimeError::Sys {
            op: op.into(),
            source,
        }
    }
}

/// Where the container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// A directory, bind-mounted onto itself (usually `spec.root.path`).
    Dir(PathBuf),
    /// An overlay mounted inside the container's own mount namespace, so a
    /// crash leaves nothing mounted on the host. `lowers` are lowest first;
    /// `upper` and `work` are plain directories the caller owns.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
}

/// The container init's standard streams.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's own stdin/stdout/stderr (under systemd: the journal).
    #[default]
    Inherit,
    /// All three on `/dev/null`.
    Null,
    /// These descriptors; `None` keeps the caller's.
    Fds {
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    },
}

/// How the blocked init is released by [`Container::start`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StartGate {
    /// A message over the sync socket: the creator must stay alive to start it.
    #[default]
    Socket,
    /// A FIFO at this path (runc's `exec.fifo`): any process may start the
    /// container by reading it, so the creator may exit after [`create`].
    Fifo(PathBuf),
}

/// Puts the container's init (by PID, in the caller's PID namespace) into
/// its cgroup; see [`CgroupPlacement::Manager`].
pub type PlaceFn = Box<dyn FnOnce(Pid) -> Result<(), Box<dyn std::error::Error + Send + Sync>>>;

/// Who makes the container's cgroup ([`CreateOptions::cgroup`]) and puts the
/// init in it.
#[derive(Default)]
pub enum CgroupPlacement {
    /// The runtime creates the directory (and its missing parents, removed
    /// again on cleanup), writes the limits, and clones the init into it.
    #[default]
    Runtime,
    /// A cgroup manager (systemd: a transient scope with `PIDs=[init]`)
    /// creates the cgroup and moves the init into it. The runtime calls it
    /// after the clone, while the init waits before its first step, then
    /// writes the limits and the device filter there; it never creates nor
    /// removes that directory, only empties it on cleanup. The clone comes
    /// first because a scope cannot start without a process, and so the
    /// manager's connection lives only after the clone. `unit`, the
    /// systemd unit it starts, is recorded and stopped on cleanup.
    Manager {
        place: PlaceFn,
        unit: Option<String>,
    },
}

impl std::fmt::Debug for CgroupPlacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupPlacement::Runtime => "Runtime",
            CgroupPlacement::Manager { .. } => "Manager(..)",
        })
    }
}

/// Everything [`create`] needs.
#[derive(Debug)]
pub struct CreateOptions {
    pub id: String,
    pub spec: Spec,
    pub rootfs: RootfsSource,
    /// Absolute cgroupfs directory for the container, created when missing.
    pub cgroup: Option<PathBuf>,
    /// Who creates `cgroup` and places the init there.
    pub cgroup_placement: CgroupPlacement,
    /// OCI `--console-socket`, used when `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// The record of created resources lives in `state_dir/ID/`.
    pub state_dir: PathBuf,
    pub stdio: Stdio,
    pub start_gate: StartGate,
    /// The bundle directory, reported to hooks in the state JSON.
    pub bundle: Option<PathBuf>,
    /// Descriptors 3..3+N of the caller pass into the container (OCI
    /// `--preserve-fds`, systemd socket activation); all others are closed.
    pub preserve_fds: u32,
    /// The init stays as the container's PID 1 and reaps zombies; the
    /// program runs as its child (a definition's `init = true`).
    pub reaper: bool,
    /// Where compiled seccomp programs are kept between starts
    /// (`seccomp::Compiled`); None compiles every time.
    pub seccomp_cache: Option<PathBuf>,
    /// The init goes on to its program as soon as it is set up, without
    /// waiting for [`Container::start`] (which then only waits for the
    /// execve): for a creator with nothing to do between the two, it saves
    /// a round trip between the processes. Only with the socket gate and
    /// no runtime hooks; ignored otherwise.
    pub start_at_once: bool,
    /// Called with the init's PID once it is in its cgroup and released,
    /// while it sets itself up (its mounts): the caller's own work that
    /// needs the init's namespaces and must be done before its program
    /// runs (service mode's bridge attach). An error fails the create.
    pub while_init_sets_up: Option<WhileInitSetsUp>,
}

/// See [`CreateOptions::while_init_sets_up`].
pub struct WhileInitSetsUp(pub Box<dyn FnOnce(Pid) -> Result<(), String>>);

impl std::fmt::Debug for WhileInitSetsUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WhileInitSetsUp(..)")
    }
}

impl CreateOptions {
    /// Options with the defaults: rootfs from `spec.root.path`, no cgroup,
    /// inherited stdio, started over the socket.
    pub fn new(id: impl Into<String>, spec: Spec, state_dir: impl Into<PathBuf>) -> Self {
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        CreateOptions {
            id: id.into(),
            spec,
            rootfs: RootfsSource::Dir(root),
            cgroup: None,
            cgroup_placement: CgroupPlacement::Runtime,
            console_socket: None,
            state_dir: state_dir.into(),
            stdio: Stdio::Inherit,
            start_gate: StartGate::Socket,
            bundle: None,
            preserve_fds: 0,
            reaper: false,
            seccomp_cache: None,
            start_at_once: false,
            while_init_sets_up: None,
        }
    }
}

/// A created container: its init is set up and blocked before exec.
#[derive(Debug)]
pub struct Container {
    id: String,
    pid: Pid,
    channel: Channel,
    gate: StartGate,
    state_dir: PathBuf,
    /// `Start` went with the create ([`CreateOptions::start_at_once`]).
    start_sent: bool,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The init's PID in the caller's PID namespace.
    pub fn pid(&self) -> Pid {
        self.pid
    }
    /// The parent's end of the init's sync socket (a forked helper of the
    /// caller closes it).
    pub fn channel_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&self.channel))
    }
    /// Directory holding this container's record.
    pub fn dir(&self) -> PathBuf {
        record::container_dir(&self.state_dir, &self.id)
    }

    /// Release the init to exec `process.args`. Over the socket gate, returns
    /// once exec happened (or with the error that stopped it).
    pub fn start(&self) -> Result<(), RuntimeError> {
        match &self.gate {
            StartGate::Socket => {
                // Sync point 3 (parent): release the init.
                if !self.start_sent {
                    self.channel
                        .send(&Message::Start)
                        .map_err(|e| self.channel_err(e))?;
                }
                // Sync point 4 (parent): EOF means execve closed the CLOEXEC
                // socket; a message means the last steps failed.
                match self.channel.recv().map_err(|e| self.channel_err(e))? {
                    None => Ok(()),
                    Some(Message::Error { step, message }) => Err(RuntimeError::Init {
                        id: self.id.clone(),
                        step,
                        message,
                    }),
                    Some(other) => Err(RuntimeError::Protocol {
                        id: self.id.clone(),
                        expected: "exec",
                        got: format!("{other:?}"),
                    }),
                }
            }
            StartGate::Fifo(path) => start_fifo(&self.id, self.pid, path),
        }
    }

    /// Wait for the init to exit: its exit code, or 128+N when killed by signal N.
    pub fn wait(&self) -> Result<i32, RuntimeError> {
        wait_exit_code(self.pid)
    }

    fn channel_err(&self, e: std::io::Error) -> RuntimeError {
        RuntimeError::io("sync socket of container", PathBuf::from(&self.id), e)
    }
}

/// Wait for a child to exit; exit code, or 128+N when killed by signal N.
pub fn wait_exit_code(pid: Pid) -> Result<i32, RuntimeError> {
    loop {
        match waitpid(pid, None) {
            Ok(ws) => match exit_status(ws) {
                Some(code) => return Ok(code),
                None => continue,
            },
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::sys(format!("waitpid {pid}"), e)),
        }
    }
}

/// Create the container: its init is cloned as a direct child of the caller,
/// set up completely, and left blocked before exec until [`Container::start`].
///
/// On failure, everything created so far is removed again; a failed removal
/// is returned together with the original error.
pub fn create(mut opts: CreateOptions) -> Result<Container, RuntimeError> {
    process::assert_single_threaded()?;
    if let RootfsSource::Overlay { lowers, .. } = &mut opts.rootfs {
        *lowers = mount::topmost_distinct(lowers);
    }
    record::validate_id(&opts.id)?;
    let dir = record::container_dir(&opts.state_dir, &opts.id);
    let mut start = Start {
        list: record::list(&dir),
        child: None,
    };
    match create_recorded(opts, &mut start) {
        Ok(c) => Ok(c),
        Err(e) => {
            // The init is our child: reaped here, not only killed.
            if let Some(pid) = start.child {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
            }
            match crate::teardown::teardown(start.list.entries()) {
                Ok(()) => Err(e),
                Err(errs) => Err(RuntimeError::Record {
                    path: dir,
                    reason: format!("{e}; and cleaning up failed: {errs}"),
                }),
            }
        }
    }
}

/// What a start has made so far: the recorded list, and the init while it
/// is an unreaped child of ours.
struct Start {
    list: crate::teardown::List,
    child: Option<Pid>,
}

/// Set a container process's oom_score_adj from the caller, outside any
/// user namespace it is in (there its /proc/self belongs to the host's root).
pub(crate) fn set_oom_score_adj(pid: Pid, adj: Option<i32>) -> Result<(), RuntimeError> {
    let Some(adj) = adj else { return Ok(()) };
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, adj.to_string())
        .map_err(|e| RuntimeError::io("write oom_score_adj", path, e))
}

/// The parent's half of the start sequence: one step per resource or
/// decision, each recorded in `start.list` before it exists.
fn create_recorded(mut opts: CreateOptions, start: &mut Start) -> Result<Container, RuntimeError> {
    let dir = record::container_dir(&opts.state_dir, &opts.id);
    let (manager, unit) = take_manager(&mut opts)?;
    setup_state_dir(&dir, &mut start.list)?;
    let plan = build_plan(&opts, manager.is_some())?;
    crate::trace::step("runtime: planned (seccomp compiled)");
    let managed = manager.is_some();
    let planned_dirs = record_planned(&opts, &dir, managed, unit, &mut start.list)?;
    let rootfs = setup_rootfs_mountpoint(&opts.rootfs, &dir)?;
    let exec_fifo = setup_exec_fifo(&opts.start_gate)?;
    crate::trace::step("runtime: state dir, rootfs mount point");
    let cgroup_fd = match (&opts.cgroup, &manager) {
        (Some(path), None) => Some(setup_runtime_cgroup(
            path,
            &opts.spec,
            &planned_dirs,
            &mut start.list,
        )?),
        _ => None,
    };
    let console = connect_console(&plan, &opts)?;
    crate::trace::step("runtime: cgroup");
    let stdio = std::mem::take(&mut opts.stdio);
    let ends = (exec_fifo, console, stdio);
    let (pid, placed, channel) = clone_init(&opts, &plan, &rootfs, ends, cgroup_fd.as_ref())?;
    crate::trace::step("runtime: cloned");
    start.child = Some(pid);
    let mut container = Container {
        id: opts.id.clone(),
        pid,
        channel,
        gate: opts.start_gate.clone(),
        state_dir: opts.state_dir.clone(),
        start_sent: false,
    };
    place_init(&opts, pid, placed, manager)?;
    configure_init_from_outside(&opts, &plan, pid)?;
    crate::trace::step("runtime: placed and configured");
    // Sync point 1 (parent): mappings written, cgroup placed; let the init go.
    container
        .channel
        .send(&Message::Proceed {
            hook_state: hook_state(&opts, pid, "creating"),
        })
        .map_err(|e| container.channel_err(e))?;
    // The init's PID goes into the list while the init sets itself up,
    // not before: until it is recorded, the recorded cgroup (cleanup kills
    // its members) or the closed sync socket (the init exits on EOF) end
    // an orphaned init.
    start.list.record(Resource::Process {
        pid: pid.as_raw(),
        start_time: proc_start_time(pid),
    })?;
    send_idmapped_trees(&container, &plan, &opts.rootfs)?;
    // While the init mounts its root: the device filter and the caller's
    // work, before the release that lets the init execute the program. The
    // init may fail meanwhile, and take its namespaces with it: then its
    // own report says why, not the step that found them gone.
    if let Err(e) = beside_init(&mut opts, cgroup_fd.as_ref(), pid) {
        return Err(init_failed_first(&container, &opts.id, start).unwrap_or(e));
    }
    // Queued behind everything else the init reads before it (sync points
    // 1' and 1b): it reads the release as soon as it is set up.
    if opts.start_at_once && opts.start_gate == StartGate::Socket && !plan.runtime_hooks {
        if let Err(e) = container.channel.send(&Message::Start) {
            let e = container.channel_err(e);
            return Err(init_failed_first(&container, &opts.id, start).unwrap_or(e));
        }
        container.start_sent = true;
    }
    wait_ready(&container, &opts, start)?;
    Ok(container)
}

/// Step (parent, while the init sets itself up): the device filter (a BPF
/// program load, ~0.5 ms of the verifier), then the caller's
/// [`CreateOptions::while_init_sets_up`].
fn beside_init(
    opts: &mut CreateOptions,
    cgroup_fd: Option<&File>,
    pid: Pid,
) -> Result<(), RuntimeError> {
    crate::fault::point("beside-init");
    if let Some(path) = &opts.cgroup {
        let opened;
        let fd = match cgroup_fd {
            Some(f) => f,
            None => {
                opened = File::open(path).map_err(|e| RuntimeError::io("open cgroup", path, e))?;
                &opened
            }
        };
        setup_device_filter(&opts.spec, fd)?;
        crate::trace::step("runtime: device filter");
    }
    if let Some(WhileInitSetsUp(work)) = opts.while_init_sets_up.take() {
        work(pid).map_err(|reason| RuntimeError::Caller {
            id: opts.id.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// After a step of the parent's failed while the init set itself up: the
/// init's own error when it reported one (or died) first. Never blocks.
fn init_failed_first(container: &Container, id: &str, start: &mut Start) -> Option<RuntimeError> {
    if !container.channel.readable_now() {
        return None;
    }
    let reply = container.channel.recv().ok()?;
    init_ended(container, id, start, reply.as_ref())
}

/// The init's failure in `reply` (its report, or the channel's end: it
/// died), once it is reaped; `None` for any other message.
fn init_ended(
    container: &Container,
    id: &str,
    start: &mut Start,
    reply: Option<&Message>,
) -> Option<RuntimeError> {
    let e = match reply {
        Some(Message::Error { step, message }) => RuntimeError::Init {
            id: id.to_string(),
            step: step.clone(),
            message: message.clone(),
        },
        None => RuntimeError::InitGone {
            id: id.to_string(),
            expected: "it was set up",
        },
        Some(_) => return None,
    };
    let _ = waitpid(container.pid, None);
    start.child = None;
    Some(e)
}

/// Decision: who places the init in its cgroup, and the unit a manager
/// starts for it. A manager needs the path.
fn take_manager(
    opts: &mut CreateOptions,
) -> Result<(Option<PlaceFn>, Option<String>), RuntimeError> {
    let (manager, unit) = match std::mem::take(&mut opts.cgroup_placement) {
        CgroupPlacement::Runtime => (None, None),
        CgroupPlacement::Manager { place, unit } => (Some(place), unit),
    };
    if manager.is_some() && opts.cgroup.is_none() {
        return Err(RuntimeError::InvalidSpec {
            id: opts.id.clone(),
            reason: "a cgroup manager places the init, but no cgroup path was given".into(),
        });
    }
    Ok((manager, unit))
}

/// Step: the state dir, the first entry of the list that lives in it.
fn setup_state_dir(dir: &Path, list: &mut crate::teardown::List) -> Result<(), RuntimeError> {
    // 0711 like runc's container dir: the files in it are 0600 (exec.fifo
    // 0622), and what keeps host users out is the 0700 `--root` (or, in
    // service mode, the container's 0700 run dir); a root in a user
    // namespace must still reach the rootfs mount point by path.
    crate::private::traverse_dir(dir).map_err(|e| RuntimeError::io("create state dir", dir, e))?;
    list.record(Resource::Tree {
        path: dir.to_path_buf(),
    })?;
    Ok(())
}

/// Decision: the init's plan. Under a cgroup manager the init unshares its
/// cgroup namespace only once placed, so that it is rooted in its scope.
fn build_plan(opts: &CreateOptions, managed: bool) -> Result<init::InitPlan, RuntimeError> {
    let mut plan = init::InitPlan::build(opts)?;
    let newcgroup = nix::sched::CloneFlags::CLONE_NEWCGROUP.bits() as u64;
    if managed && plan.clone_flags & newcgroup != 0 {
        plan.clone_flags &= !newcgroup;
        plan.unshare_cgroup_late = true;
    }
    Ok(plan)
}

/// Step: one write recording everything this start may create before any
/// of it exists (teardown skips what is missing), rather than a write per
/// resource. `managed`: a manager places the init, in the systemd `unit`
/// it starts. Returns the cgroup dirs it planned to make.
fn record_planned(
    opts: &CreateOptions,
    dir: &Path,
    managed: bool,
    unit: Option<String>,
    list: &mut crate::teardown::List,
) -> Result<Vec<PathBuf>, RuntimeError> {
    let mut planned = Vec::new();
    if let RootfsSource::Overlay { .. } = &opts.rootfs {
        planned.push(Resource::EmptyDir {
            path: dir.join("rootfs"),
        });
    }
    if let StartGate::Fifo(path) = &opts.start_gate {
        planned.push(Resource::File { path: path.clone() });
    }
    let mut dirs = Vec::new();
    if let Some(path) = &opts.cgroup {
        if !managed {
            dirs = cgroup::missing_dirs(path);
        }
        // Stopped once what runs in its cgroup is killed (the entry after
        // it), so the stop does not wait on them.
        if let Some(unit) = unit {
            planned.push(Resource::Scope {
                unit,
                cgroup: path.clone(),
            });
        }
        planned.extend(cgroup_entries(path, &dirs));
    }
    list.record_all(planned)?;
    Ok(dirs)
}

/// The entries of the container's cgroup `path` when this start made
/// `made` (outermost first): a cgroup someone else made is only emptied.
fn cgroup_entries(path: &Path, made: &[PathBuf]) -> Vec<Resource> {
    let mut entries: Vec<Resource> = made
        .iter()
        .map(|d| match d == path {
            true => Resource::Cgroup { path: d.clone() },
            false => Resource::CgroupParent { path: d.clone() },
        })
        .collect();
    if !made.iter().any(|d| d == path) {
        entries.push(Resource::CgroupMembers {
            path: path.to_path_buf(),
        });
    }
    entries
}

/// Step: the host's mount point of the overlay root. The overlay is
/// mounted inside the container's mount namespace; the host keeps only
/// this empty dir.
fn setup_rootfs_mountpoint(source: &RootfsSource, dir: &Path) -> Result<PathBuf, RuntimeError> {
    match source {
        RootfsSource::Dir(p) => Ok(p.clone()),
        RootfsSource::Overlay { .. } => {
            let p = dir.join("rootfs");
            std::fs::create_dir_all(&p)
                .map_err(|e| RuntimeError::io("create overlay mount point", &p, e))?;
            Ok(p)
        }
    }
}

/// Step: the exec FIFO of the FIFO gate, opened O_PATH here, not by the
/// init: in a user namespace its root may not walk the state root (runc
/// passes the FIFO the same way).
fn setup_exec_fifo(gate: &StartGate) -> Result<Option<OwnedFd>, RuntimeError> {
    let StartGate::Fifo(path) = gate else {
        return Ok(None);
    };
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| RuntimeError::sys(format!("mkfifo '{}'", path.display()), e))?;
    // Writable by whoever the container's root is (a user namespace maps
    // it to another host uid); mkfifo's mode went through the umask.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o622))
        .map_err(|e| RuntimeError::io("chmod exec fifo", path, e))?;
    Ok(Some(init::open_path(path)?))
}

/// Step: the container's cgroup made by the runtime, with its limits; the
/// open cgroup for CLONE_INTO_CGROUP.
fn setup_runtime_cgroup(
    path: &Path,
    spec: &Spec,
    planned: &[PathBuf],
    list: &mut crate::teardown::List,
) -> Result<File, RuntimeError> {
    let made = cgroup::setup_cgroup(path)?;
    // Someone else made a parent between planning and now: record only
    // what this start made, so teardown leaves theirs alone.
    if made != planned {
        let stale = cgroup_entries(path, planned);
        let mut entries: Vec<Resource> = list
            .entries()
            .iter()
            .filter(|r| !stale.contains(r))
            .cloned()
            .collect();
        entries.extend(cgroup_entries(path, &made));
        list.rewrite(entries)?;
    }
    setup_cgroup_limits(path, spec)
}

/// Step: the console socket's connection, when the process has a terminal.
fn connect_console(
    plan: &init::InitPlan,
    opts: &CreateOptions,
) -> Result<Option<OwnedFd>, RuntimeError> {
    match (&plan.terminal, &opts.console_socket) {
        (true, Some(path)) => Ok(Some(console::connect_console_socket(path)?)),
        (true, None) => Err(RuntimeError::InvalidSpec {
            id: opts.id.clone(),
            reason: "process.terminal is true but no console socket was given".into(),
        }),
        (false, _) => Ok(None),
    }
}

/// Sync point 0: clone. The child runs `init::run` and never returns; the
/// parent gets the init's PID, whether CLONE_INTO_CGROUP placed it, and its
/// end of the sync socket. `ends` (exec FIFO, console, stdio) go to the
/// child; the parent's copies close here.
fn clone_init(
    opts: &CreateOptions,
    plan: &init::InitPlan,
    rootfs: &Path,
    ends: (Option<OwnedFd>, Option<OwnedFd>, Stdio),
    cgroup_fd: Option<&File>,
) -> Result<(Pid, bool, Channel), RuntimeError> {
    let (exec_fifo, console, stdio) = ends;
    let (parent_end, child_end) = channel::pair()?;
    let mut ns_fds = init::open_namespace_paths(&opts.spec)?;
    let pid_ns_guard = ns_fds.enter_pid_namespace()?;
    let cloned = process::clone3(plan.clone_flags, cgroup_fd.map(|f| f.as_raw_fd()));
    drop(pid_ns_guard);
    match cloned? {
        process::Cloned::Child => {
            drop(parent_end);
            init::run(init::InitContext {
                id: &opts.id,
                plan,
                rootfs,
                source: &opts.rootfs,
                cgroup: opts.cgroup.as_deref(),
                channel: child_end,
                console,
                stdio,
                ns_fds,
                gate: &opts.start_gate,
                exec_fifo,
                preserve_fds: opts.preserve_fds,
            })
        }
        process::Cloned::Parent { pid, in_cgroup } => Ok((pid, in_cgroup, parent_end)),
    }
}

/// Step: the init in its cgroup before it runs a single step of its own:
/// by the runtime when CLONE_INTO_CGROUP was refused, else by the cgroup
/// manager, the limits following.
fn place_init(
    opts: &CreateOptions,
    pid: Pid,
    placed: bool,
    manager: Option<PlaceFn>,
) -> Result<(), RuntimeError> {
    let Some(path) = &opts.cgroup else {
        return Ok(());
    };
    let Some(place) = manager else {
        if !placed {
            cgroup::add_process(path, pid)?;
        }
        return Ok(());
    };
    place(pid).map_err(|source| RuntimeError::CgroupPlacement {
        path: path.clone(),
        source,
    })?;
    // The manager's connection and event loop must be gone: nothing else
    // may run beside this process's later clones.
    process::assert_single_threaded()?;
    drop(setup_cgroup_limits(path, &opts.spec)?);
    Ok(())
}

/// Step: what the parent sets on the init from outside, before it runs:
/// oom_score_adj (once root in its own user namespace, its /proc/self
/// files belong to the host's root; runc's nsexec writes it before
/// cloning, with the same effect; inherited across exec) and the ID maps.
fn configure_init_from_outside(
    opts: &CreateOptions,
    plan: &init::InitPlan,
    pid: Pid,
) -> Result<(), RuntimeError> {
    set_oom_score_adj(
        pid,
        opts.spec.process().as_ref().and_then(|p| p.oom_score_adj()),
    )?;
    if plan.new_user_ns {
        process::write_id_mappings(pid, &opts.spec)?;
    }
    Ok(())
}

/// The runtime-spec state hooks get on stdin.
fn hook_state(opts: &CreateOptions, pid: Pid, status: &str) -> String {
    let bundle = opts.bundle.clone().unwrap_or_default();
    hooks::render_state(&opts.spec, &opts.id, status, Some(pid.as_raw()), &bundle)
}

/// Sync point 1' (parent): in a user namespace the overlay root is built
/// here, on idmapped lowers only a process outside it can make; then an
/// idmapped clone of each `idmap` bind mount's source.
fn send_idmapped_trees(
    container: &Container,
    plan: &init::InitPlan,
    source: &RootfsSource,
) -> Result<(), RuntimeError> {
    if !plan.new_user_ns {
        return Ok(());
    }
    let mut trees = Vec::new();
    if let Some((lowers, upper, work)) = idmapped_overlay(plan, source) {
        trees.push(idmap::build_idmapped_overlay(
            container.pid,
            lowers,
            upper,
            work,
        )?);
        trees.extend(idmap::open_idmapped_mounts(container.pid, &plan.mounts)?);
    }
    idmap::send_fds(std::os::fd::AsFd::as_fd(&container.channel), &trees)
}

/// Sync points 1a, 1b and 2 (parent): the runtime-namespace hooks once the
/// init's mounts are done (runtime-spec lifecycle step 6), then the init's
/// report that it is set up and waiting. An init that failed is reaped.
fn wait_ready(
    container: &Container,
    opts: &CreateOptions,
    start: &mut Start,
) -> Result<(), RuntimeError> {
    let recv = || {
        container
            .channel
            .recv()
            .map_err(|e| container.channel_err(e))
    };
    let mut reply = recv()?;
    if let Some(Message::RuntimeHooks) = reply {
        let state = hook_state(opts, container.pid, "creating");
        for point in [hooks::HookPoint::Prestart, hooks::HookPoint::CreateRuntime] {
            hooks::run_hooks(&hooks::hooks_at(&opts.spec, point), point, &state)?;
        }
        // Sync point 1b (parent).
        container
            .channel
            .send(&Message::HooksDone)
            .map_err(|e| container.channel_err(e))?;
        reply = recv()?;
    }
    match reply {
        Some(Message::Ready) => Ok(()),
        reply => Err(
            init_ended(container, &opts.id, start, reply.as_ref()).unwrap_or_else(|| {
                RuntimeError::Protocol {
                    id: opts.id.clone(),
                    expected: "ready",
                    got: reply.map(|m| format!("{m:?}")).unwrap_or_default(),
                }
            }),
        ),
    }
}

/// The overlay root to build in the parent, idmapped: that of a new user
/// namespace (image layers are owned by host root; see `idmap.rs`).
pub(crate) fn idmapped_overlay<'a>(
    plan: &init::InitPlan,
    source: &'a RootfsSource,
) -> Option<(&'a [PathBuf], &'a Path, &'a Path)> {
    match source {
        RootfsSource::Overlay {
            lowers,
            upper,
            work,
        } if plan.new_user_ns => Some((lowers, upper, work)),
        _ => None,
    }
}

/// Step (parent, before the init runs): `linux.resources` in the
/// container's cgroup; the open cgroup for CLONE_INTO_CGROUP.
fn setup_cgroup_limits(path: &Path, spec: &Spec) -> Result<File, RuntimeError> {
    if let Some(resources) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        cgroup::apply_resources(path, resources)?;
    }
    // A container that may manage its cgroup (cgroupns, writable cgroupfs)
    // owns it, also from inside a user namespace.
    if let Some(owner) = cgroup_delegate::plan_cgroup_owner(spec) {
        cgroup_delegate::apply_cgroup_owner(path, owner)?;
    }
    File::open(path).map_err(|e| RuntimeError::io("open cgroup", path, e))
}

/// Step (parent, while the init sets itself up): the device filter, when
/// the spec has device rules. The init's own set-up is berth's code and
/// opens no device the spec denies; the program runs only once the parent
/// releases it, after this: it never runs a moment without the filter.
fn setup_device_filter(spec: &Spec, cgroup: &File) -> Result<(), RuntimeError> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    if rules.is_empty() {
        return Ok(());
    }
    // A device of `linux.devices` is opened (rwm) unless the spec has a rule
    // of its own for exactly that node, whose access then decides (berth's
    // `devices = ["/dev/net/tun:rw"]`): the last matching rule wins, and
    // these come after the spec's.
    let has_rule = |d: &oci_spec::runtime::LinuxDevice| {
        rules.iter().any(|r| {
            r.major() == Some(d.major())
                && r.minor() == Some(d.minor())
                && r.typ().is_some_and(|t| {
                    (t == oci_spec::runtime::LinuxDeviceType::B)
                        == (d.typ() == oci_spec::runtime::LinuxDeviceType::B)
                })
        })
    };
    let extra: Vec<_> = linux
        .devices()
        .iter()
        .flatten()
        .filter(|d| !has_rule(d))
        .map(|d| (d.typ(), d.major(), d.minor()))
        .collect();
    cgroup_devices::apply_device_filter(
        cgroup,
        &cgroup_devices::plan_device_program(&rules, &extra),
    )
}

/// Remove every resource recorded for container `id` under `state_dir`,
/// newest first: the init, what still runs in its cgroup, the cgroup, the
/// exec FIFO, the overlay mount point and the state dir with the list.
/// Keeps going past failures and returns them all.
pub fn cleanup(state_dir: &Path, id: &str) -> Result<(), Vec<RuntimeError>> {
    if let Err(e) = record::validate_id(id) {
        return Err(vec![e]);
    }
    let dir = record::container_dir(state_dir, id);
    if !dir.exists() {
        return Ok(());
    }
    let list = match record::load(&dir) {
        Ok(l) if !l.entries().is_empty() => l,
        other => {
            // Without a readable list (a crash before its first entry)
            // only the directory can be removed.
            let mut errors: Vec<RuntimeError> = other.err().into_iter().collect();
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                errors.push(RuntimeError::io("remove state dir", &dir, e));
            }
            return if errors.is_empty() {
                Ok(())
            } else {
                Err(errors)
            };
        }
    };
    crate::teardown::teardown(list.entries())
        .map_err(|errs| errs.0.into_iter().map(RuntimeError::from).collect())
}

/// Which namespaces a spec asks for, as (type, path-to-join).
pub fn spec_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|v| v.iter().map(|n| (n.typ(), n.path().clone())).collect())
        .unwrap_or_default()
}
