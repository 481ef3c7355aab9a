//! End to end on a real systemd: the identity and storage keys of issue 15
//! as a user checks them. Labels in `berth inspect` and `berth ps --filter`;
//! `timezone` as the container reads /etc/localtime; an anonymous volume and
//! the image's VOLUME each a named volume that survives a restart and shows
//! in `berth volume ls`; a volume file of `type = "tmpfs"` mounted with its
//! options (seen in the container's mountinfo); `chown = true` (`:U`).
//! NFS, CIFS and block-device volume files are mounted by the supervisor and
//! need servers and a device of their own: tests/uml_volumes.rs (written
//! through, in a UML guest) and tests/e2e_volume_files.rs (failures, here).
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use reg::Member;
use support::systemd_box::{boot_berth, BoxOptions, SystemdBox};

/// busybox, and an image VOLUME at /imgvol seeded with a file; the last layer
/// twice.
fn write_layout(dir: &std::path::Path) {
    let base = vec![
        Member::Dir("etc/", 0o755, 0, 0),
        Member::Dir("imgvol/", 0o755, 0, 0),
        Member::File("imgvol/seed", b"from-the-image\n", 0o644, 0, 0),
    ];
    // One layer twice (as two RUN steps that changed nothing make): the
    // root and the volume seeded from the layers both take it once.
    let noop = vec![Member::Dir("etc/", 0o755, 0, 0)];
    reg::busybox_sh_layout(
        dir,
        base,
        &[noop.clone(), noop],
        serde_json::json!({"Volumes": {"/imgvol": {}}}),
    );
}

const TAIL: &str = "busybox echo probed; exec busybox sleep 1000";

fn definition(keys: &str, probe: &str) -> String {
    format!(
        "image = \"oci:/srv/img:1\"\ncommand = [\"{probe}; {TAIL}\"]\n{keys}\n[service]\nstop_timeout = \"1s\"\n"
    )
}

/// What `name` printed once it reached its probe's end.
fn probed(b: &SystemdBox, name: &str, after: &str) -> String {
    b.wait_for(
        &format!("journalctl --no-pager -o cat -u berth@{name} --after-cursor='{after}'"),
        |t| t.lines().any(|l| l == "probed") || t.contains("failed"),
        Duration::from_secs(20),
    )
}

/// The first word of an `md5sum` line.
fn sum(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or_default()
}

fn line<'a>(log: &'a str, key: &str) -> &'a str {
    log.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{log}"))
}

#[test]
fn labels_timezone_and_volumes_as_a_user_sees_them() {
    require_root!();
    require_program!("nsenter");
    let web = definition(
        "labels = { tier = \"web\" }\ntimezone = \"Europe/Berlin\"\n\
         [[volume]]\ntarget = \"/anon\"\n\
         [[volume]]\nsource = \"scratch\"\ntarget = \"/scratch\"\n",
        "busybox echo lt=$(busybox md5sum < /etc/localtime); busybox echo tz=[$TZ]; \
         busybox echo anon=$(busybox ls /anon | busybox tr '\\\\n' ' '); \
         busybox echo host > /anon/kept; \
         busybox echo img=$(busybox cat /imgvol/seed); \
         busybox echo scratch=$(busybox grep ' /scratch ' /proc/self/mountinfo)",
    );
    let db = definition(
        "labels = { tier = \"db\" }\ntimezone = \"local\"\n",
        "busybox echo lt=$(busybox md5sum < /etc/localtime)",
    );
    let plain = definition("", "busybox true");
    let cu = definition(
        "user = \"4321:4322\"\n[[volume]]\nsource = \"/run/cusrc\"\ntarget = \"/cu\"\nchown = true\n\
         [[volume]]\nsource = \"/run/propsrc\"\ntarget = \"/p\"\npropagation = \"rshared\"\n",
        "busybox echo owners=$(busybox stat -c %u:%g /cu /cu/sub /cu/sub/f); \
         busybox echo prop=$(busybox grep ' /p ' /proc/self/mountinfo)",
    );
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path());
    let b = boot_berth(
        BoxOptions::default().file(
            "/etc/berth/volumes/scratch.toml",
            "type = \"tmpfs\"\noptions = [\"size=4m\"]\nmode = \"0710\"\nuid = 7\n",
        ),
        &[("web", web), ("db", db), ("plain", plain), ("cu", cu)],
        layout.path(),
        "/srv/img",
    );
    b.sh_ok(
        "mkdir -p /run/propsrc /run/cusrc/sub && echo x > /run/cusrc/sub/f && ln -s /etc/shadow /run/cusrc/link",
    );
    b.sh_ok("berth check");
    let cursor = b.journal_cursor();
    let start = cursor.clone();
    b.sh_ok("systemctl start berth@web berth@db berth@plain berth@cu");

    // Labels: inspect shows them; ps filters on them.
    let inspect: serde_json::Value = serde_json::from_str(&b.sh_ok("berth inspect web")).unwrap();
    assert_eq!(inspect["labels"]["tier"], "web", "{inspect}");
    assert_eq!(inspect["definition"]["labels"]["tier"], "web");
    let names = |filter: &str| -> Vec<String> {
        b.sh_ok(&format!("berth ps -a --filter {filter}"))
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect()
    };
    assert_eq!(names("label=tier=web"), ["web"]);
    assert_eq!(names("label=tier"), ["db", "web"]);
    assert!(names("label=tier=cache").is_empty());
    assert!(!b.sh("berth ps --filter name=web").status.success());

    // timezone: the zone's bytes at /etc/localtime, TZ untouched.
    let log = probed(&b, "web", &cursor);
    let berlin = b.sh_ok("md5sum < /usr/share/zoneinfo/Europe/Berlin");
    assert_eq!(sum(line(&log, "lt=")), sum(&berlin), "{log}");
    assert_eq!(line(&log, "tz="), "[]");
    let dblog = probed(&b, "db", &cursor);
    let local = b.sh_ok("md5sum < /etc/localtime");
    assert_eq!(sum(line(&dblog, "lt=")), sum(&local), "{dblog}");
    assert_ne!(
        sum(&local),
        sum(&berlin),
        "pick a zone other than the box's own"
    );

    // A volume file of type tmpfs: mounted with its options.
    let scratch = line(&log, "scratch=");
    assert!(scratch.contains(" - tmpfs "), "{scratch}");
    for opt in ["size=4096k", "mode=710", "uid=7"] {
        assert!(scratch.contains(opt), "{opt} not in {scratch}");
    }

    // The anonymous volume and the image's VOLUME: named volumes, listed.
    assert_eq!(line(&log, "anon=").trim(), "");
    assert_eq!(line(&log, "img="), "from-the-image");
    let anon_names = |b: &SystemdBox| -> Vec<String> {
        let mut v: Vec<String> = b
            .sh_ok("berth volume ls")
            .lines()
            .filter(|l| l.contains("web"))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .filter(|n| n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit()))
            .collect();
        v.sort();
        v
    };
    let first = anon_names(&b);
    assert_eq!(first.len(), 2, "{}", b.sh_ok("berth volume ls"));
    // They survive a restart: the same names, the file written stays.
    let cursor = b.journal_cursor();
    b.sh_ok("systemctl restart berth@web");
    let log = probed(&b, "web", &cursor);
    assert_eq!(line(&log, "anon=").trim(), "kept", "{log}");
    assert_eq!(anon_names(&b), first);

    // chown = true: the source and all below it are the container user's;
    // the symlink planted there is changed itself, never its target.
    let culog = probed(&b, "cu", &start);
    assert_eq!(line(&culog, "owners="), "4321:4322 4321:4322 4321:4322");
    assert_eq!(b.sh_ok("stat -c %u /etc/shadow").trim(), "0");
    assert_eq!(b.sh_ok("stat -c %u:%g /run/cusrc/link").trim(), "4321:4322");

    // propagation = "rshared": the bind is a shared mount (a peer group of
    // its own, "shared:N" in mountinfo's optional fields).
    let prop = line(&culog, "prop=");
    assert!(prop.contains(" shared:"), "{prop}");

    b.sh_ok("systemctl stop berth@web berth@db berth@plain berth@cu");
}

/// `userns = "keep-id"` and explicit `uid_map`, as the container reads its
/// `/proc/self/uid_map`, and as the host sees what it wrote in a bind mount.
#[test]
fn keep_id_and_uid_map_as_the_container_sees_them() {
    require_root!();
    require_program!("nsenter");
    let kid = definition(
        "user = \"1000:1000\"\n[security]\nuserns = \"keep-id\"\n\
         [[volume]]\nsource = \"/run/kidsrc\"\ntarget = \"/k\"\n",
        "busybox echo uidmap=$(busybox cat /proc/self/uid_map | busybox tr -s ' \\\\n' ' '); \
         busybox echo id=$(busybox id -u):$(busybox id -g); busybox touch /k/by-kid",
    );
    let map = definition(
        "[security]\nuid_map = [\"0:300000:1000\", \"1000:1000:1\", \"1001:301001:64535\"]\n",
        "busybox echo uidmap=$(busybox cat /proc/self/uid_map | busybox tr -s ' \\\\n' ' '); \
         busybox echo gidmap=$(busybox cat /proc/self/gid_map | busybox tr -s ' \\\\n' ' ')",
    );
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path());
    let b = boot_berth(
        BoxOptions::default(),
        &[("kid", kid), ("map", map)],
        layout.path(),
        "/srv/img",
    );
    // As tests/e2e_userns.rs: keep-id and uid_map containers mount a proc.
    b.allow_userns_proc();
    b.sh_ok("mkdir -p /run/kidsrc && chown 1000:1000 /run/kidsrc");
    let cursor = b.journal_cursor();
    b.sh_ok("systemctl start berth@kid berth@map");

    let log = probed(&b, "kid", &cursor);
    let start = b.sh_ok("ls /run/berth/userns").trim().to_string();
    let s: u64 = start
        .parse()
        .unwrap_or_else(|_| panic!("no range: {start:?}"));
    let want = format!("0 {s} 1000 1000 1000 1 1001 {} 64535", s + 1001);
    assert_eq!(line(&log, "uidmap=").trim(), want, "{log}");
    assert_eq!(line(&log, "id="), "1000:1000");
    // What the kept user wrote is the host's uid 1000's.
    assert_eq!(
        b.sh_ok("stat -c %u:%g /run/kidsrc/by-kid").trim(),
        "1000:1000"
    );

    let log = probed(&b, "map", &cursor);
    let want = "0 300000 1000 1000 1000 1 1001 301001 64535";
    assert_eq!(line(&log, "uidmap=").trim(), want, "{log}");
    assert_eq!(line(&log, "gidmap=").trim(), want, "{log}");
    b.sh_ok("systemctl stop berth@kid berth@map");
}
