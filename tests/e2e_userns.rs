//! End to end on a real systemd: `userns = "auto"` gives each container a
//! private range of 65536 host IDs, recorded in /run/berth/userns, with the
//! image's layers (from the store, shared, owned by host root) appearing
//! owned by the container's root through idmapped overlay lowers, and the
//! range released when the unit stops (ExecStopPost=berth cleanup).
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use reg::Member;
use support::systemd_box::{boot_berth, BoxOptions, SystemdBox};

const SIZE: u64 = 65536;

/// busybox and a few applet links, all owned by 0:0 in the layer.
fn write_layout(dir: &std::path::Path) {
    let base = vec![
        Member::Dir("opq/", 0o755, 0, 0),
        Member::File("opq/old", b"hidden by the top layer\n", 0o644, 0, 0),
        Member::Dir("data/", 0o755, 0, 0),
        Member::File("data/f", b"lower\n", 0o644, 0, 0),
    ];
    let top = vec![
        Member::Dir("etc/", 0o755, 0, 0),
        Member::File("etc/motd", b"from-the-image\n", 0o644, 0, 0),
        // An opaque dir: only `new` is visible (overlayfs reads its
        // trusted.overlay.opaque, which needs a host-built overlay).
        Member::Dir("opq/", 0o755, 0, 0),
        Member::File("opq/.wh..wh..opq", b"", 0o644, 0, 0),
        Member::File("opq/new", b"top\n", 0o644, 0, 0),
        // Seeds the named volume.
        Member::Dir("vol/", 0o755, 1000, 1000),
        Member::File("vol/seed", b"seed\n", 0o644, 1000, 1000),
    ];
    reg::busybox_sh_layout(dir, base, &[top], serde_json::json!({}));
}

/// Prints what the container sees, writes a file, then stays up.
const PROBE: &str = "busybox echo map=$(busybox cat /proc/self/uid_map); \
busybox echo uid=$(busybox id -u); \
busybox echo owner=$(busybox stat -c %u:%g /bin/busybox /etc/motd); \
busybox echo opq=$(busybox ls /opq); \
busybox rm -rf /data && busybox mkdir /data && busybox echo remade=$(busybox ls -A /data); \
busybox echo vol=$(busybox stat -c %u:%g /vol/seed /etc/hosts /bindv/host-file); \
busybox touch /vol/by-$(busybox hostname) /bindv/by-$(busybox hostname) && busybox echo volwrote; \
busybox echo in-container > /written && busybox echo wrote; \
exec busybox sleep 1000";

fn definition() -> String {
    format!(
        "image = \"oci:/srv/img:1\"\ncommand = [\"{PROBE}\"]\n[security]\nuserns = \"auto\"\n[[volume]]\nsource = \"shared\"\ntarget = \"/vol\"\n[[volume]]\nsource = \"/run/bindsrc\"\ntarget = \"/bindv\"\n[service]\nstop_timeout = \"1s\"\n"
    )
}

/// The host start of the container's range, from what it printed.
fn started(b: &SystemdBox, name: &str) -> u64 {
    let log = b.wait_for(
        &format!("journalctl --no-pager -b -o cat -u berth@{name}"),
        |t| t.lines().any(|l| l == "wrote") || t.contains("failed"),
        Duration::from_secs(20),
    );
    let map = log
        .lines()
        .find_map(|l| l.strip_prefix("map="))
        .unwrap_or_else(|| panic!("no uid_map line:\n{log}"));
    let f: Vec<u64> = map.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(f.len(), 3, "{map}");
    assert_eq!((f[0], f[2]), (0, SIZE), "uid_map of {name}: {map}\n{log}");
    assert!(log.lines().any(|l| l == "uid=0"), "{log}");
    // The image's files (host root on disk) are the container root's.
    assert!(log.lines().any(|l| l == "owner=0:0 0:0"), "{log}");
    // The image's opaque dir hides the lower one; a lower dir removed and
    // made again is a fresh, empty (opaque) dir in the upper.
    assert!(log.lines().any(|l| l == "opq=new"), "{log}");
    assert!(log.lines().any(|l| l == "remade="), "{log}");
    // Volumes (named, seeded from the image; bind) and the /etc files are
    // idmapped binds: owners as on the host, to every container alike.
    assert!(log.lines().any(|l| l == "vol=1000:1000 0:0 0:0"), "{log}");
    assert!(log.lines().any(|l| l == "volwrote"), "{log}");
    f[1]
}

#[test]
fn auto_userns_gives_each_container_its_own_range_and_idmapped_image() {
    require_root!();
    require_program!("nsenter");
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path());
    let b = boot_berth(
        BoxOptions::default(),
        &[
            ("ua", definition()),
            ("ub", definition()),
            ("uc", definition()),
        ],
        layout.path(),
        "/srv/img",
    );
    b.allow_userns_proc();
    b.sh_ok("mkdir -p /run/bindsrc && touch /run/bindsrc/host-file");
    // Both at once: two first uses of one named volume race to seed it; the
    // one that loses the rename takes the winner's copy.
    b.sh_ok("systemctl start berth@ua berth@ub");
    let a = started(&b, "ua");
    let bb = started(&b, "ub");
    assert_ne!(a, bb);
    assert!(a.abs_diff(bb) >= SIZE, "ranges overlap: {a} and {bb}");
    for (name, start) in [("ua", a), ("ub", bb)] {
        assert!(
            start >= 0x10000 * 16,
            "{name}: {start} is in the host's own IDs"
        );
        // Recorded: the file named after the start names the container.
        assert_eq!(
            b.sh_ok(&format!("cat /run/berth/userns/{start}")).trim(),
            name
        );
        // The file the container wrote is owned by the range's root on disk.
        assert_eq!(
            b.sh_ok(&format!(
                "stat -c %u:%g /var/lib/berth/containers/{name}/upper/written"
            ))
            .trim(),
            format!("{start}:{start}")
        );
        // Its process runs as the range's root on the host.
        let cg = b.sh_ok(&format!(
            "systemctl show -p ControlGroup --value berth@{name}"
        ));
        let pid = b.sh_ok(&format!(
            "head -n 1 /sys/fs/cgroup{}/payload/cgroup.procs",
            cg.trim()
        ));
        let uid = b.sh_ok(&format!("grep '^Uid:' /proc/{}/status", pid.trim()));
        let want = format!("Uid:\t{start}\t{start}\t{start}\t{start}");
        assert_eq!(uid.trim(), want);
    }
    // What the containers' root wrote into volumes is host root's on disk.
    assert_eq!(
        b.sh_ok("stat -c %n=%u:%g /var/lib/berth/volumes/shared/_data/by-ua /run/bindsrc/by-ub"),
        "/var/lib/berth/volumes/shared/_data/by-ua=0:0\n/run/bindsrc/by-ub=0:0\n"
    );
    // The shared layers themselves stay owned by host root.
    let layer_owners = b.sh_ok("stat -c %u /var/lib/berth/layers/sha256/*/bin/busybox | sort -u");
    assert_eq!(layer_owners.trim(), "0");

    // A third container while both run: a third, distinct range.
    b.sh_ok("systemctl start berth@uc");
    let c = started(&b, "uc");
    for other in [a, bb] {
        assert!(c.abs_diff(other) >= SIZE, "{c} overlaps {other}");
    }
    assert_eq!(b.sh_ok("ls /run/berth/userns | sort -n").trim(), {
        let mut v = [a, bb, c];
        v.sort();
        v.map(|x| x.to_string()).join("\n")
    });

    // Stopping releases the range (ExecStopPost=berth cleanup): the file goes,
    // the others stay, and the next start may take it again.
    b.sh_ok("systemctl stop berth@ua");
    b.wait_for(
        &format!("test -e /run/berth/userns/{a} && echo kept || echo gone"),
        |t| t == "gone",
        Duration::from_secs(10),
    );
    b.sh_ok(&format!(
        "test -e /run/berth/userns/{bb} && test -e /run/berth/userns/{c}"
    ));
    b.sh_ok("systemctl stop berth@ub berth@uc");
    b.wait_for(
        "ls /run/berth/userns",
        |t| t.is_empty(),
        Duration::from_secs(10),
    );
}
