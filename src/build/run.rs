//! A RUN step carried out: the stage's layers as the lower dirs of an
//! overlay with a fresh upper dir, the container started by the runtime
//! every berth container starts through (`runtime::create` + `start`, as
//! `berth run` and service mode do), its spec from `run_plan` (the default
//! confinement), its output streamed to the build's, prefixed; then the
//! upper dir is what `store::layer` turns into the step's layer.
//!
//! Nothing outlives the step: the overlay is mounted inside the container's
//! own mount namespace (gone with its last process; the PID namespace ends
//! every process when the command exits), and the runtime's record of the
//! start is walked by `runtime::cleanup`. The caller removes the step's
//! directory (upper, work, record, /etc files) whatever happened.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::containerfile::Command;
use super::run_plan::{self, RunInputs, RunNetwork, STUB_DIRS, STUB_FILES};
use crate::runtime::{self, CreateOptions, RootfsSource, Stdio};

const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;

/// One RUN to carry out.
pub struct Run<'a> {
    /// The stage's layer dirs, lowest first (none: an empty lower dir).
    pub lowers: Vec<PathBuf>,
    pub config: &'a serde_json::Value,
    pub shell: &'a [String],
    pub command: &'a Command,
    pub args: &'a [(String, String)],
    pub network: RunNetwork,
    pub storage_root: &'a Path,
    /// The step's own directory (made by the caller, removed by it).
    pub dir: &'a Path,
    /// The stage's /etc/passwd and /etc/group.
    pub passwd: Option<String>,
    pub group: Option<String>,
}

/// What a finished RUN left: its exit status and the upper dir, the mount
/// points its start made taken out again.
pub struct Ran {
    pub status: i32,
    pub upper: PathBuf,
}

fn io_err<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> String + 'a {
    move |e| format!("cannot {what} '{}': {e}", path.display())
}

/// Whether `rel` names something in any of `lowers` (looked up beneath
/// each, following no link: a layer is hostile).
fn in_lowers(lowers: &[PathBuf], rel: &str) -> bool {
    lowers.iter().any(|l| {
        let Ok(root) = crate::sys::at::openat2_cwd(l, libc::O_PATH | libc::O_DIRECTORY) else {
            return false;
        };
        match crate::sys::at::openat2(
            root.as_fd(),
            Path::new(rel),
            libc::O_PATH | libc::O_NOFOLLOW,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        ) {
            Ok(_) => true,
            // A link on the way: something is there.
            Err(e) => e.raw_os_error() == Some(libc::ELOOP),
        }
    })
}

/// Run it; the output goes to `out`, each line after `prefix`.
pub fn run(r: &Run, out: &mut dyn Write, prefix: &str) -> Result<Ran, String> {
    let upper = r.dir.join("upper");
    let work = r.dir.join("work");
    let etc = r.dir.join("etc");
    let state = r.dir.join("state");
    let empty = r.dir.join("empty");
    for d in [&upper, &work, &etc, &state, &empty] {
        std::fs::create_dir(d).map_err(io_err("create", d))?;
    }
    // The upper dir's mode is the container's `/` (as service mode's).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err("chmod", &upper))?;
    let mut lowers = r.lowers.clone();
    if lowers.is_empty() {
        lowers.push(empty);
    }
    let def = run_plan::definition(r.network)?;
    crate::supervise::files::write_etc_files(
        &etc,
        Path::new("/"),
        run_plan::HOSTNAME,
        r.network == RunNetwork::None,
        &crate::supervise::files::EtcNetwork::from_definition(&def),
    )
    .map_err(|e| format!("the RUN's /etc files: {e}"))?;
    let id = format!("build-{}", std::process::id());
    let caps: Vec<_> = crate::spec::capability_set(&[], &[])?.into_iter().collect();
    let seccomp = runtime::seccomp::default_profile(&caps).map_err(|e| e.to_string())?;
    let spec = run_plan::plan(
        r.config,
        r.shell,
        r.command,
        r.args,
        r.network,
        RunInputs {
            rootfs: state.join(&id).join("rootfs"),
            run_dir: etc,
            storage_root: r.storage_root,
            passwd: r.passwd.clone(),
            group: r.group.clone(),
            seccomp: Some(seccomp),
            nofile_limit: nix::sys::resource::getrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
            )
            .ok(),
        },
    )?;
    let mut opts = CreateOptions::new(id.clone(), spec, &state);
    opts.rootfs = RootfsSource::Overlay {
        lowers,
        upper: upper.clone(),
        work,
    };
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe for the RUN's output: {e}"))?;
    let null: OwnedFd = File::open("/dev/null")
        .map_err(io_err("open", Path::new("/dev/null")))?
        .into();
    let stderr = write_end
        .try_clone()
        .map_err(|e| format!("cannot dup the RUN's output pipe: {e}"))?;
    opts.stdio = Stdio::Fds {
        stdin: Some(null),
        stdout: Some(write_end),
        stderr: Some(stderr),
    };
    let status = start_and_wait(opts, read_end, out, prefix);
    let cleaned = runtime::cleanup(&state, &id).map_err(|errs| {
        let m: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        format!("cleaning up after the RUN: {}", m.join("; "))
    });
    let status = status?;
    cleaned?;
    prune_stubs(&upper, &r.lowers).map_err(io_err("remove the mount points in", &upper))?;
    Ok(Ran { status, upper })
}

/// Take out of the (no longer used) upper dir the mount points the start
/// made for the stage's missing /proc, /sys, /dev, /etc and its /etc
/// files, when they are still empty, and `etc` itself when only they had
/// copied it up (BuildKit removes such stubs too, `executor/stubs.go`).
/// Everything is looked up beneath the upper dir following no link: the
/// command wrote it.
fn prune_stubs(upper: &Path, lowers: &[PathBuf]) -> io::Result<()> {
    use nix::fcntl::AtFlags;
    use nix::unistd::UnlinkatFlags;
    let root = crate::sys::at::openat2_cwd(upper, libc::O_PATH | libc::O_DIRECTORY)?;
    let beneath = |rel: &str, flags: i32| {
        crate::sys::at::openat2(
            root.as_fd(),
            Path::new(rel),
            flags | libc::O_NOFOLLOW,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        )
    };
    let stat_at = |dir: &OwnedFd, name: &str| {
        nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
    };
    for f in STUB_FILES {
        let (parent, name) = f.rsplit_once('/').unwrap_or((".", f));
        let Ok(dir) = beneath(parent, libc::O_PATH | libc::O_DIRECTORY) else {
            continue;
        };
        match stat_at(&dir, name) {
            Ok(st)
                if st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && st.st_size == 0
                    && !in_lowers(lowers, f) =>
            {
                nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
            }
            _ => {}
        }
    }
    for d in STUB_DIRS {
        let Ok(st) = stat_at(&root, d) else { continue };
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR || !is_plain_empty_dir(&beneath, d) {
            continue;
        }
        // In the stage: a copy-up, unless the command changed its owner
        // or mode.
        let copied_up = match lower_stat(lowers, d) {
            None => true,
            Some(l) => (l.st_mode, l.st_uid, l.st_gid) == (st.st_mode, st.st_uid, st.st_gid),
        };
        if copied_up {
            nix::unistd::unlinkat(Some(root.as_raw_fd()), *d, UnlinkatFlags::RemoveDir)?;
        }
    }
    Ok(())
}

/// Whether the directory `rel` has no entries and is not opaque.
fn is_plain_empty_dir(beneath: &dyn Fn(&str, i32) -> io::Result<OwnedFd>, rel: &str) -> bool {
    let Ok(fd) = beneath(rel, libc::O_RDONLY | libc::O_DIRECTORY) else {
        return false;
    };
    let dir = File::from(fd);
    let empty = crate::store::layer::list_dir(&dir).is_ok_and(|n| n.is_empty());
    let mut buf = [0u8; 4];
    // SAFETY: fgetxattr into a buffer we own, its length passed.
    let opaque = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    } > 0;
    empty && !opaque
}

/// The stat of `rel` in the topmost of `lowers` that has it.
fn lower_stat(lowers: &[PathBuf], rel: &str) -> Option<nix::sys::stat::FileStat> {
    lowers.iter().rev().find_map(|l| {
        let root = crate::sys::at::openat2_cwd(l, libc::O_PATH | libc::O_DIRECTORY).ok()?;
        let fd = crate::sys::at::openat2(
            root.as_fd(),
            Path::new(rel),
            libc::O_PATH | libc::O_NOFOLLOW,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        )
        .ok()?;
        nix::sys::stat::fstat(fd.as_raw_fd()).ok()
    })
}

/// Create, start, stream the output until the last writer is gone, and
/// reap: the exit status (128+N for signal N).
fn start_and_wait(
    opts: CreateOptions,
    output: OwnedFd,
    out: &mut dyn Write,
    prefix: &str,
) -> Result<i32, String> {
    let c = runtime::create(opts).map_err(|e| e.to_string())?;
    if let Err(e) = c.start() {
        let _ = nix::sys::signal::kill(c.pid(), nix::sys::signal::Signal::SIGKILL);
        let _ = c.wait();
        return Err(e.to_string());
    }
    // The init and its children hold the pipe's other end; when the init
    // (the PID namespace's first process) exits, the kernel ends the rest,
    // so the read ends too.
    let streamed = stream(File::from(output), out, prefix);
    let status = c.wait().map_err(|e| e.to_string())?;
    streamed.map_err(|e| format!("reading the RUN's output: {e}"))?;
    Ok(status)
}

/// Copy `src` to `out` line by line, each line after `prefix`.
fn stream(mut src: File, out: &mut dyn Write, prefix: &str) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            line.push(b);
            if b == b'\n' {
                // The build's output is best effort (a closed stdout must
                // not stop the step); the command's is drained regardless.
                let _ = out.write_all(prefix.as_bytes());
                let _ = out.write_all(&line);
                line.clear();
            }
        }
        let _ = out.flush();
    }
    if !line.is_empty() {
        let _ = out.write_all(prefix.as_bytes());
        let _ = out.write_all(&line);
        let _ = out.write_all(b"\n");
    }
    Ok(())
}
