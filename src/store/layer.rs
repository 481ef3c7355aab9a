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
        let mtime = st.st_mtime.max(0) as u64;
        h.set_mtime(self.opts.clamp_mtime.map_or(mtime, |c| mtime.min(c)));
        h.set_size(0);
        h
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
            self.append_node(node.as_fd(), &prefix.join(&name))?;
        }
        Ok(())
    }

    /// The node an O_PATH descriptor holds as the member `name`, a
    /// directory with everything under it.
    pub fn append_node(&mut self, fd: BorrowedFd, name: &Path) -> io::Result<()> {
        let st = crate::sys::at::fstat(fd)?;
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
            libc::S_IFREG if st.st_size == 0 && self.opts.skip_empty_files.contains(name) => Ok(()),
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
            // Sockets have no tar form (Docker and Podman skip them too).
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

/// A layer blob's compressor, chosen at run time.
enum Compressor<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
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
            Compression::Gzip | Compression::None => Compressor::Gzip(
                flate2::write::GzEncoder::new(out, flate2::Compression::default()),
            ),
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
        let root = crate::sys::at::openat2_cwd(dir, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(io_err("cannot open", dir))?;
        let bdir = self.root.join("blobs/sha256");
        let tmp = super::tmp_name(&bdir, "layer");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        let remove = |e: StoreError| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        let written = (|| -> io::Result<(String, String, u64, u64)> {
            let blob = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, file));
            let packed = Compressor::new(blob, compression)?;
            let mut tree = TarTree::new(HashingWriter::new(packed), opts.clone());
            tree.append_children(root.as_fd(), Path::new(""))?;
            let entries = tree.entries;
            let tar = tree.finish()?;
            let diff_id = tar.digest();
            let blob = tar.inner.finish()?;
            let digest = blob.digest();
            let size = blob.count;
            let file = blob.inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok((digest, diff_id, size, entries))
        })();
        let (digest, diff_id, size, entries) = written
            .map_err(io_err("cannot write layer of", dir))
            .map_err(remove)?;
        {
            let _lock = self.lock_blob(&digest).map_err(remove)?;
            let dest = self.blob_path(&digest).map_err(remove)?;
            if dest.is_file() {
                let _ = std::fs::remove_file(&tmp);
            } else {
                std::fs::rename(&tmp, &dest)
                    .map_err(io_err("cannot rename blob into", &dest))
                    .map_err(remove)?;
                super::fsync_dir(&bdir)?;
            }
        }
        self.unpack_layer(&digest, &diff_id)?;
        Ok(LayerBlob {
            digest,
            diff_id,
            size,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_upper_dir_becomes_a_layer_with_oci_whiteouts() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (whiteout device nodes, trusted xattrs)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let up = t.path().join("upper");
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
        let c = CString::new(up.join("etc/opq").as_os_str().as_bytes()).unwrap();
        // SAFETY: setxattr with valid strings and a buffer we own.
        assert_eq!(
            unsafe {
                libc::setxattr(
                    c.as_ptr(),
                    c"trusted.overlay.opaque".as_ptr(),
                    b"y".as_ptr().cast(),
                    1,
                    0,
                )
            },
            0
        );
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
}
