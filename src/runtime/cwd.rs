//! The process's working directory, resolved inside the container's root and
//! verified after the change (CVE-2024-21626). Called after pivot_root (init)
//! or after joining the container's mount namespace (exec), as the
//! container's user, so "/" is the container's root.
//!
//! Two guards, as runc and crun have them:
//! - resolve with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): a
//!   `/proc/self/fd/N` (or a symlink in the image leading to one) is refused
//!   instead of followed to whatever directory descriptor N is;
//! - after fchdir, getcwd(2) must give an absolute path: the kernel prefixes
//!   "(unreachable)" when the cwd is outside the process's root (runc
//!   8e1cd2f56 "init: verify after chdir that cwd is inside the container").

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::RuntimeError;
use crate::sys::at;

/// Why a working directory is refused.
fn refused(cwd: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Cwd {
        cwd: cwd.to_path_buf(),
        reason: reason.into(),
    }
}

/// Change to `cwd`, resolved inside "/", and check the result.
pub fn enter(cwd: &Path) -> Result<(), RuntimeError> {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd};
    if !cwd.is_absolute() {
        return Err(refused(cwd, "is not an absolute path"));
    }
    if cwd.as_os_str().as_bytes().contains(&0) {
        return Err(refused(cwd, "contains a NUL byte"));
    }
    let chdir_err =
        |e: nix::errno::Errno| RuntimeError::sys(format!("chdir '{}'", cwd.display()), e);
    // open(2), not openat2: under a seccomp profile without openat2 (as
    // runtime-tools' is) the fallback below must still be reached.
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| RuntimeError::sys("open '/'", e))?;
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    let root = unsafe { std::os::fd::OwnedFd::from_raw_fd(root) };
    let resolved_in_root = match at::openat2(
        root.as_fd(),
        cwd,
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => {
            // SAFETY: fchdir on a descriptor we own.
            if unsafe { libc::fchdir(fd.as_raw_fd()) } != 0 {
                return Err(chdir_err(nix::errno::Errno::last()));
            }
            true
        }
        Err(e) => match nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
            nix::errno::Errno::ELOOP => {
                return Err(refused(
                    cwd,
                    "leads through a /proc magic link or a symlink loop; a working directory \
                     must resolve inside the container's root (CVE-2024-21626)",
                ))
            }
            nix::errno::Errno::EXDEV => {
                return Err(refused(cwd, "leads outside the container's root"))
            }
            // No openat2 (old kernel, or the container's seccomp profile,
            // loaded before this step without no_new_privileges, lacks it):
            // a plain chdir; the check below still holds.
            nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM => {
                // Our own descriptor of "/" goes first: a `/proc/self/fd/N`
                // must find nothing of ours to lead to.
                drop(root);
                nix::unistd::chdir(cwd).map_err(chdir_err)?;
                false
            }
            e => return Err(chdir_err(e)),
        },
    };
    verify(cwd, resolved_in_root)
}

/// getcwd(2), raw: glibc's wrapper turns "(unreachable)..." into ENOENT.
fn getcwd() -> Result<PathBuf, nix::errno::Errno> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: the buffer and its length describe memory we own.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return Err(nix::errno::Errno::last());
    }
    // The syscall returns the length including the NUL.
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    buf.truncate(len);
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

/// The cwd must be inside the root: absolute, not "(unreachable)/...".
///
/// The container's own seccomp profile may deny getcwd (runtime-tools'
/// `linux_seccomp` does, and its container must still start). Then the
/// kernel's RESOLVE_IN_ROOT lookup is the check; when openat2 was denied as
/// well, what stands is that every host descriptor was closed before (fds.rs),
/// which is the root of CVE-2024-21626, and a warning says so.
pub fn verify(cwd: &Path, resolved_in_root: bool) -> Result<(), RuntimeError> {
    match getcwd() {
        Err(nix::errno::Errno::EPERM | nix::errno::Errno::ENOSYS) => {
            if !resolved_in_root {
                super::warn(&format!(
                    "working directory '{}' could not be checked: the container's seccomp \
                     profile denies openat2 and getcwd; host descriptors were closed before, ignoring",
                    cwd.display()
                ));
            }
            Ok(())
        }
        Ok(wd) if check_getcwd(&wd) => Ok(()),
        Ok(wd) => Err(refused(
            cwd,
            format!(
                "is outside the container's root (getcwd gives '{}'): possible container breakout",
                wd.display()
            ),
        )),
        Err(nix::errno::Errno::ENOENT) => Err(refused(
            cwd,
            "is outside the container's root or was removed: possible container breakout",
        )),
        Err(e) => Err(RuntimeError::sys(
            format!("verify working directory '{}'", cwd.display()),
            e,
        )),
    }
}

/// What getcwd(2) gives for a cwd inside the root. Pure.
pub fn check_getcwd(wd: &Path) -> bool {
    wd.is_absolute() && !wd.as_os_str().as_bytes().starts_with(b"(unreachable)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_cwds_are_refused() {
        assert!(check_getcwd(Path::new("/srv/app")));
        assert!(check_getcwd(Path::new("/")));
        assert!(!check_getcwd(Path::new("(unreachable)/sys/fs/cgroup")));
        assert!(!check_getcwd(Path::new("sys/fs")));
        assert!(!check_getcwd(Path::new("")));
    }
}
