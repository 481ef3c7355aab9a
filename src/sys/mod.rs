//! sys: the kernel operations of the container's mount setup behind one small
//! trait (youki `crates/libcontainer/src/syscall/`), the Linux implementation,
//! and a recording double for order tests. The double proves which calls
//! happen in which order with which flags, not what the kernel does with
//! them; every order test has a root test next to it (tests/runtime_*.rs).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// What is at a path, as far as the mount code cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    Other,
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
    /// Follows symlinks; `None` when nothing is there.
    fn file_kind(&self, path: &Path) -> Option<FileKind>;
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
}

/// The recording double: every call is appended to `calls`; paths listed in
/// `kinds` exist with that kind, everything else is missing; `flags` gives
/// statvfs answers.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    pub calls: RefCell<Vec<Call>>,
    pub kinds: HashMap<PathBuf, FileKind>,
    pub flags: HashMap<PathBuf, MsFlags>,
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
}
