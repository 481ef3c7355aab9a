//! The start sequence of a container, one numbered step after the other:
//! image, files the plan needs, named volumes, /etc files, overlay dirs,
//! cgroups, berth's init, notify socket, plan, signal mask, create, start,
//! and the registration with systemd-machined.
//! Each step records what it creates in the run dir's list of resources
//! (`crate::teardown`) before creating it.
//!
//! Runs single-threaded: a pull's tokio runtime is gone before any fork.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::network::{
    join_network, name_server, setup_network_leases, supervisor_runs, NetworkStart,
};
use super::watch::{HealthRunner, Running};
use super::ExecTemplate;
use super::{
    cgroup, console, files, health, journal, notify, volume_mount, volumes, Paths, RunOptions,
    State, SuperviseError,
};
use crate::config::{Definition, Globals, ImageSource, Notify, Pull, Seccomp, Userns};
use crate::runtime::{self, CreateOptions, RootfsSource, StartGate, Stdio};
use crate::spec::{self, ImageConfigView, PlanContext};
use crate::store::Store;
use crate::teardown::{List, Resource};
use crate::trace::step as trace;
use journal::Priority;

/// Largest file read from an image for user lookups (`/etc/passwd`, `/etc/group`).
const MAX_ID_FILE: u64 = crate::rootfile::MAX_ID_FILE;

/// The notify socket's file name in the run dir.
const NOTIFY_SOCK: &str = "notify.sock";

fn bind_notify_socket(path: &Path) -> Result<std::os::unix::net::UnixDatagram, SuperviseError> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let sock = std::os::unix::net::UnixDatagram::bind(path)
        .map_err(|e| SuperviseError::io("bind notify socket", path, e))?;
    sock.set_nonblocking(true)
        .map_err(|e| SuperviseError::io("set nonblocking", path, e))?;
    // Any user of the container may notify, as with systemd's own socket;
    // host users cannot reach it (0700 run dir), and each message's sender
    // is checked by its credentials (`sender`).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| SuperviseError::io("chmod", path, e))?;
    super::sender::enable_credentials(&sock)
        .map_err(|e| SuperviseError::sys("set SO_PASSCRED on the notify socket", e))?;
    Ok(sock)
}

/// `ROOT/containers/NAME`: ROOT 0711, `containers` 0711 (see `private`).
fn private_chain(container_dir: &Path) -> Result<(), SuperviseError> {
    let Some(containers) = container_dir.parent() else {
        return Ok(());
    };
    if let Some(root) = containers.parent() {
        crate::private::root_dir(root).map_err(|e| SuperviseError::io("create", root, e))?;
    }
    crate::private::traverse_dir(containers)
        .map_err(|e| SuperviseError::io("create", containers, e))
}

/// The start sequence, in order: each step a resource (recorded in the run
/// dir's list before it exists) or a decision.
pub(super) fn start(
    opts: &RunOptions,
    def: &Definition,
    globals: &Globals,
    paths: &Paths,
    st: &mut State,
) -> Result<Running, SuperviseError> {
    let mut list = List::new(paths.resources());
    // 0. Inputs that need no work to check fail before any work is done.
    volumes::check_bind_sources(def)?;
    // 1. The image, pulled if `pull` says so. Any tokio runtime a pull uses
    //    is gone when it returns: we clone later.
    let (lowers, image, digest, image_health) = resolve_image(opts, def, globals)?;
    trace("supervise: image");
    let view = image.as_ref().map(ImageConfigView::from_image_config);
    // 2. What the plan needs from files: env files, the seccomp profile.
    let inputs = read_plan_inputs(def)?;
    trace("supervise: plan inputs read");
    // 3. Whether the container may reach its program through the
    //    trampoline; if not, berth re-executes from a protected copy now,
    //    before anything of this start exists.
    protect_unless_trampoline(def, view.as_ref(), &lowers, &inputs)?;
    // 4. The run dir, holding the list every later step records itself in.
    setup_run_dir(def, paths, &mut list, st)?;
    record_image(def, digest, paths, st)?;
    trace("supervise: run dir");
    // 4'. Bridge mode: the networks and a lease on each; the links and
    //    rules that use them are recorded now, made once the container's
    //    namespace exists (create_and_start).
    let net = setup_network_leases(opts, def, globals, &mut list)?;
    st.networks = net.attached();
    st.published = def.network.publish.iter().map(|p| p.to_string()).collect();
    trace("supervise: network leases");
    // 4''. Named volumes, created and seeded on first use (a child process
    //    may mount the image's layers: still single-threaded here); each
    //    anonymous one (no source, or the image's VOLUME) is one of them.
    let vols = setup_volumes(opts, def, view.as_ref(), (globals, paths), &lowers)?;
    trace("supervise: named volumes");
    // 5. /etc files the spec binds.
    setup_etc_files(opts, def, paths, &net, st)?;
    trace("supervise: /etc files");
    // 6. Fresh overlay upper and work dirs: a container starts from its image.
    setup_overlay_dirs(def, paths, &mut list)?;
    trace("supervise: overlay dirs");
    // 7. cgroups: `<unit>/supervisor` for us, `<unit>/payload` for it; the
    //    supervisor is never the OOM killer's pick in its unit.
    let (oom_before, oom_warning) = protect_from_oom();
    let warn_oom = Deferred::new(&def.name, "oom-protect", oom_warning);
    let payload = match opts.delegated {
        true => Some(setup_cgroups(def, &mut list, st)?),
        false => {
            warn_unlimited(def);
            None
        }
    };
    trace("supervise: cgroups");
    // 8. berth's init (`init = true`) is no process of the supervisor's: the
    //    container's own init stays its PID 1, inside every namespace and
    //    all of its confinement, and runs the app as PID 2 (see
    //    runtime/reaper.rs; issue 12, class 5). Set on the create options.
    // 9. With notify = "container", a socket of the container's own for
    //    sd_notify; the supervisor relays READY=1 and STATUS= to systemd.
    let notify = setup_notify_socket(opts, def, paths)?;
    trace("supervise: notify socket");
    // 10. The plan, with the ID range of `userns = "auto"`.
    let mut ctx = plan_context(opts, globals, paths, &lowers, inputs);
    ctx.anonymous_volumes = vols.anonymous.clone();
    ctx.volume_mounts = vols.mounts;
    // Held until the runtime has joined it (create, below).
    let joined = join_network(opts, def, paths)?;
    ctx.network_namespace = joined.as_ref().map(super::network::fd_path);
    ctx.notify_socket = notify.as_ref().map(|_| paths.run_dir.join(NOTIFY_SOCK));
    ctx.id_range = setup_id_range(opts, def, paths)?;
    let mut spec = spec::plan(def, view.as_ref(), &ctx)?;
    restore_oom_score_adj(&mut spec, oom_before);
    // 10''. `chown = true` (`:U`): the sources to the user the plan chose.
    chown_marked_volumes(&spec, (&vols.planned, &vols.anonymous), globals)?;
    let stop_signal = plan_stop_signal(def, view.as_ref());
    let reload_signal = plan_reload_signal(def);
    trace("supervise: planned");
    // 11. Block the signals we handle before the clone, so none is lost
    //    between start and the loop; the runtime resets the container's mask.
    let signals = block_signals()?;
    trace("supervise: signals blocked");
    // 12. What health checks and `berth exec` run under (saved once the
    //    program runs), then create and start. A definition without
    //    [health] gets the image's HEALTHCHECK.
    let health_cfg = def
        .health
        .clone()
        .or_else(|| image_health.as_ref().and_then(health::plan_from_image));
    let template = ExecTemplate::from_spec(&spec);
    trace("supervise: exec template planned");
    let copts = create_options(def, paths, spec, lowers, payload.clone());
    // 13. systemd-machined, when it is on the bus: from a child forked
    //    between the create and the start.
    let mut machine = match opts.systemd && payload.is_some() {
        true => Some(MachineRegistration::prepare(def, &mut list)?),
        false => None,
    };
    let created = create_and_start(
        opts,
        paths,
        copts,
        (&mut list, &net, &vols.host),
        (st, machine.as_mut()),
    );
    drop(warn_oom);
    if created.is_ok() {
        trace("supervise: created and started");
    }
    if let Some(m) = machine.take() {
        m.finish(created.is_ok());
        if created.is_ok() {
            trace("supervise: machined");
        }
    }
    let (container, console) = created?;
    // Saved once the program runs: nothing reads it earlier, and the write
    // would delay the program.
    let health = save_exec_template(health_cfg.as_ref(), template, paths)?;
    // Watched for OOM kills while the container runs (opened now: the
    // container never inherits it).
    let memory_events = payload
        .as_ref()
        .and_then(|p| std::fs::File::open(p.join("memory.events")).ok());
    Ok(Running {
        container,
        payload,
        stop_signal,
        reload_signal,
        signals,
        notify,
        health,
        console,
        memory_events,
    })
}

/// Step 3: in service mode berth runs from its binary on disk, and the
/// container's process reaches its program through berth's trampoline
/// (runtime/trampoline.rs), unless the process is one the trampoline would
/// change or expose: then berth re-executes from a protected copy here and
/// the start begins again in it, nothing of it made yet. The process is
/// judged as the plan will make it: the same user lookup, capability set
/// and seccomp profile.
fn protect_unless_trampoline(
    def: &Definition,
    view: Option<&ImageConfigView>,
    lowers: &[PathBuf],
    inputs: &PlanInputs,
) -> Result<(), SuperviseError> {
    if runtime::exe_protected() {
        return Ok(());
    }
    let refused = match trampoline_process(def, view, lowers) {
        Ok(process) => {
            runtime::trampoline_allowed(&process, def.init, inputs.seccomp.as_ref()).err()
        }
        // The plan reports it; the protected copy costs nothing then.
        Err(e) => Some(e),
    };
    let Some(why) = refused else {
        return Ok(());
    };
    tracing::debug!(
        "container \"{}\": re-executing from a protected copy: {why}",
        def.name
    );
    // Returns only when the re-execution failed.
    let error = match runtime::ensure_protected() {
        Err(e) => e,
        Ok(()) => runtime::RuntimeError::NeedsProtectedCopy { reason: why },
    };
    Err(SuperviseError::Runtime {
        name: def.name.clone(),
        error,
    })
}

/// The container's process as far as the trampoline cares: user,
/// capabilities, no_new_privileges (`spec::plan` makes the same).
fn trampoline_process(
    def: &Definition,
    view: Option<&ImageConfigView>,
    lowers: &[PathBuf],
) -> Result<oci_spec::runtime::Process, String> {
    let user_spec = spec::user_spec(def, view);
    let named = user_spec
        .split(':')
        .any(|p| !p.is_empty() && p.parse::<u32>().is_err());
    let (passwd, group) = match named {
        true => (
            read_image_file(lowers, "etc/passwd"),
            read_image_file(lowers, "etc/group"),
        ),
        false => (None, None),
    };
    let user = spec::resolve_user(&user_spec, passwd.as_deref(), group.as_deref())?;
    let caps = spec::capability_set(&def.security.cap_drop, &def.security.cap_add)?;
    let mut process = oci_spec::runtime::Process::default();
    process
        .set_user(user.to_oci())
        .set_capabilities(Some(spec::linux_capabilities(&caps)))
        .set_no_new_privileges(Some(def.security.no_new_privileges));
    Ok(process)
}

/// Step 5: hostname, hosts and resolv.conf, naming the first network's
/// address and name server in bridge mode.
fn setup_etc_files(
    opts: &RunOptions,
    def: &Definition,
    paths: &Paths,
    net: &NetworkStart,
    st: &State,
) -> Result<(), SuperviseError> {
    let mut etc_net = files::EtcNetwork::from_definition(def);
    etc_net.nameserver = name_server(opts, def, net);
    if let Some(first) = st.networks.first() {
        etc_net.addresses = [Some(first.ipv4), first.ipv6]
            .into_iter()
            .flatten()
            .collect();
    }
    files::write_etc_files(
        &paths.run_dir,
        &opts.root,
        &spec::hostname(def),
        spec::own_network(def),
        &etc_net,
    )?;
    Ok(())
}

/// Step 13: `machinectl list` shows the container. Best effort: a host
/// without machined is silent, a refusal is a warning, the start goes on.
/// Recorded first, so that the exit (or `berth cleanup`) unregisters it.
///
/// The D-Bus round trips (~4 ms) run in a child forked once the init is
/// set up and in `payload` (where machined finds the unit from the leader),
/// so they overlap the init's last steps and the start's own bookkeeping;
/// the child is waited for before READY=1, so `systemctl start` returns
/// with the machine registered. Not earlier: on two CPUs the calls (and
/// machined's and the bus's work) slowed the init's mounts by more than
/// they saved. In a child, not in process: the bus connection, its event
/// loop and their allocations never enter the heap of the supervisor, which
/// then waits for as long as the container runs, and the supervisor stays
/// single-threaded for the clones after it (health checks, `berth exec`).
struct MachineRegistration {
    name: String,
    rootfs: Option<PathBuf>,
    state: Registrar,
}

/// Where step 13's registration stands.
enum Registrar {
    /// The container was not created.
    NotYet,
    Child(nix::unistd::Pid),
    /// The fork failed: the call is made in process, after the start.
    InProcess(u32),
}

impl MachineRegistration {
    fn prepare(def: &Definition, list: &mut List) -> Result<Self, SuperviseError> {
        list.record(Resource::Machine {
            name: def.name.clone(),
            unit: format!("berth@{}.service", def.name),
        })
        .map_err(listed(def))?;
        let rootfs = match &def.image {
            ImageSource::Rootfs(p) => Some(p.clone()),
            ImageSource::Image(_) | ImageSource::Build(_) => None,
        };
        Ok(MachineRegistration {
            name: def.name.clone(),
            rootfs,
            state: Registrar::NotYet,
        })
    }

    fn root(&self, leader: u32) -> PathBuf {
        crate::systemd::machined::plan_root_directory(self.rootfs.as_deref(), leader)
    }

    /// The container is created: fork the child that registers it.
    /// `sync`: the init's sync socket, which the child must not hold (a
    /// crashed supervisor's init sees the socket's end only once every
    /// holder closed it).
    fn begin(&mut self, leader: nix::unistd::Pid, sync: std::os::fd::RawFd) {
        let leader = leader.as_raw() as u32;
        // SAFETY: single-threaded here (the runtime clones only from a
        // single-threaded process); the child only makes the D-Bus call and
        // leaves with _exit, never returning into the parent's code.
        self.state = match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                // Not every descriptor (close_range): an earlier tokio
                // runtime of this process (the bridge attach's netlink, a
                // pull) left its signal driver's socket pair in a global,
                // and the child's runtime for the D-Bus call needs it
                // (EBADF otherwise). The rest goes with the child's _exit.
                // SAFETY: the child's own copy of the descriptor.
                unsafe { libc::close(sync) };
                register_machine(&self.name, leader, &self.root(leader));
                // SAFETY: _exit skips the parent's atexit handlers and buffers.
                unsafe { libc::_exit(0) }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Registrar::Child(child),
            // No child to spare: the call in process once the start is done.
            Err(_) => Registrar::InProcess(leader),
        };
    }

    /// Before READY=1: the child waited for (also when the start failed, so
    /// that the teardown's unregistering comes after it), or the call made
    /// in process.
    fn finish(self, started: bool) {
        match self.state {
            Registrar::NotYet => {}
            Registrar::Child(child) => {
                let _ = nix::sys::wait::waitpid(child, None);
            }
            Registrar::InProcess(leader) if started => {
                register_machine(&self.name, leader, &self.root(leader));
            }
            Registrar::InProcess(_) => {}
        }
    }
}

/// The call itself; a refusal is a warning in the journal.
fn register_machine(name: &str, leader: u32, root: &Path) {
    if let Err(e) = crate::systemd::machined::register(name, leader, root) {
        journal::event(Priority::Warning, name, "machined", &e.to_string(), &[]);
    }
}

/// A teardown list's error, as the supervisor's.
fn listed(def: &Definition) -> impl Fn(crate::teardown::TeardownError) -> SuperviseError + '_ {
    |e| super::cleanup::from_teardown(&def.name, e)
}

/// Step 1: the run dir, private (0700): state, exec.json and the notify
/// socket are for root and the container only. Its list's first entries
/// are the dir itself and the ID range, which thus go last on teardown:
/// nothing is left to use the range by then (recorded before it exists,
/// as everything; releasing a range never allocated is a no-op).
fn setup_run_dir(
    def: &Definition,
    paths: &Paths,
    list: &mut List,
    st: &State,
) -> Result<(), SuperviseError> {
    private_chain(&paths.run_dir)?;
    crate::private::dir(&paths.run_dir)
        .map_err(|e| SuperviseError::io("create", &paths.run_dir, e))?;
    let mut first = vec![Resource::Tree {
        path: paths.run_dir.clone(),
    }];
    if matches!(def.security.userns, Userns::Auto | Userns::KeepId) {
        first.push(Resource::IdRange {
            dir: paths.userns_dir.clone(),
            name: def.name.clone(),
        });
    }
    list.record_all(first).map_err(listed(def))?;
    st.save(&paths.run_dir)
}

/// Step 2': the image in the record, which keeps it from `berth prune`/`rmi`.
fn record_image(
    def: &Definition,
    digest: Option<String>,
    paths: &Paths,
    st: &mut State,
) -> Result<(), SuperviseError> {
    let Some(r) = def.image.reference() else {
        return Ok(());
    };
    st.image = Some(r.to_string());
    st.image_digest = digest;
    st.save(&paths.run_dir)
}

/// What the plan reads from files besides the image's.
struct PlanInputs {
    environment_files: Vec<(PathBuf, String)>,
    secret_env: Vec<(String, String)>,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    host_devices: std::collections::BTreeMap<PathBuf, Vec<spec::HostDevice>>,
}

/// Step 3': `[[secret]] type = "env"`: each credential's content, from the
/// directory systemd filled (`LoadCredential=`), kept in memory; on disk it
/// reaches only `exec.json` (0600, on /run), as the rest of the environment.
fn read_secret_env(def: &Definition) -> Result<Vec<(String, String)>, SuperviseError> {
    let wanted: Vec<_> = def
        .secrets
        .iter()
        .filter_map(|s| Some((s.env.as_ref()?, &s.credential)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(PathBuf::from)
        .ok_or_else(|| spec::PlanError::NoCredentials {
            name: def.name.clone(),
        })?;
    let mut out = Vec::new();
    for (var, credential) in wanted {
        let path = dir.join(credential);
        let bytes =
            std::fs::read(&path).map_err(|e| SuperviseError::io("read credential", &path, e))?;
        // The environment is a C string list: a NUL would cut the value.
        let value = String::from_utf8(bytes)
            .ok()
            .filter(|v| !v.contains('\0'))
            .ok_or_else(|| SuperviseError::Exec {
                name: def.name.clone(),
                reason: format!(
                    "credential \"{credential}\" for ${var} is not text (UTF-8 without NUL bytes)"
                ),
            })?;
        out.push((var.clone(), value));
    }
    Ok(out)
}

/// Step 3: the environment files and the seccomp profile.
fn read_plan_inputs(def: &Definition) -> Result<PlanInputs, SuperviseError> {
    let mut environment_files = Vec::new();
    for p in &def.environment_files {
        let text = std::fs::read_to_string(p)
            .map_err(|e| SuperviseError::io("read environment file", p, e))?;
        environment_files.push((p.clone(), text));
    }
    let caps =
        spec::capability_set(&def.security.cap_drop, &def.security.cap_add).map_err(|cap| {
            spec::PlanError::Capability {
                name: def.name.clone(),
                cap,
            }
        })?;
    let caps: Vec<_> = caps.into_iter().collect();
    let seccomp =
        match &def.security.seccomp {
            Seccomp::Unconfined => None,
            Seccomp::Default => Some(runtime::seccomp::default_profile(&caps).map_err(|e| {
                SuperviseError::Seccomp {
                    path: "default".into(),
                    reason: e.to_string(),
                }
            })?),
            Seccomp::Profile(p) => Some(runtime::seccomp::load_profile(p, &caps).map_err(|e| {
                // The runtime's error names the file too; say it once.
                let reason = match e {
                    runtime::RuntimeError::SeccompProfile { reason, .. } => reason,
                    other => other.to_string(),
                };
                SuperviseError::Seccomp {
                    path: p.clone(),
                    reason,
                }
            })?),
        };
    Ok(PlanInputs {
        environment_files,
        secret_env: read_secret_env(def)?,
        seccomp,
        host_devices: super::devices::find_host_devices(def)?,
    })
}

/// Step 6: fresh overlay upper and work dirs (0755: the upper dir's mode is
/// the container's `/`). The upper dir gets what the container writes,
/// setuid binaries included: under the 0700 storage root only
/// (CVE-2021-41091).
fn setup_overlay_dirs(
    def: &Definition,
    paths: &Paths,
    list: &mut List,
) -> Result<(), SuperviseError> {
    list.record_all(vec![
        Resource::EmptyDir {
            path: paths.storage_dir.clone(),
        },
        Resource::Tree {
            path: paths.upper(),
        },
        Resource::Tree { path: paths.work() },
    ])
    .map_err(listed(def))?;
    private_chain(&paths.storage_dir)?;
    crate::private::dir(&paths.storage_dir)
        .map_err(|e| SuperviseError::io("create", &paths.storage_dir, e))?;
    for d in [paths.upper(), paths.work()] {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SuperviseError::io("remove stale", &d, e)),
        }
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&d)
            .map_err(|e| SuperviseError::io("create", &d, e))?;
        if d == paths.upper() {
            crate::fault::point("overlay");
        }
    }
    Ok(())
}

/// Step 7: the supervisor leaves the unit's root for `supervisor/` before
/// `payload/` exists, so the unit never has processes next to child
/// cgroups (cgroups(7), "no internal processes"). Returns the payload.
fn setup_cgroups(
    def: &Definition,
    list: &mut List,
    st: &mut State,
) -> Result<PathBuf, SuperviseError> {
    let unit = cgroup::unit_cgroup_dir()?;
    let sup = unit.join("supervisor");
    let payload = unit.join("payload");
    list.record_all(vec![
        Resource::OwnCgroup { path: sup.clone() },
        Resource::Cgroup {
            path: payload.clone(),
        },
    ])
    .map_err(listed(def))?;
    // Saved with the container's PID, for `berth` to read its usage.
    st.unit_cgroup = Some(unit.clone());
    st.payload_cgroup = Some(payload.clone());
    cgroup::make(&sup)?;
    cgroup::move_into(&sup, 0)?;
    crate::fault::point("cgroup");
    if let Err(warning) = cgroup::enable_controllers(&unit) {
        journal::event(
            Priority::Warning,
            &def.name,
            "cgroup",
            &format!("{warning}; the unit's limits still apply, ignoring"),
            &[],
        );
    }
    cgroup::make(&payload)?;
    Ok(payload)
}

/// Step 7, without a delegated cgroup (a foreground `berth run` with no
/// systemd to give it a scope): the limits are a unit's properties and
/// there is no unit, so they are said not to apply, never ignored silently.
fn warn_unlimited(def: &Definition) {
    let limits = crate::cgroup::limits::unit_limits(&def.resources);
    if limits.is_empty() {
        return;
    }
    let names: Vec<&str> = limits.iter().map(|l| l.name()).collect();
    journal::event(
        Priority::Warning,
        &def.name,
        "limits",
        &format!(
            "container \"{}\" runs without a cgroup of its own (no systemd scope): its [resources] ({}) do not apply",
            def.name,
            names.join(", ")
        ),
        &[],
    );
}

/// A warning that does not stop the start, written to the journal once the
/// container's program runs (or the start failed): a journal write costs
/// the start more than many of its steps.
struct Deferred<'a> {
    name: &'a str,
    kind: &'static str,
    message: Option<String>,
}

impl<'a> Deferred<'a> {
    fn new(name: &'a str, kind: &'static str, message: Option<String>) -> Self {
        Deferred {
            name,
            kind,
            message,
        }
    }
}

impl Drop for Deferred<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.message.take() {
            journal::event(Priority::Warning, self.name, self.kind, &m, &[]);
        }
    }
}

/// Step 7': the supervisor's oom_score_adj to -1000, so that when the unit
/// runs out of memory the OOM killer picks a process of the container, never
/// the one that reports it and stops the rest (Docker does the same for
/// dockerd and containerd-shim: `--oom-score-adjust`, shim's
/// `adjustOOMScore`). Returns the value it had, which the container gets
/// back, or None and why it could not be changed (without CAP_SYS_RESOURCE,
/// as in the namespace box).
fn protect_from_oom() -> (Option<i32>, Option<String>) {
    const FILE: &str = "/proc/self/oom_score_adj";
    let Some(before) = std::fs::read_to_string(FILE)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return (None, None);
    };
    match std::fs::write(FILE, "-1000") {
        Ok(()) => (Some(before), None),
        Err(e) => (
            None,
            Some(format!(
                "cannot set the supervisor's oom_score_adj to -1000 ({e}): the OOM killer may pick it; going on"
            )),
        ),
    }
}

/// Decision: a spec that sets no `process.oomScoreAdj` gets the value the
/// supervisor had before it protected itself (the unit's OOMScoreAdjust=,
/// else systemd's default), which the runtime writes on the init before it
/// runs, and health checks and `berth exec` take from the init.
fn restore_oom_score_adj(spec: &mut oci_spec::runtime::Spec, before: Option<i32>) {
    if let (Some(p), Some(v)) = (spec.process_mut(), before) {
        if p.oom_score_adj().is_none() {
            p.set_oom_score_adj(Some(v));
        }
    }
}

/// Step 9: the container's notify socket, inside the run dir.
fn setup_notify_socket(
    opts: &RunOptions,
    def: &Definition,
    paths: &Paths,
) -> Result<Option<std::os::unix::net::UnixDatagram>, SuperviseError> {
    if opts.systemd && def.service.notify == Notify::Container {
        Ok(Some(bind_notify_socket(&paths.run_dir.join(NOTIFY_SOCK))?))
    } else {
        Ok(None)
    }
}

/// What step 4 decided about volumes, for the plan and the chown.
struct Volumes {
    /// The definition's volumes and the image's VOLUME entries.
    planned: Vec<crate::config::Volume>,
    /// Target → name of each anonymous one.
    anonymous: std::collections::BTreeMap<PathBuf, String>,
    /// Volumes whose file mounts a filesystem.
    mounts: std::collections::BTreeMap<String, spec::VolumeMount>,
    /// Of those, the ones the supervisor mounts for the init to bind.
    host: Vec<super::volume_mount::HostMount>,
}

/// Step 4: anonymous volumes found or named, volume files read, then every
/// named volume created (seeded, owner and mode from its file) if new.
/// Step 10'': the sources of volumes marked `chown = true` (`:U`) to the
/// user the plan chose.
fn chown_marked_volumes(
    spec: &oci_spec::runtime::Spec,
    (planned, anonymous): (
        &[crate::config::Volume],
        &std::collections::BTreeMap<PathBuf, String>,
    ),
    globals: &Globals,
) -> Result<(), SuperviseError> {
    if let Some(p) = spec.process() {
        let u = p.user();
        volumes::chown_volume_sources(planned, anonymous, &globals.storage_root, u.uid(), u.gid())?;
    }
    Ok(())
}

fn setup_volumes(
    opts: &RunOptions,
    def: &Definition,
    view: Option<&ImageConfigView>,
    (globals, paths): (&Globals, &Paths),
    lowers: &[PathBuf],
) -> Result<Volumes, SuperviseError> {
    use crate::config::VolumeSource;
    let planned = spec::plan_volumes(def, view)?;
    let anonymous = volumes::setup_anonymous_volumes(&def.name, &planned, &globals.storage_root)?;
    let named: Vec<(String, PathBuf)> = planned
        .iter()
        .filter_map(|v| match &v.source {
            VolumeSource::Named(n) => Some((n.clone(), v.target.clone())),
            VolumeSource::Anonymous => anonymous
                .get(&v.target)
                .map(|n| (n.clone(), v.target.clone())),
            VolumeSource::Bind(_) => None,
        })
        .collect();
    let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
    let files = volumes::load_volume_files(&opts.root, &names)?;
    volumes::check_chown_of_mounted(def, &planned, &anonymous, &files)?;
    // Planned before any work: a credentials file or a server name that
    // fails stops the start here.
    let host = files
        .values()
        .filter(|f| f.fstype.as_deref().is_some_and(volume_mount::host_mounted))
        .map(volume_mount::plan)
        .collect::<Result<Vec<_>, _>>()?;
    volumes::setup_named_volumes(&named, &files, &globals.storage_root, lowers)?;
    Ok(Volumes {
        planned,
        anonymous,
        mounts: volumes::plan_volume_mounts(&files, &volume_mount::staging_dir(&paths.run_dir)),
        host,
    })
}

/// Step 10: what the plan gets besides the definition and the image config.
fn plan_context(
    opts: &RunOptions,
    globals: &Globals,
    paths: &Paths,
    lowers: &[PathBuf],
    inputs: PlanInputs,
) -> PlanContext {
    PlanContext {
        rootfs: paths.runtime_state_dir().join(&paths.name).join("rootfs"),
        run_dir: paths.run_dir.clone(),
        storage_root: globals.storage_root.clone(),
        credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        environment_files: inputs.environment_files,
        secret_env: inputs.secret_env,
        passwd: read_image_file(lowers, "etc/passwd"),
        group: read_image_file(lowers, "etc/group"),
        seccomp: inputs.seccomp,
        id_range: None,
        terminal: opts.tty,
        command_override: opts.command.clone(),
        notify_socket: None,
        nofile_limit: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok(),
        network_namespace: None,
        host_devices: inputs.host_devices,
        anonymous_volumes: Default::default(),
        volume_mounts: Default::default(),
    }
}

/// Step 10': `userns = "auto"`: a private ID range (recorded in step 1).
/// The fresh upper and work dirs belong to its root, the image's layers are
/// idmapped by the runtime.
fn setup_id_range(
    opts: &RunOptions,
    def: &Definition,
    paths: &Paths,
) -> Result<Option<spec::IdRange>, SuperviseError> {
    if !matches!(def.security.userns, Userns::Auto | Userns::KeepId) {
        setup_explicit_maps(def, paths)?;
        return Ok(None);
    }
    let range = super::userns::allocate(
        &paths.userns_dir,
        super::userns::host_pool(&opts.root),
        &def.name,
    )?;
    crate::fault::point("userns");
    super::userns::chown_to_range(range, &[paths.upper(), paths.work()])?;
    // Its root mounts the overlay and stages the idmapped layers by path
    // from inside the namespace: it alone may traverse these.
    for d in [&paths.storage_dir, &paths.run_dir] {
        crate::private::traversable_by_group(d, range.host_start)
            .map_err(|e| SuperviseError::io("chown", d, e))?;
    }
    Ok(Some(range))
}

/// Explicit `uid_map`/`gid_map`: the fresh upper and work dirs belong to
/// the host IDs of the container's root (when it maps one), which must also
/// walk to them, as with a range.
fn setup_explicit_maps(def: &Definition, paths: &Paths) -> Result<(), SuperviseError> {
    let host_of_root =
        |maps: &[crate::config::IdMapping]| maps.iter().find(|m| m.container == 0).map(|m| m.host);
    let (Some(uid), Some(gid)) = (
        host_of_root(&def.security.uid_map),
        host_of_root(&def.security.gid_map),
    ) else {
        return Ok(());
    };
    for p in [paths.upper(), paths.work()] {
        std::os::unix::fs::chown(&p, Some(uid), Some(gid))
            .map_err(|e| SuperviseError::io("chown", &p, e))?;
    }
    for d in [&paths.storage_dir, &paths.run_dir] {
        crate::private::traversable_by_group(d, gid)
            .map_err(|e| SuperviseError::io("chown", d, e))?;
    }
    Ok(())
}

/// Decision: `[service] stop_signal`, else the image's STOPSIGNAL, real-time
/// ones included (systemd inside stops on SIGRTMIN+3), else SIGTERM (Docker's
/// and Podman's order); one berth cannot read is said, not ignored.
fn plan_stop_signal(def: &Definition, view: Option<&ImageConfigView>) -> i32 {
    if let Some(s) = def.service.stop_signal.as_deref() {
        // Validated when the definition was read; a number above this
        // system's SIGRTMAX is the one thing left to say.
        return runtime::parse_signal(s).unwrap_or_else(|| {
            journal::event(
                Priority::Warning,
                &def.name,
                "stop-signal",
                &format!("stop_signal \"{s}\" is no signal of this system; stopping with SIGTERM"),
                &[],
            );
            libc::SIGTERM
        });
    }
    match view.and_then(|v| v.stop_signal.as_deref()) {
        None => libc::SIGTERM,
        Some(s) => runtime::parse_signal(s).unwrap_or_else(|| {
            journal::event(
                Priority::Warning,
                &def.name,
                "stop-signal",
                &format!("the image's STOPSIGNAL \"{s}\" is not a signal; stopping with SIGTERM"),
                &[],
            );
            libc::SIGTERM
        }),
    }
}

/// Decision: what SIGHUP to the supervisor (`systemctl reload`'s
/// `kill -s HUP $MAINPID`) becomes for the container: `reload_signal`, else
/// SIGHUP itself, as before reload keys existed.
fn plan_reload_signal(def: &Definition) -> i32 {
    match &def.service.reload {
        Some(crate::config::Reload::Signal(s)) => runtime::parse_signal(s).unwrap_or(libc::SIGHUP),
        _ => libc::SIGHUP,
    }
}

/// Step 11: the signals the loop handles, blocked, read from a signalfd.
pub(super) fn block_signals() -> Result<SignalFd, SuperviseError> {
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
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SuperviseError::sys("signalfd", e))
}

/// Step 12, after the start: what health checks and `berth exec` confine
/// their processes with: exactly this start's plan, whatever the
/// definition says later.
fn save_exec_template(
    health: Option<&crate::config::Health>,
    template: Option<ExecTemplate>,
    paths: &Paths,
) -> Result<Option<HealthRunner>, SuperviseError> {
    if let Some(t) = &template {
        t.save(&paths.run_dir)?;
    }
    Ok(match (health, template) {
        (Some(h), Some(template)) => Some(HealthRunner {
            state: health::HealthState::new(h.clone(), Instant::now()),
            template,
            seccomp_cache: paths.seccomp_cache.clone(),
        }),
        _ => None,
    })
}

/// Decision: how the runtime creates this container.
fn create_options(
    def: &Definition,
    paths: &Paths,
    spec: oci_spec::runtime::Spec,
    lowers: Vec<PathBuf>,
    payload: Option<PathBuf>,
) -> CreateOptions {
    let mut copts = CreateOptions::new(def.name.clone(), spec, paths.runtime_state_dir());
    copts.seccomp_cache = Some(paths.seccomp_cache.clone());
    copts.rootfs = RootfsSource::Overlay {
        lowers,
        upper: paths.upper(),
        work: paths.work(),
    };
    // Service mode: the unit's properties are the container's only limits
    // (cgroup/limits.rs), so `systemctl set-property` reaches it; payload/
    // gets the device filter alone.
    if payload.is_some() {
        if let Some(linux) = copts.spec.linux_mut() {
            let devices = linux.resources().as_ref().map(cgroup::devices_only);
            linux.set_resources(devices);
        }
    }
    copts.cgroup = payload;
    copts.reaper = def.init;
    copts.start_gate = StartGate::Socket;
    copts
}

/// Step 12': the container, recorded (the runtime keeps a list of its own
/// under the runtime state dir), created, then started; with `-t` its
/// terminal's master, received over the console socket.
fn create_and_start(
    opts: &RunOptions,
    paths: &Paths,
    mut copts: CreateOptions,
    (list, net, host_mounts): (&mut List, &NetworkStart, &[volume_mount::HostMount]),
    (st, machine): (&mut State, Option<&mut MachineRegistration>),
) -> Result<(runtime::Container, Option<std::os::fd::OwnedFd>), SuperviseError> {
    let name = copts.id.clone();
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
    // Bridge mode: the links and rules are made while the init mounts its
    // root (they need only its network namespace, there from the clone),
    // before its program may run.
    let attached: Rc<RefCell<Option<Result<bool, SuperviseError>>>> = Default::default();
    if net.attaches() {
        let (net, out) = (net.clone(), attached.clone());
        copts.while_init_sets_up = Some(runtime::WhileInitSetsUp(Box::new(move |pid| {
            let alive = |h: &str| supervisor_runs(&net.run, h);
            let r = net.attach(pid.as_raw(), &alive);
            let failed = r.as_ref().err().map(|e| e.to_string());
            *out.borrow_mut() = Some(r);
            crate::fault::point("network");
            failed.map_or(Ok(()), Err)
        })));
    }
    // Nothing left to do between the create and the start: the init goes
    // on at once.
    copts.start_at_once = console_listener.is_none();
    let runtime_state = paths.runtime_state_dir();
    list.record_all(vec![
        Resource::EmptyDir {
            path: runtime_state.clone(),
        },
        Resource::Container {
            state_dir: runtime_state,
            id: name.clone(),
        },
    ])
    .map_err(|e| super::cleanup::from_teardown(&name, e))?;
    let rt_err = |error| SuperviseError::Runtime {
        name: name.clone(),
        error,
    };
    // The init's mount namespace is a copy of ours: the volumes' network and
    // block filesystems are mounted in one of the supervisor's own for it.
    let staging = volume_mount::staging_dir(&paths.run_dir);
    let created = volume_mount::with_mounts(host_mounts, &staging, || {
        runtime::create(copts).map_err(|e| match (&e, attached.borrow_mut().take()) {
            // The attach's own error, not the runtime's word for it (the
            // runtime names the init's own failure instead when it came first).
            (runtime::RuntimeError::Caller { .. }, Some(Err(a))) => a,
            _ => rt_err(e),
        })
    });
    let made_bridge = matches!(attached.borrow_mut().take(), Some(Ok(true)));
    let container = created?;
    if let Some(m) = machine {
        m.begin(container.pid(), container.channel_fd());
    }
    st.container_pid = Some(container.pid().as_raw());
    st.container_start_time = crate::runtime::proc_start_time(container.pid());
    st.save(&paths.run_dir)?;
    crate::fault::point("create");
    trace("supervise: created");
    let alive = |h: &str| supervisor_runs(&net.run, h);
    let console = match &console_listener {
        Some(l) => Some(console::receive_master(l, &console_path)?),
        None => None,
    };
    drop(console_listener);
    container.start().map_err(rt_err)?;
    if made_bridge {
        net.after_start(&alive);
    }
    Ok((container, console))
}

/// The image's lower dirs (lowest first), config, manifest digest and
/// HEALTHCHECK.
type ResolvedImage = (
    Vec<PathBuf>,
    Option<oci_spec::image::ImageConfiguration>,
    Option<String>,
    Option<crate::image::Healthcheck>,
);

/// The image's lower dirs (lowest first) and its config, pulling when the
/// definition's `pull` asks for it, building a `[build]` first.
fn resolve_image(
    opts: &RunOptions,
    def: &Definition,
    globals: &Globals,
) -> Result<ResolvedImage, SuperviseError> {
    let parsed = match &def.image {
        ImageSource::Rootfs(dir) => {
            if !dir.is_dir() {
                return Err(SuperviseError::io(
                    "rootfs",
                    dir,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            return Ok((vec![dir.clone()], None, None, None));
        }
        ImageSource::Image(r) => r,
        // Built at every start: the cache makes an unchanged context all
        // hits. `pull` is refused with a build, so the result is found below.
        ImageSource::Build(b) => {
            super::build::build_image(opts, def, b, globals)?;
            &b.image
        }
    };
    let reference = parsed.to_string();
    let img_err = |e: &dyn std::fmt::Display| SuperviseError::Image {
        reference: reference.clone(),
        reason: e.to_string(),
    };
    let store = Store::open(&globals.storage_root)
        .map_err(|e| img_err(&e))?
        .with_limits(crate::store::LayerLimits::from_globals(globals));
    let present = store.image(parsed).map_err(|e| img_err(&e))?;
    let present = match (present, def.service.pull) {
        (Some(img), Pull::Newer) => stored_unless_newer(def, globals, parsed, img),
        (present, _) => present,
    };
    let image = match (present, def.service.pull) {
        (Some(img), Pull::Missing | Pull::Never | Pull::Newer) => img,
        (None, Pull::Never) => return Err(SuperviseError::ImageMissing { reference }),
        (_, _) => {
            notify(opts, &format!("STATUS=pulling {reference}"));
            let progress: Box<dyn crate::image::Progress> = if opts.systemd {
                Box::new(crate::image::NotifyProgress::default())
            } else {
                Box::new(crate::image::NoProgress)
            };
            let img = crate::image::pull(&store, globals, parsed, progress.as_ref())
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
        image.healthcheck,
    ))
}

/// `pull = "newer"`: the stored image, unless the registry's digest for the
/// tag now differs (then `None`: pull). A registry that cannot be asked
/// keeps the stored image, with a warning: a host that lost its network
/// still starts its containers (Podman's `--pull newer` does the same).
fn stored_unless_newer(
    def: &Definition,
    globals: &Globals,
    reference: &crate::config::Reference,
    img: crate::store::Image,
) -> Option<crate::store::Image> {
    if !reference.is_remote() {
        return Some(img);
    }
    match crate::image::pull::remote_digest(globals, reference) {
        Ok(d) if d == img.manifest_digest => Some(img),
        Ok(_) => None,
        Err(e) => {
            journal::event(
                Priority::Warning,
                &def.name,
                "pull-newer-unreachable",
                &format!(
                    "pull = \"newer\": cannot ask the registry for \"{reference}\" ({e}); starting the stored image {}",
                    crate::image::short(&img.manifest_digest)
                ),
                &[("IMAGE", reference.to_string())],
            );
            Some(img)
        }
    }
}

/// A file from the merged image (top layer first), resolved inside each
/// layer and read only when it is a small regular file (`rootfile`): a
/// symlinked file or parent planted in a layer must not make us read a host
/// file, and a FIFO must not wedge the start.
fn read_image_file(lowers: &[PathBuf], rel: &str) -> Option<String> {
    for dir in lowers.iter().rev() {
        match crate::rootfile::read_in_root(dir, rel, MAX_ID_FILE) {
            Ok(Some(bytes)) => return String::from_utf8(bytes).ok(),
            // Present but not a small regular file: no file, as before.
            Ok(None) if exists_in(dir, rel) => return None,
            _ => continue,
        }
    }
    None
}

/// Whether `rel` names anything in the layer `dir` (no symlink followed).
fn exists_in(dir: &Path, rel: &str) -> bool {
    std::fs::symlink_metadata(dir.join(rel)).is_ok()
}
