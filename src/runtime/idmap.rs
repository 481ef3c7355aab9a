//! The overlay root of a container in its own user namespace (`userns =
//! "auto"`): the image's layers are shared and owned by host root; through
//! mounts idmapped with the container's user namespace they appear owned by
//! the container's root, without copying or chowning them.
//!
//! The parent, once the child's ID maps are written, makes one detached,
//! idmapped, read-only clone of each lower (`open_tree(OPEN_TREE_CLONE)` +
//! `mount_setattr(MOUNT_ATTR_IDMAP)`: only it holds CAP_SYS_ADMIN over the
//! layers' filesystem, mount_setattr(2)) and builds the overlay on them as a
//! detached mount (`fsopen(2)`/`fsconfig(2)` "lowerdir+" by fd/`fsmount(2)`;
//! overlayfs takes idmapped and detached layers). Built by host root, the
//! overlay reads and writes its `trusted.overlay.*` xattrs (opaque dirs of the
//! image, of the container's writes) as with `userns = "host"`; mounted from
//! inside the user namespace it could do neither ("overlayfs: failed to set
//! xattr on upper", and opaque dirs of the layers would be ignored). The
//! detached mount never appears on the host: its descriptor goes to the child
//! over the sync socket (SCM_RIGHTS, unix(7)), which `move_mount(2)`s it onto
//! the root's mount point in its own mount namespace.
//!
//! Bind mounts whose options hold `idmap` (or `ridmap`, recursively; OCI
//! runtime-spec "idmapped mounts", with the container's own mapping as crun
//! does when the mount lists none) get the same treatment: the parent sends
//! an idmapped clone of each source after the overlay. A bind from a
//! detached mount is refused (EINVAL), so the init first moves each onto a
//! private tmpfs under the root's mount point (the overlay then covers it),
//! keeps an O_PATH descriptor of each, and binds from `/proc/self/fd/N`.
//! Only with an overlay root (service mode); with a plain root dir the
//! option stays ignored, as before.
//!
//! Must not decide which layers, mounts or mapping: the caller passes them.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::unistd::Pid;
use oci_spec::runtime::Mount;

use super::RuntimeError;

// <linux/mount.h>; the libc crate has the syscall numbers, not these.
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

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
    open_tree_with(dir, userns, false, false, MOUNT_ATTR_RDONLY)
}

/// A detached clone of `dir` (its submounts too with `clone_rec`), idmapped
/// through `userns` (the submounts too with `idmap_rec`), with `extra` attrs.
fn open_tree_with(
    dir: &Path,
    userns: BorrowedFd<'_>,
    clone_rec: bool,
    idmap_rec: bool,
    extra: u64,
) -> Result<OwnedFd, RuntimeError> {
    use std::os::fd::AsFd;
    let src = crate::sys::at::openat2_cwd(dir, libc::O_PATH)
        .map_err(|e| RuntimeError::io("open", dir, e))?;
    let tree = crate::sys::at::clone_tree(src.as_fd(), clone_rec)
        .map_err(|e| RuntimeError::io("open_tree(OPEN_TREE_CLONE)", dir, e))?;
    crate::sys::at::mount_setattr(
        tree.as_fd(),
        MOUNT_ATTR_IDMAP | extra,
        Some(userns),
        idmap_rec,
    )
    .map_err(|e| RuntimeError::io("mount_setattr(MOUNT_ATTR_IDMAP)", dir, e))?;
    Ok(tree)
}

/// The kernel's messages about a failed fsconfig (fsopen(2): "read(2) on
/// the fs context returns them"), for the error.
fn fs_log(fs: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: reading into our own buffer from our own descriptor.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(
            String::from_utf8_lossy(&buf[..n as usize])
                .trim()
                .to_string(),
        );
    }
    out.join("; ")
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&str>,
    value: Option<&CString>,
    aux: libc::c_int,
) -> Result<(), RuntimeError> {
    let k = key.map(|k| CString::new(k).unwrap_or_default());
    // SAFETY: fsconfig(2) with NUL-terminated strings (or NULL) that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            value.map_or(std::ptr::null(), |v| v.as_ptr()),
            aux,
        )
    };
    if r < 0 {
        let errno = last_errno();
        let log = fs_log(fs);
        return Err(RuntimeError::sys(
            format!(
                "fsconfig overlay {}{}",
                key.unwrap_or("create"),
                if log.is_empty() {
                    String::new()
                } else {
                    format!(" ({log})")
                }
            ),
            errno,
        ));
    }
    Ok(())
}

/// Parent, after the child's ID maps are written: the container's overlay
/// (idmapped `lowers`, lowest first, under the container's plain `upper`
/// and `work`) as a detached mount, not attached anywhere.
pub fn build_idmapped_overlay(
    pid: Pid,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<OwnedFd, RuntimeError> {
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/user"));
    let userns = std::fs::File::open(&ns_path)
        .map_err(|e| RuntimeError::io("open user namespace", &ns_path, e))?;
    use std::os::fd::AsFd;
    let trees = lowers
        .iter()
        .map(|l| open_idmapped_tree(l, userns.as_fd()))
        .collect::<Result<Vec<_>, _>>()?;
    let name = c"overlay";
    // SAFETY: fsopen(2) with a NUL-terminated name; returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        return Err(RuntimeError::sys("fsopen overlay", last_errno()));
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    let fs = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    fsconfig(
        &fs,
        FSCONFIG_SET_STRING,
        Some("source"),
        Some(&CString::new("overlay").unwrap_or_default()),
        0,
    )?;
    // "lowerdir+" appends below the previous one: top layer first.
    for tree in trees.iter().rev() {
        fsconfig(
            &fs,
            FSCONFIG_SET_FD,
            Some("lowerdir+"),
            None,
            tree.as_raw_fd(),
        )?;
    }
    fsconfig(
        &fs,
        FSCONFIG_SET_STRING,
        Some("upperdir"),
        Some(&cpath(upper)?),
        0,
    )?;
    fsconfig(
        &fs,
        FSCONFIG_SET_STRING,
        Some("workdir"),
        Some(&cpath(work)?),
        0,
    )?;
    fsconfig(&fs, FSCONFIG_CMD_CREATE, None, None, 0)?;
    // SAFETY: fsmount(2) on our configured context; returns a new fd.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if m < 0 {
        return Err(RuntimeError::sys("fsmount overlay", last_errno()));
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(m as RawFd) })
}

fn has_opt(m: &Mount, o: &str) -> bool {
    m.options().iter().flatten().any(|x| x == o)
}

/// Indices of the bind mounts to idmap, in spec order.
pub fn idmapped_mounts(mounts: &[Mount]) -> Vec<usize> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            let bind =
                m.typ().as_deref() == Some("bind") || has_opt(m, "bind") || has_opt(m, "rbind");
            bind && (has_opt(m, "idmap") || has_opt(m, "ridmap")) && m.source().is_some()
        })
        .map(|(i, _)| i)
        .collect()
}

/// Parent: an idmapped clone of each such mount's source, in spec order.
pub fn open_idmapped_mounts(pid: Pid, mounts: &[Mount]) -> Result<Vec<OwnedFd>, RuntimeError> {
    let idx = idmapped_mounts(mounts);
    if idx.is_empty() {
        return Ok(Vec::new());
    }
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/user"));
    let userns = std::fs::File::open(&ns_path)
        .map_err(|e| RuntimeError::io("open user namespace", &ns_path, e))?;
    use std::os::fd::AsFd;
    idx.into_iter()
        .map(|i| {
            let m = &mounts[i];
            let src = m.source().as_deref().unwrap_or(Path::new("/"));
            let rec =
                has_opt(m, "rbind") || m.typ().as_deref() == Some("bind") && !has_opt(m, "bind");
            open_tree_with(src, userns.as_fd(), rec, has_opt(m, "ridmap"), 0)
        })
        .collect()
}

/// Init: the mounts with each idmapped one's source replaced by the
/// descriptor the parent sent for it (`trees` in spec order).
pub fn rewrite_mounts(mounts: &[Mount], trees: &[OwnedFd]) -> Vec<Mount> {
    let mut out = mounts.to_vec();
    for (i, fd) in idmapped_mounts(mounts).into_iter().zip(trees) {
        out[i].set_source(Some(PathBuf::from(format!(
            "/proc/self/fd/{}",
            fd.as_raw_fd()
        ))));
    }
    out
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

/// Init, in its private mount namespace: attach a detached mount from the
/// parent at `rootfs` (the overlay at the root's mount point, a tree at its
/// staging dir).
pub fn attach_root(rootfs: &Path, tree: OwnedFd) -> Result<(), RuntimeError> {
    let t = cpath(rootfs)?;
    let empty = c"";
    // SAFETY: move_mount(2) of our detached mount onto an existing path.
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
            format!("move_mount the overlay onto '{}'", rootfs.display()),
            last_errno(),
        ));
    }
    Ok(())
}

/// Init, before the overlay is attached at `stage` (the root's mount
/// point): a private tmpfs there with each idmapped tree moved onto
/// `stage/N`, and an O_PATH descriptor of each, which stays usable once the
/// overlay covers the tmpfs.
pub fn stage_mounts(stage: &Path, trees: Vec<OwnedFd>) -> Result<Vec<OwnedFd>, RuntimeError> {
    if trees.is_empty() {
        return Ok(Vec::new());
    }
    nix::mount::mount(
        Some("tmpfs"),
        stage,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700,size=64k"),
    )
    .map_err(|e| RuntimeError::sys(format!("mount staging tmpfs '{}'", stage.display()), e))?;
    let mut out = Vec::with_capacity(trees.len());
    for (i, tree) in trees.into_iter().enumerate() {
        let target = stage.join(i.to_string());
        // A mount goes onto a node of its own kind (a file onto a file).
        let st = nix::sys::stat::fstat(tree.as_raw_fd())
            .map_err(|e| RuntimeError::sys("fstat idmapped mount", e))?;
        let made = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        };
        made.map_err(|e| RuntimeError::io("create idmapped mount staging point", &target, e))?;
        attach_root(&target, tree)?;
        let fd = nix::fcntl::open(
            &target,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| RuntimeError::sys(format!("open '{}'", target.display()), e))?;
        // SAFETY: open just returned this descriptor to us alone.
        out.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn m(dest: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(src)
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn only_binds_with_idmap_are_picked_and_rewritten_in_order() {
        let mounts = [
            m("/proc", "proc", "proc", &["nosuid"]),
            m("/etc/hosts", "bind", "/run/h", &["bind", "idmap"]),
            m("/data", "none", "/srv/d", &["rbind", "ridmap"]),
            m("/plain", "bind", "/srv/p", &["rbind"]),
            m("/t", "tmpfs", "tmpfs", &["idmap"]),
        ];
        assert_eq!(idmapped_mounts(&mounts), vec![1, 2]);
        let a = std::fs::File::open("/dev/null").unwrap();
        let b = std::fs::File::open("/dev/null").unwrap();
        let (na, nb) = (a.as_raw_fd(), b.as_raw_fd());
        let out = rewrite_mounts(&mounts, &[a.into(), b.into()]);
        let src = |i: usize| out[i].source().clone().unwrap();
        assert_eq!(src(1), PathBuf::from(format!("/proc/self/fd/{na}")));
        assert_eq!(src(2), PathBuf::from(format!("/proc/self/fd/{nb}")));
        assert_eq!(src(3), PathBuf::from("/srv/p"));
        assert_eq!(out[0], mounts[0]);
    }
}
