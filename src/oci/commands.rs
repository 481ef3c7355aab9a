//! The OCI verbs, each a thin function over `crate::runtime`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};

use super::state::{self, StateFile, Status, EXEC_FIFO};
use super::{CgroupManager, Cli, Cmd, CreateArgs, ExecArgs};
use crate::runtime::hooks::HookPoint;
use crate::runtime::{
    self, CgroupPlacement, CreateOptions, ExecOptions, Pid, RootfsSource, StartGate, Stdio,
};
use crate::systemd::{bus, unit};

pub fn dispatch(cli: &Cli) -> Result<i32> {
    let root = cli.root.as_path();
    // The verbs that clone container processes run from a copy of this
    // binary the container cannot write (CVE-2019-5736, runtime/exe.rs);
    // this re-executes once, before anything else happens.
    if matches!(cli.cmd, Cmd::Create(_) | Cmd::Run { .. } | Cmd::Exec(_)) {
        runtime::ensure_protected()?;
    }
    match &cli.cmd {
        Cmd::Create(a) => create(cli, a, true).map(|_| 0),
        Cmd::Start { id } => start(root, id).map(|_| 0),
        Cmd::Run {
            create: a,
            detach,
            keep,
        } => run(cli, a, *detach, *keep),
        Cmd::State { id } => state(root, id).map(|_| 0),
        Cmd::Kill { all, id, signal } => {
            kill(root, id, signal.as_deref().unwrap_or("SIGTERM"), *all).map(|_| 0)
        }
        Cmd::Delete { force, id } => delete(root, id, *force).map(|_| 0),
        Cmd::Exec(a) => exec(root, a),
        Cmd::Pause { id } => freeze(root, id, true).map(|_| 0),
        Cmd::Resume { id } => freeze(root, id, false).map(|_| 0),
        Cmd::Update { resources, id } => update(root, id, resources).map(|_| 0),
        Cmd::Ps {
            format,
            id,
            ps_args: _,
        } => ps(root, id, format).map(|_| 0),
        Cmd::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
        Cmd::Spec { bundle } => spec(bundle.as_deref()).map(|_| 0),
    }
}

/// `state`: the runtime-spec state JSON.
fn state(root: &Path, id: &str) -> Result<()> {
    let st = StateFile::load(root, id).map_err(|e| anyhow!(e))?;
    let status = st.status(root);
    println!("{}", serde_json::to_string_pretty(&st.render(status))?);
    Ok(())
}

/// `exec`: a process under the container's confinement; its exit code
/// unless detached.
fn exec(root: &Path, a: &ExecArgs) -> Result<i32> {
    let id = &a.id;
    let st = StateFile::load(root, id).map_err(|e| anyhow!(e))?;
    let status = st.status(root);
    if !matches!(status, Status::Running | Status::Created) {
        bail!("cannot exec in container '{id}': it is {}", status.as_str());
    }
    let mut p = exec_process(&st, a)?;
    if p.cwd().as_os_str().is_empty() {
        p.set_cwd(PathBuf::from("/"));
    }
    let confinement = runtime::Confinement::from_spec(id, &st.config)?;
    let child = runtime::exec(ExecOptions {
        cgroup: st.cgroup.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ..ExecOptions::new(id, Pid::from_raw(st.pid), st.start_time, p, confinement)
    })?;
    if let Some(f) = &a.pid_file {
        write_pid_file(f, child.pid.as_raw())?;
    }
    if a.detach {
        return Ok(0);
    }
    Ok(child.wait()?)
}

/// The process `exec` runs: `--process FILE`, else the container's own
/// process with the command line's args and changes.
fn exec_process(st: &StateFile, a: &ExecArgs) -> Result<Process> {
    if let Some(file) = &a.process {
        let text = std::fs::read(file)
            .with_context(|| format!("read process file '{}'", file.display()))?;
        return serde_json::from_slice::<Process>(&text)
            .with_context(|| format!("parse process file '{}'", file.display()));
    }
    if a.args.is_empty() {
        bail!("exec needs --process FILE or the command to run");
    }
    let mut p = st.config.process().clone().unwrap_or_default();
    p.set_args(Some(a.args.clone()));
    p.set_terminal(Some(a.tty));
    let mut e = p.env().clone().unwrap_or_default();
    e.extend(a.env.iter().cloned());
    p.set_env(Some(e));
    if let Some(c) = &a.cwd {
        p.set_cwd(c.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = parse_user(u)?;
        let mut usr = p.user().clone();
        usr.set_uid(uid);
        usr.set_gid(gid.unwrap_or(usr.gid()));
        p.set_user(usr);
    }
    if !a.additional_gids.is_empty() {
        let mut usr = p.user().clone();
        usr.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(usr);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.caps.is_empty() {
        add_caps(&mut p, &a.caps)?;
    }
    Ok(p)
}

/// `ps`: the PIDs in the container's cgroup, as a table or JSON.
fn ps(root: &Path, id: &str, format: &str) -> Result<()> {
    let st = StateFile::load(root, id).map_err(|e| anyhow!(e))?;
    let pids = match &st.cgroup {
        Some(cg) if cg.exists() => runtime::cgroup_pids(cg)?,
        Some(_) => vec![],
        // As crun says: without a cgroup there is no list to trust.
        None => bail!(
            "cannot list the processes of container '{id}': it was created without a cgroup (--cgroup-manager disabled)"
        ),
    };
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            println!("PID");
            for p in pids {
                println!("{p}");
            }
        }
        f => bail!("unknown ps format '{f}'; expected table or json"),
    }
    Ok(())
}

/// `spec`: write a default config.json into the bundle (or `.`).
fn spec(bundle: Option<&Path>) -> Result<()> {
    let dir = bundle.unwrap_or(Path::new("."));
    let path = dir.join("config.json");
    if path.exists() {
        bail!("'{}' exists; remove it first", path.display());
    }
    let text = serde_json::to_string_pretty(&default_spec())?;
    std::fs::write(&path, text).with_context(|| format!("write '{}'", path.display()))
}

fn parse_user(u: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = uid
        .parse()
        .with_context(|| format!("user '{u}': expected uid[:gid] as numbers"))?;
    let gid = gid
        .map(|g| g.parse())
        .transpose()
        .with_context(|| format!("user '{u}': expected uid[:gid] as numbers"))?;
    Ok((uid, gid))
}

fn add_caps(p: &mut Process, caps: &[String]) -> Result<()> {
    let mut c = p.capabilities().clone().unwrap_or_default();
    for name in caps {
        let cap: oci_spec::runtime::Capability =
            serde_json::from_value(serde_json::Value::String(name.clone()))
                .with_context(|| format!("unknown capability '{name}'"))?;
        let with = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = set.clone().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        let (b, e, pm) = (with(c.bounding()), with(c.effective()), with(c.permitted()));
        c.set_bounding(b);
        c.set_effective(e);
        c.set_permitted(pm);
    }
    p.set_capabilities(Some(c));
    Ok(())
}

/// runc's default spec, with berth's name.
pub fn default_spec() -> Spec {
    let mut s = Spec::default();
    s.set_hostname(Some("berth".into()));
    let mut root = s.root().clone().unwrap_or_default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(true));
    s.set_root(Some(root));
    s.set_version("1.0.2".into());
    // runc's default: deny every device; the runtime adds the default nodes.
    if let Some(mut linux) = s.linux().clone() {
        let mut res = linux.resources().clone().unwrap_or_default();
        res.set_devices(Some(vec![
            oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap_or_default(),
        ]));
        linux.set_resources(Some(res));
        s.set_linux(Some(linux));
    }
    s
}

fn load_bundle(bundle: &Path) -> Result<(PathBuf, Spec)> {
    let bundle =
        std::fs::canonicalize(bundle).with_context(|| format!("bundle '{}'", bundle.display()))?;
    let cfg = bundle.join("config.json");
    let mut spec = Spec::load(&cfg).with_context(|| format!("load '{}'", cfg.display()))?;
    // Relative paths in a bundle are relative to the bundle (runc chdirs there).
    if let Some(mut root) = spec.root().clone() {
        if root.path().is_relative() {
            root.set_path(bundle.join(root.path()));
            spec.set_root(Some(root));
        }
    }
    if let Some(mounts) = spec.mounts_mut() {
        for m in mounts.iter_mut() {
            let is_bind = m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind");
            if let (true, Some(src)) = (is_bind, m.source().clone()) {
                if src.is_relative() {
                    m.set_source(Some(bundle.join(src)));
                }
            }
        }
    }
    Ok((bundle, spec))
}

/// Hooks whose failure only warns (runtime-spec: poststart and poststop).
fn run_warning_hooks(st: &StateFile, point: HookPoint, status: Status) {
    let hooks = runtime::hooks::hooks_at(&st.config, point);
    if hooks.is_empty() {
        return;
    }
    let state = runtime::hooks::render_state(
        &st.config,
        &st.id,
        status.as_str(),
        (status != Status::Stopped).then_some(st.pid),
        &st.bundle,
    );
    for e in runtime::hooks::run_hooks_warning(&hooks, point, &state) {
        runtime::warn(&format!("{e}, ignoring"));
    }
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    // Atomic: a shim polling the file must never read a partial PID.
    let tmp = path.with_extension("berth-tmp");
    crate::private::write_atomic_mode(&tmp, path, pid.to_string().as_bytes(), 0o644)
        .with_context(|| format!("write pid file '{}'", path.display()))
}

fn create(cli: &Cli, a: &CreateArgs, fifo: bool) -> Result<(runtime::Container, StateFile)> {
    let root = cli.root.as_path();
    let dir = state::container_dir(root, &a.id);
    if dir.exists() {
        bail!("container '{}' already exists", a.id);
    }
    // 0700 like runc's /run/runc: the state and exec.fifo are root's.
    crate::private::dir(root).with_context(|| format!("create root '{}'", root.display()))?;
    let (bundle, spec) = load_bundle(&a.bundle)?;
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| anyhow!("config.json has no root"))?;
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let cgroup = match cli.cgroup_manager {
        Some(CgroupManager::Disabled) => None,
        _ => Some(
            state::cgroup_dir(cgroups_path.as_deref(), &a.id, cli.systemd_cgroup)
                .map_err(|e| anyhow!(e))?,
        ),
    };
    let (placement, scope) = if cli.systemd_cgroup && cgroup.is_some() {
        systemd_placement(&a.id, cgroups_path.as_deref(), &spec)?
    } else {
        (CgroupPlacement::Runtime, None)
    };
    let gate = if fifo {
        StartGate::Fifo(dir.join(EXEC_FIFO))
    } else {
        StartGate::Socket
    };
    let opts = CreateOptions {
        id: a.id.clone(),
        spec: spec.clone(),
        rootfs: RootfsSource::Dir(rootfs),
        cgroup: cgroup.clone(),
        cgroup_placement: placement,
        console_socket: a.console_socket.clone(),
        state_dir: root.to_path_buf(),
        stdio: Stdio::Inherit,
        start_gate: gate,
        bundle: Some(bundle.clone()),
        preserve_fds: a.preserve_fds,
        reaper: false,
        // No cache: the caller's --root holds only container state, and
        // emptied is all it is after the last delete (Podman checks).
        seccomp_cache: None,
        start_at_once: false,
        while_init_sets_up: None,
    };
    // A failed create stops the scope it started too (its list names it).
    let container = runtime::create(opts)?;
    let pid = container.pid();
    let st = StateFile {
        id: a.id.clone(),
        pid: pid.as_raw(),
        start_time: runtime::proc_start_time(pid),
        bundle,
        created: super::rfc3339_now(),
        cgroup,
        systemd_unit: scope,
        config: spec,
    };
    let saved = st
        .save(root)
        .map_err(|e| anyhow!(e))
        .and_then(|_| match &a.pid_file {
            Some(f) => write_pid_file(f, pid.as_raw()),
            None => Ok(()),
        });
    if let Err(e) = saved {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = container.wait();
        let _ = runtime::cleanup(root, &a.id);
        return Err(e);
    }
    Ok((container, st))
}

/// `--systemd-cgroup`: the init goes into a transient scope that systemd
/// creates over D-Bus (runc's systemd cgroup driver). Everything is planned
/// here, so a bad cgroupsPath or `org.systemd.property.*` annotation fails
/// before anything exists; the call itself happens after the clone (a scope
/// needs a process), from a connection the runtime sees closed again. The
/// runtime records the scope's unit and stops it on cleanup.
fn systemd_placement(
    id: &str,
    cgroups_path: Option<&Path>,
    spec: &Spec,
) -> Result<(CgroupPlacement, Option<String>)> {
    let scope = state::systemd_scope(cgroups_path, id).map_err(|e| anyhow!(e))?;
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let props =
        unit::plan_scope_properties(id, &scope.slice, resources, spec.annotations().as_ref())?;
    let name = scope.unit.clone();
    let place: runtime::PlaceFn = Box::new(move |pid: Pid| {
        match bus::start_transient_unit(&name, &props, &[pid.as_raw() as u32]) {
            Ok(()) => Ok(()),
            Err(e @ bus::BusError::Unreachable { .. }) => Err(format!(
                "{e}; --systemd-cgroup needs systemd's D-Bus API (run without --systemd-cgroup to write cgroupfs directly)"
            )
            .into()),
            Err(e) => Err(e.into()),
        }
    });
    let placement = CgroupPlacement::Manager {
        place,
        unit: Some(scope.unit.clone()),
    };
    Ok((placement, Some(scope.unit)))
}

fn start(root: &Path, id: &str) -> Result<()> {
    let st = StateFile::load(root, id).map_err(|e| anyhow!(e))?;
    match st.status(root) {
        Status::Created => {}
        s => bail!(
            "cannot start container '{id}': it is {}, expected created",
            s.as_str()
        ),
    }
    let fifo = state::container_dir(root, id).join(EXEC_FIFO);
    if st.config.process().is_none() {
        // Release the init anyway so it ends and the container is stopped.
        let _ = runtime::start_fifo(id, Pid::from_raw(st.pid), &fifo);
        bail!("cannot start container '{id}': its spec has no process");
    }
    runtime::start_fifo(id, Pid::from_raw(st.pid), &fifo)?;
    run_warning_hooks(&st, HookPoint::Poststart, Status::Running);
    Ok(())
}

const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn run(cli: &Cli, a: &CreateArgs, detach: bool, keep: bool) -> Result<i32> {
    let root = cli.root.clone();
    // Block before start so no signal meant for the container is lost; the
    // init resets its own mask before exec.
    forwarded_set().thread_block().context("block signals")?;
    let (container, st) = create(cli, a, false)?;
    let pid = container.pid();
    if let Err(e) = container.start() {
        let _ = runtime::cleanup(&root, &a.id);
        return Err(e.into());
    }
    run_warning_hooks(&st, HookPoint::Poststart, Status::Running);
    if detach {
        return Ok(0);
    }
    drop(st);
    drop(container);
    // A short-lived container is reaped here: the re-exec below costs an
    // execve plus dynamic loading and relocation of this binary, about as
    // long as a whole run of `/bin/true`, and its only gain is memory that a
    // few milliseconds of waiting do not tie up.
    if let Some(code) = wait_exit(pid, Some(REEXEC_AFTER))? {
        return finish_run(&root, &a.id, keep, code);
    }
    // Re-exec into the small waiting personality: the PID stays (so we stay
    // the init's parent) and the blocked signal mask carries over, but the
    // pages touched by parsing and setup are gone.
    let err = exec_waiter(pid, &root, &a.id, keep);
    eprintln!("berth-runtime: warning: {err}; waiting in this process instead");
    wait_forwarding(pid, &root, &a.id, keep)
}

/// How long `run` waits in the full process before re-executing into the
/// small waiting personality.
const REEXEC_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// argv[1] of the waiting personality `run` re-executes itself into.
pub const WAIT_VERB: &str = "__wait";

fn exec_waiter(pid: Pid, root: &Path, id: &str, keep: bool) -> anyhow::Error {
    use std::ffi::CString;
    let args = [
        "berth-runtime".to_string(),
        WAIT_VERB.to_string(),
        pid.to_string(),
        root.to_string_lossy().into_owned(),
        id.to_string(),
        if keep { "1" } else { "0" }.to_string(),
    ];
    let argv: Vec<CString> = match args.iter().map(|a| CString::new(a.as_str())).collect() {
        Ok(v) => v,
        Err(e) => return anyhow!("re-exec arguments: {e}"),
    };
    match nix::unistd::execv(c"/proc/self/exe", &argv) {
        Ok(never) => match never {},
        Err(e) => anyhow!("re-exec /proc/self/exe to wait: {e}"),
    }
}

/// The waiting personality: `berth-runtime __wait PID ROOT ID KEEP`.
pub fn waiter_main(args: &[String]) -> Result<i32> {
    let [pid, root, id, keep] = args else {
        bail!("{WAIT_VERB} expects PID ROOT ID KEEP");
    };
    let pid = Pid::from_raw(pid.parse().context("waiter pid")?);
    crate::runtime::set_process_name("berth:[wait]");
    crate::runtime::release_resident_code();
    wait_forwarding(pid, Path::new(root), id, keep == "1")
}

fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Forward signals to the container until its init exits; then clean up.
fn wait_forwarding(pid: Pid, root: &Path, id: &str, keep: bool) -> Result<i32> {
    let code = wait_exit(pid, None)?.ok_or_else(|| anyhow!("waitpid {pid}: no exit status"))?;
    finish_run(root, id, keep, code)
}

/// Forward signals to the container's init until it exits (its exit code,
/// or 128 + the signal that killed it) or until `timeout` has passed (None).
fn wait_exit(pid: Pid, timeout: Option<std::time::Duration>) -> Result<Option<i32>> {
    let set = forwarded_set();
    set.thread_block().context("block signals")?;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        // A SIGCHLD may have arrived before the signals were blocked here
        // (or across the re-exec): check before every wait.
        match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(ws) if runtime::exit_status(ws).is_some() => return Ok(runtime::exit_status(ws)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(anyhow!("waitpid {pid}: {e}")),
        }
        let sig = match deadline {
            None => set.wait().context("wait for signals")?,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                match timed_wait(&set, left)? {
                    Some(sig) => sig,
                    None => continue,
                }
            }
        };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

/// `sigtimedwait(2)` on `set`: the signal, or None on timeout or EINTR.
fn timed_wait(set: &SigSet, left: std::time::Duration) -> Result<Option<Signal>> {
    let ts = libc::timespec {
        tv_sec: left.as_secs() as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid sigset_t, `ts` outlives the call, and a null
    // siginfo pointer is allowed.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if n < 0 {
        return match nix::errno::Errno::last() {
            nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR => Ok(None),
            e => Err(anyhow!("sigtimedwait: {e}")),
        };
    }
    Ok(Signal::try_from(n).ok())
}

/// After the init exited: remove the container (unless `--keep`) and run
/// the poststop hooks; the run's exit code is `code`.
fn finish_run(root: &Path, id: &str, keep: bool, code: i32) -> Result<i32> {
    let _ = forwarded_set().thread_unblock();
    if !keep {
        let st = StateFile::load(root, id).ok();
        runtime::cleanup(root, id).map_err(join_errors)?;
        if let Some(st) = st {
            run_warning_hooks(&st, HookPoint::Poststop, Status::Stopped);
        }
    }
    Ok(code)
}

fn join_errors(v: Vec<runtime::RuntimeError>) -> anyhow::Error {
    anyhow!(v
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; "))
}

/// A signal by name or number (runtime::parse_signal), or an error saying so.
pub fn parse_signal(s: &str) -> Result<i32> {
    runtime::parse_signal(s).ok_or_else(|| {
        anyhow!(
            "unknown signal '{s}': expected a name (TERM, SIGRTMIN+3) or a number from 1 to {}",
            libc::SIGRTMAX()
        )
    })
}

/// Who `kill` signals.
#[derive(Debug, PartialEq, Eq)]
enum KillTarget {
    Init,
    Cgroup,
    /// `--all` after the init exited and its cgroup went: nothing is left.
    Nothing,
    NotRunning,
}

/// runc's rule: `--all` signals whatever is in the container's cgroup, also
/// after the init exited (containerd's shim kills an exited init's children
/// so when the container shares the host's PID namespace); without it only
/// a live init is signalled.
fn plan_kill(status: Status, all: bool, cgroup: Option<bool>) -> KillTarget {
    match (all, cgroup, status) {
        (true, Some(false), Status::Stopped) => KillTarget::Nothing,
        (true, Some(_), _) => KillTarget::Cgroup,
        (_, _, Status::Stopped) => KillTarget::NotRunning,
        _ => KillTarget::Init,
    }
}

fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<()> {
    let signo = parse_signal(signal)?;
    let st = StateFile::load(root, id).map_err(|e| anyhow!(e))?;
    let status = st.status(root);
    let cgroup_exists = st.cgroup.as_ref().map(|cg| cg.exists());
    match plan_kill(status, all, cgroup_exists) {
        KillTarget::Nothing => Ok(()),
        // runc's words: containerd's shim maps "container not running" to
        // NotFound ("process already finished"), anything else to unknown.
        KillTarget::NotRunning => bail!("cannot kill '{id}': container not running"),
        KillTarget::Cgroup => {
            if let Some(cg) = &st.cgroup {
                if signo == libc::SIGKILL {
                    runtime::cgroup_kill(cg, Signal::SIGKILL)?;
                } else {
                    for pid in runtime::cgroup_pids(cg)? {
                        // A process may exit meanwhile; the others still get it.
                        let _ = runtime::send_signal(pid, signo);
                    }
                }
            }
            Ok(())
        }
        KillTarget::Init => {
            // Through a pidfd opened on the recorded start time: a PID
            // reused since then is never signalled.
            let init = runtime::ProcessHandle::open(Pid::from_raw(st.pid), st.start_time)
                .ok_or_else(|| anyhow!("cannot kill '{id}': container not running"))?;
            init.signal(signo)
                .with_context(|| format!("kill container '{id}' with signal {signo}"))?;
            Ok(())
        }
    }
}

fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = state::container_dir(root, id);
    let mut poststop = None;
    match StateFile::load(root, id) {
        Ok(st) => {
            let status = st.status(root);
            // The runtime spec: deleting a container that is not stopped is
            // an error (runc quietly deletes created ones; --force does here).
            match status {
                Status::Stopped => {}
                _ if force => {}
                s => bail!(
                    "cannot delete container '{id}': it is {}; stop it or use --force",
                    s.as_str()
                ),
            }
            if status != Status::Stopped {
                if let Some(cg) = &st.cgroup {
                    if status == Status::Paused {
                        let _ = runtime::cgroup_freeze(cg, false);
                    }
                }
                if let Some(init) =
                    runtime::ProcessHandle::open(Pid::from_raw(st.pid), st.start_time)
                {
                    let _ = init.signal(libc::SIGKILL);
                }
            }
            poststop = Some(st);
        }
        // A create that crashed before writing its state still left a record.
        Err(_) if dir.exists() => {}
        Err(_) if force => return Ok(()),
        Err(e) => bail!(e),
    }
    runtime::cleanup(root, id).map_err(join_errors)?;
    if let Some(st) = poststop {
        run_warning_hooks(&st, HookPoint::Poststop, Status::Stopped);
    }
    Ok(())
}

fn freeze(root: &Path, id: &str, frozen: bool) -> Result<()> {
    let st = StateFile::load(root, id).map_err(|e| anyhow!(e))?;
    let status = st.status(root);
    let ok = if frozen {
        status == Status::Running
    } else {
        status == Status::Paused
    };
    if !ok {
        bail!(
            "cannot {} container '{id}': it is {}",
            if frozen { "pause" } else { "resume" },
            status.as_str()
        );
    }
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| anyhow!("container '{id}' has no cgroup"))?;
    runtime::cgroup_freeze(cg, frozen)?;
    Ok(())
}

/// `linux.resources` JSON, as `update --resources` reads it.
fn parse_resources(text: &[u8], from: &Path) -> Result<LinuxResources> {
    serde_json::from_slice(text).with_context(|| {
        format!(
            "parse resources '{}': expected the runtime spec's linux.resources object",
            from.display()
        )
    })
}

fn update(root: &Path, id: &str, resources: &Path) -> Result<()> {
    let st = StateFile::load(root, id).map_err(|e| anyhow!(e))?;
    let status = st.status(root);
    if status == Status::Stopped {
        bail!("cannot update container '{id}': it is stopped");
    }
    let text = if resources == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("read stdin")?;
        buf
    } else {
        std::fs::read(resources)
            .with_context(|| format!("read resources '{}'", resources.display()))?
    };
    let res = parse_resources(&text, resources)?;
    let cg = st.cgroup.as_ref().ok_or_else(|| {
        anyhow!("cannot update container '{id}': it was created without a cgroup")
    })?;
    runtime::apply_resources(cg, &res)?;
    Ok(())
}

/// runtime-spec features.md.
fn features() -> serde_json::Value {
    let caps: Vec<String> = caps::runtime::thread_all_supported()
        .into_iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let namespaces: Vec<&str> = [
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Time,
    ]
    .iter()
    .map(|t| match t {
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Time => "time",
    })
    .collect();
    let hooks = [
        HookPoint::Prestart,
        HookPoint::CreateRuntime,
        HookPoint::CreateContainer,
        HookPoint::StartContainer,
        HookPoint::Poststart,
        HookPoint::Poststop,
    ]
    .map(HookPoint::name);
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": hooks,
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
            "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
            "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "private", "rbind",
            "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw",
            "shared", "silent", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": namespaces,
            "capabilities": caps,
            "cgroup": {"v1": false, "v2": true, "systemd": true, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "io.github.berth.runtime.version": env!("CARGO_PKG_VERSION")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        // Real-time signals: by number (as Podman sends them) and by name.
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!(parse_signal("37").unwrap(), 37);
        assert_eq!(parse_signal("RTMIN+3").unwrap(), min + 3);
        assert_eq!(parse_signal("SIGRTMIN").unwrap(), min);
        assert_eq!(parse_signal("sigrtmax-1").unwrap(), max - 1);
        assert!(parse_signal("RTMIN+99").is_err());
        assert!(parse_signal("RTMINX").is_err());
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn default_spec_round_trips() {
        let s = default_spec();
        let text = serde_json::to_string(&s).unwrap();
        let back: Spec = serde_json::from_str(&text).unwrap();
        assert_eq!(back.root().as_ref().unwrap().path(), Path::new("rootfs"));
        assert!(back
            .linux()
            .as_ref()
            .unwrap()
            .masked_paths()
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/kcore"));
    }

    #[test]
    fn podman_update_resources_parse() {
        // What `podman update --memory 100m --cpus 0.5` writes (libpod
        // generateResourceFile: json.Marshal of spec.LinuxResources).
        let r = parse_resources(
            br#"{"memory":{"limit":104857600},"cpu":{"quota":50000,"period":100000}}"#,
            Path::new("/var/tmp/podman1"),
        )
        .unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(104857600));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50000));
        let e = parse_resources(b"\"100m\"", Path::new("/x")).unwrap_err();
        assert!(format!("{e:#}").contains("resources '/x'"), "{e:#}");
    }

    #[test]
    fn kill_all_reaches_what_an_exited_init_left() {
        use KillTarget::*;
        assert_eq!(plan_kill(Status::Running, false, Some(true)), Init);
        assert_eq!(plan_kill(Status::Paused, false, None), Init);
        assert_eq!(plan_kill(Status::Running, true, Some(true)), Cgroup);
        assert_eq!(plan_kill(Status::Stopped, true, Some(true)), Cgroup);
        assert_eq!(plan_kill(Status::Stopped, true, Some(false)), Nothing);
        assert_eq!(plan_kill(Status::Stopped, false, Some(true)), NotRunning);
        assert_eq!(plan_kill(Status::Stopped, true, None), NotRunning);
        assert_eq!(plan_kill(Status::Created, true, None), Init);
    }

    #[test]
    fn users_parse() {
        assert_eq!(parse_user("101:102").unwrap(), (101, Some(102)));
        assert_eq!(parse_user("7").unwrap(), (7, None));
        assert!(parse_user("web").is_err());
    }
}
