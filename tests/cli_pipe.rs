//! A reporting command whose reader has gone away (`berth ps | head`,
//! `berth-runtime state x | grep -q`) ends as other Unix tools do, by SIGPIPE,
//! not with a Rust panic message on the terminal. No root needed.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Run `argv0 args` with a stdout pipe whose read end is already closed, so
/// the first write fails.
fn with_closed_reader(argv0: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(argv0);
    std::os::unix::fs::symlink(BERTH, &exe).unwrap();
    let out = Command::new(&exe)
        .args(args)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_a_reporting_command_quietly() {
    for (argv0, args) in [
        ("berth", &["version"][..]),
        ("berth", &["--help"][..]),
        ("berth-runtime", &["features"][..]),
    ] {
        let (status, stderr) = with_closed_reader(argv0, args);
        assert!(!stderr.contains("panicked"), "{argv0} {args:?}: {stderr}");
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{argv0} {args:?}: {status:?} {stderr}"
        );
    }
}
