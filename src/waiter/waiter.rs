//! berth's idle waiter: what a service's supervisor is while its container
//! runs and nothing happens (issue 13). Not a module of the crate: build.rs
//! compiles this file alone (no std, no libc, static, a page or two of code)
//! and berth embeds the result; the supervisor executes it from a sealed
//! memfd (supervise/watch.rs: `hand_off`). Its PID, argv, signal mask and
//! children are the supervisor's, so systemd sees no change.
//!
//! It knows nothing of containers. Its environment names descriptors to
//! poll and for how long, and the berth binary to go back to:
//!
//! ```text
//! BERTH_WAIT=EXE TIMEOUT_MS FD:EVENTS FD:EVENTS…
//! ```
//!
//! It polls them (the supervisor's signalfd: a stop, a reload, the
//! container's exit as SIGCHLD; the container's notify socket;
//! `memory.events`) without reading anything, and when one is ready or the
//! time is up (a health check is due) it executes berth again, by
//! descriptor, with its own argv and environment unchanged: berth finds
//! the event still pending, handles it, and comes back here when all is
//! quiet. Whatever goes wrong here ends in that same execve, or in exit
//! status 70 when even that fails (systemd then stops the unit, and
//! `berth cleanup` removes what the start made).
//!
//! x86_64 Linux only (raw system calls); elsewhere berth waits in itself.
#![no_std]
#![no_main]

mod sys;
use sys::{c_str, exit, number, syscall6};

/// The status when even the way back fails (and of a panic).
const FAILED: usize = 70;
const SYS_POLL: usize = 7;
const SYS_PRCTL: usize = 157;
const SYS_EXECVEAT: usize = 322;
const PR_SET_NAME: usize = 15;
const AT_EMPTY_PATH: usize = 0x1000;
const EINTR: isize = -4;
/// At most this many descriptors are polled (the supervisor passes three).
const MAX_FDS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

/// What `BERTH_WAIT` says: the berth binary's descriptor, the timeout and
/// the descriptors to poll.
struct Wait {
    exe: i32,
    timeout_ms: i32,
    fds: [PollFd; MAX_FDS],
    n: usize,
}

fn parse(value: &[u8]) -> Option<Wait> {
    let mut words = value.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let exe = i32::try_from(number(words.next()?)?).ok()?;
    let timeout_ms = number(words.next()?)?.clamp(-1, i64::from(i32::MAX)) as i32;
    let mut w = Wait {
        exe,
        timeout_ms,
        fds: [PollFd {
            fd: -1,
            events: 0,
            revents: 0,
        }; MAX_FDS],
        n: 0,
    };
    for word in words {
        let colon = word.iter().position(|b| *b == b':')?;
        let fd = i32::try_from(number(&word[..colon])?).ok()?;
        let events = i16::try_from(number(&word[colon + 1..])?).ok()?;
        if w.n == MAX_FDS {
            return None;
        }
        w.fds[w.n] = PollFd {
            fd,
            events,
            revents: 0,
        };
        w.n += 1;
    }
    Some(w)
}

extern "C" fn entry(sp: *const usize) -> ! {
    // SAFETY: the stack layout the kernel gives a new program: argc, argv
    // (NULL-terminated), envp (NULL-terminated).
    let (argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        (argv, argv.add(argc + 1))
    };
    let mut wait = None;
    let mut i = 0;
    loop {
        // SAFETY: envp is NULL-terminated; each entry a C string.
        let e = unsafe { *envp.add(i) };
        if e.is_null() {
            break;
        }
        // SAFETY: as above.
        let kv = unsafe { c_str(e) };
        if let Some(v) = kv.strip_prefix(b"BERTH_WAIT=") {
            wait = parse(v);
        }
        i += 1;
    }
    let Some(mut w) = wait else { exit(FAILED) };
    // What `ps` shows (a memfd would show as "memfd:berth").
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { syscall6(SYS_PRCTL, PR_SET_NAME, b"berth\0".as_ptr() as usize, 0, 0, 0, 0) };
    loop {
        // SAFETY: poll over our own array of `n` entries.
        let r = unsafe {
            syscall6(
                SYS_POLL,
                w.fds.as_mut_ptr() as usize,
                w.n,
                w.timeout_ms as isize as usize,
                0,
                0,
                0,
            )
        };
        // A blocked signal interrupts nothing; anything but EINTR (ready,
        // timed out, or an error) goes back to berth, which knows why.
        if r != EINTR {
            break;
        }
    }
    // SAFETY: execveat(exe, "", argv, envp, AT_EMPTY_PATH): the argv and
    // envp this program was started with.
    unsafe {
        syscall6(
            SYS_EXECVEAT,
            w.exe as isize as usize,
            b"\0".as_ptr() as usize,
            argv as usize,
            envp as usize,
            AT_EMPTY_PATH,
            0,
        )
    };
    exit(FAILED)
}
