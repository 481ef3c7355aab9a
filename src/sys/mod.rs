//! sys: the kernel operations of the container's mount setup behind one small
//! trait (youki `crates/libcontainer/src/syscall/`), the Linux implementation,
//! and a recording double for order tests. The double proves which calls
//! happen in which order with which flags, not what the kernel does with
//! them; every order test has a root test next to it (tests/runtime_*.rs).

pub mod at;

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

pub use at::Create;

/// What is at a path, as far as the mount code cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    /// A character device, with its major and minor numbers.
    Char(u64, u64),
    Other,
}

/// The container's root as the kernel resolves paths in it: an O_PATH
/// descriptor (none in the recording double) and its path, for messages.
#[derive(Debug)]
pub struct Root {
    pub fd: Option<OwnedFd>,
    pub path: PathBuf,
}

/// A path resolved inside a [`Root`]: the O_PATH descriptor mounts go onto,
/// and the path it had, for messages and the recording double.
#[derive(Debug)]
pub struct Resolved {
    pub fd: Option<OwnedFd>,
    pub path: PathBuf,
    pub kind: FileKind,
}

impl Resolved {
    /// What mount(2) gets as the target: `/proc/self/fd/N` (the magic link
    /// reaches exactly the inode held, whatever the path now names).
    pub fn mount_path(&self) -> PathBuf {
        match &self.fd {
            Some(fd) => at::fd_path(fd),
            None => self.path.clone(),
        }
    }
}

fn kind_of(fd: &OwnedFd) -> FileKind {
    match at::fstat(fd.as_fd()) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => FileKind::Dir,
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFCHR => FileKind::Char(
            libc::major(st.st_rdev) as u64,
            libc::minor(st.st_rdev) as u64,
        ),
        _ => FileKind::Other,
    }
}

fn shown(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in path.components() {
        if let std::path::Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// The operations the mount steps perform.
pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    fn open_dir(&self, path: &Path) -> std::io::Result<OwnedFd>;
    fn fchdir(&self, fd: &OwnedFd) -> nix::Result<()>;
    /// Mount flags of the filesystem at `path` (statvfs), as MS_* bits.
    fn mount_flags(&self, path: &Path) -> MsFlags;
    /// Follows symlinks; `None` when nothing is there. Only for host paths
    /// (bind sources): paths in the container go through `resolve`.
    fn file_kind(&self, path: &Path) -> Option<FileKind>;
    /// An O_PATH descriptor of a host path (a bind source such as /sys).
    fn open_host(&self, path: &Path) -> std::io::Result<Resolved>;
    /// An O_PATH descriptor of the container's root at `path`.
    fn open_root(&self, path: &Path) -> std::io::Result<Root>;
    /// `path` resolved inside `root` (never out of it), created as `create`
    /// says when missing (ENOENT without it).
    fn resolve(
        &self,
        root: &Root,
        path: &Path,
        create: Option<Create>,
    ) -> std::io::Result<Resolved>;
    /// Whether `after` is on another mount than `before`: a mount made on
    /// `before` landed where `after` was resolved.
    fn mount_changed(&self, before: &Resolved, after: &Resolved) -> bool;
    /// Bind a detached copy of `source` (with its submounts when
    /// `recursive`) onto `target`, with the MOUNT_ATTR_* `attrs` set on every
    /// mount of the copy before it is attached.
    fn bind_tree(
        &self,
        source: &Resolved,
        target: &Resolved,
        recursive: bool,
        attrs: u64,
    ) -> std::io::Result<()>;
    /// Attach a fresh, empty filesystem of `fstype` with `attrs` onto `target`.
    fn mount_new_fs(&self, fstype: &str, target: &Resolved, attrs: u64) -> std::io::Result<()>;
    /// Set the MOUNT_ATTR_* `attrs` on the mount `target` is the root of and
    /// on every mount below it (mount_setattr AT_RECURSIVE).
    fn set_attrs_recursive(&self, target: &Resolved, attrs: u64) -> std::io::Result<()>;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }
    fn open_dir(&self, path: &Path) -> std::io::Result<OwnedFd> {
        std::fs::File::open(path).map(OwnedFd::from)
    }
    fn fchdir(&self, fd: &OwnedFd) -> nix::Result<()> {
        nix::unistd::fchdir(fd.as_raw_fd())
    }
    fn mount_flags(&self, path: &Path) -> MsFlags {
        use nix::sys::statvfs::{statvfs, FsFlags};
        let mut out = MsFlags::empty();
        if let Ok(s) = statvfs(path) {
            let f = s.flags();
            for (fs, ms) in [
                (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(fs) {
                    out.insert(ms);
                }
            }
        }
        out
    }
    fn file_kind(&self, path: &Path) -> Option<FileKind> {
        std::fs::metadata(path).ok().map(|m| {
            if m.is_dir() {
                FileKind::Dir
            } else {
                FileKind::Other
            }
        })
    }
    fn open_host(&self, path: &Path) -> std::io::Result<Resolved> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: `open` returned a fresh descriptor owned by nobody else.
        let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Ok(Resolved {
            kind: kind_of(&fd),
            fd: Some(fd),
            path: path.to_path_buf(),
        })
    }
    fn open_root(&self, path: &Path) -> std::io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: `open` returned a fresh descriptor owned by nobody else.
        let fd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Ok(Root {
            fd: Some(fd),
            path: path.to_path_buf(),
        })
    }
    fn resolve(
        &self,
        root: &Root,
        path: &Path,
        create: Option<Create>,
    ) -> std::io::Result<Resolved> {
        let Some(rfd) = &root.fd else {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        };
        let fd = match create {
            None => at::resolve_in_root(rfd.as_fd(), path)?,
            Some(c) => at::ensure_in_root(rfd.as_fd(), path, c)?,
        };
        Ok(Resolved {
            kind: kind_of(&fd),
            fd: Some(fd),
            path: shown(&root.path, path),
        })
    }
    fn mount_changed(&self, before: &Resolved, after: &Resolved) -> bool {
        match (&before.fd, &after.fd) {
            (Some(b), Some(a)) => match (at::mount_id(b.as_fd()), at::mount_id(a.as_fd())) {
                (Ok(b), Ok(a)) => a != b,
                _ => false,
            },
            _ => false,
        }
    }
    fn bind_tree(
        &self,
        source: &Resolved,
        target: &Resolved,
        recursive: bool,
        attrs: u64,
    ) -> std::io::Result<()> {
        let (Some(s), Some(t)) = (&source.fd, &target.fd) else {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        };
        let tree = at::clone_tree(s.as_fd(), recursive)?;
        if attrs != 0 {
            at::set_attrs(tree.as_fd(), attrs, recursive)?;
        }
        at::attach(tree.as_fd(), t.as_fd())
    }
    fn mount_new_fs(&self, fstype: &str, target: &Resolved, attrs: u64) -> std::io::Result<()> {
        let Some(t) = &target.fd else {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        };
        let fs = at::new_fs(fstype, &[], attrs)?;
        at::attach(fs.as_fd(), t.as_fd())
    }
    fn set_attrs_recursive(&self, target: &Resolved, attrs: u64) -> std::io::Result<()> {
        let Some(t) = &target.fd else {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        };
        at::set_attrs(t.as_fd(), attrs, true)
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount2 {
        target: PathBuf,
        flags: MntFlags,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    Chdir(PathBuf),
    Fchdir,
    BindTree {
        source: PathBuf,
        target: PathBuf,
        recursive: bool,
        attrs: u64,
    },
    NewFs {
        fstype: String,
        target: PathBuf,
        attrs: u64,
    },
    SetAttrsRecursive {
        target: PathBuf,
        attrs: u64,
    },
}

/// The recording double: every call is appended to `calls`; paths listed in
/// `kinds` exist with that kind, everything else is missing; `flags` gives
/// statvfs answers.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    pub calls: RefCell<Vec<Call>>,
    pub kinds: HashMap<PathBuf, FileKind>,
    pub flags: HashMap<PathBuf, MsFlags>,
    /// What `resolve` created, found again by later lookups.
    pub created: RefCell<HashMap<PathBuf, FileKind>>,
}

impl RecordingSyscall {
    pub fn with_paths(kinds: &[(&str, FileKind)]) -> Self {
        RecordingSyscall {
            kinds: kinds.iter().map(|(p, k)| (PathBuf::from(p), *k)).collect(),
            ..Default::default()
        }
    }
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut self.calls.borrow_mut())
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.calls.borrow_mut().push(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        });
        Ok(())
    }
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.calls.borrow_mut().push(Call::Umount2 {
            target: target.to_path_buf(),
            flags,
        });
        Ok(())
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.calls.borrow_mut().push(Call::PivotRoot {
            new_root: new_root.to_path_buf(),
            put_old: put_old.to_path_buf(),
        });
        Ok(())
    }
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.calls
            .borrow_mut()
            .push(Call::Chdir(path.to_path_buf()));
        Ok(())
    }
    fn open_dir(&self, _path: &Path) -> std::io::Result<OwnedFd> {
        // Any descriptor will do: the double's fchdir never uses it.
        std::fs::File::open("/dev/null").map(OwnedFd::from)
    }
    fn fchdir(&self, _fd: &OwnedFd) -> nix::Result<()> {
        self.calls.borrow_mut().push(Call::Fchdir);
        Ok(())
    }
    fn mount_flags(&self, path: &Path) -> MsFlags {
        self.flags.get(path).copied().unwrap_or(MsFlags::empty())
    }
    fn file_kind(&self, path: &Path) -> Option<FileKind> {
        self.kinds.get(path).copied()
    }
    fn open_host(&self, path: &Path) -> std::io::Result<Resolved> {
        Ok(Resolved {
            fd: None,
            path: path.to_path_buf(),
            kind: self.kinds.get(path).copied().unwrap_or(FileKind::Dir),
        })
    }
    fn open_root(&self, path: &Path) -> std::io::Result<Root> {
        Ok(Root {
            fd: None,
            path: path.to_path_buf(),
        })
    }
    /// Paths are looked up in `kinds` as the container sees them (`/x`);
    /// with `create` a missing one is made of that kind.
    fn resolve(
        &self,
        root: &Root,
        path: &Path,
        create: Option<Create>,
    ) -> std::io::Result<Resolved> {
        let known = self
            .kinds
            .get(path)
            .copied()
            .or_else(|| self.created.borrow().get(path).copied());
        let kind = match (known, create) {
            (Some(k), _) => k,
            (None, Some(Create::Dir)) => FileKind::Dir,
            (None, Some(Create::File)) => FileKind::Other,
            (None, None) => return Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
        };
        self.created.borrow_mut().insert(path.to_path_buf(), kind);
        Ok(Resolved {
            fd: None,
            path: shown(&root.path, path),
            kind,
        })
    }
    fn mount_changed(&self, _before: &Resolved, _after: &Resolved) -> bool {
        true
    }
    fn bind_tree(
        &self,
        source: &Resolved,
        target: &Resolved,
        recursive: bool,
        attrs: u64,
    ) -> std::io::Result<()> {
        self.calls.borrow_mut().push(Call::BindTree {
            source: source.path.clone(),
            target: target.path.clone(),
            recursive,
            attrs,
        });
        Ok(())
    }
    fn mount_new_fs(&self, fstype: &str, target: &Resolved, attrs: u64) -> std::io::Result<()> {
        self.calls.borrow_mut().push(Call::NewFs {
            fstype: fstype.to_string(),
            target: target.path.clone(),
            attrs,
        });
        Ok(())
    }
    fn set_attrs_recursive(&self, target: &Resolved, attrs: u64) -> std::io::Result<()> {
        self.calls.borrow_mut().push(Call::SetAttrsRecursive {
            target: target.path.clone(),
            attrs,
        });
        Ok(())
    }
}
