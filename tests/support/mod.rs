//! Shared support for berth's integration tests: privilege checks and fixtures
//! built on the spot from Debian packages (no downloaded images).
//!
//! Each test file includes this with `mod support;`; not every file uses every
//! helper, hence the allow.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when the tests run as root. Privileged tests call [`require_root!`].
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether skips are failures: `tests/run` (and so CI) sets
/// `BERTH_TEST_STRICT=1`, because cargo hides a passing test's output and a
/// skipped test would otherwise count as passed.
pub fn strict() -> bool {
    std::env::var_os("BERTH_TEST_STRICT").is_some_and(|v| v == "1")
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// Say that the current test cannot run here and why. In strict mode that is
/// a failure naming the test; otherwise the reason is printed and the caller
/// returns. Every skip goes through here (the `require_*!` macros do).
pub fn skip(reason: &str) {
    let test = test_name();
    if strict() {
        panic!("SKIP is a failure under BERTH_TEST_STRICT=1: {test}: {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
}

/// Skip the current test, saying why, unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::support::is_root() {
            $crate::support::skip("needs root (run the suite as root, as CI does)");
            return;
        }
    };
}

/// Skip the current test, saying why, when a program the test needs is missing.
#[macro_export]
macro_rules! require_program {
    ($prog:expr) => {
        if !$crate::support::have_program($prog) {
            $crate::support::skip(&format!(
                "'{}' is not installed (tests/run installs it)",
                $prog
            ));
            return;
        }
    };
}

/// Whether `prog` is found on `$PATH`.
pub fn have_program(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// Path of Debian's statically linked busybox (package `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// Lay out a minimal busybox root filesystem in `dir`: `/bin/busybox` plus one
/// symlink per applet, and the directories a container expects to mount over.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var",
        "run",
    ] {
        std::fs::create_dir_all(dir.join(d)).expect("create rootfs dir");
    }
    std::fs::copy(BUSYBOX, dir.join("bin/busybox"))
        .expect("copy busybox (is busybox-static installed?)");
    let list = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.join(applet);
        if link.exists() || applet == "bin/busybox" {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).expect("create applet dir");
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).expect("applet symlink");
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nweb:x:101:101:web:/:/bin/false\n").unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\nweb:x:101:\n",
    )
    .unwrap();
    dir.to_path_buf()
}

/// Path of the berth binary cargo built for these tests.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}
/// The namespaces whose identity a confinement probe prints.
pub const NAMESPACES: &[&str] = &["mnt", "uts", "ipc", "net", "pid", "cgroup"];

/// Shell text printing `key=value` lines of process `pid`'s confinement: its
/// namespaces, cgroup, effective capabilities, NoNewPrivs and seccomp mode.
/// Run inside a container (`pid` = `self`) and, for its init, from outside,
/// to compare an exec'd process with the container's own.
pub fn confinement_probe(pid: &str) -> String {
    let mut s = String::new();
    for ns in NAMESPACES {
        s.push_str(&format!("echo ns_{ns}=$(readlink /proc/{pid}/ns/{ns}); "));
    }
    s.push_str(&format!(
        "echo cgroup=$(tail -1 /proc/{pid}/cgroup); \
         echo caps=$(grep CapEff /proc/{pid}/status | cut -f2); \
         echo nnp=$(grep NoNewPrivs /proc/{pid}/status | cut -f2); \
         echo seccomp=$(grep '^Seccomp:' /proc/{pid}/status | cut -f2); "
    ));
    s
}

/// The value of `key=` in a probe's output, trimmed; empty when absent.
pub fn probe_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A static C program built from `source` with `gcc -static` into cargo's
/// scratch dir for integration tests (kept between runs, rebuilt when the
/// source changes) as `name`; built under this process's own names, then
/// renamed, since test binaries build it concurrently and must never see a
/// half-written one. It runs in busybox containers, which have no libc.
pub fn static_c_binary(name: &str, source: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("berth-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    if out.exists() && std::fs::read_to_string(&src).ok().as_deref() == Some(source) {
        return out;
    }
    let tmp_src = dir.join(format!("{name}-{}.c", std::process::id()));
    let tmp_out = dir.join(format!("{name}-{}", std::process::id()));
    std::fs::write(&tmp_src, source).unwrap();
    let st = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&tmp_out)
        .arg(&tmp_src)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc -static {name}.c");
    std::fs::rename(&tmp_out, &out).unwrap();
    std::fs::rename(&tmp_src, &src).unwrap();
    out
}

pub mod golden;
pub mod network;
pub mod systemd_box;
pub mod uml;
