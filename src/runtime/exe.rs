//! The runtime binary as the container's `/proc/self/exe` (CVE-2019-5736).
//!
//! The init and exec children are clones of the process that creates them
//! and are never re-executed: until they execve the container's program,
//! their `/proc/PID/exe` is that process's binary. And a container program
//! whose file is `#!/proc/self/exe` (or a replaced `/bin/sh`) makes the
//! kernel execute that very binary inside the container, where the
//! container's root can open `/proc/PID/exe` (O_PATH) and, once it exited,
//! reopen it for writing through `/proc/self/fd` and overwrite the host's
//! runtime. So every process that clones container processes first
//! re-executes itself from a copy that cannot be written
//! ([`ensure_protected`], called at the top of those commands):
//!
//! - a read-only overlayfs made with fsopen(2) whose top layer is the
//!   binary's directory and whose second layer is an empty detached tmpfs
//!   (overlayfs needs two lower layers when it has no upper), mounted
//!   detached: no path reaches it, nothing can remount it, writes fail with
//!   EROFS, and no byte is copied (runc ≥ 1.2,
//!   `libcontainer/exeseal/overlayfs_linux.go`);
//! - where overlayfs cannot take a layer by fd (before Linux 6.13, e.g.
//!   Debian 12's 6.1), a detached read-only bind of the binary
//!   (open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_RDONLY), Linux
//!   5.12), what crun and runc 1.1 do with a lazily unmounted bind: also no
//!   copy, but the file is the host's inode behind a read-only mount;
//! - else a memfd copy sealed with F_SEAL_SEAL|SHRINK|GROW|WRITE (runc's
//!   `cloned_binary`, crun's `src/libcrun/cloned_binary.c`): a full copy of
//!   the binary per process, 25–35 ms for 15 MB on a loaded machine.
//!
//! The supervisor (`berth run --systemd`, once per `systemctl start`) does
//! not make one of those per process: [`ensure_protected_pinned`] keeps a
//! read-only bind of the binary attached under `/run/berth/exe`, made by the
//! first start and replaced when the binary on disk is another inode (an
//! upgrade), and re-executes from it.
//!
//! The re-exec passes argv, the environment, every descriptor not marked
//! close-on-exec (stdio, systemd's LISTEN_FDS, OCI `--preserve-fds`, console
//! sockets) and the signal mask on unchanged. What a protected process looks
//! like is checked on `/proc/self/exe` itself, so it happens once.
//!
//! Syscalls only; no container policy.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::RuntimeError;

// <linux/magic.h>, <linux/mount.h>, <linux/fcntl.h>: not in the libc crate
// for every target.
const OVERLAYFS_SUPER_MAGIC: libc::__fsword_t = 0x794c_7630;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MFD_EXEC: libc::c_uint = 0x10;
const F_SEAL_EXEC: libc::c_int = 0x20;
/// The seals that make a memfd immutable (runc's `baseMemfdSeals`).
const BASE_SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// How the running binary is kept from being written through procfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Executed from a read-only overlayfs.
    Overlay,
    /// Executed from a read-only bind mount no path reaches.
    Bind,
    /// Executed from a sealed memfd copy.
    Memfd,
}

/// How `/proc/self/exe` is protected, or None when it is a writable file
/// (the binary on disk).
pub fn protection() -> Option<Protection> {
    let exe = File::open("/proc/self/exe").ok()?;
    protection_of(exe.as_raw_fd())
}

fn protection_of(fd: RawFd) -> Option<Protection> {
    // SAFETY: statfs and statvfs are plain data the kernel fills from our
    // own descriptor (statvfs carries the mount flags, statfs the type).
    let (mut st, mut sv): (libc::statfs, libc::statvfs) = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatvfs(fd, &mut sv) } == 0 && sv.f_flag & libc::ST_RDONLY != 0 {
        // SAFETY: as above.
        if unsafe { libc::fstatfs(fd, &mut st) } == 0 && st.f_type == OVERLAYFS_SUPER_MAGIC {
            // Read-only and on overlayfs: the real file beneath cannot be
            // reached through this one, and the mount lives in a namespace
            // the container cannot remount in.
            return Some(Protection::Overlay);
        }
        // A read-only mount whose root is this very file: a bind of the
        // binary (detached, or the pinned one under /run/berth/exe). Only
        // the host's root could remount it writable; the container cannot.
        // A binary that merely sits on a read-only filesystem does not
        // count: that filesystem is remounted writable for updates.
        if mount_root(fd) {
            return Some(Protection::Bind);
        }
    }
    // SAFETY: fcntl on our own descriptor; fails with EINVAL unless a memfd.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    (seals >= 0 && seals & BASE_SEALS == BASE_SEALS).then_some(Protection::Memfd)
}

/// Whether `fd` is the root of the mount it is on (statx
/// STATX_ATTR_MOUNT_ROOT, Linux 5.8): for a file, a bind mount of itself.
fn mount_root(fd: RawFd) -> bool {
    // SAFETY: plain data the kernel fills from our own descriptor.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx(2) on our descriptor with AT_EMPTY_PATH.
    let r = unsafe { libc::statx(fd, c"".as_ptr(), libc::AT_EMPTY_PATH, 0, &mut stx) };
    r == 0
        && stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
        && stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
}

/// Where the supervisors' read-only binds of the berth binary live, under
/// `/run/berth` ([`ensure_protected_pinned`]).
pub const PINNED_SUBDIR: &str = "exe";

/// Return when this process already runs from a protected copy of its
/// binary; otherwise re-execute it from one (same argv, environment and
/// descriptors) and never return, or return the error that prevented it.
/// Call it before anything the re-executed process would redo differently.
pub fn ensure_protected() -> Result<(), RuntimeError> {
    if protection().is_some() {
        crate::trace::step("running from a protected copy of the binary");
        return Ok(());
    }
    reexecute_protected()
}

/// [`ensure_protected`] for the supervisor (`berth run --systemd`), which
/// every `systemctl start` runs: it re-executes from a read-only bind of
/// the binary kept attached under `dir` (`/run/berth/exe`) and made by the
/// first start, so a start pays for the execve but not for a new mount
/// (an overlayfs or a bind per process, 0.7–1 ms, several on a loaded
/// machine). A bind whose inode is no longer the running binary's (the
/// package was upgraded) is replaced. Where the bind cannot be made, it
/// falls back to [`ensure_protected`]'s per-process copies.
pub fn ensure_protected_pinned(dir: &Path) -> Result<(), RuntimeError> {
    if protection().is_some() {
        crate::trace::step("running from a protected copy of the binary");
        return Ok(());
    }
    match pinned_bind(dir) {
        Ok(exe) => {
            crate::trace::step("pinned read-only bind found, re-executing");
            Err(execute(&exe))
        }
        Err(e) => {
            tracing::debug!("no pinned read-only bind of the runtime binary ({e})");
            reexecute_protected()
        }
    }
}

fn reexecute_protected() -> Result<(), RuntimeError> {
    let exe = match sealed_overlay() {
        Ok(fd) => fd,
        Err(overlay) => {
            match sealed_bind() {
                Ok(fd) => {
                    tracing::debug!("no overlayfs copy of the runtime binary ({overlay}), using a read-only bind");
                    fd
                }
                Err(bind) => {
                    tracing::debug!("no overlayfs copy ({overlay}) nor read-only bind ({bind}) of the runtime binary, using a memfd");
                    sealed_memfd().map_err(|memfd| RuntimeError::Unprotected {
                        overlay: format!("{overlay}; read-only bind: {bind}"),
                        memfd: memfd.to_string(),
                    })?
                }
            }
        }
    };
    crate::trace::step("protected copy made, re-executing");
    Err(execute(&exe))
}

fn cstr(s: &OsStr) -> Result<CString, RuntimeError> {
    CString::new(s.as_bytes())
        .map_err(|_| RuntimeError::sys("string with a NUL byte", nix::errno::Errno::EINVAL))
}

fn owned(ret: libc::c_long, op: &str) -> Result<OwnedFd, RuntimeError> {
    if ret < 0 {
        return Err(RuntimeError::sys(op.to_string(), nix::Error::last()));
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

fn fsopen(name: &std::ffi::CStr) -> Result<OwnedFd, RuntimeError> {
    // SAFETY: fsopen(2) with a NUL-terminated name; returns a new fd.
    owned(
        unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen",
    )
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&std::ffi::CStr>,
    value: Option<&CString>,
    aux: RawFd,
) -> Result<(), RuntimeError> {
    // SAFETY: fsconfig(2) with NUL-terminated strings (or NULL) that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.map_or(std::ptr::null(), |k| k.as_ptr()),
            value.map_or(std::ptr::null(), |v| v.as_ptr()),
            aux,
        )
    };
    if r < 0 {
        let what = key.map_or("create".into(), |k| k.to_string_lossy().into_owned());
        return Err(RuntimeError::sys(
            format!("fsconfig {what}"),
            nix::Error::last(),
        ));
    }
    Ok(())
}

fn fsmount(fs: &OwnedFd, attrs: libc::c_uint) -> Result<OwnedFd, RuntimeError> {
    // SAFETY: fsmount(2) on our configured context; returns a new fd.
    owned(
        unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) },
        "fsmount",
    )
}

/// The running binary opened (O_PATH) through a read-only overlayfs whose
/// only layers are its directory and an empty tmpfs, mounted detached.
fn sealed_overlay() -> Result<OwnedFd, RuntimeError> {
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| RuntimeError::io("readlink", "/proc/self/exe", e))?;
    // A replaced binary reads "PATH (deleted)": the memfd copy handles it.
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(RuntimeError::sys(
            format!("split '{}'", exe.display()),
            nix::errno::Errno::EINVAL,
        ));
    };
    let empty = fsopen(c"tmpfs")?;
    fsconfig(&empty, FSCONFIG_CMD_CREATE, None, None, 0)?;
    let empty = fsmount(&empty, MOUNT_ATTR_RDONLY)?;
    let ovl = fsopen(c"overlay")?;
    // "lowerdir+" appends one layer, top first; by fd since Linux 6.7/6.13,
    // which lets the dummy layer be a mount no path reaches (runc had to use
    // a directory of its state root).
    fsconfig(
        &ovl,
        FSCONFIG_SET_STRING,
        Some(c"lowerdir+"),
        Some(&cstr(dir.as_os_str())?),
        0,
    )?;
    fsconfig(
        &ovl,
        FSCONFIG_SET_FD,
        Some(c"lowerdir+"),
        None,
        empty.as_raw_fd(),
    )?;
    // xino would log to dmesg when the layers are on different filesystems;
    // not needed (runc does the same), so a kernel without it is fine.
    let _ = fsconfig(
        &ovl,
        FSCONFIG_SET_STRING,
        Some(c"xino"),
        Some(&CString::from(c"off")),
        0,
    );
    fsconfig(&ovl, FSCONFIG_CMD_CREATE, None, None, 0)?;
    let mnt = fsmount(
        &ovl,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID,
    )?;
    let name = cstr(name)?;
    // SAFETY: openat(2) relative to our mount fd with a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            mnt.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    let file = owned(fd as libc::c_long, "open the binary through overlayfs")?;
    // The directory's entry may not be what runs (a file bind-mounted over
    // it is not seen through a layer; a replaced binary): the same inode,
    // size and mtime, or the copy instead. Overlayfs keeps a lower file's
    // inode number with xino=off.
    let (ours, theirs) = (stat_fd(file.as_raw_fd())?, stat_path(&exe)?);
    if (ours.st_ino, ours.st_size, ours.st_mtime, ours.st_mtime_nsec)
        != (
            theirs.st_ino,
            theirs.st_size,
            theirs.st_mtime,
            theirs.st_mtime_nsec,
        )
    {
        return Err(RuntimeError::sys(
            format!("'{}' through overlayfs is another file", exe.display()),
            nix::errno::Errno::ESTALE,
        ));
    }
    Ok(file)
}

/// The running binary as a detached read-only bind mount of itself.
fn sealed_bind() -> Result<OwnedFd, RuntimeError> {
    read_only_bind(c"/proc/self/exe")
}

/// The pinned read-only bind of the running binary under `dir`, made when
/// missing or stale. Its name is the binary's path with `/` as `-`, so one
/// binary has one bind, replaced in place on upgrade.
fn pinned_bind(dir: &Path) -> Result<OwnedFd, RuntimeError> {
    use std::os::fd::AsFd;
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| RuntimeError::io("readlink", "/proc/self/exe", e))?;
    let running = stat_path(&exe)?;
    let target = dir.join(pinned_name(&exe).ok_or_else(|| {
        RuntimeError::sys(
            format!("pin '{}' (replaced on disk?)", exe.display()),
            nix::errno::Errno::ESTALE,
        )
    })?);
    if let Some(fd) = open_pinned(&target, &running) {
        return Ok(fd);
    }
    // /run/berth keeps its own mode (0711, see private.rs) if this makes it.
    if let Some(parent) = dir.parent() {
        crate::private::root_dir(parent).map_err(|e| RuntimeError::io("create", parent, e))?;
    }
    crate::private::dir(dir).map_err(|e| RuntimeError::io("create", dir, e))?;
    // One start makes it; one started at the same moment waits, then finds it.
    let lock = File::open(dir).map_err(|e| RuntimeError::io("open", dir, e))?;
    // SAFETY: flock(2) on a descriptor we own; released when it closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(RuntimeError::sys(
            format!("lock '{}'", dir.display()),
            nix::Error::last(),
        ));
    }
    if let Some(fd) = open_pinned(&target, &running) {
        return Ok(fd);
    }
    // A stale bind (another inode: the binary was replaced) goes first,
    // lazily: supervisors still running from it keep it until they exit.
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    let point = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&target)
        .map_err(|e| RuntimeError::io("create", &target, e))?;
    let tree = read_only_bind(c"/proc/self/exe")?;
    crate::sys::at::attach(tree.as_fd(), point.as_fd())
        .map_err(|e| RuntimeError::io("move_mount the read-only bind onto", &target, e))?;
    open_pinned(&target, &running).ok_or_else(|| {
        RuntimeError::sys(
            format!("'{}' after binding it", target.display()),
            nix::errno::Errno::ESTALE,
        )
    })
}

/// `/usr/bin/berth` → `usr-bin-berth`; None for a path the kernel marks
/// " (deleted)" or that is not absolute.
fn pinned_name(exe: &Path) -> Option<String> {
    let s = exe.to_str()?;
    if !s.starts_with('/') || s.ends_with(" (deleted)") {
        return None;
    }
    let name: String = s
        .trim_start_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' => c,
            _ => '_',
        })
        .take(200)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// `target` opened O_PATH when it is a read-only bind of the running
/// binary's inode, else None.
fn open_pinned(target: &Path, running: &libc::stat) -> Option<OwnedFd> {
    let fd = crate::sys::at::openat2_cwd(target, libc::O_PATH | libc::O_NOFOLLOW).ok()?;
    let st = stat_fd(fd.as_raw_fd()).ok()?;
    let same = (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime,
        st.st_mtime_nsec,
    ) == (
        running.st_dev,
        running.st_ino,
        running.st_size,
        running.st_mtime,
        running.st_mtime_nsec,
    );
    // Read-only and a mount of this file itself (on an overlayfs root, such
    // as a test box's, the bind counts as that filesystem's type).
    (same && mount_root(fd.as_raw_fd()) && protection_of(fd.as_raw_fd()).is_some()).then_some(fd)
}

fn read_only_bind(path: &std::ffi::CStr) -> Result<OwnedFd, RuntimeError> {
    use std::os::fd::AsFd;
    let path = Path::new(OsStr::from_bytes(path.to_bytes()));
    let src = crate::sys::at::openat2_cwd(path, libc::O_PATH)
        .map_err(|e| RuntimeError::io("open", path, e))?;
    let tree = crate::sys::at::clone_tree(src.as_fd(), false)
        .map_err(|e| RuntimeError::io("open_tree", path, e))?;
    crate::sys::at::mount_setattr(
        tree.as_fd(),
        (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) as u64,
        None,
        true,
    )
    .map_err(|e| RuntimeError::io("mount_setattr read-only", path, e))?;
    Ok(tree)
}

fn stat_fd(fd: RawFd) -> Result<libc::stat, RuntimeError> {
    // SAFETY: plain data filled by fstat from our own descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; AT_EMPTY_PATH stats the (O_PATH) fd itself.
    if unsafe { libc::fstatat(fd, c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) } < 0 {
        return Err(RuntimeError::sys("fstat", nix::Error::last()));
    }
    Ok(st)
}

fn stat_path(p: &Path) -> Result<libc::stat, RuntimeError> {
    let f = File::open("/proc/self/exe").map_err(|e| RuntimeError::io("open", p, e))?;
    stat_fd(f.as_raw_fd())
}

/// A copy of the running binary in a memfd sealed against every change.
fn sealed_memfd() -> Result<OwnedFd, RuntimeError> {
    let mut src =
        File::open("/proc/self/exe").map_err(|e| RuntimeError::io("open", "/proc/self/exe", e))?;
    sealed_program(&mut src)
}

/// A sealed memfd holding the program `src` reads, for [`execute`]: nothing
/// can write it, and it has no path.
pub fn sealed_program(src: &mut impl std::io::Read) -> Result<OwnedFd, RuntimeError> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) where vm.memfd_noexec would otherwise refuse exec.
    // SAFETY: memfd_create(2) with a NUL-terminated name; returns a new fd.
    let mut fd = unsafe { libc::memfd_create(c"berth".as_ptr(), flags | MFD_EXEC) };
    if fd < 0 {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(c"berth".as_ptr(), flags) };
    }
    let memfd = owned(fd as libc::c_long, "memfd_create")?;
    let mut dst = File::from(memfd);
    std::io::copy(src, &mut dst)
        .map_err(|e| RuntimeError::io("copy the runtime binary", "/proc/self/exe", e))?;
    let fd = dst.as_raw_fd();
    // 0511 as runc: no one may open it for writing by its mode either.
    // SAFETY: fchmod and fcntl on our own descriptor.
    unsafe { libc::fchmod(fd, 0o511) };
    // F_SEAL_EXEC (Linux 6.3) keeps the mode; older kernels lack it, fine.
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, F_SEAL_EXEC) };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, BASE_SEALS) } < 0 {
        return Err(RuntimeError::sys(
            "seal the runtime binary's memfd",
            nix::Error::last(),
        ));
    }
    // execve refuses a file open for writing (ETXTBSY): keep an O_PATH
    // handle only, as runc's sealFile does.
    let p = CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    // SAFETY: open(2) with a NUL-terminated path; returns a new fd.
    let ro = unsafe { libc::open(p.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    owned(ro as libc::c_long, "reopen the runtime binary's memfd")
}

/// execveat(fd, "", argv, environ, AT_EMPTY_PATH) with this process's own
/// argv and environment; returns only on failure.
pub fn execute(exe: &impl AsRawFd) -> RuntimeError {
    let argv: Result<Vec<CString>, _> = std::env::args_os().map(|a| cstr(&a)).collect();
    let argv = match argv {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: argv pointers outlive the call and end in NULL; `environ` is
    // the process's own NULL-terminated environment (single-threaded here).
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            exe.as_raw_fd(),
            c"".as_ptr(),
            ptrs.as_ptr(),
            environ,
            libc::AT_EMPTY_PATH,
        )
    };
    RuntimeError::sys(
        "re-execute the runtime from its protected copy",
        nix::Error::last(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_on_disk_is_not_protected() {
        // The test binary runs from target/, a plain writable file.
        assert_eq!(protection(), None);
    }

    #[test]
    fn a_sealed_memfd_counts_as_protected() {
        use std::io::Write;
        let fd = sealed_memfd().expect("sealed memfd");
        let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let f = File::open(&p).expect("reopen the memfd for reading");
        assert_eq!(protection_of(f.as_raw_fd()), Some(Protection::Memfd));
        // Root may open it for writing despite 0511; the seal refuses the write.
        if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&p) {
            assert!(w.write_all(b"x").is_err(), "a sealed memfd took a write");
        }
    }

    #[test]
    fn a_pinned_bind_is_named_for_the_binarys_path() {
        let name = |p: &str| pinned_name(Path::new(p));
        assert_eq!(name("/usr/bin/berth").as_deref(), Some("usr-bin-berth"));
        assert_eq!(
            name("/opt/my tools/berth").as_deref(),
            Some("opt-my_tools-berth")
        );
        // Replaced on disk, or not a path at all: no bind to make.
        assert_eq!(name("/usr/bin/berth (deleted)"), None);
        assert_eq!(name("berth"), None);
        assert_eq!(name("/"), None);
    }

    #[test]
    fn a_read_only_bind_is_read_only_or_unavailable() {
        // Needs CAP_SYS_ADMIN. A file that is not running: writing the
        // running binary would fail with ETXTBSY first.
        let dir = std::env::temp_dir().join(format!("berth-exe-bind-{}", std::process::id()));
        std::fs::write(&dir, b"x").unwrap();
        let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let bind = read_only_bind(&c);
        let _ = std::fs::remove_file(&dir);
        let Ok(fd) = bind else {
            return;
        };
        assert_eq!(protection_of(fd.as_raw_fd()), Some(Protection::Bind));
        let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    }

    #[test]
    fn an_overlay_copy_is_read_only_or_unavailable() {
        // Needs CAP_SYS_ADMIN; as non-root the memfd is the path taken.
        let Ok(fd) = sealed_overlay() else {
            return;
        };
        assert_eq!(protection_of(fd.as_raw_fd()), Some(Protection::Overlay));
        let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    }
}
