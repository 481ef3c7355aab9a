//! berth's exec trampoline: the last program a container's process runs
//! before its own, when the berth that set the process up runs from its
//! binary on disk (service mode; `runtime/trampoline.rs` says when). Not a
//! module of the crate: build.rs compiles this file alone (no std, no
//! libc, static, a page of code) and berth embeds it; the init or exec
//! child executes it from a sealed memfd. So the program that a
//! `#!/proc/self/exe` script makes the kernel run inside the container is
//! this immutable memfd, never berth's binary on disk (CVE-2019-5736), and
//! no per-start copy or mount of berth is needed.
//!
//! ```text
//! argv: NAME FD PATH ARG0 ARG1…      environment: the program's
//! ```
//!
//! It makes itself non-dumpable again (execve made it dumpable), marks FD
//! (the sync channel to berth) close-on-exec (a closed FD is fine: nothing
//! to leak) and executes PATH with ARG0…
//! and its own environment. When that fails it sends berth one datagram on
//! FD, `EXEC`, the errno (u32, little-endian) and PATH, and exits 127.
//! Started any other way (a script naming it as its interpreter), it
//! writes why to stderr and exits 127: it acts only on what its arguments
//! say, and everything it touches is the container's own.
//!
//! x86_64 Linux only (raw system calls); elsewhere berth always re-executes
//! itself from a protected copy.
#![no_std]
#![no_main]

mod sys;
use sys::{c_str, exit, number, syscall6};

/// The status of a failed exec (and of a panic), as a shell's.
const FAILED: usize = 127;
const SYS_WRITE: usize = 1;
const SYS_WRITEV: usize = 20;
const SYS_EXECVE: usize = 59;
const SYS_FCNTL: usize = 72;
const SYS_PRCTL: usize = 157;
const EBADF: isize = -9;
const F_SETFD: usize = 2;
const FD_CLOEXEC: usize = 1;
const PR_SET_DUMPABLE: usize = 4;
/// At most this much of PATH goes into a report.
const REPORT: usize = 4088;

#[repr(C)]
struct IoVec {
    base: *const u8,
    len: usize,
}

impl IoVec {
    fn of(b: &[u8]) -> IoVec {
        IoVec {
            base: b.as_ptr(),
            len: b.len(),
        }
    }
}

fn write(fd: usize, bytes: &[u8]) {
    // SAFETY: write(2) from our own buffer of that length.
    unsafe { syscall6(SYS_WRITE, fd, bytes.as_ptr() as usize, bytes.len(), 0, 0, 0) };
}

fn usage() -> ! {
    write(
        2,
        b"berth: this is berth's exec trampoline, which starts a container's program for berth; it is not a command\n",
    );
    exit(FAILED)
}

#[no_mangle]
extern "C" fn entry(sp: *const usize) -> ! {
    // SAFETY: the stack layout the kernel gives a new program: argc, argv
    // (NULL-terminated), envp (NULL-terminated).
    let (argc, argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        (argc, argv, argv.add(argc + 1))
    };
    if argc < 3 {
        usage();
    }
    // SAFETY: argv holds argc C strings.
    let (fd, path) = unsafe { (c_str(*argv.add(1)), *argv.add(2)) };
    let Some(fd) = number(fd).and_then(|n| usize::try_from(n).ok()) else {
        usage()
    };
    // Until the program runs, nothing in the container may read our
    // memory or descriptors (the channel is berth's).
    // SAFETY: prctl with plain integer arguments.
    unsafe { syscall6(SYS_PRCTL, PR_SET_DUMPABLE, 0, 0, 0, 0, 0) };
    // SAFETY: fcntl with plain integer arguments.
    let r = unsafe { syscall6(SYS_FCNTL, fd, F_SETFD, FD_CLOEXEC, 0, 0, 0) };
    // Not open (EBADF): nothing to leak. Anything else: the program must
    // not run with a descriptor it could inherit.
    if r < 0 && r != EBADF {
        exit(FAILED)
    }
    // SAFETY: execve(path, argv + 3, envp): C strings and NULL-terminated
    // arrays the kernel gave us.
    let r = unsafe {
        syscall6(
            SYS_EXECVE,
            path as usize,
            argv.add(3) as usize,
            envp as usize,
            0,
            0,
            0,
        )
    };
    let errno = ((-r) as u32).to_le_bytes();
    // SAFETY: path is a C string of argv.
    let path = unsafe { c_str(path) };
    // One datagram, gathered: no buffer to fill (and no memcpy to call).
    let parts: [IoVec; 3] = [
        IoVec::of(b"EXEC"),
        IoVec::of(&errno),
        IoVec::of(&path[..path.len().min(REPORT)]),
    ];
    // SAFETY: writev(2) over three buffers that outlive the call.
    unsafe { syscall6(SYS_WRITEV, fd, parts.as_ptr() as usize, parts.len(), 0, 0, 0) };
    exit(FAILED)
}
