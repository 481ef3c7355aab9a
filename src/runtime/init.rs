//! The container's init, from clone to execve: the whole start sequence is
//! `start_sequence`, the sync points and one phase function between each,
//! in order; each phase lists its steps, one per call. It runs in the cloned child
//! of a single-threaded parent, never returns, and reports a failing step
//! back to the parent over the sync channel before exiting.
//!
//! `InitPlan::build` (in the parent, before clone) validates the spec, so the
//! child only carries out decisions.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{
    Hook, LinuxDevice, LinuxNamespaceType, LinuxPersonality, LinuxPersonalityDomain, Mount,
    PosixRlimitType, Process, Spec,
};

use super::channel::{Channel, Message};
use super::hooks::{hooks_at, run_hooks, HookPoint};
use super::mount::MountContext;
use super::{
    caps, console, cwd, devices, fds, mount, net, process, reaper, seccomp, RootfsSource,
    RuntimeError, StartGate, Stdio,
};
use crate::sys::{LinuxSyscall, Syscall};

const CLONE_NEWTIME: u64 = 0x80;

/// What the init will do, decided and validated in the parent.
#[derive(Debug, Clone)]
pub struct InitPlan {
    pub clone_flags: u64,
    pub new_user_ns: bool,
    pub new_net_ns: bool,
    pub new_cgroup_ns: bool,
    /// The cgroup namespace is unshared after sync point 1, not at clone: a
    /// cgroup manager moves the init after the clone, and the namespace's
    /// root is the cgroup the init is in when it is made (runc's nsexec
    /// waits the same way).
    pub unshare_cgroup_late: bool,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub rootfs_propagation: Option<String>,
    pub mounts: Vec<Mount>,
    pub setup_dev: bool,
    pub devices: Vec<LinuxDevice>,
    pub sysctl: Vec<(String, String)>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub root_readonly: bool,
    /// None: the spec has none; create succeeds and start fails (runtime spec).
    pub process: Option<Process>,
    /// Compiled here in the parent, before clone: the init only loads it.
    pub seccomp: Option<seccomp::Compiled>,
    /// createRuntime or prestart hooks exist: stop at sync point 1a.
    pub runtime_hooks: bool,
    pub create_container_hooks: Vec<Hook>,
    pub start_container_hooks: Vec<Hook>,
    /// `linux.personality` as the persona value for personality(2).
    pub personality: Option<u64>,
    /// Stay PID 1 as a reaper and run the program as a child (`init = true`).
    pub reaper: bool,
    /// How the program is executed: directly, or through the trampoline
    /// when berth runs from its binary on disk (trampoline.rs).
    pub final_exec: super::trampoline::FinalExec,
}

/// personality(2)'s persona for `linux.personality` (runtime-spec: domains
/// LINUX and LINUX32; no flag is defined, so none is accepted).
pub fn plan_personality(p: &LinuxPersonality) -> Result<u64, String> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(format!(
            "linux.personality.flags {:?} are not supported; expected none",
            p.flags().as_ref().unwrap_or(&Vec::new())
        ));
    }
    // <linux/personality.h>: PER_LINUX 0x0000, PER_LINUX32 0x0008.
    Ok(match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    })
}

fn invalid(id: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidSpec {
        id: id.to_string(),
        reason: reason.into(),
    }
}

/// Sysctls a container may set: only namespaced ones, and only in a
/// namespace of its own (runc `validateSysctl`).
pub fn validate_sysctl(key: &str, own: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<(), String> {
    if key.split(['.', '/']).any(|p| p.is_empty() || p == "..") {
        return Err(format!("sysctl '{key}' is not a valid name"));
    }
    let ipc = crate::config::container_keys::IPC_SYSCTLS;
    let (needs, what) = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        (LinuxNamespaceType::Ipc, "an IPC")
    } else if key.starts_with("net.") {
        (LinuxNamespaceType::Network, "a network")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        (LinuxNamespaceType::Uts, "a UTS")
    } else {
        return Err(format!(
            "sysctl '{key}' is not namespaced and cannot be set for one container"
        ));
    };
    if own(needs) {
        Ok(())
    } else {
        Err(format!(
            "sysctl '{key}' needs {what} namespace of the container's own"
        ))
    }
}

/// The spec's namespaces: each type, with the path to join or None for a new one.
type SpecNamespaces = Vec<(LinuxNamespaceType, Option<PathBuf>)>;

impl InitPlan {
    pub fn build(opts: &super::CreateOptions) -> Result<Self, RuntimeError> {
        let id = &opts.id;
        let spec = &opts.spec;
        let process = spec.process().clone();
        if process
            .as_ref()
            .is_some_and(|p| p.args().as_ref().map_or(true, |a| a.is_empty()))
        {
            return Err(invalid(
                id,
                "process.args is empty; expected the program to run",
            ));
        }
        let (namespaces, clone_flags) = plan_namespaces(id, spec)?;
        let new = |t: LinuxNamespaceType| namespaces.iter().any(|(n, p)| *n == t && p.is_none());
        let own = |t: LinuxNamespaceType| namespaces.iter().any(|(n, _)| *n == t);
        let linux = spec.linux().clone().unwrap_or_default();
        super::lsm::refuse_unenforced(process.as_ref(), linux.mount_label().as_deref())
            .map_err(|r| invalid(id, r))?;
        let sysctl = plan_sysctl(id, &linux, &own)?;
        let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
        if hostname.is_some() && !own(LinuxNamespaceType::Uts) {
            return Err(invalid(
                id,
                "a hostname needs a UTS namespace of the container's own",
            ));
        }
        if new(LinuxNamespaceType::User)
            && linux.uid_mappings().as_ref().map_or(true, |m| m.is_empty())
        {
            return Err(invalid(id, "a new user namespace needs linux.uidMappings"));
        }
        let mounts = spec.mounts().clone().unwrap_or_default();
        let setup_dev = plan_setup_dev(&mounts);
        let terminal = process.as_ref().and_then(|p| p.terminal()).unwrap_or(false);
        let console_size = process
            .as_ref()
            .and_then(|p| p.console_size())
            .map(|b| (b.height() as u16, b.width() as u16));
        check_rootfs(id, &opts.rootfs)?;
        let personality = linux
            .personality()
            .as_ref()
            .map(plan_personality)
            .transpose()
            .map_err(|r| invalid(id, r))?;
        Ok(InitPlan {
            personality,
            clone_flags,
            new_user_ns: new(LinuxNamespaceType::User),
            new_net_ns: new(LinuxNamespaceType::Network),
            new_cgroup_ns: new(LinuxNamespaceType::Cgroup),
            unshare_cgroup_late: false,
            terminal,
            console_size,
            hostname,
            domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
            rootfs_propagation: linux.rootfs_propagation().clone(),
            mounts,
            setup_dev,
            devices: linux.devices().clone().unwrap_or_default(),
            sysctl,
            masked_paths: linux.masked_paths().clone().unwrap_or_default(),
            readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
            root_readonly: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            seccomp: linux
                .seccomp()
                .as_ref()
                .map(|p| seccomp::Compiled::compile(p, opts.seccomp_cache.as_deref()))
                .transpose()?,
            runtime_hooks: !hooks_at(spec, HookPoint::CreateRuntime).is_empty()
                || !hooks_at(spec, HookPoint::Prestart).is_empty(),
            create_container_hooks: hooks_at(spec, HookPoint::CreateContainer),
            start_container_hooks: hooks_at(spec, HookPoint::StartContainer),
            final_exec: match &process {
                Some(p) => super::trampoline::plan(
                    p,
                    opts.reaper,
                    linux.seccomp().as_ref(),
                    matches!(opts.start_gate, StartGate::Fifo(_)),
                )?,
                None => super::trampoline::FinalExec::Direct,
            },
            process,
            reaper: opts.reaper,
        })
    }
}

/// The spec's namespaces, each listed once, with the clone flags of the new
/// ones; berth needs a new mount namespace.
fn plan_namespaces(id: &str, spec: &Spec) -> Result<(SpecNamespaces, u64), RuntimeError> {
    let namespaces = super::spec_namespaces(spec);
    let mut clone_flags = 0u64;
    let mut seen = Vec::new();
    for (typ, path) in &namespaces {
        if seen.contains(typ) {
            return Err(invalid(id, format!("namespace '{typ}' is listed twice")));
        }
        seen.push(*typ);
        if path.is_none() {
            clone_flags |= match typ {
                LinuxNamespaceType::Time => CLONE_NEWTIME,
                t => *t as u64,
            };
        }
    }
    let new_mount = namespaces
        .iter()
        .any(|(n, p)| *n == LinuxNamespaceType::Mount && p.is_none());
    if !new_mount {
        return Err(invalid(
            id,
            "berth needs a new mount namespace (type 'mount' without a path)",
        ));
    }
    Ok((namespaces, clone_flags))
}

/// The spec's sysctls, sorted, each validated against the namespaces the
/// container owns.
fn plan_sysctl(
    id: &str,
    linux: &oci_spec::runtime::Linux,
    own: &dyn Fn(LinuxNamespaceType) -> bool,
) -> Result<Vec<(String, String)>, RuntimeError> {
    let mut sysctl: Vec<(String, String)> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctl.sort();
    for (k, _) in &sysctl {
        validate_sysctl(k, own).map_err(|r| invalid(id, r))?;
    }
    Ok(sysctl)
}

/// runc: /dev is populated unless the spec binds it from elsewhere.
fn plan_setup_dev(mounts: &[Mount]) -> bool {
    !mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    })
}

/// A root given as a directory must be an absolute path to one.
fn check_rootfs(id: &str, rootfs: &RootfsSource) -> Result<(), RuntimeError> {
    if let RootfsSource::Dir(p) = rootfs {
        if !p.is_absolute() {
            return Err(invalid(
                id,
                format!("root path '{}' must be absolute", p.display()),
            ));
        }
        if !p.is_dir() {
            return Err(invalid(
                id,
                format!("root path '{}' is not a directory", p.display()),
            ));
        }
    }
    Ok(())
}

/// Namespaces the spec asks to join by path, opened in the parent.
#[derive(Debug, Default)]
pub struct NsFds {
    fds: Vec<(LinuxNamespaceType, OwnedFd)>,
}

fn ns_clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(CLONE_NEWTIME as i32),
        t => CloneFlags::from_bits_retain(t as i32),
    }
}

pub fn open_namespace_paths(spec: &Spec) -> Result<NsFds, RuntimeError> {
    let mut fds = Vec::new();
    for (typ, path) in super::spec_namespaces(spec) {
        if let Some(path) = path {
            let f = std::fs::File::open(&path)
                .map_err(|e| RuntimeError::io("open namespace", &path, e))?;
            fds.push((typ, OwnedFd::from(f)));
        }
    }
    Ok(NsFds { fds })
}

/// Restores the caller's `pid_for_children` when dropped.
pub struct PidNsGuard {
    own: std::fs::File,
}

impl Drop for PidNsGuard {
    fn drop(&mut self) {
        // Back to our own PID namespace, which is always allowed.
        let _ = setns(&self.own, CloneFlags::CLONE_NEWPID);
    }
}

impl NsFds {
    /// Joining a PID namespace only affects children, so the parent joins it
    /// for the clone and leaves again right after.
    pub fn enter_pid_namespace(&mut self) -> Result<Option<PidNsGuard>, RuntimeError> {
        let Some((_, fd)) = self.fds.iter().find(|(t, _)| *t == LinuxNamespaceType::Pid) else {
            return Ok(None);
        };
        let own = std::fs::File::open("/proc/self/ns/pid")
            .map_err(|e| RuntimeError::io("open", "/proc/self/ns/pid", e))?;
        setns(fd, CloneFlags::CLONE_NEWPID)
            .map_err(|e| RuntimeError::sys("join pid namespace", e))?;
        Ok(Some(PidNsGuard { own }))
    }

    fn raw_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.fds.iter().map(|(_, fd)| fd.as_raw_fd())
    }

    /// Child: join the user namespace first (it owns the others), the rest after.
    fn join_in_child(&self) -> Result<(), RuntimeError> {
        let order = |t: &LinuxNamespaceType| if *t == LinuxNamespaceType::User { 0 } else { 1 };
        let mut fds: Vec<_> = self
            .fds
            .iter()
            .filter(|(t, _)| *t != LinuxNamespaceType::Pid)
            .collect();
        fds.sort_by_key(|(t, _)| order(t));
        for (t, fd) in fds {
            setns(fd, ns_clone_flag(*t))
                .map_err(|e| RuntimeError::sys(format!("join {t} namespace"), e))?;
        }
        Ok(())
    }
}

pub struct InitContext<'a> {
    pub id: &'a str,
    pub plan: &'a InitPlan,
    pub rootfs: &'a Path,
    pub source: &'a RootfsSource,
    pub cgroup: Option<&'a Path>,
    pub channel: Channel,
    pub console: Option<OwnedFd>,
    pub stdio: Stdio,
    pub ns_fds: NsFds,
    pub gate: &'a StartGate,
    /// The FIFO gate's FIFO, opened O_PATH by the parent: in a user
    /// namespace the init may not walk the state root (Docker's is 0700).
    pub exec_fifo: Option<OwnedFd>,
    pub preserve_fds: u32,
}

type StepResult<T> = Result<T, (String, String)>;

/// How far the init is: what it still needs open besides stdio, the passed
/// descriptors, the sync channel and the exec FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Held {
    /// Namespace files to join and stdio sources to dup2.
    Start,
    /// The console socket, until the pty is sent.
    Joined,
    /// Nothing more: what the process may inherit.
    Process,
}

impl InitContext<'_> {
    /// The descriptors the init keeps at `held`; every other one is closed
    /// (see fds.rs): the cgroup fd of CLONE_INTO_CGROUP, the caller's
    /// descriptors, everything the cloning process had open.
    fn fds_to_keep(&self, held: Held) -> Vec<RawFd> {
        let mut keep: Vec<RawFd> = fds::passed(self.preserve_fds).collect();
        keep.push(std::os::fd::AsFd::as_fd(&self.channel).as_raw_fd());
        keep.extend(self.exec_fifo.as_ref().map(|f| f.as_raw_fd()));
        keep.extend(self.plan.final_exec.fd());
        if held <= Held::Joined {
            keep.extend(self.console.as_ref().map(|f| f.as_raw_fd()));
        }
        if held == Held::Start {
            keep.extend(self.ns_fds.raw_fds());
            keep.extend(fds::stdio_sources(&self.stdio));
        }
        keep
    }
}

/// Close what `held` does not keep, and `extra`: descriptors the init
/// itself opened and still needs (the procfs it writes sysctls through).
fn close_fds(ctx: &InitContext, held: Held, extra: &[RawFd]) -> StepResult<()> {
    let mut keep = ctx.fds_to_keep(held);
    keep.extend_from_slice(extra);
    step("close host fds", fds::close_all_except(&keep))
}

/// Set once the init reported ready (sync point 2).
static READY_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Behind the FIFO gate, once `start` released us: the FIFO's write end,
/// left open (CLOEXEC) so that only execve closes it. A step failing after
/// the release writes its error there (see [`run`]): the EOF that `start`
/// reads then proves an execve only when no bytes came before it, and
/// poststart hooks never run for a program that did not start.
static STARTED_FIFO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

fn step<T>(name: &str, r: Result<T, RuntimeError>) -> StepResult<T> {
    r.map_err(|e| (name.to_string(), e.to_string()))
}

/// The init's entry point after clone. Never returns.
pub fn run(ctx: InitContext) -> ! {
    process::set_name("berth:[init]");
    let Err((step, message)) = start_sequence(&ctx);
    let sent = ctx.channel.send(&Message::Error {
        step: step.clone(),
        message: message.clone(),
    });
    // Past sync point 2 behind a FIFO gate the creator has gone: nobody reads
    // the channel any more.
    let unread = matches!(ctx.gate, StartGate::Fifo(_))
        && READY_SENT.load(std::sync::atomic::Ordering::SeqCst);
    if sent.is_err() || unread {
        // The creator is gone (FIFO gate): stderr is all that is left.
        eprintln!("berth: container '{}': {step}: {message}", ctx.id);
    }
    // Released behind the FIFO gate: `start` reads the FIFO to EOF and
    // reports this as the start's failure.
    let started = STARTED_FIFO.load(std::sync::atomic::Ordering::SeqCst);
    if started >= 0 {
        let report = super::fifo::fifo_failure(&step, &message);
        // SAFETY: the descriptor was left open on purpose by `start_sequence`.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(started) };
        let _ = nix::unistd::write(fd, report.as_bytes());
    }
    // SAFETY: _exit skips the parent's atexit handlers and buffered stdio,
    // which belong to the parent's copy of this memory.
    unsafe { libc::_exit(127) }
}

/// The start sequence, in order: one phase per call, sync points between
/// them. Each step's comment says why it sits where it does.
fn start_sequence(ctx: &InitContext) -> StepResult<Infallible> {
    // First of all: only what the init was given stays open (CVE-2024-21626).
    close_fds(ctx, Held::Start, &[])?;
    crate::trace::step("init: cloned");
    // Sync point 1 (init): nothing may happen before the parent wrote our ID
    // maps and placed us in the cgroup.
    let hook_state = ctx
        .channel
        .wait_for_proceed()
        .map_err(|m| ("waiting for the parent (sync point 1)".to_string(), m))?;
    crate::trace::step("init: released by the parent");
    let fifo = join_namespaces(ctx)?;
    crate::trace::step("init: namespaces joined, stdio");
    let (procfs, root) = mount_root(ctx)?;
    crate::trace::step("init: root and the spec's mounts");
    // Sync points 1a and 1b, then createContainer hooks: before pivot_root.
    run_runtime_hooks(ctx, &hook_state)?;
    drop(root);
    pivot_root(ctx)?;
    crate::trace::step("init: pivot_root");
    // The console socket is used up; from here the init holds only what its
    // process may inherit, so no cwd or program path can reach a host fd.
    // The procfs stays until the sysctls are written through it.
    let procfs_fd: Vec<RawFd> = procfs.iter().map(|p| p.raw_fd()).collect();
    close_fds(ctx, Held::Process, &procfs_fd)?;
    finish_root(ctx.plan, procfs)?;
    crate::trace::step("init: masked and read-only paths, sysctls");
    let prepared = match &ctx.plan.process {
        Some(p) => Some(prepare_process(ctx.plan, p)?),
        None => None,
    };
    crate::trace::step("init: process prepared");
    // Still undumpable (see process::clone3): the exec FIFO is reopened
    // through /proc/self/fd below, which a process may always do on itself.
    // Sync point 2 (init): fully set up.
    ctx.channel
        .send(&Message::Ready)
        .map_err(|e| ("reporting ready (sync point 2)".to_string(), e.to_string()))?;
    READY_SENT.store(true, std::sync::atomic::Ordering::SeqCst);
    crate::trace::step("init: set up, waiting to be started");
    // Sync point 3 (init): wait to be started.
    wait_for_start(ctx, fifo)?;
    crate::trace::step("init: started");
    exec_program(ctx, &hook_state, prepared)
}

/// Phase after sync point 1: become the namespace's root, join the spec's
/// namespaces, set up stdio, and close what that used. Returns the exec
/// FIFO when the FIFO gate starts us.
fn join_namespaces<'a>(ctx: &'a InitContext) -> StepResult<Option<&'a OwnedFd>> {
    let plan = ctx.plan;
    // A rootless parent had to leave us dumpable to write our ID maps.
    process::set_undumpable();
    // With ID maps in place, become the namespace's root to own what follows.
    if plan.new_user_ns {
        step("become root in the user namespace", become_root())?;
    }
    // Existing namespaces to join, before any mount is made in the wrong one.
    step("join namespaces", ctx.ns_fds.join_in_child())?;
    if plan.unshare_cgroup_late {
        step(
            "unshare the cgroup namespace",
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| RuntimeError::sys("unshare cgroup namespace", e)),
        )?;
    }
    step("stdio", setup_stdio(&ctx.stdio))?;
    // Namespace files and stdio sources are used up: close them before the
    // first path the container controls (its root, its mounts).
    close_fds(ctx, Held::Joined, &[])?;
    // The FIFO lives on the host; the parent opened it for us.
    Ok(match ctx.gate {
        StartGate::Fifo(path) => Some(ctx.exec_fifo.as_ref().ok_or_else(|| {
            (
                "open exec fifo".to_string(),
                format!("no descriptor of '{}' from the parent", path.display()),
            )
        })?),
        StartGate::Socket => None,
    })
}

/// Phase before pivot_root: propagation, the root filesystem, the spec's
/// mounts and devices. Returns the procfs taken for the sysctls and the
/// descriptor of the root, held until pivot_root.
fn mount_root(ctx: &InitContext) -> StepResult<(Option<super::procfs::ProcFs>, crate::sys::Root)> {
    let plan = ctx.plan;
    // Mounts: propagation first so nothing we do leaks to the host.
    step(
        "mount propagation",
        mount::setup_propagation(&LinuxSyscall, plan.rootfs_propagation.as_deref()),
    )?;
    // The procfs sysctls are written through, taken before any of the
    // spec's mounts could shadow /proc (procfs.rs).
    let procfs = match plan.sysctl.is_empty() {
        true => None,
        false => Some(step("procfs", super::procfs::ProcFs::open())?),
    };
    // Sync point 1' (init): in a user namespace the parent built the overlay
    // and idmapped the `idmap` binds (see idmap.rs); attach the overlay,
    // then bind it as a plain root dir.
    let (trees, overlay) = step("idmapped mounts", receive_idmapped(ctx))?;
    let mut staged = Vec::new();
    let idmapped = RootfsSource::Dir(ctx.rootfs.to_path_buf());
    let source = match overlay {
        Some(root) => {
            let trees = step(
                "idmapped mounts",
                super::idmap::stage_mounts(ctx.rootfs, trees),
            )?;
            staged = trees;
            step(
                "idmapped overlay",
                super::idmap::attach_root(ctx.rootfs, root),
            )?;
            &idmapped
        }
        None => ctx.source,
    };
    step(
        "root filesystem",
        mount::setup_root(&LinuxSyscall, ctx.rootfs, source),
    )?;
    let mounts = super::idmap::rewrite_mounts(&plan.mounts, &staged);
    // Every path in the container is resolved from this descriptor of its
    // root (sys/at.rs), never joined to `rootfs` as a string.
    let root = step(
        "root filesystem",
        LinuxSyscall
            .open_root(ctx.rootfs)
            .map_err(|e| RuntimeError::io("open", ctx.rootfs, e)),
    )?;
    let mctx = MountContext {
        sys: &LinuxSyscall,
        root: &root,
        new_net_ns: plan.new_net_ns,
        new_cgroup_ns: plan.new_cgroup_ns,
        new_user_ns: plan.new_user_ns,
        cgroup: ctx.cgroup,
    };
    step("mounts", mount::setup_spec_mounts(&mctx, &mounts))?;
    drop(staged);
    // Devices go on the /dev tmpfs the mounts just made.
    if plan.setup_dev {
        step(
            "devices",
            devices::setup_devices(&root, &plan.devices, plan.new_user_ns),
        )?;
    }
    Ok((procfs, root))
}

/// Sync points 1a and 1b, then the createContainer hooks: the runtime
/// environment exists and pivot_root has not happened.
fn run_runtime_hooks(ctx: &InitContext, hook_state: &str) -> StepResult<()> {
    let plan = ctx.plan;
    // Sync point 1a (init): the runtime environment exists and pivot_root has
    // not happened: the parent runs createRuntime/prestart hooks now.
    if plan.runtime_hooks {
        ctx.channel.send(&Message::RuntimeHooks).map_err(|e| {
            (
                "asking for runtime hooks (sync point 1a)".to_string(),
                e.to_string(),
            )
        })?;
        // Sync point 1b (init).
        ctx.channel
            .wait_for_hooks_done()
            .map_err(|m| ("waiting for runtime hooks (sync point 1b)".to_string(), m))?;
    }
    // In the container's namespaces, before pivot_root (runtime-spec).
    step(
        "createContainer hooks",
        run_hooks(
            &plan.create_container_hooks,
            HookPoint::CreateContainer,
            hook_state,
        ),
    )
}

/// Phase into the new root: pivot_root, its propagation, and the console
/// from the container's own devpts.
fn pivot_root(ctx: &InitContext) -> StepResult<()> {
    let plan = ctx.plan;
    step("pivot_root", mount::pivot_into(&LinuxSyscall, ctx.rootfs))?;
    step(
        "root propagation",
        mount::apply_root_propagation(&LinuxSyscall, plan.rootfs_propagation.as_deref()),
    )?;
    // The pty must come from the container's own devpts, so after pivot_root.
    if let Some(sock) = &ctx.console {
        step(
            "console",
            console::setup_console(sock, plan.console_size, console::Console::Bind),
        )?;
    }
    Ok(())
}

/// Phase in the new root, holding only what the process may inherit:
/// names, loopback, sysctls, then read-only and masked paths and, last of
/// the mounts, the read-only root.
fn finish_root(plan: &InitPlan, procfs: Option<super::procfs::ProcFs>) -> StepResult<()> {
    step("hostname", set_names(plan))?;
    if plan.new_net_ns {
        step("loopback", net::bring_up_loopback())?;
    }
    // Through the procfs taken before the mounts, in our namespaces now.
    if let Some(procfs) = procfs {
        step("sysctl", apply_sysctls(&procfs, &plan.sysctl))?;
    }
    let root = step(
        "read-only paths",
        LinuxSyscall
            .open_root(Path::new("/"))
            .map_err(|e| RuntimeError::io("open", "/", e)),
    )?;
    step(
        "read-only paths",
        mount::apply_readonly_paths(&LinuxSyscall, &root, &plan.readonly_paths),
    )?;
    step(
        "masked paths",
        mount::apply_masked_paths(&LinuxSyscall, &root, &plan.masked_paths),
    )?;
    drop(root);
    // Last of the mounts: nothing can be created under a read-only root.
    if plan.root_readonly {
        step(
            "read-only root",
            mount::remount_root_readonly(&LinuxSyscall),
        )?;
    }
    Ok(())
}

/// Phase after sync point 3: startContainer hooks, then the last steps
/// before execve (signals, inherited fds, seccomp with NNP, the reaper).
fn exec_program(
    ctx: &InitContext,
    hook_state: &str,
    prepared: Option<Prepared>,
) -> StepResult<Infallible> {
    let plan = ctx.plan;
    // In the container, as its user, right before the program (runc does the same).
    step(
        "startContainer hooks",
        run_hooks(
            &plan.start_container_hooks,
            HookPoint::StartContainer,
            &hook_state.replace("\"creating\"", "\"created\""),
        ),
    )?;
    let Some((path, argv, envp, nnp)) = prepared else {
        return Err((
            "start".to_string(),
            "the spec has no process to run".to_string(),
        ));
    };
    reset_signals();
    step("close inherited fds", close_fds_on_exec(ctx.preserve_fds))?;
    // With NNP the filter goes last, so setup needs no syscalls it may forbid.
    if let (true, Some(filter)) = (nnp, &plan.seccomp) {
        step("seccomp", filter.load())?;
    }
    // `init = true`: the init stays as the container's PID 1, inside all of
    // its confinement, and the program becomes its child (see reaper.rs).
    if plan.reaper {
        // The init that stays PID 1 never executes anything: its lines now.
        crate::trace::flush();
        step("berth's init", reaper::split(plan.terminal))?;
    }
    crate::trace::step("init: execve");
    crate::trace::flush();
    // Sync point 4 (init): execve closes the CLOEXEC channel; the parent
    // reads EOF (through the trampoline: at the program's execve).
    let channel = std::os::fd::AsFd::as_fd(&ctx.channel).as_raw_fd();
    let e = plan.final_exec.execute(channel, &path, &argv, &envp);
    Err((
        "exec".to_string(),
        program_error(&path.to_string_lossy(), e).to_string(),
    ))
}

/// Sync point 3 (init): wait to be started, over the socket or the FIFO.
/// Behind the FIFO gate its write end stays open (CLOEXEC) until execve:
/// `start` returns when it closes, so after `start` the program runs (fifo.rs).
fn wait_for_start(ctx: &InitContext, fifo: Option<&OwnedFd>) -> StepResult<()> {
    let Some(fd) = fifo else {
        return ctx
            .channel
            .wait_for_start()
            .map_err(|m| ("waiting for start (sync point 3)".to_string(), m));
    };
    let w = step(
        "wait on exec fifo",
        super::fifo::wait_on_fifo(fd.as_raw_fd()),
    )?;
    STARTED_FIFO.store(w.into_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// What the parent sent at sync point 1': the idmapped bind sources and,
/// first, the overlay root when it built one.
type Idmapped = (Vec<OwnedFd>, Option<OwnedFd>);

fn receive_idmapped(ctx: &InitContext) -> Result<Idmapped, RuntimeError> {
    if !ctx.plan.new_user_ns {
        return Ok((Vec::new(), None));
    }
    // Binds are idmapped only with an overlay root (see idmap.rs).
    if super::idmapped_overlay(ctx.plan, ctx.source).is_none() {
        return Ok((Vec::new(), None));
    }
    let n = super::idmap::idmapped_mounts(&ctx.plan.mounts).len() + 1;
    let mut fds = super::idmap::receive_fds(std::os::fd::AsFd::as_fd(&ctx.channel), n)?;
    let root = fds.remove(0);
    Ok((fds, Some(root)))
}

/// What execve needs (program path, argv, envp) and whether NNP is on.
type Prepared = (CString, Vec<CString>, Vec<CString>, bool);

/// The process steps before the start gate: everything that can fail is
/// tried now, so `create` reports it. Returns what exec needs and whether NNP
/// is on (then seccomp is loaded last).
fn prepare_process(plan: &InitPlan, p: &Process) -> StepResult<Prepared> {
    // oom_score_adj was set by the parent (see runtime::create).
    step("rlimits", apply_rlimits(p))?;
    // Before seccomp, which may allow personality(2) only for some values.
    if let Some(persona) = plan.personality {
        step("personality", set_personality(persona))?;
    }
    let nnp = p.no_new_privileges().unwrap_or(false);
    if nnp {
        step("no_new_privileges", set_no_new_privs())?;
    }
    // Without NNP, loading a filter needs CAP_SYS_ADMIN: load it while we
    // still hold it (runc does the same), so it also covers the rest of setup.
    if let (false, Some(filter)) = (nnp, &plan.seccomp) {
        step("seccomp", filter.load())?;
    }
    step("user and capabilities", apply_user_and_caps(p))?;
    // Resolved in the root and verified (CVE-2024-21626, see cwd.rs).
    step("cwd", cwd::enter(p.cwd()))?;
    // Resolve the program now, so `create` reports a missing one.
    let (path, argv, envp) = step("resolve program", build_exec(p))?;
    Ok((path, argv, envp, nnp))
}

pub fn set_personality(persona: u64) -> Result<(), RuntimeError> {
    // SAFETY: personality(2) takes a plain integer.
    if unsafe { libc::personality(persona as libc::c_ulong) } < 0 {
        return Err(RuntimeError::sys(
            format!("personality({persona:#x})"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

fn become_root() -> Result<(), RuntimeError> {
    use nix::unistd::{setresgid, setresuid, Gid, Uid};
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| RuntimeError::sys("setresgid 0", e))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| RuntimeError::sys("setresuid 0", e))
}

pub fn open_path(path: &Path) -> Result<OwnedFd, RuntimeError> {
    let fd = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| RuntimeError::sys(format!("open '{}'", path.display()), e))?;
    // SAFETY: `open` returned a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setup_stdio(stdio: &Stdio) -> Result<(), RuntimeError> {
    let dup = |fd: RawFd, target: RawFd| {
        nix::unistd::dup2(fd, target)
            .map(|_| ())
            .map_err(|e| RuntimeError::sys(format!("dup2 onto fd {target}"), e))
    };
    match stdio {
        Stdio::Inherit => Ok(()),
        Stdio::Null => {
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| RuntimeError::io("open", "/dev/null", e))?;
            (0..3).try_for_each(|t| dup(null.as_raw_fd(), t))
        }
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            for (fd, target) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
                if let Some(fd) = fd {
                    dup(fd.as_raw_fd(), target)?;
                }
            }
            Ok(())
        }
    }
}

fn set_names(plan: &InitPlan) -> Result<(), RuntimeError> {
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h)
            .map_err(|e| RuntimeError::sys(format!("sethostname '{h}'"), e))?;
    }
    if let Some(d) = &plan.domainname {
        // SAFETY: pointer and length describe the string we own.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(RuntimeError::sys(
                format!("setdomainname '{d}'"),
                nix::Error::last(),
            ));
        }
    }
    Ok(())
}

fn apply_sysctls(
    procfs: &super::procfs::ProcFs,
    sysctl: &[(String, String)],
) -> Result<(), RuntimeError> {
    for (k, v) in sysctl {
        procfs.write_sysctl(k, v)?;
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Step: the spec's rlimits. Raising a hard limit needs CAP_SYS_RESOURCE;
/// the error says so instead of a bare EPERM.
pub fn apply_rlimits(p: &Process) -> Result<(), RuntimeError> {
    for r in p.rlimits().iter().flatten() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) } != 0 {
            let e = nix::Error::last();
            let hint = if e == nix::errno::Errno::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            return Err(RuntimeError::sys(
                format!(
                    "set {:?} to soft {} hard {}{hint}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
                e,
            ));
        }
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<(), RuntimeError> {
    // SAFETY: prctl with plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(RuntimeError::sys("PR_SET_NO_NEW_PRIVS", nix::Error::last()));
    }
    Ok(())
}

/// Step: bounding set, then groups and IDs with PR_SET_KEEPCAPS so the
/// permitted set survives the uid change, then the other capability sets.
pub fn apply_user_and_caps(p: &Process) -> Result<(), RuntimeError> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let caps = p.capabilities().as_ref();
    if let Some(c) = caps {
        caps::drop_bounding(c)?;
    }
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let u = p.user();
    let groups: Vec<Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match setgroups(&groups) {
        Ok(()) => {}
        // setgroups is denied in a user namespace set up without it; only an
        // empty list is then acceptable.
        Err(nix::errno::Errno::EPERM) if groups.is_empty() => {}
        Err(e) => {
            return Err(RuntimeError::sys(
                format!("setgroups {:?}", u.additional_gids()),
                e,
            ))
        }
    }
    let gid = Gid::from_raw(u.gid());
    setresgid(gid, gid, gid).map_err(|e| RuntimeError::sys(format!("setresgid {gid}"), e))?;
    let uid = Uid::from_raw(u.uid());
    setresuid(uid, uid, uid).map_err(|e| RuntimeError::sys(format!("setresuid {uid}"), e))?;
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(c) = caps {
        caps::apply_sets(c)?;
    }
    if let Some(mask) = u.umask() {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// The default PATH when the process environment has none (runc's).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Find `arg0` the way execvp would, but in the container's PATH. The
/// errors use runc's words, which clients match: Docker's CLI exits 127 on
/// "executable file not found" or "no such file or directory" and 126 on
/// "permission denied" (case-sensitive), Podman and CRI do the same.
pub fn resolve_program(arg0: &str, env: &[String]) -> Result<PathBuf, RuntimeError> {
    if arg0.contains('/') {
        // Checked here, after the user switch, so `create` reports what exec would.
        return match nix::unistd::access(arg0, nix::unistd::AccessFlags::X_OK) {
            // A directory passes access(X_OK); execve would say EACCES.
            Ok(()) if !is_file(Path::new(arg0)) => {
                Err(program_error(arg0, nix::errno::Errno::EACCES))
            }
            Ok(()) => Ok(PathBuf::from(arg0)),
            Err(e) => Err(program_error(arg0, e)),
        };
    }
    let vars: HashMap<&str, &str> = env.iter().filter_map(|e| e.split_once('=')).collect();
    let path = vars.get("PATH").copied().unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if nix::unistd::access(&cand, nix::unistd::AccessFlags::X_OK).is_ok() && is_file(&cand) {
            return Ok(cand);
        }
    }
    Err(RuntimeError::Program {
        program: arg0.to_string(),
        reason: format!("executable file not found in $PATH '{path}'"),
    })
}

fn is_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file())
        .unwrap_or(false)
}

/// A program that cannot be executed, with the errno in Go's words (lower
/// case strerror: "no such file or directory", "permission denied").
pub fn program_error(program: &str, e: nix::errno::Errno) -> RuntimeError {
    RuntimeError::Program {
        program: program.to_string(),
        reason: errno_words(e),
    }
}

/// strerror in lower case, as Go (and so runc) spells an errno.
pub fn errno_words(e: nix::errno::Errno) -> String {
    e.desc().to_ascii_lowercase()
}

type ExecArgs = (CString, Vec<CString>, Vec<CString>);

pub fn build_exec(p: &Process) -> Result<ExecArgs, RuntimeError> {
    let args = p.args().clone().unwrap_or_default();
    // The container's own file, so inside its root, but a FIFO, a device or
    // a huge file there must not wedge or flood the exec (rootfile).
    let passwd = crate::rootfile::read_text_in_root(
        Path::new("/"),
        "etc/passwd",
        crate::rootfile::MAX_ID_FILE,
    );
    let env = env_with_home(
        p.env().clone().unwrap_or_default(),
        p.user().uid(),
        passwd.as_deref(),
    );
    let arg0 = args
        .first()
        .ok_or_else(|| invalid("", "process.args is empty"))?;
    let path = resolve_program(arg0, &env)?;
    let c =
        |s: &str| CString::new(s).map_err(|_| invalid("", format!("'{s}' contains a NUL byte")));
    let path = c(&path.to_string_lossy())?;
    let argv = args.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    Ok((path, argv, envp))
}

/// runc's rule, which images and shims count on (containerd's spec has only
/// the image's env): without HOME in `env`, HOME is the user's home in the
/// container's /etc/passwd, or `/`.
pub fn env_with_home(mut env: Vec<String>, uid: u32, passwd: Option<&str>) -> Vec<String> {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return env;
    }
    let home = crate::spec::resolve_user(&uid.to_string(), passwd, None)
        .ok()
        .and_then(|u| u.home)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    env.push(format!("HOME={home}"));
    env
}

/// Signals as a fresh process has them: Rust ignores SIGPIPE, and a caller
/// may have blocked signals; neither may leak into the container.
pub fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL has no handler code to be unsafe about.
            let _ = unsafe { sigaction(sig, &dfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
}

/// Mark every descriptor above stdio and the `preserve` passed ones (OCI
/// `--preserve-fds`, systemd's LISTEN_FDS) close-on-exec: no other host fd
/// may reach the container (CVE-2024-21626 was a leaked cgroup fd).
pub fn close_fds_on_exec(preserve: u32) -> Result<(), RuntimeError> {
    let first = 3 + preserve;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Older kernels, or a seccomp profile from before close_range (as
    // runtime-tools' default one): mark each open descriptor instead.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| RuntimeError::io("list open fds", "/proc/self/fd", e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|fd| *fd >= first as RawFd)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number only changes its flags; the
        // directory listing's own fd is already closed (EBADF, harmless).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personality_domains_map_to_personas() {
        let parse = |j: &str| serde_json::from_str::<LinuxPersonality>(j).unwrap();
        // What `podman run --personality LINUX32` puts in config.json.
        assert_eq!(plan_personality(&parse(r#"{"domain":"LINUX32"}"#)), Ok(8));
        assert_eq!(plan_personality(&parse(r#"{"domain":"LINUX"}"#)), Ok(0));
        let e = plan_personality(&parse(r#"{"domain":"LINUX","flags":["X"]}"#)).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn home_comes_from_passwd_unless_set() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nweb:x:101:101::/srv/web:/bin/false\n";
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            env_with_home(env(&["PATH=/bin"]), 0, Some(passwd)),
            env(&["PATH=/bin", "HOME=/root"])
        );
        assert_eq!(
            env_with_home(env(&[]), 101, Some(passwd)),
            env(&["HOME=/srv/web"])
        );
        assert_eq!(env_with_home(env(&[]), 7, Some(passwd)), env(&["HOME=/"]));
        assert_eq!(env_with_home(env(&[]), 0, None), env(&["HOME=/"]));
        assert_eq!(
            env_with_home(env(&["HOME=/x"]), 0, Some(passwd)),
            env(&["HOME=/x"])
        );
    }

    #[test]
    fn sysctls_need_their_namespace() {
        let all = |_: LinuxNamespaceType| true;
        let none = |_: LinuxNamespaceType| false;
        assert!(validate_sysctl("net.ipv4.ping_group_range", &all).is_ok());
        assert!(validate_sysctl("net.ipv4.ping_group_range", &none).is_err());
        assert!(validate_sysctl("kernel.shmmax", &all).is_ok());
        assert!(validate_sysctl("fs.mqueue.msg_max", &all).is_ok());
        assert!(validate_sysctl("kernel.panic", &all).is_err());
        assert!(validate_sysctl("net.../../x", &all).is_err());
    }

    #[test]
    fn program_is_found_in_the_given_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(
            resolve_program("sh", &env).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            resolve_program("/bin/sh", &env).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let err = |arg0: &str, env: &[String]| resolve_program(arg0, env).unwrap_err().to_string();
        // runc's words, which Docker's CLI turns into exit codes 127 and 126.
        assert_eq!(
            err("/no/such/program", &env),
            "exec '/no/such/program': no such file or directory"
        );
        assert_eq!(
            err("no-such-program-berth", &env),
            "exec 'no-such-program-berth': executable file not found in $PATH '/nonexistent:/bin'"
        );
        assert_eq!(err("/etc", &env), "exec '/etc': permission denied");
        // Not executable (a test may run as root, who needs one x bit).
        assert_eq!(
            err("/etc/passwd", &env),
            "exec '/etc/passwd': permission denied"
        );
    }
}
