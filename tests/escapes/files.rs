//! Classes 6 and 9 of issue 12: files other users can read or use (store,
//! run state, notify socket; CVE-2021-41091 class), and the small ones that
//! are about files the container controls (`cap_last_cap`, `/etc/passwd`).

use serde_json::{json, Value};

use crate::rt::{describe, sh_args, stdout, Sandbox};
#[allow(unused_imports)]
use crate::{require_program, require_root};

/// Peers installed on this machine, run on the same bundle for the record.
fn peers() -> Vec<&'static str> {
    ["crun", "runc"]
        .into_iter()
        .filter(|p| crate::support::have_program(p))
        .collect()
}

fn no_caps(c: &mut Value) {
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        c["process"]["capabilities"][set] = json!([]);
    }
}

/// Class 9: the bounding set is dropped up to the kernel's last capability,
/// not up to what the container's `/proc/sys/kernel/cap_last_cap` says. The
/// attack binds a file holding "3" over it; before the fix, berth stopped
/// dropping at CAP_FOWNER and the container kept CAP_SYS_ADMIN & co. in its
/// bounding set (regainable through any setuid or file-capability binary).
#[test]
fn shadowed_cap_last_cap_does_not_shorten_the_bounding_drop() {
    require_root!();
    let sb = Sandbox::new();
    let fake = sb.path().join("cap_last_cap");
    std::fs::write(&fake, "3\n").unwrap();
    let bundle = sb.bundle("caps", |c| {
        no_caps(c);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/proc/sys/kernel/cap_last_cap",
            "type": "bind",
            "source": fake,
            "options": ["bind", "ro"]
        }));
        sh_args(
            c,
            "echo last=$(cat /proc/sys/kernel/cap_last_cap); grep CapBnd /proc/self/status",
        );
    });
    let o = sb.sh(&format!("$RT run -b {} caps", bundle.display()));
    let out = stdout(&o);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        out.contains("last=3"),
        "the shadow was not in place:\n{out}"
    );
    assert!(
        out.contains("CapBnd:\t0000000000000000"),
        "bounding set not fully dropped:\n{}",
        describe(&o)
    );
    for peer in peers() {
        let o = sb.sh(&format!(
            "{peer} --root {root} run -b {b} caps-{peer}",
            root = sb.path().join(format!("{peer}-state")).display(),
            b = bundle.display()
        ));
        println!("peer {peer}: {}", describe(&o));
    }
}

/// Run a command as `nobody` (an unprivileged host user). setpriv keeps its
/// capabilities across the uid change until it executes, so the path lookup
/// of its own execve still has CAP_DAC_OVERRIDE: `env` is executed first, as
/// nobody with no capabilities left, and it executes the command.
const AS_NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups -- env";

/// An image with busybox, a setuid-root copy of the probe (`/bin/suid`, which
/// prints its euid), and the merged-/usr lib links so that the box's
/// systemd-notify runs from a read-only bind of /usr.
fn write_suid_layout(dir: &std::path::Path) {
    use crate::reg::{tar_of, Layout, Member};
    let layout = Layout::new(dir);
    let probe: &'static [u8] = Box::leak(
        std::fs::read(crate::rt::probe_binary())
            .unwrap()
            .into_boxed_slice(),
    );
    let mut members = crate::reg::busybox_members();
    members.extend([
        Member::File("bin/suid", probe, 0o4755, 0, 0),
        Member::Dir("usr/", 0o755, 0, 0),
        Member::Symlink("lib", "usr/lib"),
        Member::Symlink("lib64", "usr/lib64"),
    ]);
    let built = layout.image(
        &[tar_of(&members)],
        "amd64",
        json!({"Env": ["PATH=/usr/bin:/bin"]}),
    );
    let mut layout = layout;
    layout.tag(&built, "1");
}

/// Class 6 in service mode: a running container whose layer holds a
/// setuid-root binary and whose upper dir gets one at run time; an
/// unprivileged host user tries to run both through the store, read
/// exec.json and state.json, and send READY=1/STATUS= on the notify socket.
/// Root on the host, outside the container, tries the notify socket too.
#[test]
fn host_users_cannot_use_the_store_the_run_state_or_the_notify_socket() {
    require_root!();
    require_program!("nsenter");
    require_program!("setpriv");
    require_program!("gcc");
    use crate::support::systemd_box::{BoxOptions, SystemdBox};
    use std::time::Duration;
    let def = "image = \"oci:/srv/img:1\"\n\
        environment = { SECRET = \"hunter2\" }\n\
        command = [\"sh\", \"-c\", \"cp -p /bin/suid /suid2 && chmod 4755 /suid2; /usr/bin/systemd-notify --ready --status=app-ready; exec sleep 1000\"]\n\
        [[volume]]\nsource = \"/usr\"\ntarget = \"/usr\"\nread_only = true\n\
        [service]\nnotify = \"container\"\nstop_timeout = \"1s\"\n";
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file("/etc/berth/containers/app.toml", def),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let layout = tempfile::tempdir().unwrap();
    write_suid_layout(layout.path());
    b.copy_in(layout.path(), "/srv/img");
    b.sh_ok("systemctl start berth@app");
    assert_eq!(
        b.sh_ok("systemctl show -P StatusText berth@app").trim(),
        "app-ready"
    );

    // The paths an attacker would use (found as root: digests are public).
    let layer_suid = b.sh_ok("ls -d /var/lib/berth/layers/sha256/*/bin/suid");
    let layer_suid = layer_suid.trim();
    let upper_suid = "/var/lib/berth/containers/app/upper/suid2";
    assert!(
        b.sh(&format!("test -u {upper_suid}")).status.success(),
        "the container did not leave its setuid copy in the upper dir"
    );
    let run = "/run/berth/containers/app";
    let mut report = String::new();
    for bin in [layer_suid, upper_suid] {
        let o = b.sh(&format!("{AS_NOBODY} {bin} euid"));
        report += &format!(
            "exec {bin}: {:?} {}{}\n",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
        assert!(!o.status.success(), "a host user ran {bin}:\n{report}");
    }
    for f in ["exec.json", "state.json"] {
        let o = b.sh(&format!("{AS_NOBODY} cat {run}/{f}"));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !o.status.success() && !out.contains("hunter2"),
            "a host user read {f}: {out}"
        );
    }
    let o = b.sh(&format!(
        "NOTIFY_SOCKET={run}/notify.sock {AS_NOBODY} systemd-notify --status=pwned-by-nobody"
    ));
    report += &format!("nobody notify: {:?}\n", o.status.code());
    // Root outside the container: it can reach the socket, but its
    // credentials are not the container's.
    let _ = b.sh(&format!(
        "NOTIFY_SOCKET={run}/notify.sock systemd-notify --status=pwned-by-host-root"
    ));
    // Either berth says it ignored the message, or systemd took it.
    let seen = b.wait_for(
        "journalctl --no-pager -b -o cat | grep -c 'ignored an sd_notify message'; systemctl show -P StatusText berth@app",
        |t| t.contains("pwned") || !t.starts_with('0'),
        Duration::from_secs(10),
    );
    report += &format!("after host root's message: {seen:?}\n");
    // The container itself is still heard.
    let _ = b.sh("berth exec app /usr/bin/systemd-notify --status=from-inside");
    b.wait_for(
        "systemctl show -P StatusText berth@app",
        |t| t == "from-inside" || t.contains("pwned"),
        Duration::from_secs(10),
    );
    println!("{report}");
    assert!(!seen.contains("pwned"), "{report}");
    assert_eq!(
        b.sh_ok("systemctl show -P StatusText berth@app").trim(),
        "from-inside",
        "{report}"
    );

    // What berth created under its roots: private roots, private state.
    // Roots traversable (a userns container's root walks to its own dirs),
    // everything holding container data closed.
    let modes = b.sh_ok(&format!(
        "stat -c '%a %n' /var/lib/berth /var/lib/berth/layers /var/lib/berth/blobs /var/lib/berth/containers/app /run/berth {run} {run}/exec.json {run}/state.json"
    ));
    let want = format!(
        "711 /var/lib/berth\n700 /var/lib/berth/layers\n700 /var/lib/berth/blobs\n700 /var/lib/berth/containers/app\n711 /run/berth\n700 {run}\n600 {run}/exec.json\n600 {run}/state.json\n"
    );
    assert_eq!(modes, want);
    b.sh_ok("systemctl stop berth@app");
}

/// Class 6 for berth-runtime: with a state root whose parent every user can
/// walk, an unprivileged user can neither read state.json nor write to
/// exec.fifo of a created container; the root is 0700 (as runc's), the
/// container's dir 0711 and state.json 0600.
#[test]
fn host_users_cannot_read_runtime_state_or_start_through_exec_fifo() {
    require_root!();
    require_program!("setpriv");
    let sb = Sandbox::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = sb.bundle("fifo", |c| sh_args(c, "echo started"));
    let script = format!(
        r#"R="{rt} --root {root}"
$R create -b {b} c1 >/dev/null || exit 3
echo "modes=$(stat -c '%a' {root} {root}/c1 {root}/c1/state.json | tr '\n' ' ')"
{nobody} cat {root}/c1/state.json >/dev/null 2>&1 && echo read=yes || echo read=no
timeout 5 {nobody} sh -c 'echo 0 > {root}/c1/exec.fifo' 2>/dev/null && echo fifo=written || echo fifo=refused
echo "status=$($R state c1 | grep -o '"status": *"[a-z]*"')"
$R delete --force c1
"#,
        rt = sb.runtime().display(),
        root = sb.path().join("pub").display(),
        b = bundle.display(),
        nobody = AS_NOBODY,
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(out.contains("modes=700 711 600 "), "{}", describe(&o));
    assert!(out.contains("read=no"), "{}", describe(&o));
    assert!(out.contains("fifo=refused"), "{}", describe(&o));
    assert!(out.contains("\"created\""), "{}", describe(&o));
    for peer in peers() {
        let o = sb.sh(&script
            .replace(
                &format!("R=\"{}", sb.runtime().display()),
                &format!("R=\"{peer}"),
            )
            .replace("/pub", &format!("/pub-{peer}")));
        println!("peer {peer}: {}", describe(&o));
    }
}

/// The busybox binary, for an executable `bin/busybox` member.
fn busybox() -> &'static [u8] {
    Box::leak(
        std::fs::read(crate::support::BUSYBOX)
            .unwrap()
            .into_boxed_slice(),
    )
}

/// An image whose `/etc/passwd` is a FIFO (busybox plus `etc/passwd` as a
/// named pipe); nothing ever writes to it.
fn write_fifo_passwd_layout(dir: &std::path::Path) {
    use crate::reg::{tar_of, Layout, Member};
    let layout = Layout::new(dir);
    let members = [
        Member::Dir("bin/", 0o755, 0, 0),
        Member::File("bin/busybox", busybox(), 0o755, 0, 0),
        Member::Symlink("bin/sh", "busybox"),
        Member::Symlink("bin/sleep", "busybox"),
        Member::Symlink("bin/true", "busybox"),
        Member::Dir("etc/", 0o755, 0, 0),
        Member::Fifo("etc/passwd"),
    ];
    let built = layout.image(&[tar_of(&members)], "amd64", json!({"Env": ["PATH=/bin"]}));
    let mut layout = layout;
    layout.tag(&built, "1");
}

/// Class 9: a FIFO at the container's /etc/passwd wedges neither the start
/// (the init looks HOME up in it) nor `berth exec` (berth reads it for
/// `-u NAME`, the exec'd process for HOME). Before the fix, the start hung
/// in open(2) on the FIFO until systemd's start timeout.
#[test]
fn a_fifo_at_etc_passwd_wedges_neither_start_nor_exec() {
    require_root!();
    require_program!("nsenter");
    use crate::support::systemd_box::{BoxOptions, SystemdBox};
    use std::time::{Duration, Instant};
    let def = "image = \"oci:/srv/img:1\"\n\
        command = [\"sh\", \"-c\", \"echo home=$HOME; exec sleep 1000\"]\n\
        [service]\nstop_timeout = \"1s\"\n";
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file("/etc/berth/containers/app.toml", def),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let layout = tempfile::tempdir().unwrap();
    write_fifo_passwd_layout(layout.path());
    b.copy_in(layout.path(), "/srv/img");
    // Pull first, so that the timings below are the start's own.
    b.sh_ok("berth pull oci:/srv/img:1 >/dev/null");

    let t = Instant::now();
    let o = b.sh("timeout 20 systemctl start berth@app");
    let start = t.elapsed();
    let log = b.sh_ok("journalctl --no-pager -b -o cat -u berth@app");
    assert!(
        o.status.success() && start < Duration::from_secs(10),
        "start took {start:?} ({:?}):\n{log}",
        o.status
    );
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@app",
        |t| t.contains("home=/"),
        Duration::from_secs(10),
    );
    for (what, cmd) in [
        ("exec", "berth exec app sh -c 'echo exec-home=$HOME'"),
        ("exec -u NAME", "berth exec -u root app true"),
    ] {
        let t = Instant::now();
        let o = b.sh(&format!("timeout 20 {cmd}"));
        let took = t.elapsed();
        println!(
            "{what}: {:?} in {took:?}: {}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
        assert!(took < Duration::from_secs(10), "{what} took {took:?}");
        assert_ne!(o.status.code(), Some(124), "{what} was killed by timeout");
    }
    let o = b.sh("berth exec app sh -c 'echo exec-home=$HOME'");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("exec-home=/"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    b.sh_ok("systemctl stop berth@app");
}
