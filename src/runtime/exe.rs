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
//! ([`ensure_protected`], called at the top of those commands), or, in a
//! service's supervisor, has its children reach the program through the
//! trampoline instead when the container allows (trampoline.rs):
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

/// Whether this process runs from a protected copy: [`protection`], asked
/// once (only an exec changes the answer, and that starts a new process).
pub fn protected() -> bool {
    static PROTECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROTECTED.get_or_init(|| protection().is_some())
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
        // A read-only mount attached nowhere in our namespace: our bind.
        if detached(fd) {
            return Some(Protection::Bind);
        }
    }
    // SAFETY: fcntl on our own descriptor; fails with EINVAL unless a memfd.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    (seals >= 0 && seals & BASE_SEALS == BASE_SEALS).then_some(Protection::Memfd)
}

/// Whether the mount `fd` is on is missing from /proc/self/mountinfo.
fn detached(fd: RawFd) -> bool {
    // SAFETY: plain data the kernel fills from our own descriptor.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx(2) on our descriptor with AT_EMPTY_PATH.
    let r = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if r != 0 || stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let id = stx.stx_mnt_id.to_string();
    !info
        .lines()
        .any(|l| l.split_whitespace().next() == Some(id.as_str()))
}

/// Return when this process already runs from a protected copy of its
/// binary; otherwise re-execute it from one (same argv, environment and
/// descriptors) and never return, or return the error that prevented it.
/// Call it before anything the re-executed process would redo differently.
pub fn ensure_protected() -> Result<(), RuntimeError> {
    if protection().is_some() {
        crate::trace::step("running from a protected copy of the binary");
        return Ok(());
    }
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
    crate::trace::flush();
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
