//! berth's init for `init = true`: a tiny PID 1 that reaps zombies.
//!
//! The container's root holds no berth binary (and a dynamically linked one
//! could not run there), so the init is a fork of the supervisor itself, not
//! an exec: it leads a new PID namespace and the container joins that
//! namespace by path (the plan's `init_pid_namespace`), becoming PID 2.
//! Orphans inside the container are re-parented to PID 1, which ignores
//! SIGCHLD so the kernel reaps them at once (SA_NOCLDWAIT semantics,
//! wait(2)). Signals are forwarded by the supervisor to the application
//! directly; when the application exits, the supervisor kills the payload
//! cgroup, the init with it, and with the init the whole PID namespace.
//!
//! The init lives in the host's mount namespace, so it chroots into an empty
//! directory, drops every capability, sets no_new_privs and is not dumpable:
//! a process in the container cannot reach `/proc/1/fd` without
//! CAP_SYS_PTRACE (which the default capabilities leave out), and
//! `/proc/1/root` shows an empty directory even with it.

use std::ffi::{CStr, CString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{fork, ForkResult, Pid};

use super::SuperviseError;

/// Fork the init as PID 1 of a new PID namespace; returns its host PID.
/// Must be called while single-threaded.
pub fn spawn_init(empty_root: &Path) -> Result<Pid, SuperviseError> {
    let root = CString::new(empty_root.as_os_str().as_bytes()).map_err(|_| {
        SuperviseError::io("path", empty_root, std::io::ErrorKind::InvalidInput.into())
    })?;
    let own = std::fs::File::open("/proc/self/ns/pid")
        .map_err(|e| SuperviseError::io("open", "/proc/self/ns/pid", e))?;
    // Only children move: our own PID namespace stays as it is.
    unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| SuperviseError::sys("unshare pid namespace", e))?;
    // SAFETY: the caller is single-threaded (the runtime checks it again
    // before its own clone), and the child only makes async-signal-safe calls.
    let forked = unsafe { fork() };
    // Back to our own namespace for later children, always allowed.
    let restored = setns(own.as_fd(), CloneFlags::CLONE_NEWPID);
    match forked {
        Ok(ForkResult::Child) => init_main(&root),
        Ok(ForkResult::Parent { child }) => {
            restored.map_err(|e| SuperviseError::sys("rejoin own pid namespace", e))?;
            Ok(child)
        }
        Err(e) => Err(SuperviseError::sys("fork init", e)),
    }
}

fn init_main(root: &CStr) -> ! {
    // SAFETY: chdir/chroot on a NUL-terminated path; prctl/close_range/pause
    // with plain integer arguments.
    unsafe {
        // An empty root: /proc/1/root and /proc/1/cwd, seen from the
        // container, lead nowhere (the init lives in the host's mount
        // namespace). Done while we still hold CAP_SYS_CHROOT.
        if libc::chdir(root.as_ptr()) != 0
            || libc::chroot(c".".as_ptr()) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            libc::_exit(126);
        }
        libc::prctl(
            libc::PR_SET_NAME,
            c"berth:[init]".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        // If the supervisor is SIGKILLed, take the container down with us:
        // the namespace dies with its PID 1.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::SA_NOCLDWAIT, SigSet::empty());
    // SAFETY: SIG_IGN has no handler code.
    let _ = unsafe { sigaction(Signal::SIGCHLD, &ign) };
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
        caps::CapSet::Ambient,
    ] {
        let _ = caps::clear(None, set);
    }
    loop {
        // SAFETY: pause has no arguments; SIGKILL ends us.
        unsafe { libc::pause() };
    }
}
