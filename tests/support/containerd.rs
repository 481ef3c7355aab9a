//! containerd 1.6 as a real client of an OCI runtime: a `containerd` started by
//! hand inside a systemd box (its own root, state, socket and config; never
//! Debian's unit), an image imported from an OCI archive built on the spot from
//! busybox-static, and `ctr` to drive containers through the runc v2 shim with
//! `--runc-binary` pointing at the runtime under test.
//!
//! Owns: the box, the containerd process in it (a transient unit of the box's
//! systemd, gone with the box) and the image. Must not: touch the host's
//! containerd, its state, or anything outside the box.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::support::systemd_box::{shell_quote, BoxOptions, SystemdBox};

/// containerd's namespace for everything a test makes.
pub const NS: &str = "berthtest";
/// The image every container runs: busybox with one symlink per applet.
pub const IMAGE: &str = "docker.io/library/berth-busybox:1";
/// containerd's gRPC socket inside the box.
pub const SOCK: &str = "/run/berth-containerd/containerd.sock";
/// Runtime state roots the shim passes as `--root` (`ctr --runc-root`), one
/// per runtime so the test can see what each left behind.
pub const BERTH_ROOT: &str = "/run/berth-containerd/berth-runtime";
pub const RUNC_ROOT: &str = "/run/berth-containerd/runc";
/// berth-runtime as installed in the box by packaging/install.sh.
pub const BERTH_RUNTIME: &str = "/usr/bin/berth-runtime";
/// Debian's runc, the reference the same steps are compared against.
pub const RUNC: &str = "/usr/sbin/runc";

/// containerd's config with its state and socket below `run` (a directory in
/// the box). Its root holds overlay snapshots, whose upper dirs cannot live
/// on the box's overlay root: it goes on the host directory bound over
/// /var/lib/berth (TESTING.md). The plugins neither `ctr run` nor dockerd
/// needs are off so startup stays short.
pub fn config(run: &str) -> String {
    format!(
        r#"version = 2
root = "/var/lib/berth/containerd"
state = "{run}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{run}/containerd.sock"
"#
    )
}

/// A booted box running containerd with the test image imported.
pub struct Containerd {
    pub sbox: SystemdBox,
}

impl Containerd {
    /// Boot a box with berth installed, start containerd in it and import
    /// the busybox image. Panics with containerd's journal on failure.
    pub fn start(work: &Path) -> Containerd {
        let archive = build_image_archive(work);
        let sbox = SystemdBox::boot(BoxOptions::default().with_berth().file(
            "/etc/berth-containerd/config.toml",
            config("/run/berth-containerd"),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        sbox.sh_ok(
            "mkdir -p /run/berth-containerd && systemd-run --quiet --unit=berth-containerd \
             containerd --config /etc/berth-containerd/config.toml",
        );
        let c = Containerd { sbox };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr("version").status.success() {
            if Instant::now() > deadline {
                panic!(
                    "containerd did not answer on {SOCK} within 20 s\n{}",
                    c.sbox.journal("berth-containerd.service")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let bytes = std::fs::read(&archive).expect("read image archive");
        let out = c.sbox.sh_input(
            &format!(
                "cat > /var/lib/berth/image.tar && ctr --address {SOCK} -n {NS} images import \
                 --base-name docker.io/library/berth-busybox /var/lib/berth/image.tar \
                 && rm /var/lib/berth/image.tar"
            ),
            &bytes,
        );
        assert!(
            out.status.success(),
            "ctr images import: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }

    /// `ctr --address SOCK -n NS ARGS` in the box (ARGS is shell text).
    pub fn ctr(&self, args: &str) -> Output {
        self.sbox
            .sh(&format!("exec ctr --address {SOCK} -n {NS} {args}"))
    }

    /// Like [`Containerd::ctr`], which must succeed; its stdout.
    pub fn ctr_ok(&self, args: &str) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args} failed with {}\n--- stdout\n{}\n--- stderr\n{}\n--- containerd's journal\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sbox.journal("berth-containerd.service")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `ctr run` options that pick `runtime` (a runc-compatible binary in
    /// the box) and its state root.
    pub fn runtime_args(runtime: &str, root: &str) -> String {
        format!(
            "--runtime io.containerd.runc.v2 --runc-binary {} --runc-root {} --cpu-shares 0",
            shell_quote(runtime),
            shell_quote(root)
        )
    }
}

/// An OCI archive (`oci-archive` layout in a tar) of busybox-static with its
/// applet links, tagged `1`, as `ctr images import` reads it.
fn build_image_archive(work: &Path) -> std::path::PathBuf {
    let layout_dir = super::reg::busybox_image_layout(work);
    let archive = work.join("image.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&layout_dir)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar of the layout failed");
    archive
}
