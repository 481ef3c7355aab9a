//! The container's minimal /dev: the default devices of the runtime spec
//! (null, zero, full, random, urandom, tty), `linux.devices`, and the standard
//! symlinks. Runs in the init before pivot_root, on paths under the root.
//! Device *access* control (cgroup v2 BPF device programs) is not here.

use std::path::Path;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mount::{create_mount_point, secure_join};
use super::RuntimeError;

/// (name, major, minor) of the devices every container gets (runtime-spec
/// config-linux.md "Default Devices").
pub const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Step: create the default and the spec's devices under `rootfs/dev`. In a
/// user namespace mknod is refused, so devices are bind-mounted from the host's
/// /dev instead (runc `bindMountDeviceNode`).
pub fn setup_devices(rootfs: &Path, extra: &[LinuxDevice], bind: bool) -> Result<(), RuntimeError> {
    let old = nix::sys::stat::umask(Mode::empty());
    let r = (|| {
        for (name, major, minor) in DEFAULT_DEVICES {
            let path = Path::new("/dev").join(name);
            create_device(
                rootfs,
                &path,
                SFlag::S_IFCHR,
                *major,
                *minor,
                0o666,
                None,
                None,
                bind,
            )?;
        }
        for d in extra {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(RuntimeError::InvalidSpec {
                        id: String::new(),
                        reason: format!(
                            "device '{}' has type 'a', which only device rules may use",
                            d.path().display()
                        ),
                    })
                }
            };
            create_device(
                rootfs,
                d.path(),
                kind,
                d.major() as u64,
                d.minor() as u64,
                d.file_mode().unwrap_or(0o666),
                d.uid(),
                d.gid(),
                bind,
            )?;
        }
        setup_dev_symlinks(rootfs)
    })();
    nix::sys::stat::umask(old);
    r
}

#[allow(clippy::too_many_arguments)]
fn create_device(
    rootfs: &Path,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    bind: bool,
) -> Result<(), RuntimeError> {
    let dest = secure_join(rootfs, path)?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| RuntimeError::io("create device dir", parent, e))?;
    }
    let _ = std::fs::remove_file(&dest);
    let made = if bind {
        Err(nix::errno::Errno::EPERM)
    } else {
        mknod(
            &dest,
            kind,
            Mode::from_bits_truncate(mode & 0o7777),
            makedev(major, minor),
        )
    };
    match made {
        Ok(()) => {
            if uid.is_some() || gid.is_some() {
                nix::unistd::chown(&dest, uid.map(Into::into), gid.map(Into::into)).map_err(
                    |e| RuntimeError::sys(format!("chown device '{}'", dest.display()), e),
                )?;
            }
            Ok(())
        }
        Err(nix::errno::Errno::EPERM) => {
            create_mount_point(&dest, false)?;
            nix::mount::mount(
                Some(path),
                &dest,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| RuntimeError::sys(format!("bind device '{}'", path.display()), e))
        }
        Err(e) => Err(RuntimeError::sys(format!("mknod '{}'", dest.display()), e)),
    }
}

fn setup_dev_symlinks(rootfs: &Path) -> Result<(), RuntimeError> {
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let link = rootfs.join("dev").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link)
            .map_err(|e| RuntimeError::io("create /dev symlink", &link, e))?;
    }
    Ok(())
}
