//! End to end on a real systemd (issue 15, item 2): the container-side keys
//! as the container itself sees them, all in one box boot — `ulimits` in its
//! init's `/proc/1/limits`, `sysctls` in its `/proc/sys`, `devices` opening
//! (and with the permissions given) while a device not listed does not,
//! `shm_size` and `[[tmpfs]] options` in `/proc/self/mountinfo`, a `mask`ed
//! path empty and an `unmask`ed one readable, `group_add` in `id -G`; and a
//! device the host lacks stopping the start with an error that names it and
//! the definition.
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/root";

const KEYS: &str = r#"rootfs = "/srv/root"
command = ["sleep", "1000"]
[network]
mode = "none"
[[tmpfs]]
target = "/scratch"
size = "10M"
uid = 101
gid = 101
options = ["noexec", "nosuid", "nodev"]
[resources]
ulimits = { nofile = "4096:8192", nproc = "20000:40000" }
shm_size = "32M"
[security]
cap_add = ["MKNOD"]
devices = ["/dev/fuse", "/dev/net/tun:r"]
sysctls = { "net.ipv4.ip_unprivileged_port_start" = "80" }
mask = ["/etc/secret"]
unmask = ["/proc/timer_list"]
group_add = ["video", 4242]
[service]
stop_timeout = "1s"
"#;

const NODEV: &str = r#"rootfs = "/srv/root"
command = ["sleep", "1000"]
[network]
mode = "none"
[security]
devices = ["/dev/fuse", "/dev/berth-no-such-device"]
"#;

/// Run `script` in the running container `name` (`berth exec`, confined as
/// its init), returning stdout and stderr together.
fn in_container(b: &SystemdBox, name: &str, script: &str) -> String {
    let out = b.sh(&format!(
        "berth exec {name} sh -c {} 2>&1",
        support::systemd_box::shell_quote(script)
    ));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `mountinfo` whose mount point is `point`.
fn mount_line<'a>(mountinfo: &'a str, point: &str) -> &'a str {
    mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(point))
        .unwrap_or_else(|| panic!("no mount on {point} in\n{mountinfo}"))
}

#[test]
fn container_side_keys_as_the_container_sees_them() {
    require_root!();
    require_program!("nsenter");
    let opts = BoxOptions::default()
        .with_berth()
        .file("/etc/berth/containers/keys.toml", KEYS)
        .file("/etc/berth/containers/nodev.toml", NODEV);
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    std::fs::write(rootfs.path().join("etc/secret"), "top secret\n").unwrap();
    let group = std::fs::read_to_string(rootfs.path().join("etc/group")).unwrap();
    std::fs::write(rootfs.path().join("etc/group"), group + "video:x:44:\n").unwrap();
    b.copy_in(rootfs.path(), ROOTFS);
    b.sh_ok("berth check");
    b.sh_ok("systemctl start berth@keys");
    b.wait_for(
        "berth exec keys true && echo up",
        |t| t == "up",
        Duration::from_secs(20),
    );

    // ulimits: the container's init has them, soft and hard.
    let limits = in_container(&b, "keys", "cat /proc/1/limits");
    let row = |name: &str| -> Vec<String> {
        let l = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{limits}"));
        l[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("Max open files"), ["4096", "8192"], "{limits}");
    assert_eq!(row("Max processes"), ["20000", "40000"], "{limits}");

    // sysctls: written in the container's own network namespace.
    let port = in_container(
        &b,
        "keys",
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
    );
    assert_eq!(port.trim(), "80");
    let host_port = b.sh_ok("cat /proc/sys/net/ipv4/ip_unprivileged_port_start");
    assert_ne!(host_port.trim(), "80", "the box's own value changed");

    // devices: /dev/fuse opens read-write; /dev/net/tun was given read-only,
    // so it opens for reading and not for writing; a node of a device not
    // listed (loop0, made with mknod) does not open at all.
    // (`<>` would create a plain file where no node is: check the node first.)
    let fuse = in_container(
        &b,
        "keys",
        "test -c /dev/fuse && exec 3<>/dev/fuse && echo fuse-opened",
    );
    assert!(fuse.contains("fuse-opened"), "{fuse}");
    let tun = in_container(
        &b,
        "keys",
        "test -c /dev/net/tun && (exec 3</dev/net/tun && echo tun-read); (exec 3<>/dev/net/tun && echo tun-rw)",
    );
    assert!(tun.contains("tun-read"), "{tun}");
    assert!(!tun.contains("tun-rw"), "{tun}");
    assert!(tun.contains("Operation not permitted"), "{tun}");
    let other = in_container(
        &b,
        "keys",
        "mknod /dev/unlisted b 7 0 && (exec 3</dev/unlisted && echo unlisted-opened)",
    );
    assert!(!other.contains("unlisted-opened"), "{other}");
    assert!(other.contains("Operation not permitted"), "{other}");
    let nodes = in_container(&b, "keys", "ls -l /dev/fuse /dev/net/tun");
    assert!(nodes.contains("10,") && nodes.contains("229"), "{nodes}");
    assert!(nodes.contains("200"), "{nodes}");

    // shm_size and [[tmpfs]] options, in the container's mountinfo.
    let mountinfo = in_container(&b, "keys", "cat /proc/self/mountinfo");
    let shm = mount_line(&mountinfo, "/dev/shm");
    assert!(shm.contains("size=32768k"), "{shm}");
    let scratch = mount_line(&mountinfo, "/scratch");
    let flags = scratch.split(' ').nth(5).unwrap_or_default();
    for f in ["nosuid", "nodev", "noexec"] {
        assert!(flags.split(',').any(|x| x == f), "{f} missing: {scratch}");
    }
    for o in ["size=10240k", "uid=101", "gid=101"] {
        assert!(scratch.contains(o), "{o} missing: {scratch}");
    }

    // mask and unmask: the masked file reads empty, the unmasked default
    // (/proc/timer_list, masked by default) reads as the kernel writes it.
    let secret = in_container(&b, "keys", "cat /etc/secret; echo end");
    assert_eq!(secret.trim(), "end", "{secret}");
    let timers = in_container(&b, "keys", "head -1 /proc/timer_list");
    assert!(timers.starts_with("Timer List Version"), "{timers}");
    let kcore = in_container(&b, "keys", "wc -c < /proc/keys");
    assert_eq!(kcore.trim(), "0", "a default masked path stays masked");

    // group_add: by name from the image's /etc/group, and by number.
    let groups = in_container(&b, "keys", "id -G");
    let groups: Vec<&str> = groups.split_whitespace().collect();
    assert!(
        groups.contains(&"44") && groups.contains(&"4242"),
        "{groups:?}"
    );
    let status = in_container(&b, "keys", "grep ^Groups: /proc/1/status");
    assert!(status.contains("44") && status.contains("4242"), "{status}");

    // A device the host lacks: the start fails, naming it and the definition.
    let out = b.sh("systemctl start berth@nodev");
    assert!(!out.status.success(), "berth@nodev started");
    let journal = b.wait_for(
        "journalctl --sync; journalctl --no-pager -b -u berth@nodev",
        |t| t.contains("/dev/berth-no-such-device"),
        Duration::from_secs(20),
    );
    assert!(
        journal.contains(
            "device \"/dev/berth-no-such-device\" ([security] devices in /etc/berth/containers/nodev.toml)"
        ),
        "{journal}"
    );
    b.sh_ok("systemctl stop berth@keys");

    // The same keys from `berth run`'s flags, spelled as `docker run` spells
    // them, seen by the ad hoc container's own program.
    let out = b.sh_ok(concat!(
        "berth run --rm --rootfs /srv/root --network none ",
        "--ulimit nofile=2048:4096 --sysctl net.ipv4.ip_unprivileged_port_start=81 ",
        "--shm-size 16M --tmpfs /scratch:noexec,nosuid,size=1m --device /dev/fuse:r --device /dev/net ",
        "--group-add video --security-opt mask=/etc/secret ",
        "--security-opt unmask=/proc/timer_list ",
        "sh -c 'grep \"Max open files\" /proc/self/limits; ",
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; ",
        "grep -E \" /dev/shm | /scratch \" /proc/self/mountinfo; ",
        "test -c /dev/fuse && echo fuse-node; (exec 3<>/dev/fuse && echo fuse-rw); ",
        "test -c /dev/net/tun && echo tun-node-from-dir; ",
        "echo groups $(id -G); cat /etc/secret; echo secret-end; head -1 /proc/timer_list' 2>&1",
    ));
    let limits_line = out
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        limits_line
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>(),
        ["2048", "4096"],
        "{out}"
    );
    assert!(out.lines().any(|l| l == "81"), "{out}");
    assert!(
        mount_line(&out, "/dev/shm").contains("size=16384k"),
        "{out}"
    );
    let scratch = mount_line(&out, "/scratch");
    assert!(
        scratch.contains("noexec") && scratch.contains("size=1024k"),
        "{out}"
    );
    assert!(
        out.contains("fuse-node") && !out.contains("fuse-rw"),
        "{out}"
    );
    // A directory (/dev/net) gives every device node under it.
    assert!(out.contains("tun-node-from-dir"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("groups ") && l.split(' ').any(|g| g == "44")),
        "{out}"
    );
    assert!(out.contains("\nsecret-end"), "{out}");
    assert!(!out.contains("top secret"), "{out}");
    assert!(out.contains("Timer List Version"), "{out}");
    b.close().unwrap();
}
