//! The container's minimal /dev: the default devices of the runtime spec
//! (null, zero, full, random, urandom, tty), `linux.devices`, and the standard
//! symlinks. Runs in the init before pivot_root. Every node and link is
//! made with a *at call relative to a descriptor of its directory resolved
//! inside the root (sys/at.rs): a rootfs whose `dev` is a symlink to a host
//! directory gets its nodes inside the root, never on the host (runc 1.1.5
//! writes its /dev links there; crun's `safe_openat` does not).
//! Device *access* control (cgroup v2 BPF device programs) is not here.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::RuntimeError;
use crate::sys::{at, Root};

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
pub fn setup_devices(root: &Root, extra: &[LinuxDevice], bind: bool) -> Result<(), RuntimeError> {
    let rootfs = root.fd.as_ref().map(AsFd::as_fd).ok_or_else(|| {
        RuntimeError::io(
            "open the container root",
            &root.path,
            std::io::Error::from_raw_os_error(libc::EBADF),
        )
    })?;
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

fn unlink_at(dir: &OwnedFd, name: &CString) {
    // SAFETY: unlinkat of one name in a directory we hold; a failure (nothing
    // there, a directory) shows in the mknodat/symlinkat that follows.
    unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
}

#[allow(clippy::too_many_arguments)]
fn create_device(
    root: BorrowedFd,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    bind: bool,
) -> Result<(), RuntimeError> {
    let (dir, name) = at::ensure_parent_in_root(root, path)
        .map_err(|e| RuntimeError::io("create device dir", path, e))?;
    unlink_at(&dir, &name);
    let made = if bind {
        Err(nix::errno::Errno::EPERM)
    } else {
        // SAFETY: mknodat of one name in a directory we hold.
        let r = unsafe {
            libc::mknodat(
                dir.as_raw_fd(),
                name.as_ptr(),
                kind.bits() | (mode & 0o7777),
                makedev(major, minor),
            )
        };
        if r < 0 {
            Err(nix::errno::Errno::last())
        } else {
            Ok(())
        }
    };
    match made {
        Ok(()) => {
            if uid.is_some() || gid.is_some() {
                // SAFETY: fchownat of the node we just made, not following a
                // link that might have replaced it.
                let r = unsafe {
                    libc::fchownat(
                        dir.as_raw_fd(),
                        name.as_ptr(),
                        uid.unwrap_or(u32::MAX),
                        gid.unwrap_or(u32::MAX),
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
                if r < 0 {
                    return Err(RuntimeError::sys(
                        format!("chown device '{}'", path.display()),
                        nix::errno::Errno::last(),
                    ));
                }
            }
            Ok(())
        }
        Err(nix::errno::Errno::EPERM) => {
            let target = at::ensure_in_root(root, path, at::Create::File)
                .map_err(|e| RuntimeError::io("create device mount point", path, e))?;
            nix::mount::mount(
                Some(path),
                &at::fd_path(&target),
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| RuntimeError::sys(format!("bind device '{}'", path.display()), e))
        }
        Err(e) => Err(RuntimeError::sys(format!("mknod '{}'", path.display()), e)),
    }
}

fn setup_dev_symlinks(root: BorrowedFd) -> Result<(), RuntimeError> {
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
    let dev = at::ensure_in_root(root, Path::new("/dev"), at::Create::Dir)
        .map_err(|e| RuntimeError::io("resolve inside the container root", "/dev", e))?;
    for (target, name) in links {
        let link = Path::new("/dev").join(name);
        let c = |s: &str| {
            CString::new(s).map_err(|_| {
                RuntimeError::io(
                    "create /dev symlink",
                    &link,
                    std::io::Error::from_raw_os_error(libc::EINVAL),
                )
            })
        };
        let (t, n) = (c(target)?, c(name)?);
        unlink_at(&dev, &n);
        // SAFETY: symlinkat of one name in the /dev directory we hold.
        if unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) } < 0 {
            return Err(RuntimeError::io(
                "create /dev symlink",
                &link,
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
