//! Docker 20.10 (Debian `docker.io`) as a real client of an OCI runtime: a
//! `containerd` and a `dockerd` started by hand inside a systemd box (each a
//! transient unit of the box's systemd, with its own root, state and socket;
//! never Debian's units), berth-runtime registered with
//! `--add-runtime berth=/usr/bin/berth-runtime`, and an image `docker load`ed
//! from a docker-archive built on the spot from busybox-static.
//!
//! Owns: the box, the daemons in it and the image. Must not: touch the host's
//! Docker or containerd, their state, or anything outside the box (dockerd's
//! bridge and sysctls live in the box's own network namespace).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::support::systemd_box::{shell_quote, BoxOptions, SystemdBox};

/// The image every container runs: busybox with one symlink per applet.
pub const IMAGE: &str = "berth-busybox:1";
/// Where the daemons keep their sockets, pids and runtime state in the box.
pub const RUN: &str = "/run/berth-docker";
/// dockerd's API socket inside the box.
pub const DOCKER_SOCK: &str = "/run/berth-docker/docker.sock";
/// containerd's gRPC socket inside the box.
pub const CONTAINERD_SOCK: &str = "/run/berth-docker/containerd.sock";
/// dockerd's `--exec-root`: it hands each runtime NAME to the runc v2 shim
/// with `Root = EXEC_ROOT/runtime-NAME`, below which the runtime keeps its
/// state per containerd namespace (`moby`).
pub const EXEC_ROOT: &str = "/run/berth-docker/exec";
/// The containerd namespace dockerd uses.
pub const NS: &str = "moby";
/// berth-runtime as installed in the box by packaging/install.sh.
pub const BERTH_RUNTIME: &str = "/usr/bin/berth-runtime";

/// An empty daemon.json, so that a host's /etc/docker/daemon.json never
/// changes what the test runs.
const DAEMON_JSON: &str = "{}\n";

/// A booted box running containerd and dockerd with the test image loaded.
pub struct Docker {
    pub sbox: SystemdBox,
    /// The docker-archive of [`IMAGE`], for loading it again.
    archive: PathBuf,
}

impl Docker {
    /// Boot a box with berth installed, start containerd and dockerd in it
    /// and load the busybox image. Panics with the daemons' journals on
    /// failure.
    pub fn start(work: &Path) -> Docker {
        let archive = build_docker_archive(work);
        let sbox = SystemdBox::boot(
            BoxOptions::default()
                .with_berth()
                .file(
                    "/etc/berth-docker/containerd.toml",
                    super::containerd::config(RUN),
                )
                .file("/etc/berth-docker/daemon.json", DAEMON_JSON),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        sbox.sh_ok(&format!(
            "mkdir -p {RUN} && systemd-run --quiet --unit=berth-containerd \
             containerd --config /etc/berth-docker/containerd.toml"
        ));
        let d = Docker { sbox, archive };
        d.wait(
            "containerd",
            &format!("ctr --address {CONTAINERD_SOCK} version"),
        );
        d.start_dockerd("--exec-opt native.cgroupdriver=cgroupfs");
        d.load_image();
        d
    }

    /// `docker load` of [`IMAGE`].
    pub fn load_image(&self) {
        let bytes = std::fs::read(&self.archive).expect("read image archive");
        let out = self
            .sbox
            .sh_input(&format!("docker -H unix://{DOCKER_SOCK} load"), &bytes);
        assert!(
            out.status.success(),
            "docker load: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journals()
        );
    }

    /// Start dockerd as the unit `berth-dockerd` with `options` on top of
    /// the common ones (a cgroup driver: `cgroupfs`, cgroups under /docker;
    /// `systemd`, Docker's default on a cgroup2 host run by systemd, a scope
    /// per container and the runtime called with `--systemd-cgroup`), and
    /// wait until it answers.
    fn start_dockerd(&self, options: &str) {
        self.sbox.sh_ok(&format!(
            "systemd-run --quiet --unit=berth-dockerd dockerd \
             --config-file /etc/berth-docker/daemon.json \
             --data-root /var/lib/berth/docker --exec-root {EXEC_ROOT} \
             --pidfile {RUN}/dockerd.pid -H unix://{DOCKER_SOCK} \
             --containerd {CONTAINERD_SOCK} \
             {options} --oom-score-adjust 0 \
             --iptables=false --storage-driver overlay2 \
             --add-runtime berth={BERTH_RUNTIME}"
        ));
        self.wait(
            "dockerd",
            &format!("docker -H unix://{DOCKER_SOCK} version"),
        );
    }

    /// Stop dockerd (containers must be gone) and start it again with
    /// other `options` (see [`Docker::start_dockerd`]).
    pub fn restart_dockerd(&self, options: &str) {
        self.sbox.sh_ok(
            "systemctl stop berth-dockerd && systemctl reset-failed berth-dockerd 2>/dev/null; \
             while systemctl -q is-active berth-dockerd; do sleep 0.05; done; true",
        );
        self.start_dockerd(options);
    }

    fn wait(&self, what: &str, probe: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.sbox.sh(probe).status.success() {
            if Instant::now() > deadline {
                panic!("{what} did not answer within 20 s\n{}", self.journals());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// dockerd's and containerd's journals, for failure messages.
    pub fn journals(&self) -> String {
        format!(
            "--- dockerd's journal\n{}\n--- containerd's journal\n{}",
            self.sbox.journal("berth-dockerd.service"),
            self.sbox.journal("berth-containerd.service")
        )
    }

    /// `docker ARGS` in the box (ARGS is shell text).
    pub fn docker(&self, args: &str) -> Output {
        self.sbox
            .sh(&format!("exec docker -H unix://{DOCKER_SOCK} {args}"))
    }

    /// `docker ARGS` with `input` on its stdin.
    pub fn docker_input(&self, args: &str, input: &[u8]) -> Output {
        self.sbox.sh_input(
            &format!("exec docker -H unix://{DOCKER_SOCK} {args}"),
            input,
        )
    }

    /// Like [`Docker::docker`], which must succeed; its stdout.
    pub fn docker_ok(&self, args: &str) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args} failed with {}\n--- stdout\n{}\n--- stderr\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journals()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker ARGS` with a pty as its terminal (util-linux `script`), as
    /// `-t` needs; its output.
    pub fn docker_pty(&self, args: &str) -> String {
        let out = self.sbox.sh(&format!(
            "script -qec {} /dev/null </dev/null",
            shell_quote(&format!("docker -H unix://{DOCKER_SOCK} {args}"))
        ));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A docker-archive (`docker save` format) of busybox-static with its applet
/// links, tagged [`IMAGE`]: the OCI layout containerd's test imports too,
/// converted by skopeo.
fn build_docker_archive(work: &Path) -> PathBuf {
    let layout_dir = super::reg::busybox_image_layout(work);
    let archive = work.join("image.tar");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(format!("oci:{}:1", layout_dir.display()))
        .arg(format!("docker-archive:{}:{IMAGE}", archive.display()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy to a docker-archive failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    archive
}
