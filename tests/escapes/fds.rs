//! Class 1: host descriptors in the container (CVE-2024-21626, runc's
//! "Leaky Vessels"). A working directory of `/proc/self/fd/N` names whatever
//! directory descriptor N the runtime's child still holds (the host cgroup
//! directory opened for CLONE_INTO_CGROUP, a directory the caller left open),
//! and `../../..` from there walks the host's root. Every way a cwd arrives
//! is attacked: a bundle (`run`), `exec --cwd`, `exec --process`, a
//! definition's `workdir`, an image's `WorkingDir` and `berth exec -w`; and
//! the descriptors a container, an exec'd process and a health check hold are
//! listed from inside: only stdio and what was passed on purpose.
//!
//! Each attacking shell first opens the host's `/` as fd 7 (`exec 7</`), as
//! a careless caller would leave one, so the attack does not depend on the
//! runtime's own descriptor numbering.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::rt::{self, Sandbox};
use crate::support;
use crate::support::systemd_box::{BoxOptions, SystemdBox};
use crate::{require_program, require_root};

use crate::reg;

/// The descriptors tried as `/proc/self/fd/N`.
const FDS: std::ops::RangeInclusive<u32> = 3..=10;

/// A value nobody could print without reading the host file.
fn secret(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("host-secret-{tag}-{}-{nanos}", std::process::id())
}

/// `../` enough times to reach `/` from any host directory, then `file`.
fn climb(file: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(24),
        file.to_str().unwrap().trim_start_matches('/')
    )
}

/// The attacker's program: read the host file through the cwd.
fn reader(file: &Path) -> String {
    format!("cat {} 2>&1; echo pwd=$(pwd)", climb(file))
}

/// A program listing its own descriptors (`ls` inherits the shell's, or is
/// the process itself): `... N -> TARGET` lines.
const LIST_FDS: &str = "ls -l /proc/self/fd/";

/// The descriptors `ls -l /proc/self/fd/` printed in `out`, as (N, TARGET),
/// without the one `ls` opened to read the directory.
fn listed_fds(out: &str) -> Vec<(u32, String)> {
    out.lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter_map(|(left, target)| {
            let n = left.split_whitespace().last()?.parse().ok()?;
            let own = target
                .strip_prefix("/proc/")
                .and_then(|t| t.strip_suffix("/fd"))
                .is_some_and(|pid| pid.parse::<u32>().is_ok());
            (!own).then(|| (n, target.to_string()))
        })
        .collect()
}

/// Bundles in the sandbox that share `base`'s rootfs, one per config edit.
fn variant(base: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    variant_of(base, name, |cfg| {
        cfg["root"]["path"] = json!(base.join("rootfs"));
        edit(cfg);
    })
}

/// A copy of `base`'s config (its root path kept) in a sibling bundle `name`.
fn variant_of(base: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(base.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    let dir = base.parent().unwrap().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    dir
}

/// A peer runtime on the same bundle: printed, not asserted (TESTING.md).
fn peer(sb: &Sandbox, prog: &str, bundle: &Path, id: &str, secret: &str) {
    if !support::have_program(prog) {
        println!("peer {prog}: not installed");
        return;
    }
    // crun 1.8.1 raises RLIMIT_MEMLOCK for device rules and fails without
    // CAP_SYS_RESOURCE (TESTING.md): the peers get the bundle without them.
    let name = format!("{}-{prog}", bundle.file_name().unwrap().to_str().unwrap());
    let src = bundle.to_path_buf();
    let bundle = &variant_of(&src, &name, |cfg| {
        cfg["linux"]["resources"] = json!({});
    });
    let o = sb.sh(&format!(
        "exec 7</\n{prog} --root $STATE/../{prog}-state run -b {} {id} </dev/null; echo status=$?\n{prog} --root $STATE/../{prog}-state delete -f {id} >/dev/null 2>&1; true",
        bundle.display()
    ));
    let out = rt::stdout(&o);
    println!(
        "peer {prog} on {}: {}; read the host file: {}\n  stdout: {}\n  stderr: {}",
        bundle.display(),
        out.lines()
            .find(|l| l.starts_with("status="))
            .unwrap_or("no status"),
        out.contains(secret),
        out.trim().replace('\n', " | "),
        String::from_utf8_lossy(&o.stderr)
            .trim()
            .replace('\n', " | ")
    );
}

#[test]
fn bundle_cwd_in_a_host_fd_is_refused() {
    require_root!();
    let sb = Sandbox::new();
    let marker = sb.path().join("host-marker");
    let secret = secret("run");
    std::fs::write(&marker, &secret).unwrap();
    let base = sb.bundle("base", |_| {});
    for n in FDS {
        let cwd = format!("/proc/self/fd/{n}");
        let b = variant(&base, &format!("b{n}"), |cfg| {
            cfg["process"]["cwd"] = json!(cwd);
            rt::sh_args(cfg, &reader(&marker));
        });
        let o = sb.sh(&format!(
            "exec 7</\n$RT run -b {} c{n} </dev/null; echo status=$?\n$RT delete -f c{n} >/dev/null 2>&1; true",
            b.display()
        ));
        let out = rt::stdout(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !out.contains(&secret),
            "cwd {cwd}: the container read the host file\n{}",
            rt::describe(&o)
        );
        assert!(
            !out.contains("status=0"),
            "cwd {cwd}: the run was not refused\n{}",
            rt::describe(&o)
        );
        assert!(
            err.contains(&format!("working directory '{cwd}'"))
                || err.contains(&format!("chdir '{cwd}'")),
            "cwd {cwd}: no clear error\n{}",
            rt::describe(&o)
        );
        if n == 3 || n == 7 {
            println!("berth-runtime, cwd {cwd}: {}", err.trim());
            peer(&sb, "crun", &b, &format!("crun{n}"), &secret);
            peer(&sb, "runc", &b, &format!("runc{n}"), &secret);
        }
    }
}

#[test]
fn exec_cwd_in_a_host_fd_is_refused() {
    require_root!();
    let sb = Sandbox::new();
    let marker = sb.path().join("host-marker");
    let secret = secret("exec");
    std::fs::write(&marker, &secret).unwrap();
    let b = sb.bundle("b", |cfg| {
        cfg["process"]["args"] = json!(["sleep", "1000"]);
    });
    let read = reader(&marker);
    let mut script = format!(
        "exec 7</\n$RT create -b {} e1 </dev/null >/dev/null 2>&1; $RT start e1; echo start=$?\n",
        b.display()
    );
    for n in FDS {
        script.push_str(&format!(
            "echo \"== exec-cwd {n}\"; $RT exec --cwd /proc/self/fd/{n} e1 sh -c '{read}' 2>&1; echo status=$?\n"
        ));
        let mut process: Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        process = process["process"].take();
        process["cwd"] = json!(format!("/proc/self/fd/{n}"));
        process["args"] = json!(["sh", "-c", read]);
        let p = sb.path().join(format!("process-{n}.json"));
        std::fs::write(&p, serde_json::to_vec(&process).unwrap()).unwrap();
        script.push_str(&format!(
            "echo \"== exec-process {n}\"; $RT exec --process {} e1 2>&1; echo status=$?\n",
            p.display()
        ));
    }
    script.push_str("$RT kill e1 KILL; $RT delete -f e1 >/dev/null 2>&1; true\n");
    let o = sb.sh(&script);
    let out = rt::stdout(&o);
    assert!(out.contains("start=0"), "{}", rt::describe(&o));
    assert!(!out.contains(&secret), "an exec read the host file\n{out}");
    let cases: Vec<&str> = out.split("== ").skip(1).collect();
    assert_eq!(cases.len(), 2 * FDS.count(), "{out}");
    for case in cases {
        let (name, text) = case.split_once('\n').unwrap();
        assert!(!text.contains("status=0"), "{name}: not refused\n{text}");
        assert!(
            text.contains("working directory '/proc/self/fd/")
                || text.contains("chdir '/proc/self/fd/"),
            "{name}: no clear error\n{text}"
        );
    }
    println!("{out}");
}

#[test]
fn runtime_containers_hold_only_stdio_and_what_was_passed() {
    require_root!();
    let sb = Sandbox::new();
    let passed = sb.path().join("passed-file");
    std::fs::write(&passed, "x").unwrap();
    let run = sb.bundle("run", |cfg| rt::sh_args(cfg, LIST_FDS));
    let long = variant(&run, "long", |cfg| {
        cfg["process"]["args"] = json!(["sleep", "1000"]);
    });
    let o = sb.sh(&format!(
        "exec 7</\n\
         echo '== run'; $RT run -b {run} r1 </dev/null; $RT delete -f r1\n\
         echo '== preserve'; $RT run --preserve-fds 1 -b {run} r2 </dev/null 3<{passed}; $RT delete -f r2\n\
         $RT create -b {long} l1 </dev/null >/dev/null 2>&1; $RT start l1\n\
         echo '== exec'; $RT exec l1 {LIST_FDS}\n\
         $RT kill l1 KILL; $RT delete -f l1 >/dev/null 2>&1; true",
        run = run.display(),
        long = long.display(),
        passed = passed.display(),
    ));
    let out = rt::stdout(&o);
    let section = |name: &str| -> Vec<(u32, String)> {
        let text = out
            .split("== ")
            .find(|s| s.starts_with(name))
            .unwrap_or_else(|| panic!("no section {name}\n{}", rt::describe(&o)));
        listed_fds(text)
    };
    for name in ["run", "exec"] {
        let fds = section(name);
        let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            numbers,
            vec![0, 1, 2],
            "{name}: {fds:?}\n{}",
            rt::describe(&o)
        );
    }
    let fds = section("preserve");
    let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3], "{fds:?}");
    assert_eq!(fds[3].1, passed.to_str().unwrap(), "{fds:?}");
    println!("{out}");
}

/// busybox in one layer, and an image config whose WorkingDir is a host fd.
fn hostile_layout(dir: &Path, n: u32, read: &str) {
    let layout = reg::Layout::new(dir);
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    let base = reg::tar_of(&[
        reg::Member::Dir("bin/", 0o755, 0, 0),
        reg::Member::File("bin/busybox", busybox, 0o755, 0, 0),
        reg::Member::Symlink("bin/sh", "busybox"),
        reg::Member::Symlink("bin/cat", "busybox"),
        reg::Member::Dir("etc/", 0o755, 0, 0),
        reg::Member::File(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n",
            0o644,
            0,
            0,
        ),
    ]);
    let config = json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": [read],
        "Env": ["PATH=/bin"],
        "WorkingDir": format!("/proc/self/fd/{n}"),
    });
    let built = layout.image(&[base], "amd64", config);
    let mut layout = layout;
    layout.tag(&built, "1");
}

const ROOTFS: &str = "/srv/fds-root";
const BOX_MARKER: &str = "/var/tmp/berth-host-marker";

#[test]
fn service_mode_cwds_in_host_fds_are_refused() {
    require_root!();
    require_program!("nsenter");
    let secret = secret("service");
    let read = reader(Path::new(BOX_MARKER));
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut opts = BoxOptions::default()
        .with_berth()
        .file(BOX_MARKER, &secret)
        .file(
            "/etc/berth/containers/long.toml",
            format!("rootfs = \"{ROOTFS}\"\ncommand = [\"sleep\", \"1000\"]\n[service]\nstop_timeout = \"1s\"\n"),
        )
        .file(
            "/etc/berth/containers/img.toml",
            "image = \"oci:/srv/img:1\"\n[service]\nstop_timeout = \"1s\"\n",
        );
    let workdirs = [3u32, 4, 5, 6];
    for n in workdirs {
        opts = opts.file(
            &format!("/etc/berth/containers/wd{n}.toml"),
            format!(
                "rootfs = \"{ROOTFS}\"\nworkdir = \"/proc/self/fd/{n}\"\ncommand = [\"sh\", \"-c\", {}]\n[service]\nstop_timeout = \"1s\"\n",
                q(&read)
            ),
        );
    }
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    let layout = tempfile::tempdir().unwrap();
    hostile_layout(layout.path(), 3, &read);
    b.copy_in(layout.path(), "/srv/img");

    let refused = |unit: &str, cwd: &str| {
        let _ = b.sh(&format!("systemctl start berth@{unit}"));
        b.wait_for(
            &format!("systemctl is-active berth@{unit}"),
            |t| t == "failed" || t == "inactive",
            Duration::from_secs(20),
        );
        let log = b.sh_ok(&format!("journalctl --no-pager -b -o cat -u berth@{unit}"));
        assert!(!log.contains(&secret), "{unit} read the host file:\n{log}");
        assert!(
            log.contains(&format!("working directory '{cwd}'"))
                || log.contains(&format!("chdir '{cwd}'")),
            "{unit}: no clear error:\n{log}"
        );
        println!(
            "{unit}: {}",
            log.lines().rev().find(|l| l.contains(cwd)).unwrap_or("")
        );
    };
    // A definition's workdir.
    for n in workdirs {
        refused(&format!("wd{n}"), &format!("/proc/self/fd/{n}"));
    }
    // An image's WorkingDir.
    refused("img", "/proc/self/fd/3");

    // `berth exec -w` into a running container.
    b.sh_ok("systemctl start berth@long");
    for n in FDS {
        let o = b.sh(&format!(
            "exec 7</; berth exec -w /proc/self/fd/{n} long sh -c {} 2>&1; echo status=$?",
            support::systemd_box::shell_quote(&read)
        ));
        let out = rt::stdout(&o);
        assert!(
            !out.contains(&secret),
            "berth exec -w fd {n} read the host file:\n{out}"
        );
        assert!(
            !out.contains("status=0"),
            "berth exec -w fd {n} was not refused:\n{out}"
        );
        assert!(
            out.contains(&format!("working directory '/proc/self/fd/{n}'"))
                || out.contains(&format!("chdir '/proc/self/fd/{n}'")),
            "berth exec -w fd {n}: no clear error:\n{out}"
        );
    }
    b.sh_ok("systemctl stop berth@long");
    b.close().unwrap();
}

#[test]
fn service_containers_exec_and_health_hold_only_stdio() {
    require_root!();
    require_program!("nsenter");
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let main = format!("{LIST_FDS}; exec sleep 1000");
    let health =
        // `exec` in a subshell: busybox sh keeps a saved copy of stdout (fd
        // 10) while a plain command runs with a redirection. A fresh file per
        // check, renamed: the checks overlap at this interval.
        format!("(exec {LIST_FDS} > /tmp/hc.$$); mv /tmp/hc.$$ /tmp/health-fds");
    let b = SystemdBox::boot(BoxOptions::default().with_berth().file(
        "/etc/berth/containers/inv.toml",
        format!(
            "rootfs = \"{ROOTFS}\"\ncommand = [\"sh\", \"-c\", {}]\n\
                 [health]\ncommand = [\"sh\", \"-c\", {}]\ninterval = \"200ms\"\ntimeout = \"2s\"\n\
                 [service]\nstop_timeout = \"1s\"\n",
            q(&main),
            q(&health)
        ),
    ))
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    b.sh_ok("systemctl start berth@inv");

    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@inv",
        |t| t.contains(" 2 -> "),
        Duration::from_secs(10),
    );
    let numbers = |fds: &[(u32, String)]| fds.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    let fds = listed_fds(&log);
    assert_eq!(
        numbers(&fds),
        vec![0, 1, 2],
        "the container's program: {fds:?}"
    );
    println!("service container: {fds:?}");

    let health = b.wait_until(
        "berth exec inv sh -c \"grep -q ' 2 -> ' /tmp/health-fds && cat /tmp/health-fds\"",
        Duration::from_secs(10),
    );
    let fds = listed_fds(&health);
    assert_eq!(
        numbers(&fds),
        vec![0, 1, 2],
        "a health check: {fds:?}\n{health}"
    );
    println!("health check: {fds:?}");

    let out = b.sh_ok(&format!("exec 7</; berth exec inv {LIST_FDS}"));
    let fds = listed_fds(&out);
    assert_eq!(numbers(&fds), vec![0, 1, 2], "berth exec: {fds:?}");
    println!("berth exec: {fds:?}");
    b.sh_ok("systemctl stop berth@inv");
    b.close().unwrap();
}

/// The container's own seccomp profile may deny openat2 and getcwd (as
/// runtime-tools' `linux_seccomp` denies getcwd), loaded before the cwd step
/// when no_new_privileges is off: the container still starts in its cwd,
/// and a cwd through a descriptor is still refused (every host descriptor
/// was closed before; the chdir finds none).
#[test]
fn a_profile_denying_openat2_and_getcwd_still_starts_in_its_cwd() {
    require_root!();
    let sb = Sandbox::new();
    let deny = |cfg: &mut Value| {
        cfg["process"]["noNewPrivileges"] = json!(false);
        cfg["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["openat2", "getcwd"], "action": "SCMP_ACT_ERRNO"}]
        });
    };
    let ok = sb.bundle("ok", |cfg| {
        deny(cfg);
        cfg["process"]["cwd"] = json!("/etc");
        // busybox's pwd needs getcwd: read a file by a relative name instead.
        rt::sh_args(cfg, "echo in-etc=$(cat ./hostname-marker)");
    });
    std::fs::write(ok.join("rootfs/etc/hostname-marker"), "yes").unwrap();
    let o = sb.sh(&format!("$RT run -b {} ok", ok.display()));
    assert!(
        rt::stdout(&o).contains("in-etc=yes"),
        "{}",
        rt::describe(&o)
    );
    let marker = sb.path().join("host-marker");
    let secret = secret("deny");
    std::fs::write(&marker, &secret).unwrap();
    for n in FDS {
        let b = variant(&ok, &format!("bad{n}"), |cfg| {
            cfg["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
            rt::sh_args(cfg, &reader(&marker));
        });
        let o = sb.sh(&format!(
            "exec 7</\n$RT run -b {} bad{n} </dev/null; echo status=$?\n$RT delete -f bad{n} >/dev/null 2>&1; true",
            b.display()
        ));
        let out = rt::stdout(&o);
        assert!(!out.contains(&secret), "fd {n}: {}", rt::describe(&o));
        assert!(!out.contains("status=0"), "fd {n}: {}", rt::describe(&o));
    }
}
