//! Idmapped lower layers for a container in its own user namespace
//! (`userns = "auto"`): the image's layers are shared and owned by host
//! root; through a mount idmapped with the container's user namespace they
//! appear owned by the container's root, without copying or chowning them.
//!
//! The parent makes one detached, idmapped, read-only clone of each lower
//! (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_IDMAP)`) once the
//! child's ID maps are written, because only it holds CAP_SYS_ADMIN over the
//! layers' filesystem (mount_setattr(2): "the caller must have CAP_SYS_ADMIN
//! in the initial user namespace"). It passes the descriptors to the child
//! over the sync socket (SCM_RIGHTS, unix(7)); the child moves them onto a
//! private tmpfs in its own mount namespace (`move_mount(2)`) and uses those
//! paths as overlay lowerdirs (overlayfs accepts idmapped layers since 5.19).
//!
//! Must not decide which layers or which mapping: the caller passes both.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::unistd::Pid;

use super::RuntimeError;

// <linux/mount.h>; the libc crate has the syscall numbers, not these.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;

/// `struct mount_attr` (mount_setattr(2)), version 0 (32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(p: &Path) -> Result<CString, RuntimeError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RuntimeError::Io {
        op: "path with a NUL byte",
        path: p.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

fn last_errno() -> nix::Error {
    nix::Error::last()
}

/// A detached, read-only clone of `dir` whose IDs are shifted through the
/// user namespace `userns` (the fd of `/proc/PID/ns/user`).
pub fn open_idmapped_tree(dir: &Path, userns: BorrowedFd<'_>) -> Result<OwnedFd, RuntimeError> {
    let c = cpath(dir)?;
    // SAFETY: open_tree(2) with a valid NUL-terminated path; returns a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(RuntimeError::sys(
            format!("open_tree(OPEN_TREE_CLONE) '{}'", dir.display()),
            last_errno(),
        ));
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr(2) on our detached tree with AT_EMPTY_PATH; the
    // attr struct outlives the call and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(RuntimeError::sys(
            format!("mount_setattr(MOUNT_ATTR_IDMAP) '{}'", dir.display()),
            last_errno(),
        ));
    }
    Ok(tree)
}

/// Parent, after the child's ID maps are written: an idmapped clone of each
/// lower, in the same order.
pub fn open_idmapped_lowers(pid: Pid, lowers: &[PathBuf]) -> Result<Vec<OwnedFd>, RuntimeError> {
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/user"));
    let userns = std::fs::File::open(&ns_path)
        .map_err(|e| RuntimeError::io("open user namespace", &ns_path, e))?;
    use std::os::fd::AsFd;
    lowers
        .iter()
        .map(|l| open_idmapped_tree(l, userns.as_fd()))
        .collect()
}

/// Send each descriptor in its own message (one byte of payload), so no
/// message carries more than SCM_MAX_FD and the receiver counts them.
pub fn send_fds(sock: BorrowedFd<'_>, fds: &[OwnedFd]) -> Result<(), RuntimeError> {
    for fd in fds {
        let raw = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let iov = [IoSlice::new(b"F")];
        loop {
            match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(RuntimeError::sys("send idmapped layer (SCM_RIGHTS)", e)),
            }
        }
    }
    Ok(())
}

/// Child: the `n` descriptors `send_fds` sent, in order.
pub fn receive_fds(sock: BorrowedFd<'_>, n: usize) -> Result<Vec<OwnedFd>, RuntimeError> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::sys("receive idmapped layer (SCM_RIGHTS)", e)),
        };
        if msg.bytes == 0 {
            return Err(RuntimeError::sys(
                "receive idmapped layer: the parent closed the channel",
                nix::errno::Errno::EPIPE,
            ));
        }
        let mut got = false;
        for c in msg
            .cmsgs()
            .map_err(|e| RuntimeError::sys("receive idmapped layer", e))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS installed this descriptor for us.
                    out.push(unsafe { OwnedFd::from_raw_fd(fd) });
                    got = true;
                }
            }
        }
        if !got {
            return Err(RuntimeError::sys(
                "receive idmapped layer: a message without a descriptor",
                nix::errno::Errno::EPROTO,
            ));
        }
    }
    Ok(out)
}

/// Child, in its private mount namespace: a tmpfs on `stage` (the overlay's
/// own mount point, which the overlay then covers) with each idmapped tree
/// moved onto `stage/N`; returns those paths as the new lowers.
pub fn stage_lowers(stage: &Path, trees: Vec<OwnedFd>) -> Result<Vec<PathBuf>, RuntimeError> {
    nix::mount::mount(
        Some("tmpfs"),
        stage,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700,size=64k"),
    )
    .map_err(|e| RuntimeError::sys(format!("mount staging tmpfs '{}'", stage.display()), e))?;
    let mut paths = Vec::with_capacity(trees.len());
    for (i, tree) in trees.into_iter().enumerate() {
        let target = stage.join(i.to_string());
        std::fs::create_dir(&target)
            .map_err(|e| RuntimeError::io("create layer staging dir", &target, e))?;
        let t = cpath(&target)?;
        let empty = c"";
        // SAFETY: move_mount(2) of our detached tree onto a path we made.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if r < 0 {
            return Err(RuntimeError::sys(
                format!("move_mount idmapped layer onto '{}'", target.display()),
                last_errno(),
            ));
        }
        paths.push(target);
    }
    Ok(paths)
}
