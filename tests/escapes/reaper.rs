//! Class 5: `init = true`. berth's reaper is the container's PID 1, so it
//! must be nothing of the host's: the same namespaces (mount, network, UTS,
//! IPC, PID, cgroup), root and confinement (capabilities, no_new_privileges,
//! seccomp, cgroup) as the container's program. Before issue 12 it was a fork
//! of the supervisor in the host's mount and network namespaces with only a
//! chroot, and a process of the container that could reach `/proc/1/` was one
//! `setns` away from the host's mounts. Still required of it: zombies are
//! reaped and signals forwarded.

use std::time::{Duration, Instant};

use crate::support::systemd_box::{BoxOptions, SystemdBox};
use crate::support::{self, confinement_probe, probe_field, NAMESPACES};
use crate::{require_program, require_root};

const ROOTFS: &str = "/srv/reaper-root";
const MARKER: &str = "/var/tmp/berth-reaper-host-marker";

/// The app: leaves an orphan (re-parented to PID 1, which must reap it),
/// traps SIGHUP, and keeps running.
const APP: &str = "(sh -c 'sleep 0.2; touch /tmp/orphan-done' &); trap 'echo got-hup' HUP; echo trapping; while true; do sleep 0.1; done";

fn definition(extra: &str) -> String {
    format!(
        "rootfs = \"{ROOTFS}\"\ninit = true\ncommand = [\"sh\", \"-c\", {}]\n{extra}[service]\nstop_timeout = \"20s\"\n",
        serde_json::to_string(APP).unwrap()
    )
}

/// (reaper, app) host PIDs of a running container, from its payload cgroup.
fn pids(b: &SystemdBox, unit: &str) -> (String, String) {
    let out = b.wait_for(
        &format!(
            "for p in $(cat /sys/fs/cgroup/berth.slice/berth@{unit}.service/payload/cgroup.procs); do echo \"$p $(cat /proc/$p/comm) $(cut -d' ' -f4 /proc/$p/stat)\"; done"
        ),
        |t| t.lines().any(|l| l.contains(" berth:[init] ")) && t.lines().any(|l| l.contains(" sh ")),
        Duration::from_secs(10),
    );
    let reaper = out
        .lines()
        .find(|l| l.contains(" berth:[init] "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    // The app is the reaper's first child running sh (the orphan, re-parented
    // to the reaper, is an `sh` too, started later).
    let app = out
        .lines()
        .filter(|l| l.contains(" sh ") && l.split_whitespace().nth(2) == Some(reaper.as_str()))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u32>().ok())
        .min()
        .unwrap_or_else(|| panic!("no app under the reaper {reaper}:\n{out}"))
        .to_string();
    (reaper, app)
}

#[test]
fn init_runs_inside_every_namespace_of_the_container() {
    require_root!();
    require_program!("nsenter");
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file(MARKER, "host")
            .file("/etc/berth/containers/ri.toml", definition(""))
            .file(
                "/etc/berth/containers/rp.toml",
                definition("[security]\ncap_add = [\"SYS_PTRACE\"]\n"),
            ),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    b.sh_ok("systemctl start berth@ri berth@rp");

    // From the box (the host here): PID 1 of the container and its program
    // share every namespace, the root and the confinement.
    let (reaper, app) = pids(&b, "ri");
    let probe = |pid: &str| b.sh_ok(&confinement_probe(pid));
    let (r, a) = (probe(&reaper), probe(&app));
    for key in NAMESPACES
        .iter()
        .map(|n| format!("ns_{n}"))
        .chain(["cgroup", "caps", "nnp", "seccomp"].map(String::from))
    {
        assert_eq!(
            probe_field(&r, &key),
            probe_field(&a, &key),
            "{key} of berth's init differs from the app's\ninit:\n{r}\napp:\n{a}"
        );
    }
    let host_mnt = b.sh_ok("readlink /proc/self/ns/mnt");
    let host_net = b.sh_ok("readlink /proc/self/ns/net");
    assert_ne!(
        probe_field(&r, "ns_mnt"),
        host_mnt.trim(),
        "init in the host's mount namespace"
    );
    assert_ne!(
        probe_field(&r, "ns_net"),
        host_net.trim(),
        "init in the host's network namespace"
    );
    let roots = b.sh_ok(&format!(
        "readlink /proc/{reaper}/root; readlink /proc/{app}/root; ls /proc/{reaper}/root/"
    ));
    let lines: Vec<&str> = roots.lines().collect();
    assert_eq!(lines[0], lines[1], "init's root is not the app's:\n{roots}");
    assert!(
        lines.contains(&"bin"),
        "init's root is not the container's:\n{roots}"
    );
    println!(
        "from the box: init {reaper} and app {app}:\n{r}root {}",
        lines[0]
    );

    // From inside (with CAP_SYS_PTRACE, which reaches /proc/1 of a
    // non-dumpable init): /proc/1 is berth's init, in our namespaces, with our
    // root; the host's mounts are nowhere.
    let mut script = String::from("echo comm=$(cat /proc/1/comm); ");
    for ns in NAMESPACES {
        script.push_str(&format!(
            "echo {ns} $(readlink /proc/1/ns/{ns}) $(readlink /proc/self/ns/{ns}); "
        ));
    }
    script.push_str(&format!(
        "echo root=$(readlink /proc/1/root); test -e /proc/1/root{MARKER} && echo host-reachable; ls /proc/1/root/"
    ));
    let inside = b.sh_ok(&format!(
        "berth exec rp sh -c {}",
        support::systemd_box::shell_quote(&script)
    ));
    println!("from inside the container:\n{inside}");
    assert!(inside.contains("comm=berth:[init]"), "{inside}");
    for ns in NAMESPACES {
        let line = inside
            .lines()
            .find(|l| l.starts_with(&format!("{ns} ")))
            .unwrap_or_else(|| panic!("no {ns} line:\n{inside}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(
            f.len() == 3 && f[1] == f[2],
            "PID 1's {ns} namespace is not the container's: {line}\n{inside}"
        );
    }
    assert!(inside.contains("root=/\n"), "{inside}");
    assert!(!inside.contains("host-reachable"), "{inside}");
    assert!(inside.lines().any(|l| l == "bin"), "{inside}");
    // Without CAP_SYS_PTRACE, /proc/1 of the non-dumpable init is closed.
    let closed = b.sh_ok(
        "berth exec ri sh -c 'readlink /proc/1/ns/mnt || echo denied; ls /proc/1/root/ || echo denied' 2>&1",
    );
    println!("without CAP_SYS_PTRACE: {}", closed.trim());
    assert_eq!(
        closed.lines().filter(|l| *l == "denied").count(),
        2,
        "{closed}"
    );

    // The orphan was reaped: once it is done, the init's only child is the app.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = b
            .sh("berth exec ri test -f /tmp/orphan-done")
            .status
            .success();
        let children = b.sh_ok(&format!("cat /proc/{reaper}/task/*/children"));
        if done && children.split_whitespace().collect::<Vec<_>>() == vec![app.as_str()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the orphan was not reaped: init {reaper}'s children: {children} (app {app}, done {done})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Signals reach the app through the init.
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@ri",
        |t| t.contains("trapping"),
        Duration::from_secs(5),
    );
    b.sh_ok("systemctl kill --kill-whom=main -s HUP berth@ri");
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@ri",
        |t| t.contains("got-hup"),
        Duration::from_secs(5),
    );
    // And SIGTERM ends it at once (stop_timeout is 20 s): a clean stop.
    let t = Instant::now();
    b.sh_ok("systemctl stop berth@ri berth@rp");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    let result = b.sh_ok("systemctl show -p Result --value berth@ri");
    assert_eq!(result.trim(), "success");
    b.close().unwrap();
}
