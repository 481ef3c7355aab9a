//! supervise: the process that stays with a running container. In service
//! mode (`berth run --systemd NAME`) it is the main process of
//! `berth@NAME.service`: it prepares and starts the container, tells systemd
//! when it is up, forwards stop signals, kills after `stop_timeout`, reaps,
//! logs berth's events to the journal and exits with the container's status,
//! so `Restart=` works. `berth cleanup NAME` (ExecStopPost) undoes whatever a
//! start recorded, even after the supervisor was SIGKILLed.
//!
//! Must not decide what the container looks like (that is `spec::plan`) nor
//! perform the container's own setup (that is `runtime`). Single-threaded
//! by design: the runtime clones from this process.
//!
//! The start sequence is [`start`]; the steady state is [`supervise`].

mod cgroup;
mod cleanup;
mod console;
mod files;
mod health;
mod init;
pub mod journal;
pub mod state;
mod volumes;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::config::{Definition, Globals, ImageSource, Notify, Pull, Seccomp};
use crate::runtime::{self, CreateOptions, RootfsSource, StartGate, Stdio};
use crate::spec::{self, ImageConfigView, PlanContext};
use crate::store::Store;

pub use cgroup::parse_unit_cgroup;
pub use cleanup::{cleanup, CleanupOptions};
pub use files::{render_hostname, render_hosts, render_resolv_conf};
use journal::Priority;
pub use state::{Paths, State};
pub use volumes::volume_data;

/// Errors of the supervisor. Each names the container or path it failed on.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("no container definition \"{name}\" (looked in {root}/etc/berth/containers, /run/berth/containers and /usr/lib/berth/containers)")]
    NoDefinition { name: String, root: PathBuf },
    #[error("definition \"{name}\" is invalid:\n{diagnostics}")]
    Invalid { name: String, diagnostics: String },
    #[error("container \"{name}\" is running (supervisor pid {pid}); stop it first")]
    Running { name: String, pid: i32 },
    #[error("global settings: {0}")]
    Globals(String),
    #[error("image \"{reference}\": {reason}")]
    Image { reference: String, reason: String },
    #[error("image \"{reference}\" is not in the store and pull = \"never\"")]
    ImageMissing { reference: String },
    // The cause is part of the message (journal entries print one line), so
    // it is not also a `source`: an error chain would print it twice.
    #[error("{op} \"{path}\": {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{op}: {error}")]
    Sys { op: String, error: nix::Error },
    #[error("cgroup \"{path}\": {reason}")]
    Cgroup { path: PathBuf, reason: String },
    #[error("state \"{path}\": {reason}")]
    State { path: PathBuf, reason: String },
    #[error("seccomp profile \"{path}\": {reason}")]
    Seccomp { path: PathBuf, reason: String },
    #[error(transparent)]
    Plan(#[from] spec::PlanError),
    /// Runtime errors name the container themselves.
    #[error("{error}")]
    Runtime {
        name: String,
        error: runtime::RuntimeError,
    },
}

impl SuperviseError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SuperviseError::Io {
            op,
            path: path.into(),
            error: source,
        }
    }
    pub(crate) fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        SuperviseError::Sys {
            op: op.into(),
            error: source,
        }
    }
}

/// Largest file read from an image for user lookups (`/etc/passwd`, `/etc/group`).
const MAX_ID_FILE: u64 = 1 << 20;

/// How a supervisor runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The host's root prefix for berth's config (`/` or `$BERTH_ROOT`).
    pub root: PathBuf,
    /// Under systemd as `berth@NAME.service`: own the unit's delegated
    /// cgroup and send sd_notify messages.
    pub systemd: bool,
    /// Replace the command (ad hoc `berth run IMAGE CMD…`).
    pub command: Option<Vec<String>>,
    /// Give the container a terminal relayed to ours (`berth run -t`).
    pub tty: bool,
    /// Pass our stdin to the container (`berth run -i`); otherwise it reads
    /// /dev/null, as under Docker.
    pub stdin: bool,
    /// The process owns a delegated cgroup (a service with Delegate=yes, or
    /// the transient scope of a foreground `berth run`): the container runs
    /// in `<cgroup>/payload`, the supervisor in `<cgroup>/supervisor`.
    pub delegated: bool,
}

/// Marker next to a `berth run -d --rm` definition: `berth cleanup` removes
/// the definition (and the marker) once the container has stopped.
pub fn remove_on_stop_marker(root: &Path, name: &str) -> PathBuf {
    run_root(root).join("containers").join(format!("{name}.rm"))
}

/// `/run/berth` under the root prefix.
pub fn run_root(root: &Path) -> PathBuf {
    root.join("run/berth")
}

fn notify(opts: &RunOptions, state: &str) {
    if opts.systemd {
        crate::systemd::notify(state);
    }
}

/// Load `name`'s definition under `root`.
pub fn load(root: &Path, name: &str) -> Result<Definition, SuperviseError> {
    match crate::config::load_definition(root, name) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(SuperviseError::NoDefinition {
            name: name.to_string(),
            root: root.to_path_buf(),
        }),
        Err(diags) => Err(SuperviseError::Invalid {
            name: name.to_string(),
            diagnostics: diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }),
    }
}

/// Service mode: run definition `name` until its container exits. Returns
/// the exit status for the supervisor to exit with: the container's code,
/// 128+N when signal N killed it, 0 when it died of the stop signal we
/// forwarded on request.
pub fn run_service(opts: &RunOptions, name: &str) -> Result<i32, SuperviseError> {
    let def = load(&opts.root, name)?;
    if let Ok(expected) = std::env::var("BERTH_DEFINITION_HASH") {
        if !expected.is_empty() && expected != def.hash {
            journal::event(
                Priority::Warning,
                name,
                "stale-unit",
                &format!("definition \"{name}\" changed since the unit was generated; run \"systemctl daemon-reload\" to apply its systemd settings, starting with the new definition"),
                &[],
            );
        }
    }
    run_definition(opts, &def)
}

/// Run a loaded definition (service mode and ad hoc `berth run`).
pub fn run_definition(opts: &RunOptions, def: &Definition) -> Result<i32, SuperviseError> {
    let globals = crate::config::load_globals(&opts.root)
        .map_err(|e| SuperviseError::Globals(e.to_string()))?;
    let paths = Paths::new(&run_root(&opts.root), &globals.storage_root, &def.name);
    // A start after a crash without ExecStopPost (or ad hoc) begins clean,
    // but never by tearing down a container that is still supervised.
    if let Ok(Some(old)) = State::load(&paths.run_dir) {
        if old.supervisor_alive() {
            return Err(SuperviseError::Running {
                name: def.name.clone(),
                pid: old.supervisor_pid,
            });
        }
    }
    if paths.run_dir.join(state::STATE_FILE).exists() {
        if let Err(errs) = cleanup::teardown(&paths, &def.name, false) {
            for e in errs {
                journal::event(
                    Priority::Warning,
                    &def.name,
                    "cleanup",
                    &format!("leftover of an earlier start: {e}, ignoring"),
                    &[],
                );
            }
        }
    }
    let mut st = State {
        name: def.name.clone(),
        definition_hash: def.hash.clone(),
        supervisor_pid: std::process::id() as i32,
        ..State::default()
    };
    let started = start(opts, def, &globals, &paths, &mut st);
    let result = match started {
        Ok(running) => supervise(opts, def, &paths, &mut st, running),
        Err(e) => Err(e),
    };
    // The supervisor undoes what it can. A service's own cgroup (it is still
    // in it) and the record naming it are left to `berth cleanup`
    // (ExecStopPost); a scope has no ExecStopPost, so its supervisor moves
    // back to the scope's root and removes everything itself.
    let keep_supervisor = opts.systemd;
    if !keep_supervisor {
        if let Some(unit) = &st.unit_cgroup {
            let _ = cgroup::move_into(unit, 0);
        }
    }
    if let Err(errs) = cleanup::teardown(&paths, &def.name, keep_supervisor) {
        for e in errs {
            journal::event(
                Priority::Warning,
                &def.name,
                "cleanup",
                &format!("cleanup after exit: {e}"),
                &[],
            );
        }
    }
    result
}

/// What [`start`] hands to [`supervise`].
struct Running {
    container: runtime::Container,
    init: Option<Pid>,
    payload: Option<PathBuf>,
    stop_signal: Signal,
    /// Signals we wait for, blocked since before the clone.
    signals: SignalFd,
    /// The container's sd_notify socket (`notify = "container"`).
    notify: Option<std::os::unix::net::UnixDatagram>,
    /// `[health]`: the checks' state and how to exec them.
    health: Option<HealthRunner>,
    /// The pty master of `berth run -t`.
    console: Option<std::os::fd::OwnedFd>,
}

/// What running a health check in the container takes.
struct HealthRunner {
    state: health::HealthState,
    /// The container's process (user, env, caps, rlimits) to derive the check from.
    process: oci_spec::runtime::Process,
    namespaces: Vec<oci_spec::runtime::LinuxNamespaceType>,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

impl HealthRunner {
    /// Start one check inside the container; its PID.
    fn spawn(
        &self,
        name: &str,
        pid: Pid,
        cgroup: Option<&PathBuf>,
    ) -> Result<i32, runtime::RuntimeError> {
        let mut p = self.process.clone();
        p.set_args(Some(self.state.command().to_vec()))
            .set_terminal(Some(false));
        let child = runtime::exec(runtime::ExecOptions {
            id: name.to_string(),
            pid,
            process: p,
            namespaces: self.namespaces.clone(),
            cgroup: cgroup.cloned(),
            seccomp: self.seccomp.clone(),
            console_socket: None,
            stdio: Stdio::Null,
            preserve_fds: 0,
        })?;
        Ok(child.pid.as_raw())
    }
}

/// The notify socket's file name in the run dir.
const NOTIFY_SOCK: &str = "notify.sock";

fn bind_notify_socket(path: &Path) -> Result<std::os::unix::net::UnixDatagram, SuperviseError> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let sock = std::os::unix::net::UnixDatagram::bind(path)
        .map_err(|e| SuperviseError::io("bind notify socket", path, e))?;
    sock.set_nonblocking(true)
        .map_err(|e| SuperviseError::io("set nonblocking", path, e))?;
    // Any user of the container may notify, as with systemd's own socket.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| SuperviseError::io("chmod", path, e))?;
    Ok(sock)
}

/// What of a container's sd_notify message reaches systemd: `READY=1` and
/// `STATUS=` only. Never `MAINPID=` (the unit's main process must stay the
/// supervisor), nor `STOPPING=1`, `WATCHDOG=`, `FDSTORE=` or anything else
/// that would let a container steer its unit.
pub fn relay_notify(message: &str) -> Option<String> {
    let kept: Vec<&str> = message
        .lines()
        .filter(|l| *l == "READY=1" || l.starts_with("STATUS="))
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("\n"))
    }
}

/// The start sequence, in order.
fn start(
    opts: &RunOptions,
    def: &Definition,
    globals: &Globals,
    paths: &Paths,
    st: &mut State,
) -> Result<Running, SuperviseError> {
    let name = &def.name;
    // 1. Run dir first: every later step records itself in state.json there.
    std::fs::create_dir_all(&paths.run_dir)
        .map_err(|e| SuperviseError::io("create", &paths.run_dir, e))?;
    st.save(&paths.run_dir)?;

    // 2. The image, pulled if `pull` says so. Any tokio runtime a pull uses
    //    is gone when it returns: we clone later.
    let (lowers, image, digest) = resolve_image(opts, def, globals)?;
    if let ImageSource::Image(r) = &def.image {
        st.image = Some(r.to_string());
        st.image_digest = digest;
        st.save(&paths.run_dir)?;
    }

    // 3. What the plan needs from files: env files, the image's passwd and
    //    group, the seccomp profile.
    let mut env_files = Vec::new();
    for p in &def.environment_files {
        let text = std::fs::read_to_string(p)
            .map_err(|e| SuperviseError::io("read environment file", p, e))?;
        env_files.push((p.clone(), text));
    }
    let caps =
        spec::capability_set(&def.security.cap_drop, &def.security.cap_add).map_err(|cap| {
            spec::PlanError::Capability {
                name: name.clone(),
                cap,
            }
        })?;
    let caps: Vec<_> = caps.into_iter().collect();
    let seccomp =
        match &def.security.seccomp {
            Seccomp::Unconfined => None,
            Seccomp::Default => Some(runtime::seccomp::default_profile(&caps)),
            Seccomp::Profile(p) => Some(runtime::seccomp::load_profile(p, &caps).map_err(|e| {
                SuperviseError::Seccomp {
                    path: p.clone(),
                    reason: e.to_string(),
                }
            })?),
        };

    // 4. Named volumes, created and seeded on first use (a child process
    //    may mount the image's layers: still single-threaded here).
    volumes::setup_named_volumes(def, &globals.storage_root, &lowers)?;

    // 5. /etc files the spec binds.
    let hostname = spec::hostname(def);
    files::write_etc_files(
        &paths.run_dir,
        &opts.root,
        &hostname,
        spec::own_network(def),
    )?;

    // 6. Fresh overlay upper and work dirs: a container starts from its image.
    st.upper = Some(paths.upper());
    st.work = Some(paths.work());
    st.save(&paths.run_dir)?;
    for d in [paths.upper(), paths.work()] {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SuperviseError::io("remove stale", &d, e)),
        }
        std::fs::create_dir_all(&d).map_err(|e| SuperviseError::io("create", &d, e))?;
    }

    // 7. cgroups: the supervisor leaves the unit's root for `supervisor/`
    //    before `payload/` exists, so the unit never has processes next to
    //    child cgroups (cgroups(7), "no internal processes").
    let payload = if opts.delegated {
        let unit = cgroup::unit_cgroup_dir()?;
        let sup = unit.join("supervisor");
        let payload = unit.join("payload");
        st.unit_cgroup = Some(unit);
        st.supervisor_cgroup = Some(sup.clone());
        st.payload_cgroup = Some(payload.clone());
        st.save(&paths.run_dir)?;
        cgroup::make(&sup)?;
        cgroup::move_into(&sup, 0)?;
        cgroup::make(&payload)?;
        Some(payload)
    } else {
        None
    };

    // 8. berth's init, before the container that joins its PID namespace.
    let init = if def.init {
        let pid = init::spawn_init()?;
        st.init_pid = Some(pid.as_raw());
        st.save(&paths.run_dir)?;
        if let Some(p) = &payload {
            cgroup::move_into(p, pid.as_raw())?;
        }
        Some(pid)
    } else {
        None
    };

    // 9. With notify = "container", a socket of the container's own for
    //    sd_notify; the supervisor relays READY=1 and STATUS= to systemd.
    let notify_sock = if opts.systemd && def.service.notify == Notify::Container {
        Some(bind_notify_socket(&paths.run_dir.join(NOTIFY_SOCK))?)
    } else {
        None
    };

    // 10. The plan.
    let runtime_state = paths.runtime_state_dir();
    let view = image.as_ref().map(ImageConfigView::from_image_config);
    let ctx = PlanContext {
        rootfs: runtime_state.join(name).join("rootfs"),
        run_dir: paths.run_dir.clone(),
        storage_root: globals.storage_root.clone(),
        credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        environment_files: env_files,
        passwd: read_image_file(&lowers, "etc/passwd"),
        group: read_image_file(&lowers, "etc/group"),
        seccomp,
        id_range: None,
        init_pid_namespace: init.map(|p| PathBuf::from(format!("/proc/{p}/ns/pid"))),
        terminal: opts.tty,
        command_override: opts.command.clone(),
        notify_socket: notify_sock
            .as_ref()
            .map(|_| paths.run_dir.join(NOTIFY_SOCK)),
        nofile_limit: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok(),
    };
    if def.security.userns == crate::config::Userns::Auto {
        // The ID range allocator and an image owned by the mapped IDs are
        // not there yet; refuse rather than run with a broken root.
        return Err(SuperviseError::State {
            path: paths.run_dir.clone(),
            reason: format!("container \"{name}\": userns = \"auto\" is not supported by this version of berth yet"),
        });
    }
    let spec = spec::plan(def, view.as_ref(), &ctx)?;
    let stop_signal = view
        .as_ref()
        .and_then(|v| v.stop_signal.as_deref())
        .and_then(parse_signal)
        .unwrap_or(Signal::SIGTERM);

    // 11. Block the signals we handle before the clone, so none is lost
    //    between start and the loop; the runtime resets the container's mask.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGWINCH,
    ] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| SuperviseError::sys("block signals", e))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SuperviseError::sys("signalfd", e))?;

    // 12. Create and start.
    st.runtime_state_dir = Some(runtime_state.clone());
    st.save(&paths.run_dir)?;
    let health = match (&def.health, spec.process()) {
        (Some(h), Some(process)) => Some(HealthRunner {
            state: health::HealthState::new(h.clone(), Instant::now()),
            process: process.clone(),
            namespaces: runtime::spec_namespaces(&spec)
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        }),
        _ => None,
    };
    let mut copts = CreateOptions::new(name.clone(), spec, &runtime_state);
    copts.rootfs = RootfsSource::Overlay {
        lowers,
        upper: paths.upper(),
        work: paths.work(),
    };
    copts.cgroup = payload.clone();
    let console_path = paths.run_dir.join("console.sock");
    let console_listener = if opts.tty {
        copts.console_socket = Some(console_path.clone());
        Some(console::listen(&console_path)?)
    } else {
        None
    };
    copts.stdio = if opts.stdin {
        Stdio::Inherit
    } else {
        let null = std::fs::File::open("/dev/null")
            .map_err(|e| SuperviseError::io("open", "/dev/null", e))?;
        Stdio::Fds {
            stdin: Some(null.into()),
            stdout: None,
            stderr: None,
        }
    };
    copts.start_gate = StartGate::Socket;
    let rt_err = |error| SuperviseError::Runtime {
        name: name.clone(),
        error,
    };
    let container = runtime::create(copts).map_err(rt_err)?;
    st.container_pid = Some(container.pid().as_raw());
    st.save(&paths.run_dir)?;
    let console = match &console_listener {
        Some(l) => Some(console::receive_master(l, &console_path)?),
        None => None,
    };
    drop(console_listener);
    container.start().map_err(rt_err)?;
    Ok(Running {
        container,
        init,
        payload,
        stop_signal,
        signals,
        notify: notify_sock,
        health,
        console,
    })
}

/// The image's lower dirs (lowest first), config and manifest digest.
type ResolvedImage = (
    Vec<PathBuf>,
    Option<oci_spec::image::ImageConfiguration>,
    Option<String>,
);

/// The image's lower dirs (lowest first) and its config, pulling when the
/// definition's `pull` asks for it.
fn resolve_image(
    opts: &RunOptions,
    def: &Definition,
    globals: &Globals,
) -> Result<ResolvedImage, SuperviseError> {
    let reference = match &def.image {
        ImageSource::Rootfs(dir) => {
            if !dir.is_dir() {
                return Err(SuperviseError::io(
                    "rootfs",
                    dir,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            return Ok((vec![dir.clone()], None, None));
        }
        ImageSource::Image(r) => r.to_string(),
    };
    let img_err = |e: &dyn std::fmt::Display| SuperviseError::Image {
        reference: reference.clone(),
        reason: e.to_string(),
    };
    let store = Store::open(&globals.storage_root).map_err(|e| img_err(&e))?;
    let present = store.image(&reference).map_err(|e| img_err(&e))?;
    let image = match (present, def.service.pull) {
        (Some(img), Pull::Missing | Pull::Never) => img,
        (None, Pull::Never) => return Err(SuperviseError::ImageMissing { reference }),
        (_, _) => {
            notify(opts, &format!("STATUS=pulling {reference}"));
            let progress: Box<dyn crate::image::Progress> = if opts.systemd {
                Box::new(crate::image::NotifyProgress::default())
            } else {
                Box::new(crate::image::NoProgress)
            };
            let img = crate::image::pull(&store, globals, &reference, progress.as_ref())
                .map_err(|e| img_err(&e))?;
            journal::event(
                Priority::Info,
                &def.name,
                "pulled",
                &format!("pulled image \"{reference}\" ({})", img.manifest_digest),
                &[("IMAGE", reference.clone())],
            );
            img
        }
    };
    Ok((
        image.layers,
        Some(image.config),
        Some(image.manifest_digest),
    ))
}

/// A file from the merged image (top layer first), only when it is a
/// regular file: a symlink planted in a layer must not make us read a host
/// file.
fn read_image_file(lowers: &[PathBuf], rel: &str) -> Option<String> {
    for dir in lowers.iter().rev() {
        let p = dir.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() && m.len() <= MAX_ID_FILE => {
                return std::fs::read_to_string(&p).ok();
            }
            Ok(_) => return None,
            Err(_) => continue,
        }
    }
    None
}

/// `SIGQUIT`, `QUIT` or `3`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().ok()
}

/// Exit status of a wait: the code, or 128+N for signal N.
fn status_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// The steady state: wait for signals and the container's exit.
fn supervise(
    opts: &RunOptions,
    def: &Definition,
    paths: &Paths,
    st: &mut State,
    mut running: Running,
) -> Result<i32, SuperviseError> {
    let name = &def.name;
    let pid = running.container.pid();
    let mut health = running.health.take();
    let waits_for_health = def.service.notify == Notify::Healthy && health.is_some();
    if running.notify.is_some() {
        notify(opts, "STATUS=running, waiting for the container's READY=1");
    } else if waits_for_health {
        notify(
            opts,
            "STATUS=running, waiting for the first passing health check",
        );
    } else if def.service.notify == Notify::Healthy {
        notify(
            opts,
            "READY=1\nSTATUS=running (notify = \"healthy\" without [health]: ready at start)",
        );
    } else {
        notify(opts, "READY=1\nSTATUS=running");
    }
    let mut ready_sent = running.notify.is_none() && !waits_for_health;
    journal::event(
        Priority::Info,
        name,
        "started",
        &format!("container \"{name}\" started (pid {pid})"),
        &[("CONTAINER_PID", pid.to_string())],
    );

    let mut deadline: Option<Instant> = None;
    let mut forwarded: Option<Signal> = None;
    let mut killed = false;
    // Raw mode only while relaying; restored when this goes out of scope.
    let _raw = running.console.as_ref().map(|m| {
        console::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(m));
        console::sync_size(m);
        console::RawMode::enter()
    });
    let mut stdin_open = running.console.is_some();
    let mut master_open = running.console.is_some();
    let on_health = |status: health::Status, running: &Running, ready_sent: &mut bool| {
        let s = status.as_str();
        let prio = if status == health::Status::Unhealthy {
            Priority::Warning
        } else {
            Priority::Info
        };
        journal::event(
            prio,
            name,
            s,
            &format!("container \"{name}\" is {s}"),
            &[("HEALTH", s.to_string())],
        );
        if status == health::Status::Healthy && !*ready_sent && waits_for_health {
            notify(opts, "READY=1\nSTATUS=running (healthy)");
            *ready_sent = true;
        } else {
            notify(opts, &format!("STATUS=running ({s})"));
        }
        if status == health::Status::Unhealthy
            && def
                .health
                .as_ref()
                .is_some_and(|h| h.on_failure != crate::config::OnFailure::None)
        {
            // `restart`: the unit fails and systemd's Restart= brings it back.
            journal::event(
                Priority::Warning,
                name,
                "unhealthy-kill",
                &format!("killing unhealthy container \"{name}\""),
                &[],
            );
            kill_all(running, Signal::SIGKILL);
        }
    };
    let code = loop {
        let now = Instant::now();
        // Reap first: a SIGCHLD may have been merged with an earlier one.
        let (main_code, others) = reap(pid)?;
        for (p, code) in others {
            if let Some(h) = health.as_mut().filter(|h| h.state.is_check(p)) {
                if let Some(status) = h.state.finished(code == 0, Instant::now()) {
                    on_health(status, &running, &mut ready_sent);
                }
            }
        }
        if let Some(code) = main_code {
            break code;
        }
        if let Some(h) = health.as_mut() {
            if let Some(p) = h.state.overdue(now) {
                // Killed checks come back through reap as failures.
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            if deadline.is_none() && h.state.due(now) {
                match h.spawn(name, pid, running.payload.as_ref()) {
                    Ok(p) => h.state.started(p, now),
                    Err(e) => {
                        journal::event(
                            Priority::Warning,
                            name,
                            "health-error",
                            &format!("health check of \"{name}\" could not run: {e}"),
                            &[],
                        );
                        if let Some(status) = h.state.finished(false, now) {
                            on_health(status, &running, &mut ready_sent);
                        }
                    }
                }
            }
        }
        let mut timeout = match deadline {
            Some(d) => d.saturating_duration_since(now),
            None => Duration::from_secs(3600),
        };
        if let Some(h) = &health {
            timeout = timeout.min(h.state.next_wakeup(now).max(Duration::from_millis(1)));
        }
        if deadline.is_some_and(|d| now >= d) && !killed {
            journal::event(
                Priority::Warning,
                name,
                "stop-timeout",
                &format!(
                    "container \"{name}\" did not stop within {}s, killing it",
                    def.service.stop_timeout.as_secs_f64()
                ),
                &[],
            );
            kill_all(&running, Signal::SIGKILL);
            killed = true;
            continue;
        }
        let mut fds = vec![nix::poll::PollFd::new(
            running.signals.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if let Some(sock) = &running.notify {
            fds.push(nix::poll::PollFd::new(
                sock.as_fd(),
                nix::poll::PollFlags::POLLIN,
            ));
        }
        let stdin = std::io::stdin();
        let (mut stdin_at, mut master_at) = (None, None);
        if let Some(m) = &running.console {
            if stdin_open {
                stdin_at = Some(fds.len());
                fds.push(nix::poll::PollFd::new(
                    stdin.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
            if master_open {
                master_at = Some(fds.len());
                fds.push(nix::poll::PollFd::new(
                    m.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let ms = if killed { 100 } else { ms.max(1) };
        match nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
        ) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(SuperviseError::sys("poll", e)),
        }
        let ready = |at: Option<usize>| {
            at.and_then(|i| fds[i].revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (stdin_ready, master_ready) = (ready(stdin_at), ready(master_at));
        drop(fds);
        if let Some(m) = &running.console {
            use std::os::fd::AsRawFd;
            if stdin_ready {
                let mut to = std::fs::File::from(
                    m.try_clone()
                        .map_err(|e| SuperviseError::io("dup", "pty master", e))?,
                );
                if console::pump(0, &mut to) == console::Pumped::Done {
                    stdin_open = false;
                }
            }
            if master_ready
                && console::pump(m.as_raw_fd(), &mut std::io::stdout()) == console::Pumped::Done
            {
                master_open = false;
            }
        }
        if let Some(sock) = &running.notify {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                if let Some(m) = relay_notify(&String::from_utf8_lossy(&buf[..n])) {
                    notify(opts, &m);
                }
            }
        }
        while let Ok(Some(info)) = running.signals.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match sig {
                Signal::SIGCHLD => {}
                Signal::SIGWINCH => {
                    if let Some(m) = &running.console {
                        console::sync_size(m);
                    }
                }
                Signal::SIGHUP => {
                    let _ = kill(pid, Signal::SIGHUP);
                }
                _ => {
                    // SIGTERM (systemctl stop) becomes the image's stop signal.
                    let to = if sig == Signal::SIGTERM {
                        running.stop_signal
                    } else {
                        sig
                    };
                    if deadline.is_none() {
                        notify(opts, "STOPPING=1\nSTATUS=stopping");
                        journal::event(
                            Priority::Info,
                            name,
                            "stopping",
                            &format!("stopping container \"{name}\" with {to}"),
                            &[],
                        );
                        deadline = Some(Instant::now() + def.service.stop_timeout);
                    }
                    let _ = kill(pid, to);
                    forwarded = Some(to);
                }
            }
        }
    };
    if let Some(m) = &running.console {
        console::drain(m);
    }
    // The kernel's OOM killer leaves its count in the payload's memory.events.
    let oom_kills = running
        .payload
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p.join("memory.events")).ok())
        .map(|t| cgroup::parse_oom_kills(&t))
        .unwrap_or(0);
    if oom_kills > 0 {
        journal::event(
            Priority::Warning,
            name,
            "oom-killed",
            &format!("container \"{name}\" ran out of memory: the kernel killed {oom_kills} of its processes"),
            &[("OOM_KILLS", oom_kills.to_string())],
        );
    }
    // The main process is gone: nothing else in the container may outlive it.
    kill_all(&running, Signal::SIGKILL);
    if let Some(init) = running.init {
        let _ = waitpid(init, None);
    }
    st.container_pid = None;
    st.init_pid = None;
    let _ = st.save(&paths.run_dir);
    let clean_stop = forwarded.is_some_and(|s| code == 128 + s as i32);
    let message = if code > 128 {
        let sig = Signal::try_from(code - 128)
            .map(|s| s.to_string())
            .unwrap_or_default();
        format!("container \"{name}\" was killed by {sig} (status {code})")
    } else {
        format!("container \"{name}\" exited with code {code}")
    };
    journal::event(
        if code == 0 || clean_stop {
            Priority::Info
        } else {
            Priority::Notice
        },
        name,
        "exited",
        &message,
        &[("EXIT_STATUS", code.to_string())],
    );
    Ok(if clean_stop { 0 } else { code })
}

/// The main process's status (once it is gone) and other children's, by PID.
type Reaped = (Option<i32>, Vec<(i32, i32)>);

/// Reap every exited child: the main process's status once it is gone, and
/// the other children's (health checks, berth's init) as (PID, status).
fn reap(main: Pid) -> Result<Reaped, SuperviseError> {
    let mut result = None;
    let mut others = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(ws) => {
                if let (Some(p), Some(code)) = (ws.pid(), status_code(ws)) {
                    if p == main {
                        result = Some(code);
                    } else {
                        others.push((p.as_raw(), code));
                    }
                }
            }
            Err(nix::errno::Errno::ECHILD) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(SuperviseError::sys("waitpid", e)),
        }
    }
    Ok((result, others))
}

fn kill_all(running: &Running, sig: Signal) {
    match &running.payload {
        Some(p) => {
            let _ = runtime::cgroup_kill(p, sig);
        }
        None => {
            let _ = kill(running.container.pid(), sig);
            if let Some(i) = running.init {
                let _ = kill(i, sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("quit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("15"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }

    #[test]
    fn notify_relay_keeps_ready_and_status_only() {
        assert_eq!(
            relay_notify("READY=1\nSTATUS=up\nMAINPID=1\nWATCHDOG=1").as_deref(),
            Some("READY=1\nSTATUS=up")
        );
        assert_eq!(relay_notify("MAINPID=4242\nSTOPPING=1"), None);
        assert_eq!(relay_notify("READY=0"), None);
    }

    #[test]
    fn statuses() {
        let p = Pid::from_raw(1);
        assert_eq!(status_code(WaitStatus::Exited(p, 3)), Some(3));
        assert_eq!(
            status_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
    }
}
