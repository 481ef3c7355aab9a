//! The procfs the init writes sysctls through (issue 12, class 4;
//! CVE-2019-16884, CVE-2025-52881). It is taken before any of the spec's
//! mounts could shadow /proc — a detached copy of the caller's /proc mount
//! (open_tree OPEN_TREE_CLONE, without its submounts), else an O_PATH
//! descriptor of it — and checked to be procfs (fstatfs PROC_SUPER_MAGIC).
//! A sysctl file is then opened beneath it with no symlink, magic link or
//! mount crossing and checked again, so a tmpfs or bind over the
//! container's /proc/sys, or a fake /proc, cannot receive the write.
//! Sysctl values follow the writer's namespaces, not the procfs instance's
//! (net.* of the caller's netns, kernel.* IPC/UTS ones of its IPC/UTS ns),
//! so the container's own namespaces get them.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::RuntimeError;
use crate::sys::at;

/// A verified procfs.
#[derive(Debug)]
pub struct ProcFs(OwnedFd);

impl ProcFs {
    /// Its descriptor, for the init's list of what it keeps open.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }
}

fn check(fd: &OwnedFd, what: &Path) -> Result<(), RuntimeError> {
    match at::fs_magic(fd.as_fd()) {
        Ok(m) if m == libc::PROC_SUPER_MAGIC => Ok(()),
        Ok(m) => Err(RuntimeError::io(
            "not on procfs (refusing to write a sysctl there)",
            what,
            std::io::Error::other(format!("filesystem magic {m:#x}")),
        )),
        Err(e) => Err(RuntimeError::io("statfs", what, e)),
    }
}

impl ProcFs {
    /// Take the procfs at `/proc` now (before the spec's mounts).
    pub fn open() -> Result<ProcFs, RuntimeError> {
        let proc_ = Path::new("/proc");
        let fd = at::openat2_cwd(proc_, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| RuntimeError::io("open", proc_, e))?;
        // A private copy no later mount in this namespace can cover; in a
        // user namespace the kernel refuses to copy a mount with locked
        // submounts alone (EINVAL), and the descriptor itself serves.
        let fd = at::clone_tree(fd.as_fd(), false).unwrap_or(fd);
        check(&fd, proc_)?;
        Ok(ProcFs(fd))
    }

    /// Write `value` to the sysctl `key` (`net.ipv4.ip_forward`).
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<(), RuntimeError> {
        let rel = PathBuf::from(format!("sys/{}", key.replace('.', "/")));
        let shown = Path::new("/proc").join(&rel);
        let fd = at::openat2(
            self.0.as_fd(),
            &rel,
            libc::O_WRONLY | libc::O_NOFOLLOW,
            libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_XDEV
                | libc::RESOLVE_NO_SYMLINKS
                | libc::RESOLVE_NO_MAGICLINKS,
        )
        .map_err(|e| RuntimeError::io("open sysctl", &shown, e))?;
        check(&fd, &shown)?;
        std::fs::File::from(fd)
            .write_all(value.as_bytes())
            .map_err(|e| RuntimeError::io("write", &shown, e))
    }
}
