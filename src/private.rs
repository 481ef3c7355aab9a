//! Files and directories that only root may read: berth's roots (the store,
//! `/run/berth`, berth-runtime's `--root`) and the state files in them, which
//! hold a container's whole environment (`exec.json`, `state.json`).
//!
//! A host user must not walk into a layer or an upper dir and run a setuid
//! binary or use a device node an image shipped there (CVE-2021-41091, where
//! Docker's layers were world-traversable). The roots are 0711: a
//! container's root in a user namespace must traverse them to its own upper
//! and run dirs (overlay and staging mounts are made by path from inside
//! it), so every directory that holds container data below them is 0700, or
//! 0710 with the group of the container's mapped root (what Docker did for
//! userns-remap). berth-runtime's `--root` is 0700 like runc's. State files
//! are created 0600 with O_EXCL, never written with the umask's mode and
//! chmod'ed after: between the two a reader could open them.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every directory berth creates that holds container data.
pub const DIR_MODE: u32 = 0o700;
/// The mode of berth's roots and of the directories on the way to a
/// container's own (traversable, never listable).
pub const ROOT_MODE: u32 = 0o711;
/// The mode of a state file.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` (and missing parents) with mode 0711, and take read and
/// write access for group and others away from `dir` itself if it existed
/// already (an install made before this check, or a root made by hand).
pub fn root_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(ROOT_MODE)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.permissions().mode() & 0o066 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(ROOT_MODE))?;
    }
    Ok(())
}

/// Create `dir` and missing parents with mode 0711: a level between a root
/// and a container's own directory.
pub fn traverse_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(ROOT_MODE)
        .create(dir)
}

/// Let the root of a container's user namespace (host gid `gid`) traverse
/// its own directory `dir`, and nobody else: group `gid`, mode 0710.
pub fn traversable_by_group(dir: &Path, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(dir, None, Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))
}

/// Create `dir` and missing parents with mode 0700 (an existing one is left
/// as it is: its root is what keeps others out).
pub fn dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Write `bytes` to `path` atomically through `tmp` (same directory): `tmp`
/// is created 0600 with O_EXCL|O_NOFOLLOW (a stale one from a crash is
/// removed first), then renamed over `path`.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(tmp, path, bytes, FILE_MODE)
}

/// [`write_atomic`] with another mode, for files that are not private
/// (generated units, a pid file its caller reads). A failed write leaves
/// no temporary file behind.
pub fn write_atomic_mode(tmp: &Path, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    match std::fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_has_its_mode_and_a_failed_one_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let unit = d.path().join("a.service");
        let tmp = d.path().join(".a.service.tmp");
        write_atomic_mode(&tmp, &unit, b"[Unit]\n", 0o644).unwrap();
        let mode = std::fs::metadata(&unit).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o022, 0o644 & !0o022, "0644 less a usual umask");
        assert!(!tmp.exists());
        // A directory in the way: rename(2) fails, and the temporary goes.
        let blocked = d.path().join("blocked");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_atomic_mode(&tmp, &blocked, b"x", 0o644).is_err());
        assert!(!tmp.exists(), "no temporary left behind");
    }

    #[test]
    fn roots_are_0700_and_state_files_0600() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("a/b");
        root_dir(&root).unwrap();
        let f = root.join("state.json");
        write_atomic(&root.join(".state.json.tmp"), &f, b"{}").unwrap();
        write_atomic(&root.join(".state.json.tmp"), &f, b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&root), 0o711);
        assert_eq!(mode(&d.path().join("a")), 0o711);
        assert_eq!(mode(&f), 0o600);
        // An existing root made wider is narrowed.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        root_dir(&root).unwrap();
        assert_eq!(mode(&root), 0o711);
        let c = root.join("c/d");
        dir(&c).unwrap();
        assert_eq!(mode(&c), 0o700);
    }
}
