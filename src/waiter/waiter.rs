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

use core::arch::{asm, global_asm};

const SYS_POLL: usize = 7;
const SYS_PRCTL: usize = 157;
const SYS_EXIT_GROUP: usize = 231;
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

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(70)
}

// Compiled with panic=abort, nothing unwinds; core's objects still name
// the symbol.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// SAFETY: a Linux system call with six arguments; the caller passes what
/// that call expects.
unsafe fn syscall6(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> isize {
    let ret: isize;
    asm!(
        "syscall",
        inlateout("rax") n as isize => ret,
        in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d, in("r8") e, in("r9") f,
        lateout("rcx") _, lateout("r11") _,
        options(nostack),
    );
    ret
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes a status and does not return.
    unsafe { syscall6(SYS_EXIT_GROUP, code, 0, 0, 0, 0, 0) };
    loop {}
}

// The kernel starts a static executable at `_start` with argc, argv and
// envp on the stack; hand the stack pointer to `entry`, aligned as the
// ABI wants for a call.
global_asm!(
    ".globl _start",
    "_start:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

/// The NUL-terminated string at `p`, as bytes without the NUL.
///
/// SAFETY: `p` points to a NUL-terminated string that lives as long as 'a.
unsafe fn c_str<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    // Volatile: the plain loop is strlen to the optimiser, and there is
    // no libc to call.
    while core::ptr::read_volatile(p.add(n)) != 0 {
        n += 1;
    }
    core::slice::from_raw_parts(p, n)
}

/// Parse a decimal number; None for anything else.
fn number(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Some(if neg { -v } else { v })
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
    let Some(mut w) = wait else { exit(70) };
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
    exit(70)
}
