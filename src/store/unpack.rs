//! Safe layer unpacking: one (gzip, zstd or plain) tar stream into one directory,
//! turned into the overlayfs form of an image layer.
//!
//! Owns: decompression, the uncompressed digest (the layer's diff id), and every
//! write into the destination directory. Must not: write outside `dest`, follow a
//! symlink, or decide where layers live (the store does that).
//!
//! How writes stay inside `dest`: every entry's parent is opened one component at
//! a time with `openat(O_DIRECTORY | O_NOFOLLOW)` from a descriptor of `dest`, so
//! a symlink planted by an earlier entry makes the open fail (ELOOP/ENOTDIR)
//! instead of being followed; the leaf is then created relative to that
//! descriptor with `O_EXCL`/`O_NOFOLLOW`-style calls. Names with `..` are refused.
//! A leading `/` on a member name is stripped, as GNU tar does (old `docker save`
//! layers carry such names); hardlink targets that are absolute or contain `..`
//! are refused, since a hardlink may only point at an earlier member of the same
//! layer.
//!
//! Bounds: a layer may unpack at most `Limits::max_bytes` of file data and
//! `Limits::max_entries` members (a few KiB of gzip can expand to terabytes
//! or millions of inodes); GNU sparse members are refused, since their holes
//! would be written out as data. A member whose data ends early is an error,
//! and so, when the caller asks (`berth import`, which has no digest to
//! check), is a stream that ends without tar's end-of-archive block.
//!
//! Whiteouts (OCI image spec, "Representing Changes"): `.wh.NAME` becomes an
//! overlayfs whiteout (a 0/0 character device named NAME) and `.wh..wh..opq`
//! sets `trusted.overlay.opaque=y` on its directory. `trusted.overlay.*` xattrs
//! inside the archive are dropped: only berth decides what overlayfs sees.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a layer could not be unpacked. `entry` is the member name as written in
/// the archive.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot open layer directory '{path}'")]
    Dest { path: PathBuf, source: io::Error },
    #[error("cannot read layer archive")]
    Read { source: io::Error },
    #[error("refusing tar entry '{entry}': {reason}")]
    Refused { entry: String, reason: String },
    #[error("cannot unpack tar entry '{entry}'")]
    Entry { entry: String, source: io::Error },
}

/// How much one layer may unpack (issue 12, class 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of file data written, in all.
    pub max_bytes: u64,
    /// Archive members applied.
    pub max_entries: u64,
    /// Refuse a stream that ends without an end-of-archive block (a
    /// truncated tar), for sources with no digest to check.
    pub require_end: bool,
}

impl Limits {
    /// No bound (tests, and callers that bound the source another way).
    pub const NONE: Limits = Limits {
        max_bytes: u64::MAX,
        max_entries: u64::MAX,
        require_end: false,
    };
}

/// What an unpack produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:<hex>` of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    /// Bytes of uncompressed tar read.
    pub tar_bytes: u64,
    /// Number of archive members applied.
    pub entries: u64,
}

/// Compression of a layer blob, told by its first bytes (media types lie more
/// often than magic numbers do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detect from the first bytes of the blob.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wrap a compressed layer stream in the right decompressor.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf()?;
    Ok(match Compression::sniff(head) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
        Compression::None => Box::new(buf),
    })
}

/// Counts and hashes what passes through, so the diff id costs no second pass.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Unpack the (possibly compressed) layer `reader` into the existing, empty
/// directory `dest`. Returns the diff id; the caller compares it with the
/// image config's `diff_ids` and discards `dest` on any error.
pub fn unpack_layer(reader: impl Read, dest: &Path) -> Result<Unpacked, UnpackError> {
    unpack_layer_limited(reader, dest, Limits::NONE)
}

/// [`unpack_layer`] within `limits`.
pub fn unpack_layer_limited(
    reader: impl Read,
    dest: &Path,
    limits: Limits,
) -> Result<Unpacked, UnpackError> {
    let root = open_dir_path(dest).map_err(|source| UnpackError::Dest {
        path: dest.to_path_buf(),
        source,
    })?;
    let decoder = decompress(reader).map_err(|source| UnpackError::Read { source })?;
    let mut hashing = HashingReader {
        inner: decoder,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut entries = 0u64;
    // Where the last member's data (padded to a block) ends in the stream.
    let mut last_end = 0u64;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let mut state = Unpacker {
            root,
            cache: None,
            dirs: Vec::new(),
            euid_root: nix::unistd::geteuid().is_root(),
            ids: (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
            umask: current_umask(),
            buf: vec![0u8; 128 * 1024],
            bytes_left: limits.max_bytes,
            max_bytes: limits.max_bytes,
        };
        let iter = archive
            .entries()
            .map_err(|source| UnpackError::Read { source })?;
        for entry in iter {
            let mut entry = entry.map_err(|source| UnpackError::Read { source })?;
            if entries >= limits.max_entries {
                return Err(UnpackError::Refused {
                    entry: display(&entry.path_bytes()),
                    reason: format!(
                        "the layer has more than {} members ([storage] max_layer_entries)",
                        limits.max_entries
                    ),
                });
            }
            let size = entry.header().entry_size().unwrap_or(0);
            last_end = entry
                .raw_file_position()
                .saturating_add(size.div_ceil(512).saturating_mul(512));
            state.apply(&mut entry)?;
            entries += 1;
        }
        state.finish()?;
    }
    // The diff id covers the whole stream, end-of-archive blocks included.
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| UnpackError::Read { source })?;
    if limits.require_end && hashing.count < last_end.saturating_add(512) {
        return Err(UnpackError::Read {
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends without tar's end-of-archive block (truncated?)",
            ),
        });
    }
    Ok(Unpacked {
        diff_id: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        tar_bytes: hashing.count,
        entries,
    })
}

fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: c is a valid NUL-terminated string; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

struct Unpacker {
    root: OwnedFd,
    /// The parent directory of the previous entry: archives list siblings
    /// together, so most entries reuse it. Cleared whenever anything is removed.
    cache: Option<(Vec<Vec<u8>>, OwnedFd)>,
    /// Directory mtimes, applied at the end (creating children changes them).
    dirs: Vec<(Vec<Vec<u8>>, libc::timespec)>,
    euid_root: bool,
    /// Our effective uid and gid: files we create already belong to them.
    ids: (libc::uid_t, libc::gid_t),
    /// The process umask, to know when the create mode came out exact.
    umask: libc::mode_t,
    buf: Vec<u8>,
    /// File data this layer may still write, of `max_bytes`.
    bytes_left: u64,
    max_bytes: u64,
}

/// The umask, read without changing it (umask(2) would race other threads).
fn current_umask() -> libc::mode_t {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| libc::mode_t::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

fn display(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Split a member name into components: leading `/` and `.` parts dropped,
/// `..` refused.
fn components<'a>(entry: &str, name: &'a [u8]) -> Result<Vec<&'a [u8]>, UnpackError> {
    let mut out = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => {
                return Err(UnpackError::Refused {
                    entry: entry.to_string(),
                    reason: "a '..' component would leave the layer directory".to_string(),
                })
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn timespec(secs: f64) -> libc::timespec {
    let s = secs.floor();
    libc::timespec {
        tv_sec: s as libc::time_t,
        tv_nsec: ((secs - s) * 1e9) as libc::c_long,
    }
}

/// What a member says about itself besides its name and type: owner, mode,
/// mtime and the xattrs it may carry (never `trusted.overlay.*`).
struct Meta {
    mode: libc::mode_t,
    uid: libc::uid_t,
    gid: libc::gid_t,
    mtime: libc::timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
        let err = entry_err(name);
        let header = entry.header();
        let mode = (header.mode().map_err(err)? & 0o7777) as libc::mode_t;
        let uid = header.uid().map_err(err)? as libc::uid_t;
        let gid = header.gid().map_err(err)? as libc::gid_t;
        let mut mtime = timespec(header.mtime().map_err(err)? as f64);
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(err)? {
            for ext in pax.flatten() {
                let Ok(key) = ext.key() else { continue };
                if key == "mtime" {
                    if let Some(t) = ext.value().ok().and_then(|v| v.parse::<f64>().ok()) {
                        mtime = timespec(t);
                    }
                } else if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                    // Only berth decides what overlayfs sees.
                    if !x.starts_with("trusted.overlay.") {
                        xattrs.push((x.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }
}

/// An I/O error on member `name`.
fn entry_err(name: &str) -> impl Fn(io::Error) -> UnpackError + Copy + '_ {
    move |source| UnpackError::Entry {
        entry: name.to_string(),
        source,
    }
}

fn refused(name: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::Refused {
        entry: name.to_string(),
        reason: reason.into(),
    }
}

impl Unpacker {
    /// Apply one member: every write goes through a descriptor of its parent,
    /// opened beneath the layer root without following symlinks.
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let name_bytes = entry.path_bytes().into_owned();
        let name = display(&name_bytes);
        let comps = components(&name, &name_bytes)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let Some((leaf, parents)) = comps.split_last() else {
            // The archive's root ("./"): the layer directory itself keeps 0755.
            return Ok(());
        };
        let leaf = leaf.to_vec();
        let parents: Vec<Vec<u8>> = parents.iter().map(|c| c.to_vec()).collect();

        // Whiteouts first: they are markers, not files.
        if let Some(hidden) = leaf.strip_prefix(b".wh.") {
            return self.whiteout(&name, &parents, hidden);
        }

        let meta = Meta::read(entry, &name)?;
        let parent = self.open_parent(&name, &parents, true)?;
        let c = cstring(&leaf).map_err(entry_err(&name))?;
        use tar::EntryType as T;
        match kind {
            // The tar crate reads holes as zeros: a member of a few bytes
            // could write terabytes. Layers from docker, buildkit and Go's
            // archive/tar never use the GNU sparse format.
            T::GNUSparse => Err(refused(
                &name,
                "GNU sparse members are not supported in layers",
            )),
            T::Regular | T::Continuous => self.regular(entry, &name, parent, &c, &meta),
            T::Directory => {
                self.directory(&name, parent, &c, &meta)?;
                let mut full = parents;
                full.push(leaf);
                self.dirs.push((full, meta.mtime));
                Ok(())
            }
            T::Symlink => self.symlink(entry, &name, parent, &c, &meta),
            T::Link => self.hardlink(entry, &name, &parents, &c),
            T::Char | T::Block | T::Fifo => {
                let header = entry.header().clone();
                self.node(&header, &name, parent, &c, &meta)
            }
            other => Err(refused(
                &name,
                format!("unsupported tar entry type {:?}", other.as_byte() as char),
            )),
        }
    }

    /// `.wh..wh..opq` makes its directory opaque; `.wh.NAME` becomes an
    /// overlayfs whiteout (a 0/0 character device named NAME).
    fn whiteout(
        &mut self,
        name: &str,
        parents: &[Vec<u8>],
        hidden: &[u8],
    ) -> Result<(), UnpackError> {
        let err = entry_err(name);
        let parent = self.open_parent(name, parents, true)?;
        if hidden == b".wh..opq" {
            return set_xattr_fd(parent, "trusted.overlay.opaque", b"y").map_err(err);
        }
        if hidden.starts_with(b".wh.") {
            // aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): not content,
            // skipped as Docker and containerd do.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(refused(name, "whiteout of an invalid name"));
        }
        let c = cstring(hidden).map_err(err)?;
        self.replace_with(parent, &c, |p, c| {
            // SAFETY: valid fd and C string; result checked.
            check(unsafe { libc::mknodat(p, c.as_ptr(), libc::S_IFCHR, 0) })
        })
        .map_err(err)
    }

    /// A regular file: its data, counted against the layer's byte limit
    /// before anything is written, then owner, mode, xattrs and mtime.
    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        parent: RawFd,
        c: &CStr,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let err = entry_err(name);
        let size = entry.size();
        if size > self.bytes_left {
            return Err(refused(
                name,
                format!(
                    "the layer unpacks to more than its limit of {} bytes ([storage] max_layer_size)",
                    self.max_bytes
                ),
            ));
        }
        let mut file = self
            .create_file(parent, c, meta.mode & 0o777)
            .map_err(err)?;
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(UnpackError::Read { source }),
            };
            file.write_all(&self.buf[..n]).map_err(err)?;
            written += n as u64;
        }
        if written != size {
            return Err(UnpackError::Read {
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "member '{name}' ends after {written} of {size} bytes (truncated archive)"
                    ),
                ),
            });
        }
        self.bytes_left -= size;
        let fd = file.as_raw_fd();
        let Meta { mode, uid, gid, .. } = *meta;
        // Most members belong to root with an ordinary mode: then the
        // create already got both right and two syscalls per file
        // are saved (file creation dominates unpack time).
        let chowned = (uid, gid) != self.ids;
        if chowned {
            self.chown_fd(fd, uid, gid).map_err(err)?;
        }
        if chowned || mode & !0o777 != 0 || mode & self.umask != 0 {
            // After chown: chown clears set-id bits.
            // SAFETY: fd is an open file; result checked.
            check(unsafe { libc::fchmod(fd, mode) }).map_err(err)?;
        }
        for (k, v) in &meta.xattrs {
            set_xattr_fd(fd, k, v).map_err(err)?;
        }
        let times = [meta.mtime, meta.mtime];
        // SAFETY: fd open, times points at two timespecs.
        check(unsafe { libc::futimens(fd, times.as_ptr()) }).map_err(err)
    }

    /// A directory (an existing non-directory of that name is replaced); its
    /// mtime is set at the end, after its children.
    fn directory(
        &mut self,
        name: &str,
        parent: RawFd,
        c: &CStr,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let err = entry_err(name);
        // SAFETY: valid fd and C string; result checked below.
        let r = unsafe { libc::mkdirat(parent, c.as_ptr(), 0o700) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(err(e));
            }
            if !is_dir_at(parent, c).map_err(err)? {
                self.remove_at(parent, c).map_err(err)?;
                // SAFETY: as above.
                check(unsafe { libc::mkdirat(parent, c.as_ptr(), 0o700) }).map_err(err)?;
            }
        }
        let dir = openat_dir(parent, c).map_err(err)?;
        let fd = dir.as_raw_fd();
        self.chown_fd(fd, meta.uid, meta.gid).map_err(err)?;
        // SAFETY: fd open; result checked.
        check(unsafe { libc::fchmod(fd, meta.mode) }).map_err(err)?;
        for (k, v) in &meta.xattrs {
            set_xattr_fd(fd, k, v).map_err(err)?;
        }
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &str,
        parent: RawFd,
        c: &CStr,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let err = entry_err(name);
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| refused(name, "symlink without a target"))?
            .into_owned();
        let t = cstring(&target).map_err(err)?;
        // The target is stored as written: it is resolved only inside the
        // container's root at run time, never by this code.
        self.replace_with(parent, c, |p, c| {
            // SAFETY: valid fd and C strings; result checked.
            check(unsafe { libc::symlinkat(t.as_ptr(), p, c.as_ptr()) })
        })
        .map_err(err)?;
        self.chown_at(parent, c, meta.uid, meta.gid).map_err(err)?;
        utimes_at(parent, c, meta.mtime).map_err(err)
    }

    /// A hardlink may only name an earlier member of the same layer: its
    /// target is relative, has no `..`, and is opened beneath the root
    /// without following symlinks (nor creating anything).
    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &str,
        parents: &[Vec<u8>],
        c: &CStr,
    ) -> Result<(), UnpackError> {
        let err = entry_err(name);
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| refused(name, "hardlink without a target"))?
            .into_owned();
        if target.starts_with(b"/") {
            return Err(refused(
                name,
                format!(
                    "hardlink to absolute path '{}' (a hardlink may only name an earlier member of the layer)",
                    display(&target)
                ),
            ));
        }
        let tcomps = components(name, &target)?;
        let Some((tleaf, tparents)) = tcomps.split_last() else {
            return Err(refused(name, "hardlink to the layer root"));
        };
        let tparents: Vec<Vec<u8>> = tparents.iter().map(|c| c.to_vec()).collect();
        let tparent = self.open_dir_chain(name, &tparents, false)?;
        let tc = cstring(tleaf).map_err(err)?;
        let parent = self.open_parent(name, parents, true)?;
        let tfd = tparent.as_raw_fd();
        let r = self.replace_with(parent, c, |p, c| {
            // Flags 0: a symlink target is linked itself, never followed.
            // SAFETY: valid fds and C strings; result checked.
            check(unsafe { libc::linkat(tfd, tc.as_ptr(), p, c.as_ptr(), 0) })
        });
        match r {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(refused(
                name,
                format!(
                    "hardlink target '{}' is not an earlier member of the layer",
                    display(&target)
                ),
            )),
            Err(e) => Err(err(e)),
            Ok(()) => Ok(()),
        }
    }

    /// A character or block device (root only) or a fifo.
    fn node(
        &mut self,
        header: &tar::Header,
        name: &str,
        parent: RawFd,
        c: &CStr,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        use tar::EntryType as T;
        let err = entry_err(name);
        let kind = header.entry_type();
        if kind != T::Fifo && !self.euid_root {
            return Err(refused(name, "device nodes need root to unpack"));
        }
        let ftype = match kind {
            T::Char => libc::S_IFCHR,
            T::Block => libc::S_IFBLK,
            _ => libc::S_IFIFO,
        };
        // A fifo has no device numbers; some writers leave the fields blank.
        let dev = if kind == T::Fifo {
            0
        } else {
            let major = header.device_major().map_err(err)?.unwrap_or(0);
            let minor = header.device_minor().map_err(err)?.unwrap_or(0);
            libc::makedev(major, minor)
        };
        let mode = meta.mode;
        self.replace_with(parent, c, |p, c| {
            // SAFETY: valid fd and C string; result checked.
            check(unsafe { libc::mknodat(p, c.as_ptr(), ftype | mode, dev) })
        })
        .map_err(err)?;
        self.chown_at(parent, c, meta.uid, meta.gid).map_err(err)?;
        // mknod's mode went through the umask; set it exactly. The node
        // was just made by us in a private directory, so following is moot.
        // SAFETY: valid fd and C string; result checked.
        check(unsafe { libc::fchmodat(parent, c.as_ptr(), mode, 0) }).map_err(err)?;
        utimes_at(parent, c, meta.mtime).map_err(err)
    }

    /// The descriptor of the entry's parent directory (cached), creating
    /// missing directories as tar does.
    fn open_parent(
        &mut self,
        entry: &str,
        parents: &[Vec<u8>],
        create: bool,
    ) -> Result<RawFd, UnpackError> {
        if let Some((path, fd)) = &self.cache {
            if path.as_slice() == parents {
                return Ok(fd.as_raw_fd());
            }
        }
        let fd = self.open_dir_chain(entry, parents, create)?;
        let raw = fd.as_raw_fd();
        self.cache = Some((parents.to_vec(), fd));
        Ok(raw)
    }

    /// Walk `parents` from the layer root one component at a time, never
    /// following a symlink.
    fn open_dir_chain(
        &self,
        entry: &str,
        parents: &[Vec<u8>],
        create: bool,
    ) -> Result<OwnedFd, UnpackError> {
        // SAFETY: dup of a descriptor we own; result checked.
        let fd = unsafe { libc::fcntl(self.root.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(UnpackError::Entry {
                entry: entry.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: fd was just created and is owned here only.
        let mut cur = unsafe { OwnedFd::from_raw_fd(fd) };
        for (i, comp) in parents.iter().enumerate() {
            let sofar = || {
                parents[..=i]
                    .iter()
                    .map(|c| display(c))
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let c = cstring(comp).map_err(|source| UnpackError::Entry {
                entry: entry.to_string(),
                source,
            })?;
            let next = match openat_dir(cur.as_raw_fd(), &c) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    // SAFETY: valid fd and C string; EEXIST (a race) is fine.
                    let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
                    if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                        return Err(UnpackError::Entry {
                            entry: entry.to_string(),
                            source: io::Error::last_os_error(),
                        });
                    }
                    openat_dir(cur.as_raw_fd(), &c).map_err(|source| UnpackError::Entry {
                        entry: entry.to_string(),
                        source,
                    })?
                }
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) =>
                {
                    return Err(UnpackError::Refused {
                        entry: entry.to_string(),
                        reason: format!(
                            "its parent '{}' is a symlink or not a directory (refusing to write through it)",
                            sofar()
                        ),
                    })
                }
                Err(source) => {
                    return Err(UnpackError::Entry {
                        entry: entry.to_string(),
                        source,
                    })
                }
            };
            cur = next;
        }
        Ok(cur)
    }

    fn create_file(&mut self, parent: RawFd, c: &CStr, perm: libc::mode_t) -> io::Result<File> {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid fd and C string; result checked.
        let mut fd = unsafe { libc::openat(parent, c.as_ptr(), flags, perm as libc::c_uint) };
        if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            // A later member replaces an earlier one; unlinking first means a
            // hardlinked earlier file is never written through.
            self.remove_at(parent, c)?;
            // SAFETY: as above.
            fd = unsafe { libc::openat(parent, c.as_ptr(), flags, perm as libc::c_uint) };
        }
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned by the File.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Run `make`; when the name exists already, remove it and run it again.
    fn replace_with(
        &mut self,
        parent: RawFd,
        c: &CStr,
        make: impl Fn(RawFd, &CStr) -> io::Result<()>,
    ) -> io::Result<()> {
        match make(parent, c) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.remove_at(parent, c)?;
                make(parent, c)
            }
            r => r,
        }
    }

    fn remove_at(&mut self, parent: RawFd, c: &CStr) -> io::Result<()> {
        // A cached descriptor may name what is being removed.
        let keep = self.cache.take();
        let result = remove_at(parent, c);
        // The cached parent itself is not removed (c is a child of `parent`),
        // but a deeper cached directory may be; only keep the cache when it is
        // the parent we are working in.
        if let Some((p, fd)) = keep {
            if fd.as_raw_fd() == parent {
                self.cache = Some((p, fd));
            }
        }
        result
    }

    fn chown_fd(&self, fd: RawFd, uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
        // SAFETY: fd open; result checked.
        let r = check(unsafe { libc::fchown(fd, uid, gid) });
        self.tolerate_unprivileged(r)
    }

    fn chown_at(
        &self,
        parent: RawFd,
        c: &CStr,
        uid: libc::uid_t,
        gid: libc::gid_t,
    ) -> io::Result<()> {
        // SAFETY: valid fd and C string; result checked.
        let r = check(unsafe {
            libc::fchownat(parent, c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
        });
        self.tolerate_unprivileged(r)
    }

    /// Without root, ownership cannot be kept; the files stay the caller's.
    fn tolerate_unprivileged(&self, r: io::Result<()>) -> io::Result<()> {
        match r {
            Err(e) if !self.euid_root && e.raw_os_error() == Some(libc::EPERM) => Ok(()),
            r => r,
        }
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dirs);
        for (path, mtime) in dirs.iter().rev() {
            let entry = path
                .iter()
                .map(|c| display(c))
                .collect::<Vec<_>>()
                .join("/");
            // A directory later replaced by another kind of member is skipped.
            let Ok(fd) = self.open_dir_chain(&entry, path, false) else {
                continue;
            };
            let times = [*mtime, *mtime];
            // SAFETY: fd open; times points at two timespecs.
            check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
                .map_err(|source| UnpackError::Entry { entry, source })?;
        }
        Ok(())
    }
}

fn openat_dir(parent: RawFd, c: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and C string; result checked.
    let fd = unsafe {
        libc::openat(
            parent,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd just opened, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_dir_at(parent: RawFd, c: &CStr) -> io::Result<bool> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and out pointer; result checked.
    check(unsafe { libc::fstatat(parent, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

fn remove_at(parent: RawFd, c: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    if unsafe { libc::unlinkat(parent, c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EISDIR) {
        return Err(e);
    }
    // A directory replaced by a non-directory: remove the subtree. The path
    // goes through our own descriptor, and remove_dir_all never follows
    // symlinks inside the tree.
    use std::os::unix::ffi::OsStrExt;
    let path = PathBuf::from(format!("/proc/self/fd/{parent}"))
        .join(std::ffi::OsStr::from_bytes(c.to_bytes()));
    std::fs::remove_dir_all(path)
}

fn set_xattr_fd(fd: RawFd, name: &str, value: &[u8]) -> io::Result<()> {
    let n = cstring(name.as_bytes())?;
    // SAFETY: valid fd, C string and buffer; result checked.
    check(unsafe { libc::fsetxattr(fd, n.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

fn utimes_at(parent: RawFd, c: &CStr, t: libc::timespec) -> io::Result<()> {
    let times = [t, t];
    // SAFETY: valid fd, C string and two timespecs; result checked.
    check(unsafe {
        libc::utimensat(
            parent,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/"), Compression::None);
    }

    #[test]
    fn components_refuse_dotdot_and_strip_slash() {
        assert_eq!(
            components("x", b"/a/./b/").unwrap(),
            vec![b"a".as_slice(), b"b".as_slice()]
        );
        let e = components("a/../b", b"a/../b").unwrap_err().to_string();
        assert!(e.contains("'a/../b'") && e.contains(".."), "{e}");
    }

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        // set_path refuses '..'; hostile archives write the bytes directly.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            let lb = l.as_bytes();
            h.as_old_mut().linkname[..lb.len()].copy_from_slice(lb);
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn plain_tree_unpacks_and_diff_id_matches() {
        let data = tar_with(|b| {
            raw_entry(b, "a/", tar::EntryType::Directory, None, b"");
            raw_entry(b, "a/f", tar::EntryType::Regular, None, b"hello");
            raw_entry(b, "a/l", tar::EntryType::Symlink, Some("/etc/passwd"), b"");
            raw_entry(b, "a/h", tar::EntryType::Link, Some("a/f"), b"");
        });
        let dir = tempfile::tempdir().unwrap();
        let out = unpack_layer(&data[..], dir.path()).unwrap();
        assert_eq!(
            out.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );
        assert_eq!(std::fs::read(dir.path().join("a/f")).unwrap(), b"hello");
        assert_eq!(std::fs::read(dir.path().join("a/h")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read_link(dir.path().join("a/l")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
    }

    #[test]
    fn aufs_metadata_is_skipped() {
        let data = tar_with(|b| {
            raw_entry(b, ".wh..wh.plnk", tar::EntryType::Directory, None, b"");
            raw_entry(b, "d/.wh..wh.aufs", tar::EntryType::Regular, None, b"");
        });
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(&data[..], dir.path()).unwrap();
        assert!(!dir.path().join(".wh.plnk").exists());
        assert!(!dir.path().join("d/.wh.aufs").exists());
    }

    #[test]
    fn gzip_and_zstd_give_the_same_diff_id() {
        let data = tar_with(|b| raw_entry(b, "f", tar::EntryType::Regular, None, b"x"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        let want = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        for blob in [gz, zs] {
            let dir = tempfile::tempdir().unwrap();
            assert_eq!(unpack_layer(&blob[..], dir.path()).unwrap().diff_id, want);
            assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"x");
        }
    }

    #[test]
    fn hostile_members_are_refused_by_name() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                tar_with(|b| raw_entry(b, "../escape", tar::EntryType::Regular, None, b"x")),
                "'../escape'",
            ),
            (
                tar_with(|b| {
                    raw_entry(b, "evil", tar::EntryType::Symlink, Some("/tmp"), b"");
                    raw_entry(b, "evil/planted", tar::EntryType::Regular, None, b"x");
                }),
                "'evil/planted'",
            ),
            (
                tar_with(|b| {
                    raw_entry(b, "shadow", tar::EntryType::Link, Some("/etc/shadow"), b"")
                }),
                "'shadow'",
            ),
            (
                tar_with(|b| {
                    raw_entry(b, "up", tar::EntryType::Link, Some("../../etc/shadow"), b"")
                }),
                "'up'",
            ),
            (
                tar_with(|b| {
                    raw_entry(b, "d", tar::EntryType::Symlink, Some("/etc"), b"");
                    raw_entry(b, "h", tar::EntryType::Link, Some("d/shadow"), b"");
                }),
                "'h'",
            ),
        ];
        for (data, needle) in cases {
            let outer = tempfile::tempdir().unwrap();
            let dest = outer.path().join("layer");
            std::fs::create_dir(&dest).unwrap();
            let e = unpack_layer(&data[..], &dest).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(!outer.path().join("escape").exists());
        }
    }
}
