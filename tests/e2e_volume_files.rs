//! Volume files whose filesystem cannot be mounted, on a real systemd (the
//! namespace box, the host's kernel): the start stops with an error naming
//! the volume file, the container never runs on an empty directory in the
//! volume's place, and nothing is left mounted. The host's kernel has no NFS
//! (`/proc/filesystems`) and the device does not exist; a password in a
//! volume file others can read is refused before anything is mounted.
//! The working mounts (NFS, CIFS, ext4 written through by a container) need
//! servers and a block device of their own: tests/uml_volumes.rs.
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/root";

fn definition(volume: &str) -> String {
    definition_with(volume, "")
}

fn definition_with(volume: &str, keys: &str) -> String {
    format!(
        "rootfs = \"{ROOTFS}\"\ncommand = [\"sh\", \"-c\", \"echo ran-on-$(ls /data | wc -l); exec sleep 100\"]\n\
         [[volume]]\nsource = \"{volume}\"\ntarget = \"/data\"\n{keys}\
         [network]\nmode = \"none\"\n[service]\nrestart = \"no\"\nstop_timeout = \"1s\"\n"
    )
}

#[test]
fn unmountable_volume_files_stop_the_start_naming_the_file() {
    require_root!();
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file("/etc/berth/containers/nfs.toml", definition("nfsvol"))
            .file("/etc/berth/containers/blk.toml", definition("blkvol"))
            .file("/etc/berth/containers/pw.toml", definition("pwvol"))
            .file(
                "/etc/berth/containers/chowned.toml",
                definition_with("nfsvol", "chown = true\n"),
            )
            .file(
                "/etc/berth/volumes/nfsvol.toml",
                "type = \"nfs\"\ndevice = \"127.0.0.1:/export\"\noptions = [\"vers=4.2\"]\n",
            )
            .file(
                "/etc/berth/volumes/blkvol.toml",
                "type = \"ext4\"\ndevice = \"/dev/berth-no-such-disk\"\n",
            )
            .file(
                "/etc/berth/volumes/pwvol.toml",
                "type = \"cifs\"\ndevice = \"//127.0.0.1/share\"\noptions = [\"username=u\", \"password=hunter2\"]\n",
            ),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    let mounts_before = b.sh_ok("grep -c . /proc/self/mountinfo");
    // `berth check` finds the password before any start.
    let check = b.sh("berth check");
    assert!(!check.status.success());
    let text = String::from_utf8_lossy(&check.stderr).into_owned()
        + &String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("/etc/berth/volumes/pwvol.toml:3:26: options: \"password=\" in a volume file other users can read"),
        "{text}"
    );
    for (name, error) in [
        (
            "nfs",
            "/etc/berth/volumes/nfsvol.toml: type \"nfs\", device \"127.0.0.1:/export\", options \"vers=4.2,addr=127.0.0.1,clientaddr=127.0.0.1\": mount failed: ENODEV",
        ),
        (
            "blk",
            "/etc/berth/volumes/blkvol.toml: type \"ext4\", device \"/dev/berth-no-such-disk\", options \"\": mount failed: ENOENT",
        ),
        (
            "pw",
            "/etc/berth/volumes/pwvol.toml:3:26: options: \"password=\" in a volume file other users can read",
        ),
        (
            "chowned",
            "/etc/berth/containers/chowned.toml: [[volume]] target \"/data\": chown = true, but volume \"nfsvol\" is a \"nfs\" filesystem (/etc/berth/volumes/nfsvol.toml)",
        ),
    ] {
        let start = b.sh(&format!("systemctl start berth@{name}"));
        assert!(!start.status.success(), "berth@{name} started");
        let log = b.wait_for(
            &format!("journalctl --no-pager -o cat -u berth@{name}"),
            |t| t.contains("Failed to start"),
            Duration::from_secs(20),
        );
        assert!(log.contains(error), "berth@{name}: {log}");
        assert!(!log.contains("hunter2"), "{log}");
        // The container never ran, on an empty directory or anything else.
        assert!(!log.contains("ran-on-"), "{log}");
        assert_eq!(
            b.sh_ok(&format!("systemctl is-active berth@{name} || true")).trim(),
            "failed"
        );
        assert_eq!(
            b.sh_ok(&format!("test -e /run/berth/containers/{name} && echo left || echo gone")).trim(),
            "gone",
            "the run dir of {name} is left"
        );
    }
    assert_eq!(b.sh_ok("grep -c . /proc/self/mountinfo"), mounts_before);
}
