//! Making a layer: a directory tree → a tar stream → a gzip blob in the
//! store with its digest and diff id computed while streaming, then unpacked
//! as the store's layer. `berth commit` feeds it a container's overlay upper
//! dir; `berth build` can feed it a step's upper dir; `berth cp NAME:PATH -`
//! uses the tree walker ([`TarTree`]) alone.
//!
//! The tree is hostile (a container wrote it, and may still be writing):
//! every node is opened relative to its parent's descriptor with O_NOFOLLOW
//! and O_PATH first, stat'd on that descriptor, and reopened for reading only
//! when it is a regular file (through `/proc/self/fd/N`, the very inode, with
//! O_NONBLOCK), so no symlink is followed, no FIFO or device is opened, and a
//! swap between the stat and the open changes nothing. A file that shrinks
//! while it is read is padded with zeros to the size its header says, so the
//! archive stays well formed (the digest is of what was written).
//!
//! Overlayfs changes become OCI changes (image-spec `layer.md`, "Whiteouts";
//! containers/storage `pkg/archive/archive_linux.go` `overlayWhiteoutConverter`
//! does the same): a 0/0 character device NAME becomes an empty `.wh.NAME`,
//! and a directory with `trusted.overlay.opaque=y` gets `.wh..wh..opq`.
//! Owners are mapped back through the container's ID map (a `userns =
//! "auto"` container's upper dir holds host IDs of its range), so the layer
//! says what the container saw.

pub use super::unpack::Compression;
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{io_err, Store, StoreError};

/// One line of a `uid_map`/`gid_map`: IDs `inside..inside+count` are
/// `outside..outside+count` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A user namespace's ID map (empty: the identity, as without userns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap(pub Vec<IdRange>);

/// The overflow ID (`/proc/sys/kernel/overflowuid`): what a host ID outside
/// the map is seen as inside.
pub const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// Parse `/proc/PID/uid_map` text.
    pub fn parse(text: &str) -> IdMap {
        IdMap(
            text.lines()
                .filter_map(|l| {
                    let f: Vec<u32> = l
                        .split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect();
                    (f.len() == 3).then(|| IdRange {
                        inside: f[0],
                        outside: f[1],
                        count: f[2],
                    })
                })
                .collect(),
        )
    }

    /// The map of a process (`uid_map` or `gid_map`); the identity when it
    /// shares the host's user namespace.
    pub fn of_process(pid: i32, file: &str) -> io::Result<IdMap> {
        let m = IdMap::parse(&std::fs::read_to_string(format!("/proc/{pid}/{file}"))?);
        Ok(if m.is_identity() { IdMap::default() } else { m })
    }

    fn is_identity(&self) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .all(|r| r.inside == 0 && r.outside == 0 && r.count == u32::MAX)
    }

    /// Host ID → container ID.
    pub fn to_inside(&self, host: u32) -> u32 {
        if self.0.is_empty() {
            return host;
        }
        self.0
            .iter()
            .find(|r| host >= r.outside && host - r.outside < r.count)
            .map_or(OVERFLOW_ID, |r| r.inside + (host - r.outside))
    }

    /// Container ID → host ID; None when the container has no such ID.
    pub fn to_outside(&self, inside: u32) -> Option<u32> {
        if self.0.is_empty() {
            return Some(inside);
        }
        self.0
            .iter()
            .find(|r| inside >= r.inside && inside - r.inside < r.count)
            .map(|r| r.outside + (inside - r.inside))
    }
}

/// How a tree becomes tar members.
#[derive(Debug, Clone, Default)]
pub struct TreeOptions {
    /// Overlayfs whiteouts and opaque dirs → OCI `.wh.` members (an upper
    /// dir); off for a plain tree (`berth cp`).
    pub overlay_whiteouts: bool,
    /// Owners on disk are host IDs of this map: write the container's.
    pub uids: IdMap,
    pub gids: IdMap,
    /// Clamp every mtime to at most this (SOURCE_DATE_EPOCH for builds).
    pub clamp_mtime: Option<u64>,
    /// Member names (`etc/hosts`) left out when they are empty regular
    /// files: the mount points a container's start made in its upper dir
    /// for the files mounted over them (Docker keeps them in an init layer
    /// that a commit never includes).
    pub skip_empty_files: std::collections::BTreeSet<PathBuf>,
    /// The tree becomes the store's layer directory as it is, instead of
    /// the tar being unpacked again ([`Store::adopt_layer`]): as each node
    /// is written, its atime and mtime are set to its member's mtime, the
    /// xattrs its member does not carry (all but an opaque dir's marker
    /// and an SELinux label) are removed, and what has no member (a socket, a skipped file) is
    /// unlinked, so the tree is what unpacking the tar makes. Only for a
    /// tree nothing else writes any more, with identity ID maps.
    pub as_layer_dir: bool,
}

/// Writes a tree as tar members, never following a link of it.
pub struct TarTree<W: Write> {
    builder: tar::Builder<W>,
    opts: TreeOptions,
    /// First member name of each multiply-linked inode: later names are hard links.
    links: HashMap<(u64, u64), PathBuf>,
    /// Members written.
    pub entries: u64,
}

/// An O_PATH descriptor of `name` in `dir`, the name itself (never what a
/// symlink there points at).
pub fn open_node(dir: BorrowedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let c =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: openat of a single name relative to a descriptor we hold.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open what an O_PATH descriptor holds for reading (the same inode: the
/// magic link of our own descriptor), without blocking on a FIFO; a
/// directory when `dir`.
pub fn reopen(fd: BorrowedFd, dir: bool) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if dir {
        flags |= libc::O_DIRECTORY;
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let (a, b) = (
        crate::sys::at::fstat(fd)?,
        crate::sys::at::fstat(f.as_fd())?,
    );
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(f)
}

use std::os::unix::fs::OpenOptionsExt;

/// The names in a directory, sorted (the archive's order does not depend
/// on the filesystem's).
pub fn list_dir(dir: &File) -> io::Result<Vec<OsString>> {
    let fd = nix::unistd::dup(dir.as_raw_fd())?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names: Vec<OsString> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

/// What a node's member said of it.
#[derive(Clone, Copy)]
struct Member {
    st: libc::stat,
    mtime: u64,
}

/// Make the node `name` in `dir` what unpacking its member gives
/// ([`TreeOptions::as_layer_dir`]): unlinked when it has no member; else
/// no xattr but a directory's opaque marker (when `whiteouts`: an upper
/// dir's), and its times the member's mtime. Each call names one entry of a
/// directory we hold, following no link.
fn settle(
    dir: BorrowedFd,
    name: &OsStr,
    member: Option<Member>,
    whiteouts: bool,
) -> io::Result<()> {
    let c =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let Some(m) = member else {
        // SAFETY: unlinkat of one name in a directory we hold (never a
        // directory: only sockets and files are left out).
        return check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) });
    };
    // No *xattrat call before Linux 6.13: the l* calls on the entry's path
    // through our descriptor of its directory (the last component is not
    // followed).
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    let path = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let is_dir = m.st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    strip_xattrs(&path, whiteouts && is_dir)?;
    let t = libc::timespec {
        tv_sec: m.mtime as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: utimensat of one name in a directory we hold, not followed.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Remove the xattrs of `path` itself (not followed) that no tar member
/// carries: all but an SELinux label (the host gives every file one,
/// unpacked ones too) and, when `keep_opaque`, an opaque dir's marker.
fn strip_xattrs(path: &CString, keep_opaque: bool) -> io::Result<()> {
    for x in list_xattrs(path)? {
        if x.as_bytes() == b"security.selinux" {
            continue;
        }
        if keep_opaque && x.as_bytes() == b"trusted.overlay.opaque" {
            let mut v = [0u8; 2];
            // SAFETY: lgetxattr into a buffer we own, its length passed.
            let n = unsafe {
                libc::lgetxattr(path.as_ptr(), x.as_ptr(), v.as_mut_ptr().cast(), v.len())
            };
            if n == 1 && v[0] == b'y' {
                continue;
            }
        }
        // SAFETY: valid C strings.
        check(unsafe { libc::lremovexattr(path.as_ptr(), x.as_ptr()) })?;
    }
    Ok(())
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The names of the xattrs `path` itself has (not followed).
fn list_xattrs(path: &CString) -> io::Result<Vec<CString>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: llistxattr into a buffer we own, its length passed.
        let n = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| CString::new(n).ok())
        .collect())
}

fn get_xattr(fd: BorrowedFd, name: &str) -> Option<Vec<u8>> {
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: fgetxattr into a buffer we own, its length passed.
    let r = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

impl<W: Write> TarTree<W> {
    pub fn new(out: W, opts: TreeOptions) -> TarTree<W> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        builder.follow_symlinks(false);
        TarTree {
            builder,
            opts,
            links: HashMap::new(),
            entries: 0,
        }
    }

    fn header(&self, st: &libc::stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(self.opts.uids.to_inside(st.st_uid) as u64);
        h.set_gid(self.opts.gids.to_inside(st.st_gid) as u64);
        h.set_mtime(self.mtime(st));
        h.set_size(0);
        h
    }

    /// A node's member mtime: its own, clamped.
    fn mtime(&self, st: &libc::stat) -> u64 {
        let mtime = st.st_mtime.max(0) as u64;
        self.opts.clamp_mtime.map_or(mtime, |c| mtime.min(c))
    }

    fn empty(&mut self, mut h: tar::Header, name: &Path) -> io::Result<()> {
        self.entries += 1;
        h.set_size(0);
        self.builder.append_data(&mut h, name, io::empty())
    }

    /// Every child of the directory `dir` as `prefix/CHILD` (no member for
    /// `dir` itself: a layer's root is the image's `/`).
    pub fn append_children(&mut self, dir: BorrowedFd, prefix: &Path) -> io::Result<()> {
        let d = reopen(dir, true)?;
        for name in list_dir(&d)? {
            let node = match open_node(d.as_fd(), &name) {
                Ok(n) => n,
                // Removed meanwhile by the container: not part of the change.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            let member = self.node(node.as_fd(), &prefix.join(&name))?;
            if self.opts.as_layer_dir {
                // After the node's own children: setting their times
                // changes nothing of it, and a directory's own time is
                // set last.
                settle(d.as_fd(), &name, member, self.opts.overlay_whiteouts)?;
            }
        }
        Ok(())
    }

    /// The node an O_PATH descriptor holds as the member `name`, a
    /// directory with everything under it.
    pub fn append_node(&mut self, fd: BorrowedFd, name: &Path) -> io::Result<()> {
        self.node(fd, name).map(drop)
    }

    /// [`TarTree::append_node`]; the node's stat and its member's mtime,
    /// or None when it has no member (a socket, a skipped file).
    fn node(&mut self, fd: BorrowedFd, name: &Path) -> io::Result<Option<Member>> {
        let st = crate::sys::at::fstat(fd)?;
        let fmt = st.st_mode & libc::S_IFMT;
        let left_out = match fmt {
            libc::S_IFREG => st.st_size == 0 && self.opts.skip_empty_files.contains(name),
            // Sockets have no tar form (Docker and Podman skip them too).
            libc::S_IFSOCK => true,
            _ => false,
        };
        if left_out {
            return Ok(None);
        }
        self.write_node(fd, name, &st)?;
        Ok(Some(Member {
            st,
            mtime: self.mtime(&st),
        }))
    }

    fn write_node(&mut self, fd: BorrowedFd, name: &Path, st: &libc::stat) -> io::Result<()> {
        let st = *st;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt != libc::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = self.header(&st, tar::EntryType::Link);
                self.entries += 1;
                return self.builder.append_link(&mut h, name, first);
            }
            self.links.insert(key, name.to_path_buf());
        }
        match fmt {
            libc::S_IFDIR => {
                let h = self.header(&st, tar::EntryType::Directory);
                let mut dname = name.as_os_str().to_os_string();
                dname.push("/");
                self.empty(h, Path::new(&dname))?;
                if self.opts.overlay_whiteouts {
                    let d = reopen(fd, true)?;
                    if get_xattr(d.as_fd(), "trusted.overlay.opaque").as_deref() == Some(b"y") {
                        let h = self.header(&st, tar::EntryType::Regular);
                        self.empty(h, &name.join(".wh..wh..opq"))?;
                    }
                }
                self.append_children(fd, name)
            }
            libc::S_IFREG => {
                let f = reopen(fd, false)?;
                let mut h = self.header(&st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                // Exactly the header's size: short reads padded, growth cut.
                let data = (&f)
                    .take(st.st_size as u64)
                    .chain(io::repeat(0))
                    .take(st.st_size as u64);
                self.entries += 1;
                self.builder.append_data(&mut h, name, data)
            }
            libc::S_IFLNK => {
                let target = crate::sys::at::readlinkat(fd, OsStr::new(""))?;
                let mut h = self.header(&st, tar::EntryType::Symlink);
                self.entries += 1;
                self.builder.append_link(&mut h, name, target)
            }
            libc::S_IFCHR if self.opts.overlay_whiteouts && st.st_rdev == 0 => {
                let (parent, base) = (
                    name.parent().unwrap_or(Path::new("")),
                    name.file_name().unwrap_or_default(),
                );
                let mut wh = OsString::from(".wh.");
                wh.push(base);
                let h = self.header(&st, tar::EntryType::Regular);
                self.empty(h, &parent.join(wh))
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let kind = match fmt {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = self.header(&st, kind);
                h.set_device_major(libc::major(st.st_rdev))?;
                h.set_device_minor(libc::minor(st.st_rdev))?;
                self.empty(h, name)
            }
            // Left out before (sockets).
            _ => Ok(()),
        }
    }

    /// Write the end-of-archive blocks and return the writer.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// Hashes and counts what passes through to `inner`.
pub struct HashingWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// `sha256:<hex>` of what was written.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The deflate level of a layer's compressible chunks: zlib's default,
/// what `docker build` and containers/image write too.
const GZIP_LEVEL: u32 = 6;

/// Whether deflate would not shrink `data` noticeably: its bytes are
/// about as evenly spread as random ones (chi-square below n/8, a byte
/// entropy above ~7.91 bits). Deflate saves what Huffman codes save on
/// skewed bytes plus what LZ77 matches within 32 KiB save, and such data
/// (random, already compressed, encrypted) gives it neither, while level 6
/// spends 10x a stored block's time on it (benches/build-results.md).
/// Integer arithmetic: the same choice on every machine, so the same
/// digest. (btrfs's compression heuristic measures the same spread.)
fn incompressible(data: &[u8]) -> bool {
    if data.len() < 4096 {
        return false;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as u128;
    // chi² = Σ (256c − n)² / 256n < n/8  ⇔  Σ (256c − n)² < 32n²
    let sum: u128 = counts
        .iter()
        .map(|&c| (256 * c as i128 - n as i128).unsigned_abs().pow(2))
        .sum();
    sum < 32 * n * n
}

/// A gzip member whose deflate level follows the data, [`CHUNK`] by
/// chunk: stored (level 0) for a chunk that would not shrink, else
/// [`GZIP_LEVEL`]; a switch is a sync flush and a new deflate stream. Every
/// gzip reader reads it; its bytes depend only on the data (chunks are cut
/// at fixed offsets, however it is written).
struct Gzip<W: Write> {
    out: W,
    z: flate2::Compress,
    crc: flate2::Crc,
    level: u32,
    /// Input not yet a whole chunk.
    pending: Vec<u8>,
    /// Deflate's output, written to `out` as it comes.
    buf: Vec<u8>,
}

impl<W: Write> Gzip<W> {
    fn new(mut out: W) -> io::Result<Gzip<W>> {
        // GzEncoder's header: no name, mtime 0, no flags, OS 255 ("unknown").
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        Ok(Gzip {
            out,
            z: flate2::Compress::new(flate2::Compression::new(GZIP_LEVEL), false),
            crc: flate2::Crc::new(),
            level: GZIP_LEVEL,
            pending: Vec::with_capacity(CHUNK),
            buf: Vec::with_capacity(CHUNK + CHUNK / 8 + 1024),
        })
    }

    /// Feed `input` with `flush`, writing what deflate gives out, until it
    /// has taken everything (and, flushing, given everything back).
    fn deflate(&mut self, mut input: &[u8], flush: flate2::FlushCompress) -> io::Result<()> {
        loop {
            self.buf.clear();
            let before = self.z.total_in();
            let status = self
                .z
                .compress_vec(input, &mut self.buf, flush)
                .map_err(io::Error::other)?;
            input = &input[(self.z.total_in() - before) as usize..];
            self.out.write_all(&self.buf)?;
            let room_left = self.buf.len() < self.buf.capacity();
            let done = if flush == flate2::FlushCompress::Finish {
                status == flate2::Status::StreamEnd
            } else {
                input.is_empty() && room_left
            };
            if done {
                return Ok(());
            }
        }
    }

    fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        self.crc.update(data);
        let level = if incompressible(data) { 0 } else { GZIP_LEVEL };
        if level != self.level {
            // A sync flush ends the blocks so far on a byte boundary, not
            // the last: a new raw deflate stream's blocks may follow (as
            // pigz joins its threads' output), referring to nothing before
            // them. (flate2's `set_level` on zlib-rs fails with a stream
            // error once data went in: it calls deflate with no output.)
            self.deflate(&[], flate2::FlushCompress::Sync)?;
            self.z = flate2::Compress::new(flate2::Compression::new(level), false);
            self.level = level;
        }
        self.deflate(data, flate2::FlushCompress::None)
    }

    fn finish(mut self) -> io::Result<W> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.chunk(&rest)?;
        }
        self.deflate(&[], flate2::FlushCompress::Finish)?;
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Gzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == CHUNK {
            let full = std::mem::take(&mut self.pending);
            self.chunk(&full)?;
            self.pending = full;
            self.pending.clear();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A layer blob's compressor, chosen at run time.
enum Compressor<W: Write> {
    Gzip(Gzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    fn new(out: W, c: Compression) -> io::Result<Compressor<W>> {
        Ok(match c {
            Compression::Zstd => {
                // Level 3, zstd's default (and containers/image's); the
                // checksum lets a reader find a corrupt frame.
                let mut z = zstd::stream::write::Encoder::new(out, 3)?;
                z.include_checksum(true)?;
                Compressor::Zstd(z)
            }
            Compression::Gzip | Compression::None => Compressor::Gzip(Gzip::new(out)?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(z) => z.flush(),
        }
    }
}

/// A layer written into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:` of the compressed blob (the manifest's layer digest).
    pub digest: String,
    /// `sha256:` of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// Bytes of the blob.
    pub size: u64,
    /// Members in the tar.
    pub entries: u64,
}

/// Sends what is written to it in chunks of [`CHUNK`] bytes down a
/// channel: the tar side of the pipeline.
struct ChunkSender {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

/// A pipeline chunk: big enough that the channel costs nothing per byte.
const CHUNK: usize = 256 * 1024;

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the compressor stopped"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The tar of a tree, its digest computed as it is written, on this
/// thread; compressed, hashed and written to `file` on a second (the
/// compressor is the slow half, and the walk, reads and tar hash overlap
/// it). Returns (digest, diff id, blob size, members).
fn write_pipelined(
    root: BorrowedFd,
    opts: &TreeOptions,
    compression: Compression,
    file: &File,
) -> io::Result<(String, String, u64, u64)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    std::thread::scope(|s| {
        let packer = s.spawn(move || -> io::Result<(String, u64)> {
            let blob = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, file));
            let mut packed = Compressor::new(blob, compression)?;
            for chunk in rx {
                packed.write_all(&chunk)?;
            }
            let mut blob = packed.finish()?;
            blob.inner.flush()?;
            Ok((blob.digest(), blob.count))
        });
        let walked = (|| -> io::Result<(String, u64)> {
            let out = ChunkSender {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let mut tree = TarTree::new(HashingWriter::new(out), opts.clone());
            tree.append_children(root, Path::new(""))?;
            let entries = tree.entries;
            let mut tar = tree.finish()?;
            if !tar.inner.buf.is_empty() {
                tar.inner.send()?;
            }
            Ok((tar.digest(), entries))
            // The sender is dropped here, ending the compressor's input.
        })();
        let packed = packer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the layer compressor panicked")));
        match (walked, packed) {
            (Ok((diff_id, entries)), Ok((digest, size))) => Ok((digest, diff_id, size, entries)),
            // The compressor's own error, not the walk's "it stopped".
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
        }
    })
}

impl Store {
    /// The tree under `dir` as a gzip layer blob in the store, unpacked as
    /// the layer of its diff id, both computed in the one pass that writes
    /// it. `dir`'s own node is not a member (it is the image's `/`).
    pub fn write_layer(&self, dir: &Path, opts: &TreeOptions) -> Result<LayerBlob, StoreError> {
        self.write_layer_as(dir, opts, Compression::Gzip)
    }

    /// [`Store::write_layer`] compressed with `compression`: gzip, or zstd
    /// (`berth build --compression zstd`; smaller and faster to unpack,
    /// read by containers/image and containerd ≥ 1.5, not by Docker 20.10).
    /// `Compression::None` writes gzip: a layer blob is always compressed.
    pub fn write_layer_as(
        &self,
        dir: &Path,
        opts: &TreeOptions,
        compression: Compression,
    ) -> Result<LayerBlob, StoreError> {
        let (tmp, file, blob) = self.write_blob_tmp(dir, opts, compression)?;
        file.sync_all()
            .map_err(io_err("cannot sync", &tmp))
            .map_err(|e| remove_tmp(&tmp, e))?;
        crate::trace::step("layer: blob synced");
        self.put_layer_blob(&tmp, &blob.digest)?;
        self.unpack_layer(&blob.digest, &blob.diff_id)?;
        crate::trace::step("layer: unpacked");
        Ok(blob)
    }

    /// [`Store::write_layer_as`] of a tree berth made and nobody writes
    /// any more (a build's staged COPY, a finished RUN's upper dir), which
    /// then becomes the layer directory itself: settled while it is walked
    /// ([`TreeOptions::as_layer_dir`]) and renamed into `layers/` once the
    /// blob and the tree are durable, instead of unpacked again from the
    /// blob (a second write of every file, and the tree's unlink). `dir` is
    /// gone afterwards. The tree's own directory becomes the layer's root
    /// (0755, as an unpacked one). Owners are taken as they are: `opts`
    /// must not map IDs.
    pub fn adopt_layer(
        &self,
        dir: &Path,
        opts: &TreeOptions,
        compression: Compression,
    ) -> Result<LayerBlob, StoreError> {
        let bad = |m: &str| StoreError::Io {
            action: "cannot adopt as a layer",
            path: dir.to_path_buf(),
            source: io::Error::other(m.to_string()),
        };
        if !opts.uids.0.is_empty() || !opts.gids.0.is_empty() {
            return Err(bad("its owners are mapped"));
        }
        let opts = TreeOptions {
            as_layer_dir: true,
            ..opts.clone()
        };
        // Its root as an unpacked layer's: 0755, no xattr (no member says
        // anything of it).
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_err("cannot chmod", dir))?;
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| bad("a NUL in its path"))?;
        strip_xattrs(&c, false).map_err(io_err("cannot remove the xattrs of", dir))?;
        let (tmp, file, blob) = self.write_blob_tmp(dir, &opts, compression)?;
        // One syncfs makes the blob and every file of the tree durable
        // before either name appears (an fsync per file costs more).
        // SAFETY: syncfs of a descriptor we hold.
        check(unsafe { libc::syncfs(file.as_raw_fd()) })
            .map_err(io_err("cannot sync", &tmp))
            .map_err(|e| remove_tmp(&tmp, e))?;
        drop(file);
        crate::trace::step("layer: blob and tree synced");
        self.put_layer_blob(&tmp, &blob.digest)?;
        let renamed = {
            let hex = super::hex_of(&blob.diff_id)?;
            let _lock = self.lock(&format!("{hex}.layer"), libc::LOCK_EX)?;
            let dest = self.layer_path(&blob.diff_id)?;
            if dest.is_dir() {
                // Stored already (the same content from another step).
                let _ = std::fs::remove_dir_all(dir);
                true
            } else {
                match std::fs::rename(dir, &dest) {
                    Ok(()) => {
                        super::fsync_dir(&self.root.join("layers/sha256"))?;
                        true
                    }
                    // Another file system (a bind-mounted tmp/): unpack.
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => false,
                    Err(e) => return Err(io_err("cannot rename layer into", &dest)(e)),
                }
            }
        };
        if !renamed {
            self.unpack_layer(&blob.digest, &blob.diff_id)?;
        }
        crate::trace::step("layer: tree adopted");
        Ok(blob)
    }

    /// The layer blob of the tree `dir` in a temp file of `blobs/`, not
    /// yet synced: its path, the open file and what it is.
    fn write_blob_tmp(
        &self,
        dir: &Path,
        opts: &TreeOptions,
        compression: Compression,
    ) -> Result<(PathBuf, File, LayerBlob), StoreError> {
        let root = crate::sys::at::openat2_cwd(dir, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(io_err("cannot open", dir))?;
        let bdir = self.root.join("blobs/sha256");
        let tmp = super::tmp_name(&bdir, "layer");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        let (digest, diff_id, size, entries) =
            write_pipelined(root.as_fd(), opts, compression, &file)
                .map_err(io_err("cannot write layer of", dir))
                .map_err(|e| remove_tmp(&tmp, e))?;
        crate::trace::step("layer: tar written, compressed, hashed");
        Ok((
            tmp,
            file,
            LayerBlob {
                digest,
                diff_id,
                size,
                entries,
            },
        ))
    }

    /// The synced temp blob `tmp` under its name `digest` (dropped when
    /// the store has it already).
    fn put_layer_blob(&self, tmp: &Path, digest: &str) -> Result<(), StoreError> {
        let _lock = self.lock_blob(digest).map_err(|e| remove_tmp(tmp, e))?;
        let dest = self.blob_path(digest).map_err(|e| remove_tmp(tmp, e))?;
        if dest.is_file() {
            let _ = std::fs::remove_file(tmp);
            return Ok(());
        }
        std::fs::rename(tmp, &dest)
            .map_err(io_err("cannot rename blob into", &dest))
            .map_err(|e| remove_tmp(tmp, e))?;
        super::fsync_dir(&self.root.join("blobs/sha256"))
    }
}

fn remove_tmp(tmp: &Path, e: StoreError) -> StoreError {
    let _ = std::fs::remove_file(tmp);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn id_maps_go_both_ways() {
        let m = IdMap::parse("         0     100000      65536\n");
        assert_eq!(m.to_inside(100000), 0);
        assert_eq!(m.to_inside(101000), 1000);
        assert_eq!(m.to_inside(0), OVERFLOW_ID);
        assert_eq!(m.to_outside(1000), Some(101000));
        assert_eq!(m.to_outside(70000), None);
        let id = IdMap::parse("0 0 4294967295\n");
        assert!(id.is_identity());
        assert_eq!(IdMap::default().to_inside(7), 7);
    }

    fn members(blob: &Path) -> Vec<(String, tar::EntryType, u64, u64, Vec<u8>)> {
        let f = File::open(blob).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let h = e.header();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let t = h.entry_type();
                if t.is_symlink() || t.is_hard_link() {
                    data = e.link_name_bytes().unwrap().to_vec();
                }
                (name, t, h.uid().unwrap(), h.mtime().unwrap(), data)
            })
            .collect()
    }

    fn set_xattr(path: &Path, name: &CStr, value: &[u8]) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: lsetxattr with valid strings and a buffer we own.
        let r = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "{name:?} on {}", path.display());
    }

    /// Whether this test may make whiteout device nodes and trusted xattrs
    /// (root); says why not.
    fn can_make_upper_dirs() -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            eprintln!("skipped: needs root (whiteout device nodes, trusted xattrs)");
        }
        root
    }

    /// An overlay upper dir as a container leaves it: a new file and a
    /// hard link to it, a symlink out, a whiteout, an opaque dir, a FIFO.
    fn make_upper(up: &Path) {
        std::fs::create_dir_all(up.join("etc/opq")).unwrap();
        std::fs::write(up.join("etc/new"), b"hello").unwrap();
        std::fs::hard_link(up.join("etc/new"), up.join("etc/same")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", up.join("etc/link")).unwrap();
        nix::sys::stat::mknod(
            &up.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0),
            0,
        )
        .unwrap();
        nix::unistd::mkfifo(
            &up.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        set_xattr(&up.join("etc/opq"), c"trusted.overlay.opaque", b"y");
    }

    #[test]
    fn an_upper_dir_becomes_a_layer_with_oci_whiteouts() {
        if !can_make_upper_dirs() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let up = t.path().join("upper");
        make_upper(&up);
        std::os::unix::fs::chown(up.join("etc/new"), Some(101000), Some(101000)).unwrap();
        let opts = TreeOptions {
            overlay_whiteouts: true,
            uids: IdMap::parse("0 100000 65536"),
            gids: IdMap::parse("0 100000 65536"),
            clamp_mtime: Some(5),
            ..TreeOptions::default()
        };
        let l = store.write_layer(&up, &opts).unwrap();
        let m = members(&store.blob_path(&l.digest).unwrap());
        let names: Vec<&str> = m.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/.wh.gone",
                "etc/link",
                "etc/new",
                "etc/opq/",
                "etc/opq/.wh..wh..opq",
                "etc/same",
                "fifo"
            ]
        );
        assert_eq!(m[3].4, b"hello");
        assert_eq!(m[3].2, 1000, "owner mapped back into the container");
        assert_eq!(m[3].3, 5, "mtime clamped");
        assert_eq!(m[2].4, b"/etc/shadow", "a symlink is stored, not followed");
        assert_eq!(m[6].1, tar::EntryType::Link);
        assert_eq!(m[7].1, tar::EntryType::Fifo);
        assert_eq!(l.entries, 8);
        // Stored: the blob's digest, and the layer unpacked under its diff id
        // with the whiteout back in overlay form.
        assert!(store.has_blob(&l.digest));
        let lp = store.layer_path(&l.diff_id).unwrap();
        assert_eq!(std::fs::read(lp.join("etc/new")).unwrap(), b"hello");
        let wh = std::fs::symlink_metadata(lp.join("etc/gone")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(wh.file_type().is_char_device());
        // The same tree again: the same digests (no timestamps in gzip).
        let again = store.write_layer(&up, &opts).unwrap();
        assert_eq!(again, l);
    }

    /// Every node under `root`: path, kind and mode, owner, mtime, xattrs
    /// and content (or link target).
    fn describe(root: &Path) -> Vec<String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut out = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let c = CString::new(p.as_os_str().as_bytes()).unwrap();
                let mut xattrs: Vec<String> = list_xattrs(&c)
                    .unwrap()
                    .iter()
                    .map(|x| x.to_string_lossy().into_owned())
                    .collect();
                xattrs.sort();
                let what = if m.is_dir() {
                    dirs.push(p.clone());
                    String::new()
                } else if m.file_type().is_symlink() {
                    std::fs::read_link(&p).unwrap().display().to_string()
                } else if m.is_file() {
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
                } else {
                    format!("rdev {}", m.rdev())
                };
                // An unpacked whiteout keeps the time it was made (no
                // member's is applied to it); overlayfs never shows it.
                let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
                let mtime = if whiteout {
                    "-".to_string()
                } else {
                    format!("{}.{}", m.mtime(), m.mtime_nsec())
                };
                out.push(format!(
                    "{} {:o} {}:{} mtime={mtime} nlink={} {xattrs:?} {what}",
                    p.strip_prefix(root).unwrap().display(),
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.nlink()
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn an_adopted_tree_is_what_unpacking_its_blob_makes() {
        if !can_make_upper_dirs() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        // The same upper dir twice, with what a tar does not carry: a
        // socket, xattrs overlayfs and the command set, new mtimes.
        let make = |up: &Path| {
            make_upper(up);
            set_xattr(&up.join("etc/new"), c"user.note", b"x");
            set_xattr(&up.join("etc"), c"trusted.overlay.impure", b"y");
            set_xattr(up, c"user.root", b"x");
            std::os::unix::net::UnixListener::bind(up.join("etc/sock")).unwrap();
            std::os::unix::fs::chown(up.join("etc/new"), Some(7), Some(8)).unwrap();
        };
        let opts = TreeOptions {
            overlay_whiteouts: true,
            clamp_mtime: Some(5),
            ..TreeOptions::default()
        };
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        make(&a);
        make(&b);
        let unpacked = Store::open(&t.path().join("s1")).unwrap();
        let adopted = Store::open(&t.path().join("s2")).unwrap();
        let la = unpacked.write_layer(&a, &opts).unwrap();
        let lb = adopted.adopt_layer(&b, &opts, Compression::Gzip).unwrap();
        assert_eq!(la, lb, "the same blob either way");
        assert!(!b.exists(), "the tree is the layer now");
        let (da, db) = (
            describe(&unpacked.layer_path(&la.diff_id).unwrap()),
            describe(&adopted.layer_path(&lb.diff_id).unwrap()),
        );
        assert_eq!(da, db);
        assert!(
            db.iter().any(|l| l.starts_with("etc/opq 40755 ")
                && l.contains("[\"trusted.overlay.opaque\"]")
                && l.contains("mtime=5.0")),
            "{db:#?}"
        );
        assert!(
            db.iter()
                .any(|l| l.starts_with("etc/new 100644 7:8 mtime=5.0 nlink=2 [] hello")),
            "{db:#?}"
        );
        assert!(!db.iter().any(|l| l.starts_with("etc/sock")), "{db:#?}");
        // Its root as an unpacked one's.
        let root = std::fs::metadata(adopted.layer_path(&lb.diff_id).unwrap()).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&root.permissions()) & 0o7777,
            0o755
        );
        // Blobs are the same bytes whatever the store did with the tree.
        assert_eq!(
            std::fs::read(unpacked.blob_path(&la.digest).unwrap()).unwrap(),
            std::fs::read(adopted.blob_path(&lb.digest).unwrap()).unwrap()
        );
    }

    /// A byte stream that deflate cannot shrink (xorshift).
    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn gzip_of(data: &[u8], piece: usize) -> Vec<u8> {
        let mut g = Gzip::new(Vec::new()).unwrap();
        for p in data.chunks(piece) {
            g.write_all(p).unwrap();
        }
        g.finish().unwrap()
    }

    #[test]
    fn gzip_stores_what_would_not_shrink_and_compresses_the_rest() {
        let text: Vec<u8> = (0..20000)
            .flat_map(|i| format!("line {i} of a text file\n").into_bytes())
            .collect();
        let random = noise(3 * CHUNK + 1000, 0x9e3779b97f4a7c15);
        let data = [&text[..], &random, &text, &random[..5000]].concat();
        let blob = gzip_of(&data, 1 << 20);
        // The bytes depend on the data, not on how it was written.
        assert_eq!(gzip_of(&data, 1000), blob);
        assert_eq!(gzip_of(&data, 1), blob);
        // One gzip member that any reader reads back.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // The random part stored (a few bytes of block headers per 64 KiB),
        // the text (twice) compressed: the whole within 2% of level 6
        // everywhere (a chunk that is mostly noise is stored whole).
        assert!(blob.len() > random.len(), "{}", blob.len());
        assert!(
            blob.len() < random.len() + 5000 + text.len() / 2,
            "{}",
            blob.len()
        );
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        g.write_all(&data).unwrap();
        let level6 = g.finish().unwrap().len();
        assert!(
            blob.len() <= level6 * 102 / 100,
            "{} vs {level6}",
            blob.len()
        );
    }

    #[test]
    fn incompressible_is_told_by_the_spread_of_bytes() {
        assert!(incompressible(&noise(CHUNK, 1)));
        assert!(!incompressible(&vec![0u8; CHUNK]));
        let text: Vec<u8> = b"the quick brown fox ".repeat(CHUNK / 20);
        assert!(!incompressible(&text));
        // Half text, half noise: still worth deflating.
        assert!(!incompressible(
            &[&text[..CHUNK / 2], &noise(CHUNK / 2, 3)].concat()
        ));
        // Too short to tell: deflated.
        assert!(!incompressible(&noise(100, 5)));
    }
}
