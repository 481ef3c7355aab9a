//! Crash cleanup at every step of a service-mode start, on a real systemd:
//! for each crash point of `src/fault.rs` — while pulling, seeding a named
//! volume, making the overlay dirs, setting up cgroups, allocating a `userns = "auto"` range, while the init sets itself up, after creating the container — the
//! supervisor is SIGKILLed there (`BERTH_TEST_KILL_AT`, set in a unit drop-in).
//! After `ExecStopPost=berth cleanup` nothing the start made may be left but
//! what the next start reclaims; after the next start and a stop, nothing at
//! all: no mount, cgroup, process, run dir, upper dir, ID range, seeding temp
//! dir or half-pulled layer.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use reg::{Layout, Member};
use support::systemd_box::{BoxOptions, SystemdBox};

/// Every feature whose start step has a crash point: an image pulled from a
/// registry, a named volume seeded from it, a private ID range; and berth's
/// init, which is the container's own process.
fn definition(top: &str, tables: &str) -> String {
    format!(
        "image = \"127.0.0.1:5000/crash/app:1\"\n{top}\n\
         command = [\"/bin/sh\", \"-c\", \"echo up-$(cat /data/seed); exec sleep 1000\"]\n\
         [[volume]]\nsource = \"data\"\ntarget = \"/data\"\n\
         [service]\nstop_timeout = \"1s\"\n{tables}\n"
    )
}

/// Three layers, so that a kill after the first one finds the pull unfinished.
fn write_layout(dir: &std::path::Path) {
    let mut layout = Layout::new(dir);
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    let base = reg::tar_of(&[
        Member::Dir("bin/", 0o755, 0, 0),
        Member::File("bin/busybox", busybox, 0o755, 0, 0),
        Member::Symlink("bin/sh", "busybox"),
        Member::Symlink("bin/cat", "busybox"),
        Member::Symlink("bin/sleep", "busybox"),
    ]);
    let data = reg::tar_of(&[
        Member::Dir("data/", 0o755, 0, 0),
        Member::File("data/seed", b"seeded\n", 0o644, 0, 0),
    ]);
    let filler: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let big = reg::tar_of(&[Member::BigFile("filler", filler)]);
    let built = layout.image(
        &[base, data, big],
        "amd64",
        serde_json::json!({"Env": ["PATH=/bin"]}),
    );
    layout.tag(&built, "1");
}

/// What a start can leave in the box, one `what: detail` line each; empty
/// when nothing is there. `mounts_before` is the box's mount list before any
/// start.
const LEFTOVERS: &str = r#"
u=berth@$NAME.service
cg=/sys/fs/cgroup/berth.slice/$u
if [ -d $cg ]; then
    find $cg -mindepth 1 -type d | sed 's/^/cgroup: /'
    for f in $(find $cg -name cgroup.procs); do sed "s|^|process in $f: |" $f; done
fi
[ -e /run/berth/containers/$NAME ] && echo "run dir: $(ls -A /run/berth/containers/$NAME | tr '\n' ' ')"
[ -e /var/lib/berth/containers/$NAME ] && echo "overlay dirs: $(ls -A /var/lib/berth/containers/$NAME | tr '\n' ' ')"
grep -lx $NAME /run/berth/userns/* 2>/dev/null | sed 's/^/ID range: /'
ls -A /var/lib/berth/volumes/data 2>/dev/null | grep -v '^_data$' | sed 's/^/volume temp: /'
for d in /var/lib/berth/blobs/sha256 /var/lib/berth/layers/sha256; do
    ls -A $d 2>/dev/null | grep '^\.tmp-' | sed "s|^|store temp in $d: |"
done
cut -d' ' -f5 /proc/self/mountinfo | sort > /run/mounts.now
comm -13 /run/mounts.before /run/mounts.now | sed 's/^/mount: /'
pgrep -f "^/usr/bin/berth run --systemd $NAME\$" | sed 's/^/supervisor: /'
ip -o link show type veth | sed 's/^/veth: /'
ip -o link show type bridge | sed 's/^/bridge: /'
grep -rlx $NAME /run/berth/leases 2>/dev/null | sed 's/^/lease: /'
nft list table inet berth 2>/dev/null | grep 'elements' | sed 's/^/nft: /'
true
"#;

fn leftovers(b: &SystemdBox, name: &str) -> String {
    b.sh_ok(&format!("NAME={name}\n{LEFTOVERS}"))
}

/// The unit, started with `BERTH_TEST_KILL_AT=point` (or none), has
/// stopped: not activating, active or deactivating.
fn settled(b: &SystemdBox, name: &str) {
    b.wait_until(
        &format!("s=$(systemctl show -p ActiveState --value berth@{name}.service); [ $s = failed ] || [ $s = inactive ]"),
        Duration::from_secs(30),
    );
}

fn kill_at(b: &SystemdBox, name: &str, point: Option<&str>) {
    let dropin = format!("/run/systemd/system/berth@{name}.service.d/90-crash.conf");
    match point {
        Some(p) => b.write_file(
            &dropin,
            format!("[Service]\nEnvironment=BERTH_TEST_KILL_AT={p}\n").as_bytes(),
        ),
        None => {
            b.sh_ok(&format!("rm -f {dropin}"));
        }
    }
    b.sh_ok("systemctl daemon-reload");
}

#[test]
fn a_supervisor_killed_at_any_start_step_leaves_nothing_behind() {
    require_root!();
    for prog in ["nsenter", "skopeo", "docker-registry", "curl"] {
        require_program!(prog);
    }
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file(
                "/etc/berth/berth.toml",
                "[[registry]]\nhost = \"127.0.0.1:5000\"\ninsecure = true\n",
            )
            .file(
                "/etc/berth/containers/crash.toml",
                definition(
                    "init = true",
                    "[security]\nuserns = \"auto\"\n[network]\npublish = [\"8085:80\"]",
                ),
            ),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path());
    b.copy_in(layout.path(), "/srv/layout");
    // As in tests/e2e_userns.rs: the box's systemd overmounts /proc/sys
    // read-only, which a host does not, and a user namespace's new proc
    // would be refused under it.
    b.sh_ok("umount -l /proc/sys/net; umount -l /proc/sys");
    b.serve_registry();
    b.sh_ok("skopeo copy --quiet --dest-tls-verify=false oci:/srv/layout:1 docker://127.0.0.1:5000/crash/app:1");
    b.sh_ok("cut -d' ' -f5 /proc/self/mountinfo | sort > /run/mounts.before");

    for point in berth::fault::POINTS {
        // Each point must be reached: the pull only when the image is
        // missing, the seeding only when the volume is.
        match *point {
            "pull-layer" => {
                b.sh_ok("rm -rf /var/lib/berth/blobs /var/lib/berth/layers /var/lib/berth/refs");
            }
            "seed" => {
                b.sh_ok("rm -rf /var/lib/berth/volumes/data");
            }
            _ => {}
        }
        let name = "crash";
        kill_at(&b, name, Some(point));
        let cursor = b.journal_cursor();
        let started = b.sh(&format!("systemctl start berth@{name}.service"));
        assert!(!started.status.success(), "{point}: the start should fail");
        settled(&b, name);
        let show = b.show(
            &format!("berth@{name}.service"),
            "Result,ExecMainStatus,ExecMainCode",
        );
        // CLD_KILLED (2) by SIGKILL (9): the supervisor died at the point.
        assert_eq!(
            (
                show["ExecMainCode"].as_str(),
                show["ExecMainStatus"].as_str()
            ),
            ("2", "9"),
            "{point}: the supervisor was not SIGKILLed: {show:?}\n{}",
            b.journal_after(&cursor)
        );
        // What only the next start reclaims: a pull's and a seeding's temp
        // entries (they are not recorded before they exist).
        let left: Vec<String> = leftovers(&b, name)
            .lines()
            .filter(|l| !l.starts_with("store temp") && !l.starts_with("volume temp"))
            .map(str::to_string)
            .collect();
        assert!(
            left.is_empty(),
            "{point}: left after ExecStopPost:\n{}\n{}",
            left.join("\n"),
            b.journal_after(&cursor)
        );

        // The next start works, and after a stop nothing at all is left.
        kill_at(&b, name, None);
        b.sh_ok(&format!("systemctl reset-failed berth@{name}.service"));
        let cursor = b.journal_cursor();
        b.sh_ok(&format!("systemctl start berth@{name}.service"));
        b.wait_for(
            &format!(
                "journalctl --no-pager -o cat -u berth@{name}.service --after-cursor='{cursor}'"
            ),
            |t| t.contains("up-seeded"),
            Duration::from_secs(30),
        );
        b.sh_ok(&format!("systemctl stop berth@{name}.service"));
        settled(&b, name);
        let left = leftovers(&b, name);
        assert!(
            left.trim().is_empty(),
            "{point}: left after the next start and a stop:\n{left}\n{}",
            b.journal_after(&cursor)
        );
    }

    // `berth cleanup` keeps going after a failing step and reports every
    // error: an immutable file in the upper and one in the work dir stop
    // their removal, and the cgroups, the run dir and the ID range still go.
    b.sh_ok("systemctl start berth@crash.service");
    for d in ["upper", "work"] {
        b.sh_ok(&format!(
            "touch /var/lib/berth/containers/crash/{d}/stuck && chattr +i /var/lib/berth/containers/crash/{d}/stuck"
        ));
    }
    let cursor = b.journal_cursor();
    b.sh_ok("systemctl stop berth@crash.service");
    settled(&b, "crash");
    let out = b.sh("berth cleanup crash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "cleanup should fail: {err}");
    for d in ["upper", "work"] {
        assert!(
            err.contains(&format!("/var/lib/berth/containers/crash/{d}")),
            "the {d} dir's error is not reported: {err}\n{}",
            b.journal_after(&cursor)
        );
    }
    let left = leftovers(&b, "crash");
    assert_eq!(
        left.trim(),
        "overlay dirs: upper work",
        "cleanup did not go on past the failing steps"
    );
    b.sh_ok("chattr -i /var/lib/berth/containers/crash/upper/stuck /var/lib/berth/containers/crash/work/stuck");
    b.sh_ok("berth cleanup crash");
    let left = leftovers(&b, "crash");
    assert!(left.trim().is_empty(), "{left}");
}
