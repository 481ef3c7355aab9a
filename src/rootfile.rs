//! Reading a small file that an image or a container controls: the image's
//! or a running container's `/etc/passwd` and `/etc/group`.
//!
//! The path is resolved beneath the root by the kernel (openat2
//! RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so neither a symlinked file nor
//! a symlinked parent (`etc -> /host/etc`) leads out of it; the file is opened
//! O_NONBLOCK and must be a regular file (fstat on the opened fd), so a FIFO,
//! a device or `/dev/zero` at its name cannot wedge or flood berth; and at
//! most `max` bytes are read (issue 12, classes 7 and 9).

use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::sys::at;

/// `rel` beneath the directory `root`, resolved as `resolve` says, opened
/// for reading without blocking and never as a controlling terminal.
fn open_under(root: &Path, rel: &Path, resolve: u64) -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    // open(2) for the root: it is ours; only `rel` is the container's.
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    let root_fd = unsafe { OwnedFd::from_raw_fd(root_fd) };
    let fd = at::openat2(
        root_fd.as_fd(),
        rel,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        resolve,
    )?;
    Ok(std::fs::File::from(fd))
}

/// The largest id file (`/etc/passwd`, `/etc/group`) berth reads.
pub const MAX_ID_FILE: u64 = 1 << 20;

/// The file `rel` beneath `root`, when it is a regular file of at most `max`
/// bytes. `Ok(None)` when it is missing, not a regular file, or too large.
pub fn read_in_root(root: &Path, rel: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match open_under(
        root,
        Path::new(rel.trim_start_matches('/')),
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.len() > max {
        return Ok(None);
    }
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Open `rel` beneath `root` for reading, following no symlink at all
/// (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): for members of an archive berth
/// extracted itself, where a link is never what a manifest should name.
/// Errors when `rel` is not a regular file.
pub fn open_beneath(root: &Path, rel: &str) -> io::Result<std::fs::File> {
    let file = open_under(
        root,
        Path::new(rel),
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// [`read_in_root`] as text, any error or a non-UTF-8 file as None.
pub fn read_text_in_root(root: &Path, rel: &str, max: u64) -> Option<String> {
    read_in_root(root, rel, max)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// [`read_text_in_root`] given up on after `limit`: a running container's
/// root may be a FUSE or network filesystem whose reads never return. The
/// reading thread is left behind if it hangs; the caller goes on.
pub fn read_text_in_root_within(
    root: &Path,
    rel: &str,
    max: u64,
    limit: Duration,
) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (root, rel) = (root.to_path_buf(), rel.to_string());
    std::thread::Builder::new()
        .name("berth-read-root".into())
        .spawn(move || {
            let _ = tx.send(read_text_in_root(&root, &rel, max));
        })
        .ok()?;
    rx.recv_timeout(limit).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_the_root_and_reads_regular_files_only() {
        let d = tempfile::tempdir().unwrap();
        let host = d.path().join("host");
        std::fs::create_dir_all(host.join("etc")).unwrap();
        std::fs::write(host.join("etc/passwd"), "host-secret\n").unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        // A symlinked parent pointing at the host's etc resolves inside the root.
        std::os::unix::fs::symlink(host.join("etc"), root.join("etc")).unwrap();
        assert_eq!(read_text_in_root(&root, "etc/passwd", 100), None);
        std::fs::remove_file(root.join("etc")).unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/group"), "g:x:1:\n").unwrap();
        assert_eq!(
            read_text_in_root(&root, "/etc/group", 100).as_deref(),
            Some("g:x:1:\n")
        );
        // Too large: nothing.
        assert_eq!(read_text_in_root(&root, "etc/group", 3), None);
        // A FIFO: refused at once, not waited on.
        nix::unistd::mkfifo(&root.join("etc/passwd"), Mode::from_bits_truncate(0o644)).unwrap();
        let t = std::time::Instant::now();
        assert_eq!(read_text_in_root(&root, "etc/passwd", 100), None);
        assert!(t.elapsed() < Duration::from_secs(1));
        // A symlink to /dev/zero resolves to the root's own dev/zero (absent).
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("etc/passwd")).unwrap();
        assert_eq!(read_text_in_root(&root, "etc/passwd", 100), None);
        assert_eq!(
            read_text_in_root_within(&root, "etc/group", 100, Duration::from_secs(5)).as_deref(),
            Some("g:x:1:\n")
        );
    }
}
