//! End to end on a real systemd, from an image instead of a rootfs dir: an OCI
//! layout (two layers, a config with Entrypoint, Cmd, Env, WorkingDir and a
//! named User) is loaded into the store by the first start (`pull =
//! "missing"`), and the container runs as the image says, with the
//! definition's overrides applied the Docker way.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use reg::{Layout, Member};
use support::systemd_box::{BoxOptions, SystemdBox};

/// busybox in one layer; a user `app` (1000:1000), its working dir and
/// a few applet links in a second one.
fn write_layout(dir: &std::path::Path) {
    let layout = Layout::new(dir);
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    let base = reg::tar_of(&[
        Member::Dir("bin/", 0o755, 0, 0),
        Member::File("bin/busybox", busybox, 0o755, 0, 0),
        Member::Symlink("bin/sh", "busybox"),
    ]);
    let app = reg::tar_of(&[
        Member::Dir("etc/", 0o755, 0, 0),
        Member::File(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            0o644,
            0,
            0,
        ),
        Member::File("etc/group", b"root:x:0:\napp:x:1000:\n", 0o644, 0, 0),
        Member::Dir("app/", 0o750, 1000, 1000),
        Member::File("app/seed.txt", b"seeded-from-image\n", 0o640, 1000, 1000),
        Member::Symlink("bin/id", "busybox"),
        Member::Symlink("bin/echo", "busybox"),
    ]);
    let config = serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo from-image-cmd; echo uid=$(id -u) gid=$(id -g); echo cwd=$(pwd); echo greeting=$GREETING home=$HOME; cat seed.txt; ls; echo w > written"],
        "Env": ["PATH=/bin", "GREETING=hello-image"],
        "WorkingDir": "/app",
        "User": "app",
    });
    let built = layout.image(&[base, app], "amd64", config);
    let mut layout = layout;
    layout.tag(&built, "1");
}

#[test]
fn image_from_oci_layout_runs_with_its_config_and_overrides() {
    require_root!();
    require_program!("nsenter");
    let def_image = "image = \"oci:/srv/img:1\"\n";
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file(
                "/etc/berth/containers/longrun.toml",
                format!("{def_image}entrypoint = [\"/bin/busybox\", \"sleep\", \"1000\"]\n[service]\nstop_timeout = \"1s\"\n"),
            )
            .file(
                "/etc/berth/containers/fromimage.toml",
                format!("{def_image}[[volume]]\nsource = \"appdata\"\ntarget = \"/app\"\n"),
            )
            .file(
                "/etc/berth/containers/override.toml",
                format!(
                    "{def_image}command = [\"echo from-definition user=$(id -u) greeting=$GREETING\"]\nuser = \"0\"\nenvironment = {{ GREETING = \"hello-definition\" }}\n[service]\npull = \"never\"\n"
                ),
            ),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path());
    b.copy_in(layout.path(), "/srv/img");

    // pull = "never" before anything is in the store: a clear failure.
    let _ = b.sh("systemctl start berth@override");
    b.wait_for(
        "systemctl is-active berth@override",
        |t| t == "failed",
        Duration::from_secs(10),
    );
    let log = b.sh_ok("journalctl --no-pager -b -o cat -u berth@override");
    assert!(
        log.contains("is not in the store and pull = \"never\""),
        "{log}"
    );
    b.sh_ok("systemctl reset-failed berth@override");

    // The first start loads the image into the store, then runs its config.
    let _ = b.sh("systemctl start berth@fromimage");
    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@fromimage",
        |t| t.contains("exited with code"),
        Duration::from_secs(20),
    );
    for want in [
        "from-image-cmd",
        "uid=1000 gid=1000",
        "cwd=/app",
        "greeting=hello-image home=/home/app",
        "container \"fromimage\" exited with code 0",
    ] {
        assert!(
            log.lines().any(|l| l == want),
            "no line {want:?} in:\n{log}"
        );
    }
    assert!(log.contains("pulled image \"oci:/srv/img:1\""), "{log}");
    // The named volume was created on first use and seeded from the image
    // (merged layers, owners and modes kept); the app wrote into it.
    assert!(log.lines().any(|l| l == "seeded-from-image"), "{log}");
    let vol = b.sh_ok(
        "cd /var/lib/berth/volumes/appdata/_data && stat -c '%n %u:%g %a' . seed.txt written",
    );
    assert_eq!(
        vol,
        ". 1000:1000 750\nseed.txt 1000:1000 640\nwritten 1000:1000 644\n"
    );
    // A second start keeps the volume as it is. The unit stays active while
    // its supervisor tears down (network included) after the container's
    // exit, and `systemctl start` of an active unit does nothing: wait.
    b.wait_for(
        "systemctl is-active berth@fromimage; true",
        |t| t.trim() == "inactive",
        Duration::from_secs(10),
    );
    b.sh_ok("echo kept > /var/lib/berth/volumes/appdata/_data/seed.txt");
    let cursor = b.sh_ok("journalctl --no-pager -n 0 --show-cursor | sed -n 's/^-- cursor: //p'");
    let _ = b.sh("systemctl start berth@fromimage");
    let log = b.wait_for(
        &format!(
            "journalctl --no-pager -o cat -u berth@fromimage --after-cursor='{}'",
            cursor.trim()
        ),
        |t| t.contains("exited with code"),
        Duration::from_secs(20),
    );
    assert!(log.lines().any(|l| l == "kept"), "{log}");
    assert!(log.lines().any(|l| l.contains("written")), "{log}");

    // Now in the store: the definition's command replaces Cmd under the
    // image's Entrypoint; user and environment override the image's.
    let _ = b.sh("systemctl start berth@override");
    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@override",
        |t| t.contains("exited with code 0"),
        Duration::from_secs(20),
    );
    assert!(
        log.lines()
            .any(|l| l == "from-definition user=0 greeting=hello-definition"),
        "{log}"
    );
    // A running container's record names its image, so the store keeps it.
    b.sh_ok("systemctl start berth@longrun");
    let st = b.sh_ok("cat /run/berth/containers/longrun/state.json");
    assert!(st.contains("\"image\": \"oci:/srv/img:1\""), "{st}");
    assert!(st.contains("\"image_digest\": \"sha256:"), "{st}");
    let rmi = b.sh("berth rmi oci:/srv/img:1");
    assert!(!rmi.status.success());
    assert!(
        String::from_utf8_lossy(&rmi.stderr).contains("used by running container(s) 'longrun'"),
        "{}",
        String::from_utf8_lossy(&rmi.stderr)
    );
    b.sh_ok("systemctl stop berth@longrun");

    // Nothing left but the store and the volume (no seeding leftovers).
    let left = b.sh_ok(
        "ls /var/lib/berth/containers 2>/dev/null; ls /run/berth/containers 2>/dev/null; ls -A /var/lib/berth/volumes/appdata | grep -vx _data; true",
    );
    assert_eq!(left.trim(), "", "left behind: {left}");
}

/// An image whose STOPSIGNAL is SIGRTMIN+3 (what systemd as a container's
/// init stops on): `systemctl stop` reaches the container as that signal, not
/// as SIGTERM, and the stop is clean.
#[test]
fn a_real_time_stop_signal_reaches_the_container() {
    require_root!();
    require_program!("nsenter");
    let b = SystemdBox::boot(BoxOptions::default().with_berth().file(
        "/etc/berth/containers/rt.toml",
        "image = \"oci:/srv/rtimg:1\"\n[service]\nstop_timeout = \"10s\"\n",
    ))
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let layout = tempfile::tempdir().unwrap();
    let mut l = Layout::new(layout.path());
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    let base = reg::tar_of(&[
        Member::Dir("bin/", 0o755, 0, 0),
        Member::File("bin/busybox", busybox, 0o755, 0, 0),
        Member::Symlink("bin/sh", "busybox"),
        Member::Symlink("bin/sleep", "busybox"),
    ]);
    // glibc's SIGRTMIN is 34 on Linux: SIGRTMIN+3 is 37. A SIGTERM would
    // kill the shell without a word (it is not trapped).
    let rtmin3 = libc::SIGRTMIN() + 3;
    let built = l.image(
        &[base],
        "amd64",
        serde_json::json!({
            "Cmd": ["/bin/sh", "-c", format!("trap 'echo got-signal-{rtmin3}; exit 0' {rtmin3}; echo trapping; while :; do sleep 0.05; done")],
            "Env": ["PATH=/bin"],
            "StopSignal": "SIGRTMIN+3",
        }),
    );
    l.tag(&built, "1");
    b.copy_in(layout.path(), "/srv/rtimg");
    b.sh_ok("systemctl start berth@rt");
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@rt",
        |t| t.lines().any(|l| l == "trapping"),
        Duration::from_secs(20),
    );
    b.sh_ok("systemctl stop berth@rt");
    let log = b.sh_ok("journalctl --no-pager -b -o cat -u berth@rt");
    assert!(
        log.contains("stopping container \"rt\" with SIGRTMIN+3"),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l == format!("got-signal-{rtmin3}")),
        "{log}"
    );
    assert!(log.contains("container \"rt\" exited with code 0"), "{log}");
}

/// A definition takes every reference form `berth pull` takes (one grammar):
/// `docker://` before a registry image on the box's loopback, and an
/// `oci-archive:` with a tag, which picks that tag's image out of an archive
/// holding two. Before the definition and the pull shared one parser, the
/// first was a config error and the second lost its tag.
#[test]
fn docker_transport_and_oci_archive_tag_work_in_a_definition() {
    require_root!();
    for prog in ["nsenter", "skopeo", "docker-registry"] {
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
                "/etc/berth/containers/viadocker.toml",
                "image = \"docker://127.0.0.1:5000/demo/app:1\"\n",
            )
            .file(
                "/etc/berth/containers/viaarchive.toml",
                "image = \"oci-archive:/srv/app.tar:v2\"\n",
            ),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let layout = tempfile::tempdir().unwrap();
    let mut l = Layout::new(layout.path());
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    for tag in ["1", "v2"] {
        let base = reg::tar_of(&[
            Member::Dir("bin/", 0o755, 0, 0),
            Member::File("bin/busybox", busybox, 0o755, 0, 0),
            Member::Symlink("bin/sh", "busybox"),
        ]);
        let built = l.image(
            &[base],
            "amd64",
            serde_json::json!({"Cmd": ["/bin/sh", "-c", format!("echo image-tag-{tag}")]}),
        );
        l.tag(&built, tag);
    }
    b.copy_in(layout.path(), "/srv/layout");
    b.sh_ok("tar -C /srv/layout -cf /srv/app.tar .");
    b.serve_registry();
    b.sh_ok(
        "skopeo copy --quiet --dest-tls-verify=false oci:/srv/layout:1 docker://127.0.0.1:5000/demo/app:1",
    );
    // The generator read both definitions (a config error would leave no unit).
    b.sh_ok("berth check");

    for (name, want) in [("viadocker", "image-tag-1"), ("viaarchive", "image-tag-v2")] {
        let _ = b.sh(&format!("systemctl start berth@{name}"));
        let log = b.wait_for(
            &format!("journalctl --no-pager -b -o cat -u berth@{name}"),
            |t| t.contains("exited with code"),
            Duration::from_secs(30),
        );
        assert!(
            log.lines().any(|l| l == want),
            "{name}: no {want:?} in:\n{log}"
        );
        assert!(
            log.contains(&format!("container \"{name}\" exited with code 0")),
            "{log}"
        );
    }
    // Both are in the store under their canonical names; the archive's tag is
    // part of its ref.
    let images = b.sh_ok("berth images");
    assert!(images.contains("127.0.0.1:5000/demo/app:1"), "{images}");
    assert!(images.contains("oci-archive:/srv/app.tar:v2"), "{images}");
}
