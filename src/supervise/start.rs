//! The start sequence of a container, one numbered step after the other:
//! image, files the plan needs, named volumes, /etc files, overlay dirs,
//! cgroups, berth's init, notify socket, plan, signal mask, create, start.
//! Each step records what it creates in state.json before creating it.
//!
//! Runs single-threaded: a pull's tokio runtime is gone before any fork.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::watch::{HealthRunner, Running};
use super::ExecTemplate;
use super::{
    cgroup, console, files, health, journal, notify, volumes, Paths, RunOptions, State,
    SuperviseError,
};
use crate::config::{Definition, Globals, ImageSource, Notify, Pull, Seccomp};
use crate::runtime::{self, CreateOptions, RootfsSource, StartGate, Stdio};
use crate::spec::{self, ImageConfigView, PlanContext};
use crate::store::Store;
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

/// The start sequence, in order.
pub(super) fn start(
    opts: &RunOptions,
    def: &Definition,
    globals: &Globals,
    paths: &Paths,
    st: &mut State,
) -> Result<Running, SuperviseError> {
    let name = &def.name;
    // 0. Inputs that need no work to check fail before any work is done.
    volumes::check_bind_sources(def)?;
    // 1. Run dir first: every later step records itself in state.json there.
    //    Its roots are private (0700): state, exec.json and the notify
    //    socket are for root and the container only.
    private_chain(&paths.run_dir)?;
    crate::private::dir(&paths.run_dir)
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
    // The upper dir gets what the container writes, setuid binaries
    // included: under the 0700 storage root only (CVE-2021-41091).
    private_chain(&paths.storage_dir)?;
    crate::private::dir(&paths.storage_dir)
        .map_err(|e| SuperviseError::io("create", &paths.storage_dir, e))?;
    for d in [paths.upper(), paths.work()] {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SuperviseError::io("remove stale", &d, e)),
        }
        // 0755: the upper dir's mode is the container's `/`.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&d)
            .map_err(|e| SuperviseError::io("create", &d, e))?;
        if d == paths.upper() {
            crate::fault::point("overlay");
        }
    }

    // 7. cgroups: the supervisor leaves the unit's root for `supervisor/`
    //    before `payload/` exists, so the unit never has processes next to
    //    child cgroups (cgroups(7), "no internal processes").
    let payload = if opts.delegated {
        let unit = cgroup::unit_cgroup_dir()?;
        let sup = unit.join("supervisor");
        let payload = unit.join("payload");
        st.unit_cgroup = Some(unit.clone());
        st.supervisor_cgroup = Some(sup.clone());
        st.payload_cgroup = Some(payload.clone());
        st.save(&paths.run_dir)?;
        cgroup::make(&sup)?;
        cgroup::move_into(&sup, 0)?;
        crate::fault::point("cgroup");
        if let Err(warning) = cgroup::enable_controllers(&unit) {
            journal::event(
                Priority::Warning,
                name,
                "cgroup",
                &format!("{warning}; the unit's limits still apply, ignoring"),
                &[],
            );
        }
        cgroup::make(&payload)?;
        Some(payload)
    } else {
        None
    };

    // 8. berth's init (`init = true`) is no process of the supervisor's: the
    //    container's own init stays its PID 1, inside every namespace and
    //    all of its confinement, and runs the app as PID 2 (see
    //    runtime/reaper.rs; issue 12, class 5). Set on the create options below.

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
    let mut ctx = PlanContext {
        rootfs: runtime_state.join(name).join("rootfs"),
        run_dir: paths.run_dir.clone(),
        storage_root: globals.storage_root.clone(),
        credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        environment_files: env_files,
        passwd: read_image_file(&lowers, "etc/passwd"),
        group: read_image_file(&lowers, "etc/group"),
        seccomp,
        id_range: None,
        terminal: opts.tty,
        command_override: opts.command.clone(),
        notify_socket: notify_sock
            .as_ref()
            .map(|_| paths.run_dir.join(NOTIFY_SOCK)),
        nofile_limit: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok(),
    };
    if def.security.userns == crate::config::Userns::Auto {
        // A private ID range; the fresh upper and work dirs belong to its
        // root, the image's layers are idmapped by the runtime.
        let range = super::userns::allocate(
            &super::userns::userns_dir(&opts.root),
            super::userns::host_pool(&opts.root),
            name,
        )?;
        crate::fault::point("userns");
        super::userns::chown_to_range(range, &[paths.upper(), paths.work()])?;
        // Its root mounts the overlay and stages the idmapped layers by
        // path from inside the namespace: it alone may traverse these.
        for d in [&paths.storage_dir, &paths.run_dir] {
            crate::private::traversable_by_group(d, range.host_start)
                .map_err(|e| SuperviseError::io("chown", d, e))?;
        }
        ctx.id_range = Some(range);
    }
    let spec = spec::plan(def, view.as_ref(), &ctx)?;
    // The image's STOPSIGNAL, real-time ones included (systemd inside
    // stops on SIGRTMIN+3); one berth cannot read is said, not ignored.
    let stop_signal = match view.as_ref().and_then(|v| v.stop_signal.as_deref()) {
        None => libc::SIGTERM,
        Some(s) => runtime::parse_signal(s).unwrap_or_else(|| {
            journal::event(
                Priority::Warning,
                name,
                "stop-signal",
                &format!("the image's STOPSIGNAL \"{s}\" is not a signal; stopping with SIGTERM"),
                &[],
            );
            libc::SIGTERM
        }),
    };

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
    // What health checks and `berth exec` confine their processes with:
    // exactly this start's plan, whatever the definition says later.
    let template = ExecTemplate::from_spec(&spec);
    if let Some(t) = &template {
        t.save(&paths.run_dir)?;
    }
    let health = match (&def.health, template) {
        (Some(h), Some(template)) => Some(HealthRunner {
            state: health::HealthState::new(h.clone(), Instant::now()),
            template,
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
    copts.reaper = def.init;
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
    st.container_start_time = crate::runtime::proc_start_time(container.pid());
    st.save(&paths.run_dir)?;
    crate::fault::point("create");
    let console = match &console_listener {
        Some(l) => Some(console::receive_master(l, &console_path)?),
        None => None,
    };
    drop(console_listener);
    container.start().map_err(rt_err)?;
    Ok(Running {
        container,
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
    let parsed = match &def.image {
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
        ImageSource::Image(r) => r,
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
    ))
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
