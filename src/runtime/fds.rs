//! No host descriptor crosses into a container (CVE-2024-21626, runc's
//! "Leaky Vessels"). A cloned init or exec child starts with every descriptor
//! of the runtime that cloned it: the cgroup directory opened for
//! CLONE_INTO_CGROUP, namespace files, and in service mode the supervisor's
//! signalfd, notify socket and pty. A `cwd` of `/proc/self/fd/N` (or any path
//! the container controls that reaches one) would then walk the host. So the
//! child closes everything it was not explicitly given *before* it touches a
//! path the container controls, keeping an explicit list, and again as each
//! kept descriptor is used up (runc "init: close internal fds before execve",
//! f2f16213e; crun closes the same way with close_range).
//!
//! Marking CLOEXEC is not enough: the danger is before execve.

use std::os::fd::RawFd;

use super::{RuntimeError, Stdio};

/// The descriptors to close so that only `keep` stay open: inclusive
/// `(first, last)` ranges covering every other number. Pure.
pub fn plan_close_ranges(keep: &[RawFd]) -> Vec<(u32, u32)> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut ranges = Vec::new();
    let mut next = 0u32;
    for fd in keep {
        if fd > next {
            ranges.push((next, fd - 1));
        }
        match fd.checked_add(1) {
            Some(n) => next = n,
            None => return ranges,
        }
    }
    ranges.push((next, u32::MAX));
    ranges
}

/// Close every descriptor of this process except `keep`. Runs in a cloned
/// child only: the closed descriptors may still be owned by values of the
/// parent's stack frames, which the child never drops (it leaves by execve
/// or _exit).
pub fn close_all_except(keep: &[RawFd]) -> Result<(), RuntimeError> {
    let ranges = plan_close_ranges(keep);
    let mut fallback = false;
    for (first, last) in &ranges {
        // SAFETY: close_range with plain integer arguments.
        let r = unsafe { libc::syscall(libc::SYS_close_range, *first, *last, 0u32) };
        if r != 0 {
            fallback = true;
            break;
        }
    }
    if !fallback {
        return Ok(());
    }
    // No close_range (old kernel, or a seccomp filter on the caller): close
    // each open descriptor by number. The listing's own descriptor is closed
    // when the listing is dropped, before the loop.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| RuntimeError::io("list open fds", "/proc/self/fd", e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    for fd in open.into_iter().filter(|fd| !keep.contains(fd)) {
        // SAFETY: closing a descriptor number; EBADF (the listing's) is harmless.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// stdio and the caller's descriptors passed on purpose (OCI
/// `--preserve-fds`, systemd's LISTEN_FDS): 0..3+preserve.
pub fn passed(preserve: u32) -> impl Iterator<Item = RawFd> {
    0..(3 + preserve.min(i32::MAX as u32 - 3) as RawFd)
}

/// The descriptors stdio is set up from, open until they are dup2'd.
pub fn stdio_sources(stdio: &Stdio) -> Vec<RawFd> {
    use std::os::fd::AsRawFd;
    match stdio {
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => [stdin, stdout, stderr]
            .into_iter()
            .flatten()
            .map(|f| f.as_raw_fd())
            .collect(),
        Stdio::Inherit | Stdio::Null => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_but_the_kept() {
        assert_eq!(plan_close_ranges(&[]), vec![(0, u32::MAX)]);
        assert_eq!(plan_close_ranges(&[0, 1, 2]), vec![(3, u32::MAX)]);
        assert_eq!(
            plan_close_ranges(&[2, 0, 1, 7, 5, 5]),
            vec![(3, 4), (6, 6), (8, u32::MAX)]
        );
        assert_eq!(plan_close_ranges(&[-1, 1]), vec![(0, 0), (2, u32::MAX)]);
        assert_eq!(
            plan_close_ranges(&[0, i32::MAX]),
            vec![(1, i32::MAX as u32 - 1), (i32::MAX as u32 + 1, u32::MAX)]
        );
    }

    #[test]
    fn passed_is_stdio_and_the_preserved() {
        assert_eq!(passed(0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(passed(2).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    }
}
