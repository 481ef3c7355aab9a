//! End to end on a real systemd: what a definition names on the host. The
//! three `[security] seccomp` choices as the container itself sees them — the
//! default filter, no filter (`"unconfined"`), a profile file in Docker's
//! JSON format — and the host paths that must exist: a broken profile and a
//! missing bind-mount source each fail that container's start with an error
//! naming the file, while the other containers keep running, and `berth
//! check` warns about both before anything starts.
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/root";

/// What each container prints once, then it idles until stopped.
const REPORT: &str = "grep '^Seccomp:' /proc/self/status; \
     if mkdir /tmp/made 2>/dev/null; then echo mkdir=ok; else echo mkdir=refused; fi; \
     if unshare -U true 2>/dev/null; then echo unshare=ok; else echo unshare=refused; fi; \
     echo report-done; exec sleep 1000";

/// Docker's profile format: everything allowed but mkdir/mkdirat, which fail
/// with EPERM (errnoRet 1), listed per architecture as Docker's own are.
const NO_MKDIR: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "archMap": [
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
  ],
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
  ]
}
"#;

fn definition(seccomp: &str) -> String {
    format!(
        "rootfs = \"{ROOTFS}\"\ncommand = [\"sh\", \"-c\", \"{REPORT}\"]\n\
         [security]\nseccomp = \"{seccomp}\"\n[service]\nstop_timeout = \"1s\"\nrestart = \"no\"\n"
    )
}

/// The lines `name` printed, once it has printed them all.
fn report(b: &SystemdBox, name: &str) -> String {
    b.wait_for(
        &format!("journalctl --no-pager -o cat -u berth@{name}"),
        |t| t.contains("report-done"),
        Duration::from_secs(20),
    )
}

#[test]
fn seccomp_choices_and_host_paths() {
    require_root!();
    require_program!("nsenter");
    let opts = BoxOptions::default()
        .with_berth()
        .file("/etc/berth/containers/dflt.toml", definition("default"))
        .file("/etc/berth/containers/loose.toml", definition("unconfined"))
        .file(
            "/etc/berth/containers/nomkdir.toml",
            definition("/etc/berth/seccomp/no-mkdir.json"),
        )
        .file("/etc/berth/seccomp/no-mkdir.json", NO_MKDIR)
        .file(
            "/etc/berth/containers/broken.toml",
            definition("/etc/berth/seccomp/broken.json"),
        )
        .file(
            "/etc/berth/seccomp/broken.json",
            "{\"defaultAction\": \"SCMP_ACT_NOPE\"}\n",
        )
        .file(
            "/etc/berth/containers/nofile.toml",
            definition("/etc/berth/seccomp/typo.json"),
        )
        .file(
            "/etc/berth/containers/nobind.toml",
            format!(
                "rootfs = \"{ROOTFS}\"\ncommand = [\"true\"]\n\
                 [[volume]]\nsource = \"/srv/typo\"\ntarget = \"/data\"\n"
            ),
        );
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);

    // berth check: the definitions are valid; the missing files are warned
    // about, each naming its definition.
    let check = b.sh("berth check");
    let warned = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{check:?}");
    assert!(
        warned.contains("warning: /etc/berth/containers/nobind.toml: [[volume]] source \"/srv/typo\" does not exist"),
        "{warned}"
    );
    assert!(
        warned.contains("warning: /etc/berth/containers/nofile.toml: [security] seccomp profile \"/etc/berth/seccomp/typo.json\" does not exist"),
        "{warned}"
    );
    assert_eq!(warned.lines().count(), 2, "{warned}");

    let _ = b.sh(
        "systemctl start berth@dflt berth@loose berth@nomkdir berth@broken berth@nofile berth@nobind",
    );

    // The default filter: mode 2; mkdir allowed; unshare (a namespace escape
    // the default profile refuses without CAP_SYS_ADMIN) refused.
    let dflt = report(&b, "dflt");
    assert!(dflt.contains("Seccomp:\t2"), "{dflt}");
    assert!(dflt.contains("mkdir=ok"), "{dflt}");
    assert!(dflt.contains("unshare=refused"), "{dflt}");

    // unconfined: no filter at all.
    let loose = report(&b, "loose");
    assert!(loose.contains("Seccomp:\t0"), "{loose}");
    assert!(loose.contains("mkdir=ok"), "{loose}");
    assert!(loose.contains("unshare=ok"), "{loose}");

    // The Docker-format profile: its one rule holds, the rest is allowed.
    let nomkdir = report(&b, "nomkdir");
    assert!(nomkdir.contains("Seccomp:\t2"), "{nomkdir}");
    assert!(nomkdir.contains("mkdir=refused"), "{nomkdir}");
    // An exec'd process gets the same profile.
    let exec = b.sh("berth exec nomkdir mkdir /tmp/again");
    assert!(!exec.status.success());
    assert!(
        String::from_utf8_lossy(&exec.stderr).contains("Operation not permitted"),
        "{exec:?}"
    );

    // The broken profile: that unit fails, saying which file and why; the
    // others keep running.
    b.wait_for(
        "systemctl is-active berth@broken",
        |t| t.trim() == "failed",
        Duration::from_secs(20),
    );
    let log = b.sh_ok("journalctl --no-pager -o cat -u berth@broken");
    assert!(log.contains("/etc/berth/seccomp/broken.json"), "{log}");
    assert!(log.contains("SCMP_ACT_NOPE"), "{log}");
    assert_eq!(
        log.matches("broken.json").count(),
        1,
        "the file is named once: {log}"
    );
    // The missing files: the same, and nothing of the start is left behind.
    for (name, says) in [
        ("nofile", "/etc/berth/seccomp/typo.json"),
        (
            "nobind",
            "/etc/berth/containers/nobind.toml: [[volume]] source \"/srv/typo\" (for target \"/data\") does not exist",
        ),
    ] {
        b.wait_for(
            &format!("systemctl is-active berth@{name}"),
            |t| t.trim() == "failed",
            Duration::from_secs(20),
        );
        let log = b.sh_ok(&format!("journalctl --no-pager -o cat -u berth@{name}"));
        assert!(log.contains(says), "{log}");
        let left = b.sh(&format!("ls /run/berth/containers/{name}"));
        assert!(!left.status.success(), "run dir of {name} left: {left:?}");
    }
    for name in ["dflt", "loose", "nomkdir"] {
        assert_eq!(
            b.sh_ok(&format!("systemctl is-active berth@{name}")).trim(),
            "active",
            "{name}"
        );
    }
}
