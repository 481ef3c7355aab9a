//! Test support for driving the OCI command line with Podman: an isolated
//! Podman configuration (containers.conf, storage.conf, registries.conf, XDG
//! dirs, storage root and run root all in the sandbox's temp dir, so nothing
//! on the machine changes), a busybox image tarball made on the spot, and a
//! shell prelude that runs inside a `Sandbox` with a private /run and its
//! loopback up.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use crate::rt::Sandbox;

/// Imports the busybox tarball as `$I`; prints `rc_import=`.
pub const IMPORT: &str = "P import $T/busybox.tar $I >/dev/null; echo rc_import=$?";

pub struct Podman {
    pub sandbox: Sandbox,
}

impl Podman {
    pub fn new() -> Podman {
        let sandbox = Sandbox::new();
        let t = sandbox.path().join("podman");
        for d in [
            "conf",
            "xdg/config",
            "xdg/data",
            "xdg/run",
            "storage",
            "run",
            "tmp",
        ] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        let t_s = t.display();
        // The runtime's base name is what libpod looks up in these lists
        // (`newConmonOCIRuntime`); crun's entries are Podman's defaults.
        std::fs::write(
            t.join("conf/containers.conf"),
            format!(
                r#"[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{t_s}/events.log"
tmp_dir = "{t_s}/tmp"
static_dir = "{t_s}/storage/libpod"
volume_path = "{t_s}/storage/volumes"
conmon_path = ["/usr/bin/conmon"]
runtime_supports_nocgroup = ["crun", "berth-runtime"]
runtime_supports_json = ["crun", "runc", "berth-runtime"]
[containers]
log_driver = "k8s-file"
[network]
network_config_dir = "{t_s}/netconf"
"#
            ),
        )
        .unwrap();
        std::fs::write(
            t.join("conf/storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{t_s}/storage\"\nrunroot = \"{t_s}/run\"\n"
            ),
        )
        .unwrap();
        std::fs::write(t.join("conf/registries.conf"), "").unwrap();
        let rootfs = sandbox.path().join("image-rootfs");
        crate::support::busybox_rootfs(&rootfs);
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(t.join("busybox.tar"))
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success(), "tar the busybox rootfs");
        Podman { sandbox }
    }

    /// Run `script` in the sandbox with `P` (podman with `runtime`), `$I`
    /// (the image), `$T` (Podman's dir) and `$RTROOT` (the runtime's default
    /// state root on the private /run) defined.
    pub fn sh(&self, runtime: &Path, script: &str) -> Output {
        let t = self.sandbox.path().join("podman");
        let name = runtime.file_name().unwrap().to_string_lossy();
        let prelude = format!(
            r#"mount -t tmpfs tmpfs /run || exit 97
ip link set lo up || exit 96
T={t}
export CONTAINERS_CONF=$T/conf/containers.conf CONTAINERS_STORAGE_CONF=$T/conf/storage.conf
export CONTAINERS_REGISTRIES_CONF=$T/conf/registries.conf
export XDG_CONFIG_HOME=$T/xdg/config XDG_DATA_HOME=$T/xdg/data XDG_RUNTIME_DIR=$T/xdg/run
RUNTIME={rt}
RTROOT=/run/{name}
I=localhost/berth-test/busybox
P() {{ podman --root $T/storage --runroot $T/run --storage-driver overlay --cgroup-manager cgroupfs --runtime $RUNTIME "$@"; }}
"#,
            t = t.display(),
            rt = runtime.display(),
        );
        self.sandbox.sh(&format!("{prelude}{script}"))
    }
}
