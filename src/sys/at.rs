//! Paths inside a container's root, resolved by the kernel, never by string
//! (issue 12, class 3; CVE-2021-30465). Every lookup is
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from an O_PATH
//! descriptor of the root, so `..` and symlinks (absolute or relative) stay
//! inside it however the tree changes between calls; a missing component is
//! created relative to the descriptor of its resolved parent, one component
//! at a time, then resolved again (crun `crun_safe_ensure_at`, runc
//! `MkdirAllInRoot`). What comes back is an O_PATH descriptor: a mount goes
//! onto it (`/proc/self/fd/N`, or `move_mount` with MOVE_MOUNT_T_EMPTY_PATH),
//! so a concurrent writer swapping a directory for a symlink after the check
//! cannot redirect it. Thin wrappers only; the callers decide.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

// <linux/mount.h> values the libc crate does not export on every target.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x0000_0040;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;

/// `struct mount_attr` (mount_setattr(2)), version 0.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `struct open_how` (openat2(2)).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Resolution flags of every lookup inside a root: symlinks and `..` are
/// resolved as if the root were `/`, and no magic link (`/proc/self/fd/N`,
/// `/proc/PID/root`) may be followed out of it.
const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// openat2(2) of `path` relative to `dir` with `flags` and `resolve`.
pub fn openat2(dir: BorrowedFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // RESOLVE_IN_ROOT lookups fail with EAGAIN when a rename or mount raced
    // their `..` handling; retry, but a bounded number of times, so a
    // container renaming in a loop cannot keep its own init spinning.
    let mut tries = 0;
    loop {
        tries += 1;
        // SAFETY: openat2 with a valid path and an open_how we own, its size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match owned(r) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < 128 => continue,
            x => return x,
        }
    }
}

/// open(2) of a path of our own (relative to the cwd) through openat2.
pub fn openat2_cwd(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: AT_FDCWD is a valid dirfd for the *at calls and is never closed.
    let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
    openat2(cwd, path, flags, 0)
}

/// An O_PATH descriptor of `path` resolved inside `root`.
pub fn resolve_in_root(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    let rel = relative(path);
    openat2(root, &rel, libc::O_PATH, IN_ROOT)
}

/// `path` without its leading `/` (`.` for the root itself): openat2 with
/// RESOLVE_IN_ROOT treats both alike, but an empty path is ENOENT.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// What to create when a path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

/// Resolve `path` inside `root`, creating what is missing: directories
/// (0755) on the way, then a directory or an empty file (0644) as asked.
/// Each component is created with mkdirat / openat(O_CREAT|O_EXCL|O_NOFOLLOW)
/// relative to the descriptor of its parent, then resolved again from the
/// root, so a swap between the two steps leads at worst to another place
/// inside the root. A dangling symlink is followed (inside the root) and its
/// target created, as images with `/etc/resolv.conf -> ../run/...` need.
pub fn ensure_in_root(root: BorrowedFd, path: &Path, last: Create) -> io::Result<OwnedFd> {
    match resolve_in_root(root, path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let mut queue: VecDeque<OsString> = VecDeque::new();
    push_front(&mut queue, path);
    let mut prefix = PathBuf::from("/");
    let mut cur = resolve_in_root(root, &prefix)?;
    let mut links = 0;
    while let Some(part) = queue.pop_front() {
        let next = prefix.join(&part);
        match resolve_in_root(root, &next) {
            Ok(fd) => {
                cur = fd;
                prefix = next;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && part != ".." => {}
            Err(e) => return Err(e),
        }
        if let Ok(target) = readlinkat(cur.as_fd(), &part) {
            links += 1;
            if links > 40 {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            if target.is_absolute() {
                prefix = PathBuf::from("/");
                cur = resolve_in_root(root, &prefix)?;
            }
            push_front(&mut queue, &target);
            continue;
        }
        let c = cstr(&part)?;
        let made = if queue.is_empty() && last == Create::File {
            // SAFETY: openat with a single-component name relative to our fd.
            let fd = unsafe {
                libc::openat(
                    cur.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC,
                    0o644,
                )
            };
            owned(fd as libc::c_long).map(drop)
        } else {
            // SAFETY: mkdirat with a single-component name relative to our fd.
            let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        match made {
            Ok(()) => {}
            // Someone made it first: whatever it is, resolve it again.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        cur = resolve_in_root(root, &next)?;
        prefix = next;
    }
    Ok(cur)
}

fn push_front(queue: &mut VecDeque<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    for part in parts.into_iter().rev() {
        queue.push_front(part);
    }
}

/// readlinkat(2) of one name in `dir`.
pub fn readlinkat(dir: BorrowedFd, name: &OsStr) -> io::Result<PathBuf> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat into a buffer we own, its length passed.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(
        <OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf),
    ))
}

/// The parent directory of `path` inside `root` (created if missing) and the
/// last component's name, for the *at calls that make one node (mknodat,
/// symlinkat, unlinkat).
pub fn ensure_parent_in_root(root: BorrowedFd, path: &Path) -> io::Result<(OwnedFd, CString)> {
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => cstr(n)?,
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    Ok((ensure_in_root(root, parent, Create::Dir)?, name))
}

/// `/proc/self/fd/N` of a descriptor, for mount(2), whose target must be a
/// path: the magic link leads the kernel to the very inode the fd holds.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The mount id of what `fd` refers to (statx STATX_MNT_ID).
pub fn mount_id(fd: BorrowedFd) -> io::Result<u64> {
    // SAFETY: zeroed statx is a valid out-parameter.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let empty = c"";
    // SAFETY: statx of the fd itself (AT_EMPTY_PATH) into a struct we own.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.stx_mnt_id)
}

/// fstat(2) of a descriptor (O_PATH ones too).
pub fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)
}

/// The filesystem magic of what `fd` refers to (fstatfs f_type).
pub fn fs_magic(fd: BorrowedFd) -> io::Result<i64> {
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs into a struct we own.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// A detached copy of the mount tree at `fd` (open_tree OPEN_TREE_CLONE),
/// with its submounts when `recursive`.
pub fn clone_tree(fd: BorrowedFd, recursive: bool) -> io::Result<OwnedFd> {
    let empty = c"";
    let flags = OPEN_TREE_CLONE
        | OPEN_TREE_CLOEXEC
        | libc::AT_EMPTY_PATH as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree(2) of an fd we hold with AT_EMPTY_PATH.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), empty.as_ptr(), flags) })
}

/// mount_setattr(2): set `attrs` on the tree at `fd`, on every mount under it
/// too when `recursive` (AT_RECURSIVE: a read-only path stays read-only in
/// its submounts, which a MS_REMOUNT of one mount never did).
pub fn set_attrs(fd: BorrowedFd, attrs: u64, recursive: bool) -> io::Result<()> {
    mount_setattr(fd, attrs, None, recursive)
}

/// mount_setattr(2) of `attrs` on the tree at `fd`, idmapped through the
/// user namespace `userns` when given (`attrs` must then hold
/// MOUNT_ATTR_IDMAP); the one call every caller goes through.
pub fn mount_setattr(
    fd: BorrowedFd,
    attrs: u64,
    userns: Option<BorrowedFd>,
    recursive: bool,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let empty = c"";
    // SAFETY: mount_setattr(2) on a tree fd with AT_EMPTY_PATH; the attr
    // struct outlives the call and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 },
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// move_mount(2) of the detached tree `tree` onto the inode `target` holds:
/// no path is looked up, so nothing can be swapped under it.
pub fn attach(tree: BorrowedFd, target: BorrowedFd) -> io::Result<()> {
    let empty = c"";
    // SAFETY: move_mount(2) between two descriptors we hold.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A fresh detached filesystem of type `fstype` (fsopen/fsconfig/fsmount)
/// with the string options `opts` and mount attributes `attrs`.
pub fn new_fs(fstype: &str, opts: &[(&str, &str)], attrs: u64) -> io::Result<OwnedFd> {
    let t = cstr(OsStr::new(fstype))?;
    // SAFETY: fsopen(2) with a valid NUL-terminated name.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })?;
    let config = |cmd: libc::c_uint, key: Option<&CString>, val: Option<&CString>| {
        // SAFETY: fsconfig(2) on our fs context with valid strings or NULL.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                key.map_or(std::ptr::null(), |k| k.as_ptr()),
                val.map_or(std::ptr::null(), |v| v.as_ptr()),
                0,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    for (k, v) in opts {
        config(
            FSCONFIG_SET_STRING,
            Some(&cstr(OsStr::new(k))?),
            Some(&cstr(OsStr::new(v))?),
        )?;
    }
    config(FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: fsmount(2) of our configured context.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_fd(p: &Path) -> OwnedFd {
        OwnedFd::from(std::fs::File::open(p).unwrap())
    }

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn symlinks_and_dotdot_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc", r.join("etc/up")).unwrap();
        let root = root_fd(&r);
        let got = resolve_in_root(root.as_fd(), Path::new("/../../abs")).unwrap();
        assert_eq!(real(&got), r.join("etc"));
        let got = resolve_in_root(root.as_fd(), Path::new("/etc/up")).unwrap();
        assert_eq!(real(&got), r.join("etc"));
    }

    #[test]
    fn ensure_creates_inside_the_root_through_dangling_links() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        // An absolute dangling link: created inside the root, not on the host.
        std::os::unix::fs::symlink(outside.path().join("x"), r.join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink("../run/stub", r.join("etc/hosts")).unwrap();
        let root = root_fd(&r);
        let f = ensure_in_root(root.as_fd(), Path::new("/etc/resolv.conf"), Create::File).unwrap();
        assert_eq!(
            real(&f),
            r.join(outside.path().strip_prefix("/").unwrap()).join("x")
        );
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let f = ensure_in_root(root.as_fd(), Path::new("/etc/hosts"), Create::File).unwrap();
        assert_eq!(real(&f), r.join("run/stub"));
        let d = ensure_in_root(root.as_fd(), Path::new("/a/b/../c"), Create::Dir).unwrap();
        assert_eq!(real(&d), r.join("a/c"));
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(ensure_in_root(root.as_fd(), Path::new("/loop/x"), Create::Dir).is_err());
    }
}
