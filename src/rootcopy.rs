//! `berth cp`: files copied between the host and a running container's root,
//! which the container controls and may change while berth copies.
//!
//! The container's root is reached as its mount namespace sees it: an O_PATH
//! descriptor of `/proc/PID/root` of the recorded main process, opened while
//! a pidfd holds that process and checked against its start time after (a
//! reused PID is refused). Every path inside is resolved by the kernel from
//! that descriptor (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
//! `sys::at`), so `..`, absolute symlinks (`/tmp/x -> /etc`) and
//! `/proc/self/root` stay in the container; nothing is ever a joined string
//! (runc CVE-2019-14271 and Docker's `docker cp` CVE-2018-15664 were exactly
//! that). Below the resolved start, each node is opened relative to its
//! parent's descriptor with O_NOFOLLOW (O_PATH first, reopened for reading
//! only when it is a regular file, `store::layer`), and each node written is
//! created relative to its parent's descriptor (mkdirat, openat O_CREAT |
//! O_EXCL | O_NOFOLLOW, symlinkat, mknodat), after unlinking a non-directory
//! that was there: a symlink swapped in during the copy is replaced, never
//! followed, and a directory swapped for a link was opened already.
//!
//! Owners (`docker cp` semantics): copied in, files belong to the container's
//! root (mapped through its user namespace, `userns = "auto"`), or with `-a`
//! to their owners on the host, mapped the same way; copied out, to the
//! caller, or with `-a` to their owners as the container sees them.

use std::ffi::{CString, OsStr};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::runtime::{Pid, ProcessHandle};
use crate::store::layer::{list_dir, open_node, reopen, IdMap, TarTree, TreeOptions};
use crate::sys::at;

/// What went wrong, naming the container and the path.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("container \"{name}\" is not running (its main process is gone)")]
    Gone { name: String },
    #[error("cannot {op} \"{path}\"")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("\"{path}\": {reason}")]
    Refused { path: PathBuf, reason: String },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CopyError + 'a {
    move |source| CopyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A running container's root and ID maps.
#[derive(Debug)]
pub struct ContainerRoot {
    root: OwnedFd,
    pub uids: IdMap,
    pub gids: IdMap,
}

impl ContainerRoot {
    /// The root of `name`'s main process `pid` (started at `start_time`).
    pub fn open(name: &str, pid: i32, start_time: Option<u64>) -> Result<ContainerRoot, CopyError> {
        let gone = || CopyError::Gone {
            name: name.to_string(),
        };
        let handle = ProcessHandle::open(Pid::from_raw(pid), start_time).ok_or_else(gone)?;
        let p = PathBuf::from(format!("/proc/{pid}/root"));
        // Our own /proc: following this magic link is the point.
        let root =
            at::openat2_cwd(&p, libc::O_PATH | libc::O_DIRECTORY).map_err(io_err("open", &p))?;
        let uids = IdMap::of_process(pid, "uid_map").map_err(io_err("read the uid_map of", &p))?;
        let gids = IdMap::of_process(pid, "gid_map").map_err(io_err("read the gid_map of", &p))?;
        // Read after the opens: were the PID reused meanwhile, the
        // descriptors could be another process's.
        if !handle.still_there()
            || crate::runtime::proc_start_time(Pid::from_raw(pid))
                != start_time.or_else(|| crate::runtime::proc_start_time(Pid::from_raw(pid)))
        {
            return Err(gone());
        }
        Ok(ContainerRoot { root, uids, gids })
    }

    /// A container root given as a directory (tests, and the rootfs of a
    /// stopped container): no ID map.
    pub fn from_dir(dir: &Path) -> Result<ContainerRoot, CopyError> {
        let root =
            at::openat2_cwd(dir, libc::O_PATH | libc::O_DIRECTORY).map_err(io_err("open", dir))?;
        Ok(ContainerRoot {
            root,
            uids: IdMap::default(),
            gids: IdMap::default(),
        })
    }

    /// `path` inside the root, resolved there (a final symlink followed
    /// inside the root too).
    fn resolve(&self, path: &Path) -> io::Result<OwnedFd> {
        at::resolve_in_root(self.root.as_fd(), path)
    }

    /// The node `path` names inside the root itself (a final symlink as a
    /// symlink) unless `follow`, and the name it gets in a copy.
    fn node(&self, path: &Path, follow: bool) -> Result<(OwnedFd, PathBuf), CopyError> {
        let (parent, last) = split(path);
        let fd = match (&last, follow) {
            (Some(n), false) => {
                let dir = self.resolve(&parent).map_err(io_err("resolve", path))?;
                open_node(dir.as_fd(), n).map_err(io_err("open", path))?
            }
            _ => self.resolve(path).map_err(io_err("resolve", path))?,
        };
        Ok((fd, PathBuf::from(last.unwrap_or_else(|| ".".into()))))
    }
}

/// `path` as (its parent, its last normal component); `/`, `.` and a
/// trailing `..` have no last component (the resolved path itself is meant).
fn split(path: &Path) -> (PathBuf, Option<std::ffi::OsString>) {
    match path.components().next_back() {
        Some(Component::Normal(n)) => (
            // A bare name's parent is the working directory.
            match path.parent() {
                Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
                Some(p) => p.to_path_buf(),
                None => PathBuf::from("/"),
            },
            Some(n.to_os_string()),
        ),
        _ => (path.to_path_buf(), None),
    }
}

fn cstr(n: &OsStr) -> io::Result<CString> {
    CString::new(n.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Who the copies belong to (the IDs to chown a node to, from its owner at
/// the source; None leaves the caller's) and what the destination accepts.
pub struct Policy<'a> {
    pub owners: &'a dyn Fn(u32, u32) -> Option<(u32, u32)>,
    /// Mode bits kept: copied out without `-a`, a container's set-user-ID
    /// and set-group-ID bits are dropped (a setuid binary it planted would
    /// otherwise land on the host owned by the caller, root).
    pub mode_mask: u32,
    /// Whether device nodes are made: never on the host (a container's
    /// `mknod` of the host's disk, copied out 0666, would hand it to every
    /// host user); FIFOs always.
    pub devices: bool,
}

/// Remove what is at `name` in `dir` unless it is a directory (a file, a
/// symlink, a FIFO or device the container planted there is replaced,
/// never opened or followed). Returns whether a directory is there.
fn clear_for(dir: BorrowedFd, name: &CString) -> io::Result<bool> {
    // SAFETY: fstatat of one name relative to our descriptor into our struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(false)
        } else {
            Err(e)
        };
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Ok(true);
    }
    // SAFETY: unlinkat of one name relative to our descriptor.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(false)
}

/// A new regular file `name` in `dir`, open for writing: what was there is
/// replaced, never opened or followed (O_EXCL | O_NOFOLLOW). Copy out and
/// copy in (a tree or a tar member) create files alike.
fn create_file(dir: BorrowedFd, name: &CString) -> io::Result<std::fs::File> {
    clear_for(dir, name)?;
    // SAFETY: openat of one new name relative to our descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    check(fd)?;
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A symlink `name` -> `target` in `dir` (what was there replaced), owned
/// as the policy maps `st`'s owners.
fn create_symlink(
    dir: BorrowedFd,
    name: &CString,
    target: &OsStr,
    st: &libc::stat,
    p: &Policy,
) -> io::Result<()> {
    clear_for(dir, name)?;
    let t = cstr(target)?;
    // SAFETY: symlinkat of one name relative to our descriptor.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    chown_at(dir, name, st, p)
}

/// Owners of the link or node `name` in `dir` (never what a link names:
/// AT_SYMLINK_NOFOLLOW), as the policy maps `st`'s.
fn chown_at(dir: BorrowedFd, name: &CString, st: &libc::stat, p: &Policy) -> io::Result<()> {
    if let Some((u, g)) = (p.owners)(st.st_uid, st.st_gid) {
        // SAFETY: fchownat of one name relative to our descriptor, no link followed.
        check(unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                u,
                g,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
    }
    Ok(())
}

/// Owner, mode and times of what `fd` holds (a descriptor open for it).
fn set_meta(fd: BorrowedFd, st: &libc::stat, p: &Policy) -> io::Result<()> {
    if let Some((u, g)) = (p.owners)(st.st_uid, st.st_gid) {
        // SAFETY: fchown of a descriptor we hold.
        check(unsafe { libc::fchown(fd.as_raw_fd(), u, g) })?;
    }
    // After the chown, which clears set-user-ID bits.
    // SAFETY: fchmod of a descriptor we hold.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), st.st_mode & p.mode_mask) })?;
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: futimens of a descriptor we hold with two timespecs we own.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
}

/// Copy the node `src` (an O_PATH descriptor) as `name` into the directory
/// `dst`, a directory with all under it.
pub fn copy_node(src: BorrowedFd, dst: BorrowedFd, name: &OsStr, p: &Policy) -> io::Result<()> {
    let st = at::fstat(src)?;
    let c = cstr(name)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            if !clear_for(dst, &c)? {
                // SAFETY: mkdirat of one name relative to our descriptor.
                check(unsafe { libc::mkdirat(dst.as_raw_fd(), c.as_ptr(), 0o700) })?;
            }
            // SAFETY: openat of one name relative to our descriptor, no link followed.
            let fd = unsafe {
                libc::openat(
                    dst.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            check(fd)?;
            // SAFETY: the kernel just returned this descriptor to us alone.
            let out = unsafe { OwnedFd::from_raw_fd(fd) };
            let d = reopen(src, true)?;
            for child in list_dir(&d)? {
                let node = match open_node(d.as_fd(), &child) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(e),
                };
                copy_node(node.as_fd(), out.as_fd(), &child, p)?;
            }
            set_meta(out.as_fd(), &st, p)
        }
        libc::S_IFREG => {
            let f = reopen(src, false)?;
            let mut out = create_file(dst, &c)?;
            io::copy(&mut (&f).take(st.st_size as u64), &mut out)?;
            set_meta(out.as_fd(), &st, p)
        }
        libc::S_IFLNK => {
            let target = at::readlinkat(src, OsStr::new(""))?;
            create_symlink(dst, &c, target.as_os_str(), &st, p)
        }
        libc::S_IFCHR | libc::S_IFBLK if !p.devices => Ok(()),
        libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
            clear_for(dst, &c)?;
            // SAFETY: mknodat of one name relative to our descriptor.
            check(unsafe { libc::mknodat(dst.as_raw_fd(), c.as_ptr(), st.st_mode, st.st_rdev) })?;
            chown_at(dst, &c, &st, p)
        }
        // Sockets cannot be copied (tar has no form for them either).
        _ => Ok(()),
    }
}

/// `docker cp` options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-a`: keep owners (mapped across the user namespace).
    pub archive: bool,
    /// `-L`: follow a symlink at the source path.
    pub follow: bool,
}

/// Where a copy lands: the directory it is created in and its name there.
/// `DEST` names an existing directory: the copy goes into it under the
/// source's name; else DEST is the copy (its parent must exist), and a DEST
/// written with a trailing `/` must be a directory (`docker cp` rules).
fn destination(
    resolve: &dyn Fn(&Path) -> io::Result<OwnedFd>,
    dest: &Path,
    dest_text: &str,
    src_name: &Path,
    src_is_dir: bool,
) -> Result<(OwnedFd, std::ffi::OsString), CopyError> {
    match resolve(dest) {
        Ok(fd) => {
            let st = at::fstat(fd.as_fd()).map_err(io_err("stat", dest))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let name = src_name.as_os_str().to_os_string();
                if name == "." {
                    // Copying a root or `.`: its contents go into DEST.
                    return Ok((fd, name));
                }
                return Ok((fd, name));
            }
            if src_is_dir {
                return Err(CopyError::Refused {
                    path: dest.to_path_buf(),
                    reason: "cannot copy a directory onto a file".into(),
                });
            }
            let (parent, last) = split(dest);
            let pfd = resolve(&parent).map_err(io_err("resolve", &parent))?;
            Ok((pfd, last.unwrap_or_default()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            if dest_text.ends_with('/') {
                return Err(CopyError::Refused {
                    path: dest.to_path_buf(),
                    reason: "no such directory (a destination ending in / must exist)".into(),
                });
            }
            let (parent, last) = split(dest);
            let pfd = resolve(&parent).map_err(io_err("resolve the parent of", dest))?;
            let name = last.ok_or_else(|| CopyError::Refused {
                path: dest.to_path_buf(),
                reason: "not a name to create".into(),
            })?;
            Ok((pfd, name))
        }
        Err(e) => Err(io_err("resolve", dest)(e)),
    }
}

/// Copy `src` inside the container to `dest` on the host.
pub fn copy_out(
    root: &ContainerRoot,
    src: &Path,
    dest: &Path,
    dest_text: &str,
    opts: CopyOptions,
) -> Result<(), CopyError> {
    let (node, name) = root.node(src, opts.follow)?;
    let st = at::fstat(node.as_fd()).map_err(io_err("stat", src))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    // The host side is the caller's own: resolved as the host sees it.
    let host = |p: &Path| at::openat2_cwd(p, libc::O_PATH);
    let (dir, name) = destination(&host, dest, dest_text, &name, is_dir)?;
    let (uids, gids) = (root.uids.clone(), root.gids.clone());
    let keep = move |u: u32, g: u32| Some((uids.to_inside(u), gids.to_inside(g)));
    let none = |_: u32, _: u32| None;
    let p = Policy {
        owners: if opts.archive { &keep } else { &none },
        mode_mask: if opts.archive { 0o7777 } else { 0o1777 },
        devices: false,
    };
    copy_into(node.as_fd(), dir.as_fd(), &name, is_dir, &p).map_err(io_err("copy to", dest))
}

/// Copy `src` on the host to `dest` inside the container.
pub fn copy_in(
    root: &ContainerRoot,
    src: &Path,
    dest: &Path,
    dest_text: &str,
    opts: CopyOptions,
) -> Result<(), CopyError> {
    let (parent, last) = split(src);
    let node = match (&last, opts.follow) {
        (Some(n), false) => {
            let dir = at::openat2_cwd(&parent, libc::O_PATH).map_err(io_err("open", &parent))?;
            open_node(dir.as_fd(), n).map_err(io_err("open", src))?
        }
        _ => at::openat2_cwd(src, libc::O_PATH).map_err(io_err("open", src))?,
    };
    let name = PathBuf::from(last.unwrap_or_else(|| ".".into()));
    let st = at::fstat(node.as_fd()).map_err(io_err("stat", src))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let inside = |p: &Path| root.resolve(p);
    let (dir, name) = destination(&inside, dest, dest_text, &name, is_dir)?;
    let owners = owners_inside(root, opts.archive);
    let p = Policy {
        owners: &*owners,
        mode_mask: 0o7777,
        devices: true,
    };
    copy_into(node.as_fd(), dir.as_fd(), &name, is_dir, &p).map_err(io_err("copy into", dest))
}

/// `.` (a root copied into a directory): its children, else the node.
fn copy_into(
    node: BorrowedFd,
    dir: BorrowedFd,
    name: &OsStr,
    is_dir: bool,
    p: &Policy,
) -> io::Result<()> {
    if name == "." && is_dir {
        let d = reopen(node, true)?;
        for child in list_dir(&d)? {
            let n = open_node(d.as_fd(), &child)?;
            copy_node(n.as_fd(), dir, &child, p)?;
        }
        return Ok(());
    }
    copy_node(node, dir, name, p)
}

/// `berth cp NAME:SRC -`: SRC as a tar stream (its owners as the container
/// sees them) on `out`.
pub fn tar_out(
    root: &ContainerRoot,
    src: &Path,
    follow: bool,
    out: impl Write,
) -> Result<(), CopyError> {
    let (node, name) = root.node(src, follow)?;
    let mut t = TarTree::new(
        out,
        TreeOptions {
            overlay_whiteouts: false,
            uids: root.uids.clone(),
            gids: root.gids.clone(),
            clamp_mtime: None,
            skip_empty_files: Default::default(),
            as_layer_dir: false,
        },
    );
    let err = io_err("write a tar of", src);
    if name == Path::new(".") {
        t.append_children(node.as_fd(), Path::new(""))
    } else {
        t.append_node(node.as_fd(), &name)
    }
    .and_then(|_| t.finish().map(drop))
    .map_err(err)
}

/// `dir`'s subdirectory `name`, made (0755, the container root's) when
/// missing; never a link followed.
fn subdir(dir: BorrowedFd, name: &OsStr, p: &Policy) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    if !clear_for(dir, &c)? {
        // SAFETY: mkdirat of one name relative to our descriptor.
        check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) })?;
        if let Some((u, g)) = (p.owners)(0, 0) {
            // SAFETY: fchownat of the directory just made, no link followed.
            check(unsafe {
                libc::fchownat(dir.as_raw_fd(), c.as_ptr(), u, g, libc::AT_SYMLINK_NOFOLLOW)
            })?;
        }
    }
    // SAFETY: openat of one name relative to our descriptor, no link followed.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    check(fd)?;
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A member name's components; `..` and anything but plain names refused.
fn member_parts(path: &Path) -> Option<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// One tar member `entry` as the node `name` in `dir`.
fn extract_member<R: Read>(
    entry: &mut tar::Entry<R>,
    dir: BorrowedFd,
    name: &OsStr,
    top: BorrowedFd,
    p: &Policy,
) -> io::Result<()> {
    let h = entry.header();
    // SAFETY: a zeroed stat is a valid value; only the fields set are read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_uid = h.uid()? as u32;
    st.st_gid = h.gid()? as u32;
    st.st_mode = h.mode()?;
    st.st_mtime = h.mtime()? as i64;
    st.st_atime = st.st_mtime;
    let c = cstr(name)?;
    let kind = h.entry_type();
    match kind {
        tar::EntryType::Directory => {
            let d = subdir(dir, name, p)?;
            set_meta(d.as_fd(), &st, p)
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mut out = create_file(dir, &c)?;
            io::copy(entry, &mut out)?;
            set_meta(out.as_fd(), &st, p)
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()?
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            create_symlink(dir, &c, target.as_os_str(), &st, p)
        }
        tar::EntryType::Link => {
            // An earlier member of this archive: its parent walked with no
            // link followed, and linkat(2) without AT_SYMLINK_FOLLOW.
            let target = entry
                .link_name()?
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            let parts = member_parts(&target)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            let mut cur: OwnedFd = reopen(top, true)?.into();
            for part in &parts[..parts.len() - 1] {
                cur = subdir(cur.as_fd(), part, p)?;
            }
            let from = cstr(parts[parts.len() - 1])?;
            clear_for(dir, &c)?;
            // SAFETY: linkat between two names relative to our descriptors.
            check(unsafe {
                libc::linkat(
                    cur.as_raw_fd(),
                    from.as_ptr(),
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    0,
                )
            })
        }
        tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
            let (fmt, dev) = match kind {
                tar::EntryType::Fifo => (libc::S_IFIFO, 0),
                t => (
                    if t == tar::EntryType::Char {
                        libc::S_IFCHR
                    } else {
                        libc::S_IFBLK
                    },
                    libc::makedev(
                        h.device_major()?.unwrap_or(0),
                        h.device_minor()?.unwrap_or(0),
                    ),
                ),
            };
            clear_for(dir, &c)?;
            // SAFETY: mknodat of one name relative to our descriptor.
            check(unsafe {
                libc::mknodat(
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    fmt | (st.st_mode & 0o7777),
                    dev,
                )
            })
        }
        // Extended headers are read by the tar crate; nothing else is a node.
        _ => Ok(()),
    }
}

/// A [`Policy`]'s owner mapping, owned.
type OwnerMap = Box<dyn Fn(u32, u32) -> Option<(u32, u32)>>;

/// Owners of what is copied into the container (a tree or a tar stream), as
/// host IDs: with `-a` each file's own, mapped through the container's ID
/// map (an ID it does not map becomes nobody); else the container's root.
fn owners_inside(root: &ContainerRoot, archive: bool) -> OwnerMap {
    if archive {
        let (uids, gids) = (root.uids.clone(), root.gids.clone());
        let nobody = crate::store::layer::OVERFLOW_ID;
        return Box::new(move |u: u32, g: u32| {
            Some((
                uids.to_outside(u).unwrap_or(nobody),
                gids.to_outside(g).unwrap_or(nobody),
            ))
        });
    }
    let (ru, rg) = (root.uids.to_outside(0), root.gids.to_outside(0));
    Box::new(move |_: u32, _: u32| Some((ru.unwrap_or(0), rg.unwrap_or(0))))
}

/// `berth cp - NAME:DIR`: a tar stream from `input` extracted into the
/// existing directory DIR inside the container, each member created
/// relative to its parent's descriptor (walked from DIR with no link
/// followed), `..` refused. Owners as [`copy_in`] sets them.
pub fn tar_in(
    root: &ContainerRoot,
    dest: &Path,
    archive: bool,
    input: impl Read,
) -> Result<(), CopyError> {
    let fd = root.resolve(dest).map_err(io_err("resolve", dest))?;
    let top: OwnedFd = reopen(fd.as_fd(), true)
        .map_err(|_| CopyError::Refused {
            path: dest.to_path_buf(),
            reason: "a tar stream is extracted into a directory, and this is none".into(),
        })?
        .into();
    let owners = owners_inside(root, archive);
    let p = Policy {
        owners: &*owners,
        mode_mask: 0o7777,
        devices: true,
    };
    let mut a = tar::Archive::new(input);
    let read = |e: io::Error| CopyError::Io {
        op: "read the tar stream for",
        path: dest.to_path_buf(),
        source: e,
    };
    for entry in a.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let path = entry.path().map_err(read)?.into_owned();
        let refused = || CopyError::Refused {
            path: path.clone(),
            reason: "a tar member must be a relative name without '..'".into(),
        };
        let parts = member_parts(&path).ok_or_else(refused)?;
        let Some((last, parents)) = parts.split_last() else {
            continue;
        };
        let made = (|| -> io::Result<()> {
            let mut cur: OwnedFd = top.try_clone()?;
            for part in parents {
                cur = subdir(cur.as_fd(), part, &p)?;
            }
            extract_member(&mut entry, cur.as_fd(), last, top.as_fd(), &p)
        })();
        made.map_err(io_err("extract", &dest.join(&path)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_links_lead_only_into_the_root() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        let r = t.path().join("root");
        std::fs::create_dir_all(host.join("etc")).unwrap();
        std::fs::write(host.join("etc/shadow"), b"host secret").unwrap();
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/shadow"), b"container's").unwrap();
        // Absolute links naming the host's paths, as a container plants them.
        std::os::unix::fs::symlink(host.join("etc"), r.join("tmp/x")).unwrap();
        std::os::unix::fs::symlink(host.join("etc/shadow"), r.join("link")).unwrap();
        let inner = r.join(host.strip_prefix("/").unwrap()).join("etc");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join("shadow"), b"inside, at the host's path").unwrap();
        let root = ContainerRoot::from_dir(&r).unwrap();
        let src = t.path().join("file");
        std::fs::write(&src, b"copied").unwrap();

        copy_in(
            &root,
            &src,
            Path::new("/tmp/x/"),
            "/tmp/x/",
            CopyOptions::default(),
        )
        .unwrap();
        assert!(!host.join("etc/file").exists(), "wrote through to the host");
        assert_eq!(std::fs::read(inner.join("file")).unwrap(), b"copied");

        // -L on the link: the file it names inside the root, not the host's.
        let out = t.path().join("out");
        let opts = CopyOptions {
            follow: true,
            ..CopyOptions::default()
        };
        copy_out(&root, Path::new("/link"), &out, "out", opts).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"inside, at the host's path");
        // Without -L: the link itself, never followed.
        let out2 = t.path().join("out2");
        copy_out(
            &root,
            Path::new("/link"),
            &out2,
            "out2",
            CopyOptions::default(),
        )
        .unwrap();
        assert!(std::fs::symlink_metadata(&out2)
            .unwrap()
            .file_type()
            .is_symlink());

        // A directory out, with a link inside copied as a link; and into an
        // existing directory under its own name.
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        copy_out(&root, Path::new("/tmp"), &d, "d", CopyOptions::default()).unwrap();
        assert!(std::fs::symlink_metadata(d.join("tmp/x"))
            .unwrap()
            .file_type()
            .is_symlink());

        // Out without -a: a planted setuid binary loses its bit, and a
        // device node (the host's disk, made 0666) is not made on the host.
        std::fs::create_dir(r.join("bad")).unwrap();
        std::fs::write(r.join("bad/suid"), b"#!").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(r.join("bad/suid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        nix::sys::stat::mknod(
            &r.join("bad/disk"),
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(8, 0),
        )
        .unwrap();
        let b = t.path().join("b");
        copy_out(&root, Path::new("/bad"), &b, "b", CopyOptions::default()).unwrap();
        let mode = std::fs::metadata(b.join("suid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(!b.join("disk").exists());

        // A destination ending in / must exist.
        let e = copy_in(
            &root,
            &src,
            Path::new("/nope/"),
            "/nope/",
            CopyOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("must exist"), "{e}");
        // `..` cannot climb out either.
        copy_in(
            &root,
            &src,
            Path::new("/../../../copied"),
            "x",
            CopyOptions::default(),
        )
        .unwrap();
        assert_eq!(std::fs::read(r.join("copied")).unwrap(), b"copied");
    }

    #[test]
    fn a_tar_stream_in_stays_in_its_directory() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        std::fs::create_dir_all(&host).unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("dst")).unwrap();
        std::os::unix::fs::symlink(&host, r.join("dst/sub")).unwrap();
        let root = ContainerRoot::from_dir(&r).unwrap();
        let tar_of = |members: &[(&str, &[u8])]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, data) in members {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o640);
                h.set_uid(1000);
                h.set_gid(1000);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                // Names written raw: the builder refuses `..` itself.
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            b.into_inner().unwrap()
        };
        let ok = tar_of(&[("a/b", b"B"), ("sub/f", b"F")]);
        tar_in(&root, Path::new("/dst"), false, &ok[..]).unwrap();
        assert_eq!(std::fs::read(r.join("dst/a/b")).unwrap(), b"B");
        // The planted link was replaced by a directory, never followed.
        assert_eq!(std::fs::read(r.join("dst/sub/f")).unwrap(), b"F");
        assert!(std::fs::read_dir(&host).unwrap().next().is_none());
        let bad = tar_of(&[("../escape", b"x")]);
        let e = tar_in(&root, Path::new("/dst"), false, &bad[..])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'..'"), "{e}");
        assert!(!r.join("escape").exists());
    }

    #[test]
    fn a_tar_stream_out_names_the_source() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("srv/app")).unwrap();
        std::fs::write(r.join("srv/app/a"), b"A").unwrap();
        let root = ContainerRoot::from_dir(&r).unwrap();
        let mut buf = Vec::new();
        tar_out(&root, Path::new("/srv/app"), false, &mut buf).unwrap();
        let mut a = tar::Archive::new(&buf[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["app/", "app/a"]);
    }
}
