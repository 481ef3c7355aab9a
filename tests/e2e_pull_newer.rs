//! End to end on a real systemd with a real registry in the box:
//! `pull = "newer"` pulls at a start only when the registry's digest for the
//! tag differs from the stored image's, and starts the stored image, with a
//! warning in the journal, when the registry cannot be reached.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use reg::{Layout, Member};
use support::systemd_box::{BoxOptions, SystemdBox};

/// `app:1` and `app:2`: busybox printing its /version, then sleeping.
fn write_layout(dir: &std::path::Path) {
    let mut layout = Layout::new(dir);
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    for tag in ["1", "2"] {
        let base = reg::tar_of(&[
            Member::Dir("bin/", 0o755, 0, 0),
            Member::File("bin/busybox", busybox, 0o755, 0, 0),
            Member::Symlink("bin/sh", "busybox"),
            Member::Symlink("bin/sleep", "busybox"),
            Member::Symlink("bin/cat", "busybox"),
        ]);
        let version: &'static [u8] = Box::leak(format!("{tag}\n").into_bytes().into_boxed_slice());
        let top = reg::tar_of(&[Member::File("version", version, 0o644, 0, 0)]);
        let script = "echo version $(cat /version); exec sleep 1000";
        let built = layout.image(
            &[base, top],
            "amd64",
            serde_json::json!({"Cmd": ["/bin/sh", "-c", script], "Env": ["PATH=/bin"]}),
        );
        layout.tag(&built, tag);
    }
}

fn push(b: &SystemdBox, tag: &str) {
    b.sh_ok(&format!(
        "skopeo copy --quiet --dest-tls-verify=false oci:/srv/layout:{tag} docker://127.0.0.1:5000/demo/app:current"
    ));
}

/// Start `app`, wait for its version line after `cursor`, and return the
/// journal since then (the unit's messages and berth's events).
fn start(b: &SystemdBox) -> String {
    let cursor = b.journal_cursor();
    b.sh_ok("systemctl start berth@app");
    b.wait_for(
        &format!(
            "journalctl --no-pager -o cat -u berth@app --after-cursor='{}'",
            cursor.trim()
        ),
        |t| t.lines().any(|l| l.starts_with("version ")),
        Duration::from_secs(30),
    )
}

fn stop(b: &SystemdBox) {
    b.sh_ok("systemctl stop berth@app");
}

#[test]
fn pull_newer_pulls_a_moved_tag_and_keeps_the_stored_image_offline() {
    require_root!();
    for prog in ["nsenter", "skopeo", "docker-registry"] {
        require_program!(prog);
    }
    let app = "image = \"127.0.0.1:5000/demo/app:current\"\n\
               [network]\nmode = \"host\"\n\
               [service]\npull = \"newer\"\nstop_timeout = \"1s\"\n";
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file(
                "/etc/berth/berth.toml",
                "[[registry]]\nhost = \"127.0.0.1:5000\"\ninsecure = true\n",
            )
            .file("/etc/berth/containers/app.toml", app),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path());
    b.copy_in(layout.path(), "/srv/layout");
    b.serve_registry();

    // Nothing stored: the first start pulls.
    push(&b, "1");
    let log = start(&b);
    assert!(log.contains("pulled image"), "{log}");
    assert!(log.lines().any(|l| l == "version 1"), "{log}");
    stop(&b);

    // Same digest in the registry: no pull.
    let log = start(&b);
    assert!(!log.contains("pulled image"), "pulled again:\n{log}");
    assert!(log.lines().any(|l| l == "version 1"), "{log}");
    stop(&b);

    // The tag moved: the next start pulls it.
    push(&b, "2");
    let log = start(&b);
    assert!(log.contains("pulled image"), "{log}");
    assert!(log.lines().any(|l| l == "version 2"), "{log}");
    stop(&b);

    // The registry is gone: the stored image starts, and the journal says why.
    b.sh_ok("systemctl stop test-registry");
    let log = start(&b);
    assert!(log.lines().any(|l| l == "version 2"), "{log}");
    assert!(
        log.contains("pull = \"newer\": cannot ask the registry"),
        "{log}"
    );
    stop(&b);
}
