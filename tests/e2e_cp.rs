//! End to end on a real systemd: `berth cp` in and out of running declared
//! containers (files, directories, tar on stdout, owners with and without
//! `-a` across a `userns = "auto"` mapping), the attacks a hostile container
//! can try on it (a planted `/tmp/x -> /etc`, a link to the host's secret,
//! symlinks swapped during the copy), and `berth commit` of a container that
//! created, changed and deleted files, run again as an image.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use reg::Member;
use support::systemd_box::{boot_berth, BoxOptions, SystemdBox};

/// Two layers: busybox, a lower dir and file, then /etc/motd and an opaque dir.
fn write_layout(dir: &std::path::Path) {
    let base = vec![
        Member::Dir("opq/", 0o755, 0, 0),
        Member::File("opq/old", b"hidden by the top layer\n", 0o644, 0, 0),
        Member::Dir("data/", 0o755, 0, 0),
        Member::File("data/f", b"lower\n", 0o644, 0, 0),
        Member::Dir("tmp/", 0o1777, 0, 0),
        Member::Dir("srv/", 0o755, 0, 0),
    ];
    let top = vec![
        Member::Dir("etc/", 0o755, 0, 0),
        Member::File("etc/motd", b"from-the-image\n", 0o644, 0, 0),
        Member::Dir("opq/", 0o755, 0, 0),
        Member::File("opq/.wh..wh..opq", b"", 0o644, 0, 0),
        Member::File("opq/new", b"top\n", 0o644, 0, 0),
    ];
    reg::busybox_sh_layout(dir, base, &[top], serde_json::json!({}));
}

/// Plants links naming the box's (the host's) paths, then swaps two names
/// between a real node and such a link as fast as it can.
const HOSTILE: &str = "busybox echo container-shadow > /etc/shadow; \
busybox ln -s /etc /tmp/x; busybox ln -s /etc/shadow /link; \
(while :; do busybox rm -rf /tmp/r; busybox mkdir /tmp/r; busybox rm -rf /tmp/r; busybox ln -s /srv/hostdir /tmp/r; done) & \
(while :; do busybox echo container-o > /tmp/o.n; busybox mv /tmp/o.n /tmp/o; busybox ln -sfn /srv/hostsecret /tmp/o; done) & \
busybox echo planted; exec busybox sleep 1000";

/// Creates, changes and deletes files (also in the image's opaque dir).
const CHANGER: &str = "busybox echo new > /new; busybox echo changed > /data/f; \
busybox rm /etc/motd; busybox rm -rf /opq; busybox mkdir /opq; busybox echo fresh > /opq/only; \
busybox echo planted; exec busybox sleep 1000";

fn def(script: &str, extra: &str) -> String {
    format!(
        "image = \"oci:/srv/img:1\"\ncommand = [\"{script}\"]\n{extra}[service]\nstop_timeout = \"1s\"\n"
    )
}

fn started(b: &SystemdBox, name: &str) {
    b.wait_for(
        &format!("journalctl --no-pager -b -o cat -u berth@{name}"),
        |t| t.lines().any(|l| l == "planted") || t.contains("failed"),
        Duration::from_secs(20),
    );
}

/// (exit code, stdout, stderr).
fn run(b: &SystemdBox, script: &str) -> (i32, String, String) {
    let o = b.sh(script);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn attacks(b: &SystemdBox) {
    // The planted `/tmp/x -> /etc`: the file lands in the container's /etc.
    b.sh_ok("echo payload > /srv/file && berth cp /srv/file cpc:/tmp/x/");
    assert_eq!(
        b.sh("test -e /etc/file && echo HOST || echo clean").stdout,
        b"clean\n",
        "berth cp wrote through the container's link into the host's /etc"
    );
    assert_eq!(b.sh_ok("berth exec cpc busybox cat /etc/file"), "payload\n");
    // `/link -> /etc/shadow`: with -L the container's file; without, the link.
    b.sh_ok("cd /srv && berth cp -L cpc:/link shadow-L && berth cp cpc:/link shadow-link");
    assert_eq!(b.sh_ok("cat /srv/shadow-L"), "container-shadow\n");
    assert_eq!(b.sh_ok("readlink /srv/shadow-link"), "/etc/shadow\n");
    // Races: `/tmp/r` flips between a directory and a link to the host's
    // /srv/hostdir; `/tmp/o` between a file and a link to /srv/hostsecret.
    b.sh_ok(
        "mkdir -p /srv/hostdir /srv/payload/sub && echo host-secret > /srv/hostsecret && \
             for i in 1 2 3 4 5 6 7 8; do echo $i > /srv/payload/sub/f$i; done",
    );
    let mut landed = 0;
    let mut read = 0;
    for i in 0..40 {
        let (code, _, err) = run(b, "berth cp /srv/payload cpc:/tmp/r/");
        landed += (code == 0) as u32;
        assert!(code == 0 || err.contains("berth: error"), "{err}");
        let (code, _, _) = run(b, &format!("berth cp -L cpc:/tmp/o /srv/o{i}"));
        if code == 0 {
            read += 1;
            let got = b.sh_ok(&format!("cat /srv/o{i}"));
            assert_eq!(got, "container-o\n", "copy {i} read {got:?}");
        }
    }
    eprintln!("race: {landed} copies in and {read} copies out completed");
    assert_eq!(
        b.sh_ok("ls -A /srv/hostdir"),
        "",
        "a copy in followed the swapped link"
    );
}

fn copies(b: &SystemdBox) {
    // A directory in and back out, and as a tar stream.
    b.sh_ok("berth cp /srv/payload cpc:/srv/");
    assert_eq!(
        b.sh_ok("berth exec cpc busybox cat /srv/payload/sub/f3"),
        "3\n"
    );
    b.sh_ok("berth cp cpc:/srv/payload /srv/back && diff -r /srv/payload /srv/back");
    let names = b.sh_ok("berth cp cpc:/srv/payload - | tar t | sort | head -3");
    assert_eq!(names, "payload/\npayload/sub/\npayload/sub/f1\n");
    b.sh_ok("berth exec cpc busybox mkdir /srv/fromtar && tar c -C /srv payload | berth cp - cpc:/srv/fromtar");
    assert_eq!(
        b.sh_ok("berth exec cpc busybox cat /srv/fromtar/payload/sub/f8"),
        "8\n"
    );
    // Bad input: both sides local, an unknown container, a missing dir.
    let (code, _, err) = run(b, "berth cp /srv/file /srv/file2");
    assert_ne!(code, 0);
    assert!(err.contains("must be NAME:PATH"), "{err}");
    let (code, _, err) = run(b, "berth cp /srv/file nosuch:/tmp");
    assert_ne!(code, 0, "{err}");
    let (code, _, err) = run(b, "berth cp /srv/file cpc:/nope/");
    assert_ne!(code, 0);
    assert!(err.contains("must exist"), "{err}");
}

fn owners(b: &SystemdBox) {
    b.sh_ok("echo owned > /srv/owned && chown 1000:1000 /srv/owned");
    b.sh_ok("berth cp /srv/owned cpu:/tmp/ && berth cp -a /srv/owned cpu:/tmp/owned-a");
    assert_eq!(
        b.sh_ok("berth exec cpu busybox stat -c %u:%g /tmp/owned /tmp/owned-a"),
        "0:0\n1000:1000\n"
    );
    // On disk, the range's IDs (the container's root is its first).
    let start: u64 = b
        .sh_ok("cat /proc/$(systemctl show -p MainPID --value berth@cpu)/status >/dev/null; ls /run/berth/userns")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        b.sh_ok("stat -c %u:%g /var/lib/berth/containers/cpu/upper/tmp/owned /var/lib/berth/containers/cpu/upper/tmp/owned-a"),
        format!("{start}:{start}\n{}:{}\n", start + 1000, start + 1000)
    );
    // Out: with -a as the container sees them, without as the caller.
    b.sh_ok("berth cp -a cpu:/tmp/owned-a /srv/oa && berth cp cpu:/tmp/owned-a /srv/ob");
    assert_eq!(b.sh_ok("stat -c %u:%g /srv/oa /srv/ob"), "1000:1000\n0:0\n");
}

/// The config of the image a ref file names, read from the store.
fn stored_config(b: &SystemdBox, ref_file: &str) -> serde_json::Value {
    let config = b.sh_ok(&format!(
        "d=$(cat /var/lib/berth/refs/{ref_file} | cut -c8-); \
         c=$(python3 -c \"import json,sys; print(json.load(open('/var/lib/berth/blobs/sha256/$d'))['config']['digest'][7:])\"); \
         cat /var/lib/berth/blobs/sha256/$c"
    ));
    serde_json::from_str(&config).unwrap()
}

/// A `userns = "auto"` container's commit: owners as the container saw
/// them (its upper dir holds its range's host IDs).
fn commit_userns(b: &SystemdBox) {
    b.sh_ok("berth commit cpu localhost/cpu:1");
    let v = stored_config(b, "localhost%2Fcpu:1");
    let top = v["rootfs"]["diff_ids"][2].as_str().unwrap()[7..].to_string();
    assert_eq!(
        b.sh_ok(&format!(
            "stat -c %n=%u:%g /var/lib/berth/layers/sha256/{top}/tmp/owned /var/lib/berth/layers/sha256/{top}/tmp/owned-a | sed 's|.*/||'"
        )),
        "owned=0:0\nowned-a=1000:1000\n"
    );
}

fn commit(b: &SystemdBox) {
    // Bad input: an instruction --change cannot apply, a container that
    // does not run; neither leaves an image.
    let (code, _, err) = run(b, "berth commit -c 'RUN rm -rf /' cm localhost/bad:1");
    assert_ne!(code, 0);
    assert!(err.contains("'RUN' cannot be changed"), "{err}");
    let (code, _, err) = run(b, "berth commit after localhost/bad:1");
    assert_ne!(code, 0);
    assert!(err.contains("not running"), "{err}");
    assert!(!b.sh_ok("berth images").contains("localhost/bad"));
    let out = b.sh_ok("berth commit -m 'my change' -c 'ENV COMMITTED=yes' cm localhost/cm:1");
    assert!(out.starts_with("localhost/cm:1 sha256:"), "{out}");
    let images = b.sh_ok("berth images");
    assert!(images.contains("localhost/cm"), "{images}");
    // The history entry and the new layer's diff id, in the stored config.
    let v = stored_config(b, "localhost%2Fcm:1");
    assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["history"].as_array().unwrap().last().unwrap()["comment"],
        "my change"
    );
    // The new layer: the changes, the deletion as a whiteout, and none of
    // the files berth mounts over (hosts, hostname, resolv.conf), which the
    // start made in the upper dir as empty mount points.
    let top = v["rootfs"]["diff_ids"][2].as_str().unwrap()[7..].to_string();
    assert_eq!(
        b.sh_ok(&format!(
            "cd /var/lib/berth/layers/sha256/{top} && ls -A etc && find . -type f | sort"
        )),
        "motd\n./data/f\n./new\n./opq/only\n"
    );
    // The new image, run: the changes there, the deleted file gone.
    let (code, _, err) = run(b, "systemctl start berth@after");
    assert_eq!(
        code,
        0,
        "{err}\n{}",
        b.sh(
            "journalctl --no-pager -b -o cat -u berth@after | tail -20; systemctl cat berth@after"
        )
        .stdout
        .escape_ascii()
    );
    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@after",
        |t| t.contains("end-of-probe") || t.contains("failed"),
        Duration::from_secs(20),
    );
    for want in ["new", "changed", "motd=gone", "opq=only", "env=yes"] {
        assert!(log.lines().any(|l| l == want), "{want} missing:\n{log}");
    }
    let (code, out, err) = run(
        b,
        "berth run --rm --network none localhost/cm:1 'busybox cat /new; busybox ls /etc'",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("new\n") && !out.contains("motd"), "{out}");
}

#[test]
fn cp_and_commit_on_real_systemd() {
    require_root!();
    require_program!("nsenter");
    let probe = "busybox cat /new; busybox cat /data/f; \
        busybox test -e /etc/motd && busybox echo motd=there || busybox echo motd=gone; \
        busybox echo opq=$(busybox ls /opq); busybox echo env=$COMMITTED; busybox echo end-of-probe; \
        exec busybox sleep 1000";
    let after =
        "image = \"localhost/cm:1\"\ncommand = [\"PROBE\"]\n[service]\nstop_timeout = \"1s\"\n"
            .replace("PROBE", probe);
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path());
    let b = boot_berth(
        BoxOptions::default(),
        &[
            ("cpc", def(HOSTILE, "")),
            (
                "cpu",
                def(
                    "busybox echo planted; exec busybox sleep 1000",
                    "[security]\nuserns = \"auto\"\n",
                ),
            ),
            ("cm", def(CHANGER, "")),
            ("after", after),
        ],
        layout.path(),
        "/srv/img",
    );
    // As in e2e_userns: the containers with userns = "auto" mount a proc.
    b.allow_userns_proc();
    b.sh_ok("systemctl start berth@cpc berth@cpu berth@cm");
    for n in ["cpc", "cpu", "cm"] {
        started(&b, n);
    }
    attacks(&b);
    copies(&b);
    owners(&b);
    commit(&b);
    commit_userns(&b);
    b.sh_ok("systemctl stop berth@cpc berth@cpu berth@cm berth@after");
}
