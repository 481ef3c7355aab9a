//! Test harness for the runtime and the OCI command line: every privileged
//! step runs in a child `unshare --mount --pid --net --cgroup --uts --ipc
//! --fork --propagation private` placed in a cgroup the test creates under
//! /sys/fs/cgroup/unified, with a fresh cgroup2 mounted at /sys/fs/cgroup inside
//! (TESTING.md). Nothing touches the host's own mount, net or cgroup namespace.
//! Dropping the sandbox kills what is left in its cgroup and removes it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::Value;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Sandbox {
    pub cgroup: PathBuf,
    pub tmp: tempfile::TempDir,
    /// Kills and removes the cgroup and the temp dir if this test process
    /// dies before Drop runs (the box's watchdog).
    watchdog: Option<std::process::Child>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let cgroup = PathBuf::from(format!(
            "/sys/fs/cgroup/unified/berth-test-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&cgroup).expect("create test cgroup under /sys/fs/cgroup/unified");
        let tmp = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir_all(tmp.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(
            crate::support::berth_bin(),
            tmp.path().join("bin/berth-runtime"),
        )
        .unwrap();
        std::fs::create_dir_all(tmp.path().join("state")).unwrap();
        let watchdog = crate::support::systemd_box::spawn_watchdog(&cgroup, tmp.path())
            .unwrap_or_else(|e| panic!("{e}"));
        Sandbox {
            cgroup,
            tmp,
            watchdog: Some(watchdog),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn runtime(&self) -> PathBuf {
        self.path().join("bin/berth-runtime")
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// A bundle with a busybox rootfs and `berth-runtime spec`'s config,
    /// changed by `edit` (process.terminal off, args `sh`).
    pub fn bundle(&self, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let b = self.path().join(name);
        std::fs::create_dir_all(&b).unwrap();
        crate::support::busybox_rootfs(&b.join("rootfs"));
        let probe = probe_binary();
        std::fs::copy(probe, b.join("rootfs/bin/probe")).unwrap();
        let out = Command::new(self.runtime())
            .args(["spec", "-b"])
            .arg(&b)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cfg: Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        cfg["process"]["terminal"] = Value::Bool(false);
        edit(&mut cfg);
        std::fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(&cfg).unwrap(),
        )
        .unwrap();
        b
    }

    /// Run `script` with `sh` inside fresh namespaces in the sandbox cgroup.
    /// `$RT` is the runtime with `--root` set, `$STATE` the state dir.
    pub fn sh(&self, script: &str) -> Output {
        let prelude = format!(
            "set -u\nmount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 99\nmount -t proc proc /proc || exit 98\nRT=\"{} --root {}\"\nSTATE={}\nexport RT STATE\n",
            self.runtime().display(),
            self.state().display(),
            self.state().display()
        );
        let full = format!("{prelude}{script}");
        let mut cmd = self.unshared(&["sh", "-c", &full]);
        cmd.stdin(Stdio::null());
        cmd.output().expect("run unshare")
    }

    /// `argv` run in the sandbox's fresh namespaces and cgroup, bounded by a
    /// 60 s timeout; stdio is the caller's to set. `argv` mounts /proc and
    /// cgroup2 itself when it needs them (see `sh` and `command`).
    fn unshared(&self, argv: &[&str]) -> Command {
        let cg = self.cgroup.join("cgroup.procs");
        let mut cmd = Command::new("timeout");
        cmd.args([
            "60",
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--net",
            "--cgroup",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
        ])
        .args(argv);
        use std::os::unix::process::CommandExt;
        // SAFETY: only an async-signal-safe write(2) of a constant happens in the child.
        unsafe {
            let cg = std::ffi::CString::new(cg.as_os_str().to_str().unwrap()).unwrap();
            cmd.pre_exec(move || {
                let fd = libc::open(cg.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if r != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// `command` as one shell command line, for programs that take one
    /// (`script -c`): append the program and its arguments.
    pub fn shell_prefix(&self) -> String {
        format!(
            "echo $$ > {}/cgroup.procs && exec timeout 60 unshare --mount --pid --fork --net --cgroup --uts --ipc --propagation private sh -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && mount -t proc proc /proc && ip link set lo up && exec \"$@\"' sh",
            self.cgroup.display()
        )
    }

    /// A command line (complete it with the program and its arguments) run
    /// in the sandbox: its own PID, network (lo up), mount, cgroup, UTS and
    /// IPC namespaces, its own /proc and cgroup2 at /sys/fs/cgroup.
    pub fn command(&self) -> Command {
        let mut c = self.unshared(&[
            "sh",
            "-c",
            "mount -t cgroup2 cgroup2 /sys/fs/cgroup && mount -t proc proc /proc && ip link set lo up && exec \"$@\"",
            "sh",
        ]);
        c.stdin(Stdio::null());
        c
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
        for _ in 0..500 {
            let procs =
                std::fs::read_to_string(self.cgroup.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        remove_cgroup_tree(&self.cgroup);
        if let Some(mut w) = self.watchdog.take() {
            // Its work is done; it is our child, still blocked in `read`.
            let _ = w.kill();
            let _ = w.wait();
        }
        // Something of the test that cannot be removed fails it (unless it
        // already failed).
        if self.cgroup.exists() && !std::thread::panicking() {
            panic!(
                "sandbox teardown: cgroup {} is left (still populated: {:?})",
                self.cgroup.display(),
                std::fs::read_to_string(self.cgroup.join("cgroup.procs")).unwrap_or_default()
            );
        }
    }
}

fn remove_cgroup_tree(p: &Path) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn describe(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Set process.args of a config to `sh -c SCRIPT`.
pub fn sh_args(cfg: &mut Value, script: &str) {
    cfg["process"]["args"] = serde_json::json!(["sh", "-c", script]);
}

const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/ip_icmp.h>
#include <sys/socket.h>
#include <sys/time.h>

/* An ICMP echo to 127.0.0.1 over an unprivileged ping socket (what iputils'
   ping uses without CAP_NET_RAW); a raw socket is tried first to show
   whether NET_RAW was granted. */
static int ping_loopback(void) {
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    printf("raw: %s\n", raw < 0 ? strerror(errno) : "ok");
    int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (s < 0) { printf("icmp: %s\n", strerror(errno)); return 1; }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct icmphdr h = { .type = ICMP_ECHO };
    h.un.echo.sequence = htons(1);
    struct timeval tv = { 2, 0 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (sendto(s, &h, sizeof h, 0, (struct sockaddr *)&a, sizeof a) < 0) { printf("icmp: %s\n", strerror(errno)); return 1; }
    char buf[64];
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n < (ssize_t)sizeof h) { printf("icmp: %s\n", n < 0 ? strerror(errno) : "short reply"); return 1; }
    printf("icmp: reply type %d\n", ((struct icmphdr *)buf)->type);
    return 0;
}

/* A tiny static helper that reports what the container may do. */
int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    long r = -1;
    if (!strcmp(c, "keyctl")) r = syscall(SYS_keyctl, 0, -3, 0);
    else if (!strcmp(c, "ptrace")) r = ptrace(PTRACE_ATTACH, atoi(argv[2]), 0, 0);
    else if (!strcmp(c, "open")) r = open(argv[2], O_RDONLY);
    else if (!strcmp(c, "openw")) r = open(argv[2], O_WRONLY);
    else if (!strcmp(c, "init_module")) r = syscall(SYS_init_module, "", 0, "");
    else if (!strcmp(c, "finit_module")) { int fd = open("/bin/busybox", O_RDONLY); r = syscall(SYS_finit_module, fd, "", 0); }
    else if (!strcmp(c, "mknod")) r = mknod(argv[2], S_IFBLK | 0600, makedev(atoi(argv[3]), atoi(argv[4])));
    else if (!strcmp(c, "mount-proc")) { mkdir(argv[2], 0755); r = mount("proc", argv[2], "proc", 0, 0); }
    else if (!strcmp(c, "ping")) return ping_loopback();
    else if (!strcmp(c, "euid")) { printf("euid=%d\n", (int)geteuid()); return 0; }
    else if (!strcmp(c, "chroot-escape")) {
        /* The classic escape: chroot into a subdir, climb with "..", chroot(".").
           Against a pivot_root'ed container it ends at the container's root. */
        mkdir("/tmp/jail", 0755);
        r = chroot("/tmp/jail");
        if (r == 0) {
            for (int i = 0; i < 64; i++) chdir("..");
            r = chroot(".");
            if (r == 0) {
                printf("chroot-escape: %s\n", access(argv[2], F_OK) == 0 ? "reached host" : "stayed in container");
                return 0;
            }
        }
    }
    printf("%s: %s\n", c, r < 0 ? strerror(errno) : "ok");
    return r < 0 ? 1 : 0;
}
"#;

/// The probe, compiled once per test binary with `gcc -static`.
pub fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| crate::support::static_c_binary("probe", PROBE_C))
}
