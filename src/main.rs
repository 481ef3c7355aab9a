//! The one berth binary. Its name picks the personality: installed as
//! `berth-generator` it is the systemd generator, as `berth-runtime` it speaks the
//! OCI runtime command line, otherwise it is the `berth` CLI.
//!
//! The entry point is C's `main`, not std's: std's start-up asks glibc for
//! the main thread's stack bounds, which reads and parses `/proc/self/maps`
//! (a tenth of the instructions of an exec of berth), only to print a
//! message on stack overflow. Every service start executes berth at least
//! once (twice when its container needs the protected copy, and again each
//! time its supervisor comes back from the idle waiter), so `start_up` does
//! the rest of what std's does, and no more.
// Under `cargo test` the test harness brings its own main.
#![cfg_attr(not(test), no_main)]

use std::os::raw::c_int;
use std::path::Path;
use std::process::ExitCode;

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const std::os::raw::c_char) -> c_int {
    start_up();
    let code = personality();
    // What std's start-up does after main: flush stdout (process::exit does).
    std::process::exit(status(code))
}

/// What std's start-up does that berth relies on: the standard descriptors
/// exist (a runtime started with fd 2 closed must not have its first opened
/// state file become its stderr), and SIGPIPE is ignored (a closed pipe is
/// an error to handle, not a death: `personality` restores it for reporting
/// commands). glibc has already captured argv for `std::env::args`.
#[cfg_attr(test, allow(dead_code))]
fn start_up() {
    for fd in 0..3 {
        // SAFETY: fcntl(F_GETFD) only inspects the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        {
            // SAFETY: open(2) of a constant path; it takes the lowest free
            // descriptor, which is `fd`.
            let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if null != fd {
                std::process::abort();
            }
        }
    }
    // SAFETY: no other thread exists yet; setting a standard disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The exit status an `ExitCode` stands for (std keeps it private).
#[cfg_attr(test, allow(dead_code))]
fn status(code: ExitCode) -> c_int {
    (0..=255u8)
        .find(|n| ExitCode::from(*n) == code)
        .map_or(1, c_int::from)
}

#[cfg_attr(test, allow(dead_code))]
fn personality() -> ExitCode {
    berth::trace::main_entered();
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The commands that clone container processes run from a copy of this
    // binary the container cannot write (CVE-2019-5736, runtime/exe.rs).
    // Re-executing before the argument parser means that parser runs once,
    // not twice; a word that only looks like such a verb (a container named
    // `run`) costs a needless re-execution, never a missing one. The commands
    // check again, and report a failure here through their own error path
    // (`--log` included). A service's start (`run --systemd NAME`) is not
    // one of them: it decides for itself, once it knows its container
    // (runtime/trampoline.rs).
    let cloning: &[&str] = match name.as_str() {
        "berth-generator" => &[],
        "berth-runtime" => &["create", "run", "exec"],
        _ => &["run", "exec"],
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let service = name != "berth-runtime" && berth::cli::is_service_line(&args);
    if !service && args.iter().any(|a| cloning.iter().any(|v| a == *v)) {
        let _ = berth::runtime::ensure_protected();
    }
    // Commands that only report die quietly when their reader goes away
    // (`berth ps | head`, `berth-runtime state x | grep -q`), as other Unix
    // tools do; Rust ignores SIGPIPE, so println! would panic instead. The
    // long-running ones (the supervisor, `dns`, `exec`, `auto-update`) keep
    // ignoring it: a journald restart must not kill them.
    let reporting: &[&str] = match name.as_str() {
        "berth-generator" => &[],
        "berth-runtime" => &["state", "list", "ps", "features", "spec", "--help", "-h"],
        _ => &[
            "ps", "inspect", "images", "logs", "stats", "top", "volume", "network", "port",
            "check", "generate", "version", "help", "history", "events", "system", "--help", "-h",
        ],
    };
    let has = |words: &[&str]| {
        std::env::args_os()
            .skip(1)
            .any(|a| words.iter().any(|w| a == *w))
    };
    if has(reporting) && !has(cloning) && !has(&["dns"]) {
        // SAFETY: no other thread exists yet; restoring a default disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match name.as_str() {
        "berth-generator" => berth::generator::main(),
        "berth-runtime" => berth::oci::main(),
        _ => berth::cli::main(),
    }
}
