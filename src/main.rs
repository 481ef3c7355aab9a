//! The one berth binary. Its name picks the personality: installed as
//! `berth-generator` it is the systemd generator, as `berth-runtime` it speaks the
//! OCI runtime command line, otherwise it is the `berth` CLI.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    berth::trace::step("main");
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
    // (`--log` included).
    let cloning: &[&str] = match name.as_str() {
        "berth-generator" => &[],
        "berth-runtime" => &["create", "run", "exec"],
        _ => &["run", "exec"],
    };
    if std::env::args_os()
        .skip(1)
        .any(|a| cloning.iter().any(|v| a == *v))
    {
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
