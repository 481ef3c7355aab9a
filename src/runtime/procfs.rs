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
pub struct ProcFs {
    fd: OwnedFd,
    /// Set when /proc could not be copied alone (a user namespace, where its
    /// submounts are locked, e.g. a read-only /proc/sys inside a container):
    /// the ids of the mounts under /proc when it was taken. A sysctl may be
    /// reached through them, never through a mount made later.
    mounts_then: Option<Vec<u64>>,
}

impl ProcFs {
    /// Its descriptor, for the init's list of what it keeps open.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
}

/// The ids of the mounts at or below /proc, from mountinfo(5).
fn proc_mount_ids(mountinfo: &str) -> Vec<u64> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let id = f.next()?.parse().ok()?;
            let point = f.nth(3)?;
            (point == "/proc" || point.starts_with("/proc/")).then_some(id)
        })
        .collect()
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
        let (fd, mounts_then) = match at::clone_tree(fd.as_fd(), false) {
            Ok(copy) => (copy, None),
            Err(_) => {
                let info = std::fs::read_to_string("/proc/self/mountinfo")
                    .map_err(|e| RuntimeError::io("read", "/proc/self/mountinfo", e))?;
                (fd, Some(proc_mount_ids(&info)))
            }
        };
        check(&fd, proc_)?;
        Ok(ProcFs { fd, mounts_then })
    }

    /// Write `value` to the sysctl `key` (`net.ipv4.ip_forward`).
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<(), RuntimeError> {
        let rel = PathBuf::from(format!("sys/{}", key.replace('.', "/")));
        let shown = Path::new("/proc").join(&rel);
        let beneath =
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        let open = |resolve| {
            at::openat2(
                self.fd.as_fd(),
                &rel,
                libc::O_WRONLY | libc::O_NOFOLLOW,
                resolve,
            )
        };
        let fd = match (open(beneath | libc::RESOLVE_NO_XDEV), &self.mounts_then) {
            // Through a submount of /proc that was there when it was taken
            // (checked below), never one the spec's mounts added.
            (Err(e), Some(ids)) if e.raw_os_error() == Some(libc::EXDEV) => {
                let fd = open(beneath).map_err(|e| RuntimeError::io("open sysctl", &shown, e))?;
                let id =
                    at::mount_id(fd.as_fd()).map_err(|e| RuntimeError::io("statx", &shown, e))?;
                if !ids.contains(&id) {
                    return Err(RuntimeError::io(
                        "reached through a mount made after /proc was taken (refusing to write a sysctl there)",
                        &shown,
                        std::io::Error::from_raw_os_error(libc::EXDEV),
                    ));
                }
                fd
            }
            (r, _) => r.map_err(|e| RuntimeError::io("open sysctl", &shown, e))?,
        };
        check(&fd, &shown)?;
        std::fs::File::from(fd)
            .write_all(value.as_bytes())
            .map_err(|e| RuntimeError::io("write", &shown, e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mounts_under_proc_are_listed_by_id() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    30 22 0:21 /sys /proc/sys ro - proc proc rw\n\
                    31 1 0:22 / /procfs-not rw - tmpfs t rw\n\
                    32 1 0:23 / /sys rw - sysfs s rw\n";
        assert_eq!(super::proc_mount_ids(info), vec![22, 30]);
    }
}
