//! berth's `init = true` reaper: the container's own init, fully set up
//! (every namespace of the container, after pivot_root, as the container's
//! user with its capabilities, no_new_privileges and seccomp filter), forks
//! right before execve. The child executes the program as PID 2; the parent
//! stays PID 1 and only reaps and forwards signals, like tini (which
//! `docker --init` bind-mounts into the container) or Podman's catatonit.
//!
//! Before (issue 12, class 5) the reaper was a fork of the supervisor that
//! only chrooted, in the host's mount and network namespaces. Now nothing
//! about it is the host's: it holds no descriptor at all (even stdio is
//! closed), and it is not dumpable, so a process in the container cannot
//! ptrace it or open /proc/1/{mem,fd,exe} without CAP_SYS_PTRACE.
//!
//! Signals: all are blocked before the fork and taken with sigwaitinfo,
//! which is how a PID 1 receives them (the kernel drops signals a namespace's
//! init has no handler for, but never blocked ones). Every one except SIGCHLD
//! is forwarded to the program; when the program ends, PID 1 exits with its
//! status (128+N for signal N), so the caller sees the program's status and
//! the kernel ends the rest of the PID namespace.

use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::RuntimeError;

/// Fork the reaper off. Returns in the child (the program's process, with an
/// empty signal mask); the parent never returns. With the container's own
/// terminal (`terminal`), the program gets its own foreground process group,
/// so ^C reaches it once, from the terminal, and not again through PID 1
/// (tini does the same).
pub fn split(terminal: bool) -> Result<(), RuntimeError> {
    let all = SigSet::all();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None)
        .map_err(|e| RuntimeError::sys("block signals for the reaper", e))?;
    // SAFETY: the init is single-threaded (cloned from a single-threaded
    // runtime), so the child's memory is consistent.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            if terminal {
                // SIGTTOU is blocked here, so tcsetpgrp from what becomes a
                // background group is allowed.
                let me = nix::unistd::getpid();
                nix::unistd::setpgid(me, me)
                    .and_then(|()| nix::unistd::tcsetpgrp(std::io::stdin(), me))
                    .map_err(|e| {
                        RuntimeError::sys("make the program the terminal's foreground", e)
                    })?;
            }
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(|e| RuntimeError::sys("unblock signals", e))?;
            Ok(())
        }
        Ok(ForkResult::Parent { child }) => reap(child, &all),
        Err(e) => Err(RuntimeError::sys("fork the program under berth's init", e)),
    }
}

fn reap(program: Pid, all: &SigSet) -> ! {
    super::process::set_name("berth:[init]");
    // SAFETY: prctl and close_range with plain integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Nothing to hold: the sync channel, the exec FIFO and stdio stay
        // with the program only (the caller waits for their EOF).
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            for fd in 0..1024 {
                libc::close(fd);
            }
        }
    }
    loop {
        let sig = match all.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(program, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)))
                    if ws.pid() == Some(program) =>
                {
                    exit(super::process::exit_status(ws).unwrap_or(1))
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => {}
                // No child left at all: the program is gone.
                Err(nix::errno::Errno::ECHILD) => exit(0),
                Err(_) => break,
            }
        }
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends this process only, skipping the parent runtime's
    // atexit handlers.
    unsafe { libc::_exit(code) }
}
