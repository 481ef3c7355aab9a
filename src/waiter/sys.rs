//! What berth's two programs without std or libc share (`waiter.rs`, the
//! idle waiter; `trampoline.rs`, the last exec into a container): raw
//! x86_64 Linux system calls, the entry point and two parsers. Each program
//! is compiled alone by build.rs; this file is a module of both. The
//! program's root defines `entry` and `FAILED` (its status on a panic).

use core::arch::{asm, global_asm};

const SYS_EXIT_GROUP: usize = 231;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(crate::FAILED)
}

// Compiled with panic=abort, nothing unwinds; core's objects still name
// the symbol.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// SAFETY: a Linux system call with six arguments; the caller passes what
/// that call expects.
pub unsafe fn syscall6(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> isize {
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

pub fn exit(code: usize) -> ! {
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
    entry = sym crate::entry,
);

/// The NUL-terminated string at `p`, as bytes without the NUL.
///
/// SAFETY: `p` points to a NUL-terminated string that lives as long as 'a.
pub unsafe fn c_str<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    // Volatile: the plain loop is strlen to the optimiser, and there is
    // no libc to call.
    while core::ptr::read_volatile(p.add(n)) != 0 {
        n += 1;
    }
    core::slice::from_raw_parts(p, n)
}

/// Parse a decimal number; None for anything else.
pub fn number(s: &[u8]) -> Option<i64> {
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
