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
//! The start sequence is `start::start` (start.rs); the steady state is
//! `watch::supervise` (watch.rs); teardown is cleanup.rs.

mod build;
mod cleanup;
pub mod console;
mod devices;
pub mod exec;
pub(crate) mod files;
mod health;
pub mod journal;
mod network;
mod sender;
mod start;
pub mod state;
pub mod userns;
mod volume_mount;
mod volumes;
mod watch;

use std::path::{Path, PathBuf};

use crate::cgroup;
use crate::config::Definition;
use crate::runtime;
use crate::spec;

pub use cleanup::{cleanup, CleanupOptions};
pub use exec::ExecTemplate;
pub use files::{render_hostname, render_hosts, render_resolv_conf, EtcNetwork};
use journal::Priority;
pub use state::{Paths, State, SECCOMP_CACHE};
pub use volumes::{remove_volume, volume, volume_data, volumes, VolumeError, VolumeInfo};
pub use watch::relay_notify;

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
    #[error("container \"{name}\": building [build] context \"{context}\" failed: {reason}")]
    Build {
        name: String,
        context: PathBuf,
        reason: String,
    },
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
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("container \"{name}\": {reason}")]
    Exec { name: String, reason: String },
    #[error("state \"{path}\": {reason}")]
    State { path: PathBuf, reason: String },
    #[error("volume \"{name}\": its volume file is invalid:\n{diagnostics}")]
    VolumeFile { name: String, diagnostics: String },
    #[error("{file}: {reason}")]
    VolumeMount { file: PathBuf, reason: String },
    #[error("seccomp profile \"{path}\": {reason}")]
    Seccomp { path: PathBuf, reason: String },
    #[error("{file}: [[volume]] source \"{source_path}\" (for target \"{target}\") {reason}; a bind mount needs an existing path: create it, or give a name instead of a path for a named volume")]
    BindSource {
        file: PathBuf,
        source_path: PathBuf,
        target: PathBuf,
        reason: String,
    },
    #[error(
        "container \"{name}\": device \"{device}\" ([security] devices in {definition}): {reason}"
    )]
    Device {
        name: String,
        device: PathBuf,
        definition: PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Plan(#[from] spec::PlanError),
    #[error(transparent)]
    Network(#[from] crate::network::attach::AttachError),
    #[error("container \"{name}\": network: {reason}")]
    NetworkTeardown { name: String, reason: String },
    #[error("container \"{name}\" joins the network of container \"{other}\" (mode = \"container:{other}\"), but {reason}")]
    JoinNetwork {
        name: String,
        other: String,
        reason: String,
    },
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
            diagnostics: diags.to_string(),
        }),
    }
}

/// Service mode: run definition `name` until its container exits. Returns
/// the exit status for the supervisor to exit with: the container's code,
/// 128+N when signal N killed it, 0 when it died of the stop signal we
/// forwarded on request.
pub fn run_service(opts: &RunOptions, name: &str) -> Result<i32, SuperviseError> {
    // The same line, re-executed to wait (watch.rs: hand_off).
    if let Some(result) = watch::resume(opts, name) {
        return result;
    }
    let def = load(&opts.root, name)?;
    crate::trace::step("supervise: definition loaded");
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

/// The heap the start used (the parsed definition's buffers, the plan, a
/// pull's runtime and its threads' arenas) and no longer needs goes back to
/// the kernel: the supervisor of an idle container waits for days, once
/// per container (issue 13).
fn give_back_start_memory() {
    // SAFETY: malloc_trim only returns free pages of glibc's arenas.
    unsafe { libc::malloc_trim(0) };
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
    if paths.run_dir.join(state::STATE_FILE).exists() || paths.resources().exists() {
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
        supervisor_start_time: crate::runtime::proc_start_time(nix::unistd::getpid()),
        ..State::default()
    };
    let started = start::start(opts, def, &globals, &paths, &mut st);
    let result = match started {
        Ok(running) => {
            give_back_start_memory();
            watch::supervise(opts, def, &paths, &mut st, running)
        }
        Err(e) => Err(e),
    };
    teardown_after_exit(opts, &paths, &st);
    result
}

/// The supervisor undoes what it can once its container is gone. A
/// service's own cgroup (it is still in it) and the record naming it are
/// left to `berth cleanup` (ExecStopPost); a scope has no ExecStopPost, so
/// its supervisor moves back to the scope's root and removes everything
/// itself.
fn teardown_after_exit(opts: &RunOptions, paths: &Paths, st: &State) {
    let keep_supervisor = opts.systemd;
    if !keep_supervisor {
        if let Some(unit) = &st.unit_cgroup {
            let _ = cgroup::move_into(unit, 0);
        }
    }
    if let Err(errs) = cleanup::teardown(paths, &paths.name, keep_supervisor) {
        for e in errs {
            journal::event(
                Priority::Warning,
                &paths.name,
                "cleanup",
                &format!("cleanup after exit: {e}"),
                &[],
            );
        }
    }
}
