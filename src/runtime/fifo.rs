//! The exec FIFO (runc's `exec.fifo`): how OCI `start` releases an init that
//! `create` left blocked, and learns that the program was executed.
//!
//! The sequence, the same in any sandbox and under any load:
//! 1. the init opens the FIFO's write end; the open blocks until `start`
//!    opens the read end;
//! 2. the init writes one byte: released, nobody else may start it
//!    (`start` removes the FIFO);
//! 3. the init keeps the write end open (CLOEXEC) through its last steps
//!    (startContainer hooks, seccomp, fd closing) until execve closes it;
//!    a step that fails writes its error into the FIFO before the init exits;
//! 4. `start` reads to EOF. EOF with nothing after the byte proves execve
//!    got past its point of no return (close-on-exec runs there), so
//!    poststart hooks run only after the program was executed; bytes after
//!    it are the init's error, and `start` fails with it.
//!
//! runc's `start` reads to EOF the same way but cannot tell an execve from
//! a failed last step; crun's returns as soon as its byte is written
//! (`libcrun_status_write_exec_fifo`), before the init has even left its
//! wait, so its poststart hooks race the program's execve.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::{process_alive, Pid, RuntimeError};

/// The byte of step 2.
const RELEASED: u8 = b'0';

/// Init side, steps 1-2: blocks until `start` opens the other end, then
/// writes the release byte. Returns the write end, to be closed by execve.
pub(super) fn wait_on_fifo(fd: RawFd) -> Result<OwnedFd, RuntimeError> {
    let p = format!("/proc/self/fd/{fd}");
    let w = open(
        Path::new(&p),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::sys("open exec fifo for writing", e))?;
    // SAFETY: `open` returned a fresh descriptor owned by nobody else.
    let w = unsafe { OwnedFd::from_raw_fd(w) };
    nix::unistd::write(&w, &[RELEASED]).map_err(|e| RuntimeError::sys("write exec fifo", e))?;
    Ok(w)
}

/// Init side, step 3: what a step failing after the release writes.
pub(super) fn fifo_failure(step: &str, message: &str) -> String {
    format!("{}\n{}", step.replace('\n', " "), message)
}

/// What `start` read from the FIFO after the release byte: the program was
/// executed (empty), or the init's error.
fn outcome(id: &str, after: &[u8]) -> Result<(), RuntimeError> {
    if after.is_empty() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(after);
    let (step, message) = text.split_once('\n').unwrap_or(("start", &text));
    Err(RuntimeError::Init {
        id: id.to_string(),
        step: step.to_string(),
        message: message.to_string(),
    })
}

/// Release a container blocked on its exec FIFO (OCI `start`). Fails when the
/// init dies before reaching the FIFO, or reports a failure of its last
/// steps. Returns once the init has exec'd the container's program: it holds
/// the FIFO's write end open until execve closes it, as runc's init does. A
/// shim treats a returned `start` as a running program: containerd's `ctr
/// run -d` exits right after, and what the program printed before that
/// would otherwise race it; poststart hooks run after it.
pub fn start_fifo(id: &str, pid: Pid, path: &Path) -> Result<(), RuntimeError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // O_NONBLOCK: a blocking open would hang forever if the init died.
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::sys(format!("open exec fifo '{}'", path.display()), e))?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let started = Instant::now();
    // Until the init's byte arrives, a read finds no writer and returns 0;
    // after it, 0 means the init closed its end: execve (or death).
    let mut read: Vec<u8> = Vec::new();
    loop {
        let released = !read.is_empty();
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let n = match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(RuntimeError::sys("poll exec fifo", e)),
        };
        if n > 0 {
            let mut buf = [0u8; 512];
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) if released => break,
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => {}
                Ok(k) => {
                    if !released {
                        // Nobody else may start it from now on.
                        std::fs::remove_file(path)
                            .map_err(|e| RuntimeError::io("remove exec fifo", path, e))?;
                    }
                    // A failure report is bounded by the init's own message.
                    if read.len() < 64 * 1024 {
                        read.extend_from_slice(&buf[..k]);
                    }
                    continue;
                }
                Err(e) => return Err(RuntimeError::sys("read exec fifo", e)),
            }
        }
        // Once released, the init's exit closes the FIFO too: no deadline.
        if !released && (!process_alive(pid) || started.elapsed() > Duration::from_secs(30)) {
            return Err(RuntimeError::StartTimeout { id: id.to_string() });
        }
        if n == 0 || !released {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    outcome(id, &read[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_after_the_release_names_its_step() {
        assert!(outcome("c", b"").is_ok());
        let report = fifo_failure("startContainer hooks", "hook '/bin/false': failed");
        let e = outcome("c", report.as_bytes()).unwrap_err().to_string();
        assert_eq!(
            e,
            "container 'c': startContainer hooks: hook '/bin/false': failed"
        );
    }
}
