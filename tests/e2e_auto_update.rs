//! End to end on a real systemd: `berth auto-update` with a real registry in
//! the box. A container whose definition sets `auto_update = true` runs image
//! version 1 of a tag; version 2 is pushed to the same tag: `--dry-run` sees
//! it and changes nothing, then an update restarts the container on version 2.
//! A broken version 3 is pushed: the update restarts it, sees it fail, puts
//! version 2 back and restarts it again. A container without `auto_update` is
//! never touched, and the timer unit is installed and loads.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use reg::{Layout, Member};
use support::systemd_box::{BoxOptions, SystemdBox};

/// An OCI layout at `dir` with `app:TAG` for each (tag, script) given: busybox
/// and a /version file, running `script` with sh.
fn write_layout(dir: &std::path::Path, versions: &[(&str, &str)]) {
    let mut layout = Layout::new(dir);
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    for (tag, script) in versions {
        let base = reg::tar_of(&[
            Member::Dir("bin/", 0o755, 0, 0),
            Member::File("bin/busybox", busybox, 0o755, 0, 0),
            Member::Symlink("bin/sh", "busybox"),
            Member::Symlink("bin/sleep", "busybox"),
            Member::Symlink("bin/cat", "busybox"),
        ]);
        let version: &'static [u8] = Box::leak(format!("{tag}\n").into_bytes().into_boxed_slice());
        let top = reg::tar_of(&[Member::File("version", version, 0o644, 0, 0)]);
        let built = layout.image(
            &[base, top],
            "amd64",
            serde_json::json!({"Cmd": ["/bin/sh", "-c", script], "Env": ["PATH=/bin"]}),
        );
        layout.tag(&built, tag);
    }
}

fn push(b: &SystemdBox, tag: &str, to: &str) {
    b.sh_ok(&format!(
        "skopeo copy --quiet --dest-tls-verify=false oci:/srv/layout:{tag} docker://127.0.0.1:5000/demo/app:{to}"
    ));
}

/// The version the running container printed last.
fn running_version(b: &SystemdBox, name: &str) -> String {
    b.sh_ok(&format!(
        "journalctl --no-pager -o cat -u berth@{name} | grep '^version ' | tail -n 1"
    ))
    .trim()
    .to_string()
}

#[test]
fn auto_update_moves_to_newer_images_and_rolls_back_broken_ones() {
    require_root!();
    for prog in ["nsenter", "skopeo", "docker-registry"] {
        require_program!(prog);
    }
    let app = "image = \"127.0.0.1:5000/demo/app:stable\"\ninit = true\n\
               [network]\nmode = \"host\"\n\
               [service]\nauto_update = true\nstop_timeout = \"1s\"\nrestart = \"on-failure\"\n";
    let pinned = "image = \"127.0.0.1:5000/demo/app:pinned\"\ninit = true\n\
                  [service]\nstop_timeout = \"1s\"\n";
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file(
                "/etc/berth/berth.toml",
                "[[registry]]\nhost = \"127.0.0.1:5000\"\ninsecure = true\n",
            )
            .file("/etc/berth/containers/app.toml", app)
            .file("/etc/berth/containers/pinned.toml", pinned),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let layout = tempfile::tempdir().unwrap();
    let good = "echo version $(cat /version); exec sleep 1000";
    write_layout(
        layout.path(),
        &[
            ("1", good),
            ("2", good),
            (
                "3",
                "echo version $(cat /version) is broken; sleep 0.5; exit 1",
            ),
        ],
    );
    b.copy_in(layout.path(), "/srv/layout");
    b.serve_registry();
    push(&b, "1", "stable");
    push(&b, "1", "pinned");
    b.sh_ok("systemctl start berth@app berth@pinned");
    let v = |name: &str| {
        b.wait_for(
            &format!("journalctl --no-pager -o cat -u berth@{name} | grep '^version ' | tail -n 1"),
            |t| !t.trim().is_empty(),
            Duration::from_secs(20),
        )
    };
    assert_eq!(v("app").trim(), "version 1");
    assert_eq!(v("pinned").trim(), "version 1");

    // Nothing new yet.
    let out = b.sh_ok("berth auto-update --settle 1s");
    assert!(
        out.contains("app  127.0.0.1:5000/demo/app:stable  up to date"),
        "{out}"
    );
    assert!(
        !out.contains("pinned"),
        "a container without auto_update was looked at: {out}"
    );
    let pid = b.sh_ok("systemctl show -p MainPID --value berth@app");

    // Version 2 under the same tag: the dry run sees it and changes nothing.
    push(&b, "2", "stable");
    push(&b, "2", "pinned");
    let out = b.sh_ok("berth auto-update --dry-run");
    assert!(
        out.contains("app  127.0.0.1:5000/demo/app:stable  newer image: "),
        "{out}"
    );
    assert_eq!(b.sh_ok("systemctl show -p MainPID --value berth@app"), pid);
    assert_eq!(running_version(&b, "app"), "version 1");

    // The update: pulled, restarted, up for the settle time.
    let out = b.sh_ok("berth auto-update --settle 2s");
    assert!(
        out.contains("app  127.0.0.1:5000/demo/app:stable  updated "),
        "{out}"
    );
    assert!(out.contains("restarted"), "{out}");
    assert_eq!(v("app").trim(), "version 2");
    assert_ne!(b.sh_ok("systemctl show -p MainPID --value berth@app"), pid);
    // The container without auto_update still runs what it ran.
    assert_eq!(running_version(&b, "pinned"), "version 1");
    let log = b.sh_ok("journalctl --no-pager -o cat -u berth@app BERTH_EVENT=auto-updated");
    assert!(
        log.contains("container \"app\" updated to 127.0.0.1:5000/demo/app:stable"),
        "{log}"
    );

    // A broken version 3: restarted, fails, rolled back to 2, which runs.
    push(&b, "3", "stable");
    let out = b.sh("berth auto-update --settle 4s");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("app  127.0.0.1:5000/demo/app:stable  rolled back to "),
        "{text}"
    );
    assert!(text.contains("did not stay up"), "{text}");
    b.wait_for(
        "systemctl is-active berth@app",
        |t| t.trim() == "active",
        Duration::from_secs(10),
    );
    let log = b.sh_ok("journalctl --no-pager -o cat -u berth@app");
    assert!(log.contains("version 3 is broken"), "{log}");
    assert_eq!(running_version(&b, "app"), "version 2");
    let warn =
        b.sh_ok("journalctl --no-pager -o cat -u berth@app BERTH_EVENT=auto-update-rolled-back");
    assert!(warn.contains("rolled back to sha256:"), "{warn}");
    // The next run tries version 3 again, and rolls back again: the tag
    // still names it, and nothing was lost in between.
    let out = b.sh("berth auto-update --settle 4s");
    assert!(String::from_utf8_lossy(&out.stdout).contains("rolled back"));

    // Named: an error for what cannot be updated.
    let out = b.sh_ok("berth auto-update pinned");
    assert!(
        out.contains(
            "pinned  -  skipped: its definition does not set [service] auto_update = true"
        ),
        "{out}"
    );
    let out = b.sh("berth auto-update nosuch");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no container definition \"nosuch\""));

    // The timer and its service are installed and load.
    let timer = b.sh_ok("systemctl show -p LoadState,UnitFileState berth-auto-update.timer");
    assert!(timer.contains("LoadState=loaded"), "{timer}");
    let svc = b.sh_ok("systemctl show -p LoadState,ExecStart berth-auto-update.service");
    assert!(svc.contains("/usr/bin/berth"), "{svc}");
}
