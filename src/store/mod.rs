//! The image store under the storage root (default `/var/lib/berth`):
//!
//! ```text
//! blobs/sha256/<hex>          content-addressed blobs (manifests, configs, layer archives)
//! layers/sha256/<diffid-hex>/ unpacked layers, keyed by diff id, shared by every image
//! refs/<escaped reference>    one small file per canonical reference: the manifest digest
//! locks/                      flock files: store.lock (pulls shared, prune exclusive),
//!                             <hex>.blob / <hex>.layer (one writer per blob and layer)
//! tmp/                        scratch for offline sources
//! ```
//!
//! Owns: every file under the root, written atomically (temp + rename, fsync
//! where a crash could otherwise leave a name pointing at missing data) and
//! safe under concurrent pulls. Anything named without a `.tmp-` prefix is
//! complete and verified. Must not: talk to registries (that is `image`).

pub mod layer;
pub mod unpack;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::distribution::manifest::{self, Healthcheck, Manifest, ManifestError};
use crate::distribution::reference::{check_digest, Reference};

/// What went wrong in the store, naming the file, digest or reference.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} '{path}'")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("digest mismatch for {what}: expected '{expected}', got '{actual}'")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for blob '{digest}': expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid digest '{0}' (expected 'sha256:' and 64 lowercase hex digits)")]
    BadDigest(String),
    #[error("blob '{digest}' is {size} bytes, more than the {limit}-byte limit for {what}")]
    TooLarge {
        digest: String,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("cannot unpack layer '{layer}'")]
    Unpack {
        layer: String,
        #[source]
        source: unpack::UnpackError,
    },
    #[error("image '{reference}' in the store is damaged")]
    Damaged {
        reference: String,
        #[source]
        source: ManifestError,
    },
    #[error("image '{reference}' is damaged: {reason}")]
    Missing { reference: String, reason: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// An image ready to run: what the runtime and planner need.
#[derive(Debug, Clone)]
pub struct Image {
    /// Canonical reference (`docker.io/library/nginx:latest`, `oci:/dir:tag`).
    pub reference: String,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// The image config (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts,
    /// Volumes, StopSignal, …).
    pub config: oci_spec::image::ImageConfiguration,
    /// Docker's `Healthcheck`, which oci-spec's config does not carry.
    pub healthcheck: Option<Healthcheck>,
    /// Unpacked layer directories, lowest first (reverse this for overlayfs
    /// `lowerdir=`, which lists the top layer first).
    pub layers: Vec<PathBuf>,
    /// Sum of the layer blob sizes (compressed, as registries count).
    pub size: u64,
}

/// One reference in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefEntry {
    pub reference: String,
    pub manifest_digest: String,
}

/// What prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: Vec<String>,
    pub layers: Vec<String>,
    pub bytes: u64,
}

/// An flock held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// The store at one root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    limits: LayerLimits,
}

/// `[storage] max_layer_size` / `max_layer_entries`; None is sized to the
/// store's filesystem when a layer starts (90% of its free space / inodes),
/// so a hostile layer fails instead of filling the disk (issue 12, class 7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerLimits {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<u64>,
}

impl LayerLimits {
    /// What one layer may unpack, as `[storage]` says (None: sized to the
    /// disk). Here, not in `config`, which stays pure (tests/purity.rs).
    pub fn from_globals(g: &crate::config::Globals) -> LayerLimits {
        LayerLimits {
            max_bytes: g.max_layer_size,
            max_entries: g.max_layer_entries,
        }
    }

    /// The bounds for a layer unpacked into `dir` now.
    fn resolve(&self, dir: &Path, require_end: bool) -> unpack::Limits {
        let free = nix::sys::statvfs::statvfs(dir).ok();
        let bytes = free
            .as_ref()
            .map(|s| s.blocks_available().saturating_mul(s.fragment_size()) / 10 * 9);
        let inodes = free
            .as_ref()
            .map(|s| s.files_available() / 10 * 9)
            // Filesystems without inode counts (btrfs) report 0.
            .filter(|n| *n > 0);
        unpack::Limits {
            max_bytes: self.max_bytes.or(bytes).unwrap_or(u64::MAX),
            max_entries: self.max_entries.or(inodes).unwrap_or(u64::MAX),
            require_end,
        }
    }
}

fn hex_of(digest: &str) -> Result<&str, StoreError> {
    if check_digest(digest) {
        Ok(&digest[7..])
    } else {
        Err(StoreError::BadDigest(digest.to_string()))
    }
}

/// `refs/` file name for a canonical reference: `/` and `%` percent-escaped,
/// so a reference is one file whatever its slashes.
fn ref_file_name(canonical: &str) -> String {
    let mut out = String::with_capacity(canonical.len() + 8);
    for c in canonical.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

fn ref_from_file_name(name: &str) -> String {
    name.replace("%2F", "/").replace("%25", "%")
}

/// A unique temp name next to the final one.
fn tmp_name(dir: &Path, key: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".tmp-{key}-{}-{n}", std::process::id()))
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("cannot sync", dir))
}

impl Store {
    /// Open (creating if needed) the store at `root`.
    /// Layers keep their setuid binaries, device nodes and file
    /// capabilities: their directories are 0700 under a 0711 root, and no
    /// host user may reach them (CVE-2021-41091; see `crate::private`).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        crate::private::root_dir(root).map_err(io_err("cannot create", root))?;
        for sub in ["blobs/sha256", "layers/sha256", "refs", "locks", "tmp"] {
            let p = root.join(sub);
            crate::private::dir(&p).map_err(io_err("cannot create", &p))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            limits: LayerLimits::default(),
        })
    }

    /// Bound each layer unpacked into this store by `limits`.
    pub fn with_limits(mut self, limits: LayerLimits) -> Store {
        self.limits = limits;
        self
    }

    /// The bounds a layer unpacked now gets; `require_end` for a source
    /// with no digest to check (an import).
    pub fn unpack_limits(&self, require_end: bool) -> unpack::Limits {
        self.limits.resolve(&self.root, require_end)
    }

    /// The store at `root` for reading only: creates nothing. The generator
    /// uses this (it must not write outside its output directories, and /var
    /// may not even be mounted yet); a missing store simply has no images.
    pub fn at(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
            limits: LayerLimits::default(),
        }
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self, name: &str, op: libc::c_int) -> Result<Lock, StoreError> {
        let path = self.root.join("locks").join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("cannot open lock", &path))?;
        loop {
            // SAFETY: valid open fd; result checked.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(Lock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(StoreError::Io {
                    action: "cannot lock",
                    path,
                    source: e,
                });
            }
        }
    }

    /// Shared store lock: held by pulls and imports so prune cannot remove
    /// content between its download and the ref that keeps it.
    pub fn lock_shared(&self) -> Result<Lock, StoreError> {
        self.lock("store.lock", libc::LOCK_SH)
    }

    /// Exclusive store lock, for prune and rmi.
    pub fn lock_exclusive(&self) -> Result<Lock, StoreError> {
        self.lock("store.lock", libc::LOCK_EX)
    }

    /// Lock one blob for writing (blocks while another process writes it).
    pub fn lock_blob(&self, digest: &str) -> Result<Lock, StoreError> {
        let hex = hex_of(digest)?;
        self.lock(&format!("{hex}.blob"), libc::LOCK_EX)
    }

    /// Path of a blob (it may not exist).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    /// Whether a complete blob is stored.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Read a stored blob of at most `limit` bytes, verifying its digest.
    pub fn read_blob(
        &self,
        digest: &str,
        what: &'static str,
        limit: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest)?;
        let file = File::open(&path).map_err(io_err("cannot open blob", &path))?;
        let size = file.metadata().map_err(io_err("cannot stat", &path))?.len();
        if size > limit {
            return Err(StoreError::TooLarge {
                digest: digest.to_string(),
                what,
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err("cannot read blob", &path))?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(StoreError::DigestMismatch {
                what: format!("stored blob '{}'", path.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Store `bytes` as a blob; with `expected`, refuse a mismatch. Returns the digest.
    pub fn put_blob(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, StoreError> {
        let digest = sha256_digest(bytes);
        if let Some(e) = expected {
            if e != digest {
                return Err(StoreError::DigestMismatch {
                    what: "blob".to_string(),
                    expected: e.to_string(),
                    actual: digest,
                });
            }
        }
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let _lock = self.lock_blob(&digest)?;
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        self.clean_stale_blob(&digest);
        let mut w = self.blob_writer(&digest, Some(bytes.len() as u64))?;
        w.write_all(bytes)
            .map_err(io_err("cannot write", &w.tmp.clone()))?;
        w.commit()?;
        Ok(digest)
    }

    /// Start writing a blob; [`BlobWriter::commit`] verifies and renames it into place.
    pub fn blob_writer(&self, digest: &str, size: Option<u64>) -> Result<BlobWriter, StoreError> {
        let hex = hex_of(digest)?.to_string();
        let dir = self.root.join("blobs/sha256");
        let tmp = tmp_name(&dir, &hex);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        Ok(BlobWriter {
            file,
            tmp,
            dest: dir.join(&hex),
            digest: digest.to_string(),
            size,
            hasher: Sha256::new(),
            written: 0,
            done: false,
        })
    }

    /// Copy a blob from a reader (offline sources), verifying digest and size.
    pub fn copy_blob(
        &self,
        mut reader: impl Read,
        digest: &str,
        size: Option<u64>,
    ) -> Result<(), StoreError> {
        let _lock = self.lock_blob(digest)?;
        if self.has_blob(digest) {
            return Ok(());
        }
        self.clean_stale_blob(digest);
        let mut w = self.blob_writer(digest, size)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let tmp = w.tmp.clone();
                    w.abort();
                    return Err(StoreError::Io {
                        action: "cannot read source of blob",
                        path: tmp,
                        source: e,
                    });
                }
            };
            let tmp = w.tmp.clone();
            w.write_all(&buf[..n])
                .map_err(io_err("cannot write", &tmp))?;
        }
        w.commit()
    }

    /// Remove stale temp files of one blob or layer left by a killed process.
    /// Callers hold that blob's or layer's lock, so none is in progress.
    fn clean_stale(&self, dir: &Path, hex: &str) {
        let prefix = format!(".tmp-{hex}-");
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                }
            }
        }
    }

    /// Remove stale temp blobs of `digest` (call with its lock held).
    pub fn clean_stale_blob(&self, digest: &str) {
        if let Ok(hex) = hex_of(digest) {
            self.clean_stale(&self.root.join("blobs/sha256"), hex);
        }
    }

    /// Path of an unpacked layer (it may not exist).
    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("layers/sha256").join(hex_of(diff_id)?))
    }

    /// Whether a complete unpacked layer is stored.
    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_path(diff_id).is_ok_and(|p| p.is_dir())
    }

    /// Unpack the stored blob `blob` as the layer `diff_id`, once: under the
    /// layer's lock, into a temp dir that is renamed into place only after the
    /// uncompressed digest matched. Returns true when this call unpacked it.
    pub fn unpack_layer(&self, blob: &str, diff_id: &str) -> Result<bool, StoreError> {
        let hex = hex_of(diff_id)?.to_string();
        let _lock = self.lock(&format!("{hex}.layer"), libc::LOCK_EX)?;
        let dest = self.layer_path(diff_id)?;
        if dest.is_dir() {
            return Ok(false);
        }
        let dir = self.root.join("layers/sha256");
        self.clean_stale(&dir, &hex);
        let src = self.blob_path(blob)?;
        let file = File::open(&src).map_err(io_err("cannot open blob", &src))?;
        let got = self.unpack_into_tmp(file, &hex, Some(diff_id))?;
        debug_assert_eq!(got, diff_id);
        Ok(true)
    }

    /// Unpack a layer from any reader whose diff id is not known in advance
    /// (a rootfs tarball being imported). Returns the diff id.
    pub fn unpack_layer_from(&self, reader: impl Read) -> Result<String, StoreError> {
        // The diff id is only known afterwards; the lock is per diff id, so
        // unpack under a unique temp name and rename if nobody won meanwhile.
        self.unpack_into_tmp(reader, "import", None)
    }

    fn unpack_into_tmp(
        &self,
        reader: impl Read,
        key: &str,
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        let dir = self.root.join("layers/sha256");
        let tmp = tmp_name(&dir, key);
        fs::create_dir(&tmp).map_err(io_err("cannot create", &tmp))?;
        let cleanup = |e: StoreError| {
            let _ = fs::remove_dir_all(&tmp);
            e
        };
        // Overlay lower dirs are traversed by container users: 0755 like `/`.
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_err("cannot chmod", &tmp))
            .map_err(cleanup)?;
        let layer_name = expected.unwrap_or("import").to_string();
        let out =
            unpack::unpack_layer_limited(reader, &tmp, self.unpack_limits(expected.is_none()))
                .map_err(|source| StoreError::Unpack {
                    layer: layer_name.clone(),
                    source,
                })
                .map_err(cleanup)?;
        if let Some(e) = expected {
            if out.diff_id != e {
                return Err(cleanup(StoreError::DigestMismatch {
                    what: format!("uncompressed layer (diff id) '{layer_name}'"),
                    expected: e.to_string(),
                    actual: out.diff_id,
                }));
            }
        }
        // One syncfs per layer instead of an fsync per file: the layer name
        // must not appear before its contents are durable.
        if let Ok(f) = File::open(&tmp) {
            // SAFETY: valid fd; failure only loses durability, reported by rename below.
            unsafe { libc::syncfs(f.as_raw_fd()) };
        }
        let dest = self.layer_path(&out.diff_id)?;
        if dest.is_dir() {
            // Another importer of the same content won.
            let _ = fs::remove_dir_all(&tmp);
            return Ok(out.diff_id);
        }
        fs::rename(&tmp, &dest)
            .map_err(io_err("cannot rename layer into", &dest))
            .map_err(cleanup)?;
        fsync_dir(&dir)?;
        Ok(out.diff_id)
    }

    /// Point `reference` (filed under its canonical form, so every spelling
    /// of one image shares the ref) at `manifest_digest`, atomically.
    pub fn set_ref(&self, reference: &Reference, manifest_digest: &str) -> Result<(), StoreError> {
        hex_of(manifest_digest)?;
        let canonical = reference.canonical();
        let dir = self.root.join("refs");
        let dest = dir.join(ref_file_name(&canonical));
        let tmp = tmp_name(&dir, "ref");
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{manifest_digest}\n").as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StoreError::Io {
                action: "cannot write ref",
                path: dest.clone(),
                source: e,
            }
        })?;
        fsync_dir(&dir)
    }

    /// The manifest digest `reference` points at.
    pub fn get_ref(&self, reference: &Reference) -> Result<Option<String>, StoreError> {
        self.read_ref(&reference.canonical())
    }

    /// The ref filed under `canonical` (a name read back from `refs/`).
    fn read_ref(&self, canonical: &str) -> Result<Option<String>, StoreError> {
        let path = self.root.join("refs").join(ref_file_name(canonical));
        match fs::read_to_string(&path) {
            Ok(s) => {
                let d = s.trim().to_string();
                hex_of(&d)?;
                Ok(Some(d))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                action: "cannot read ref",
                path,
                source,
            }),
        }
    }

    /// Remove a ref; returns whether it existed.
    pub fn remove_ref(&self, reference: &Reference) -> Result<bool, StoreError> {
        let canonical = reference.canonical();
        let path = self.root.join("refs").join(ref_file_name(&canonical));
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Io {
                action: "cannot remove ref",
                path,
                source,
            }),
        }
    }

    /// Keep `manifest_digest` (last known as `reference`) out of prune's
    /// reach after its ref was removed while a running container still uses
    /// it (`berth rmi --force`). One file per digest in `held/`.
    pub fn hold(&self, reference: &str, manifest_digest: &str) -> Result<(), StoreError> {
        let hex = hex_of(manifest_digest)?;
        let dir = self.root.join("held");
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        let tmp = tmp_name(&dir, hex);
        fs::write(&tmp, format!("{reference}\n")).map_err(io_err("cannot write", &tmp))?;
        let dest = dir.join(hex);
        fs::rename(&tmp, &dest).map_err(io_err("cannot rename into", &dest))
    }

    /// Held images: (reference they had, manifest digest).
    pub fn holds(&self) -> Vec<RefEntry> {
        let Ok(rd) = fs::read_dir(self.root.join("held")) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let digest = format!("sha256:{name}");
                check_digest(&digest).then(|| RefEntry {
                    reference: fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    manifest_digest: digest,
                })
            })
            .collect()
    }

    /// Drop a hold (the last container using it stopped).
    pub fn release(&self, manifest_digest: &str) -> Result<(), StoreError> {
        let p = self.root.join("held").join(hex_of(manifest_digest)?);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io {
                action: "cannot remove",
                path: p,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every ref, sorted by reference.
    pub fn refs(&self) -> Result<Vec<RefEntry>, StoreError> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("cannot list", &dir))? {
            let e = e.map_err(io_err("cannot list", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue;
            }
            let reference = ref_from_file_name(&name);
            // Only a name that is some reference's canonical form is a ref.
            let canonical = Reference::parse(&reference).map(|r| r.canonical());
            if canonical.as_deref() != Ok(reference.as_str()) {
                continue;
            }
            if let Ok(Some(d)) = self.read_ref(&reference) {
                out.push(RefEntry {
                    reference,
                    manifest_digest: d,
                });
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// The manifest stored under `digest`.
    pub fn manifest(&self, reference: &str, digest: &str) -> Result<Manifest, StoreError> {
        let bytes = self.read_blob(digest, "a manifest", manifest::MAX_METADATA_BYTES)?;
        match manifest::parse(&bytes, "") {
            Ok(manifest::Fetched::Manifest(m)) => Ok(m),
            Ok(manifest::Fetched::Index(_)) => Err(StoreError::Missing {
                reference: reference.to_string(),
                reason: format!("ref points at an index '{digest}', not a manifest"),
            }),
            Err(source) => Err(StoreError::Damaged {
                reference: reference.to_string(),
                source,
            }),
        }
    }

    /// The image `reference` names, if it is stored completely.
    pub fn image(&self, reference: &Reference) -> Result<Option<Image>, StoreError> {
        let canonical = reference.canonical();
        let Some(digest) = self.read_ref(&canonical)? else {
            return Ok(None);
        };
        self.image_by_digest(&canonical, &digest).map(Some)
    }

    /// Build the [`Image`] for a stored manifest digest.
    pub fn image_by_digest(&self, reference: &str, digest: &str) -> Result<Image, StoreError> {
        let m = self.manifest(reference, digest)?;
        let raw = self.read_blob(
            &m.config.digest,
            "an image config",
            manifest::MAX_METADATA_BYTES,
        )?;
        let damaged = |source| StoreError::Damaged {
            reference: reference.to_string(),
            source,
        };
        let config = manifest::parse_config(&raw).map_err(damaged)?;
        let diff_ids = manifest::diff_ids(&config, &m).map_err(damaged)?;
        let mut layers = Vec::with_capacity(diff_ids.len());
        for id in &diff_ids {
            let p = self.layer_path(id)?;
            if !p.is_dir() {
                return Err(StoreError::Missing {
                    reference: reference.to_string(),
                    reason: format!("layer '{id}' is not unpacked (pull it again)"),
                });
            }
            layers.push(p);
        }
        Ok(Image {
            reference: reference.to_string(),
            manifest_digest: digest.to_string(),
            healthcheck: manifest::healthcheck(&raw),
            config,
            layers,
            // Checked when the image was stored; saturating for display.
            size: m.layers.iter().fold(0u64, |a, l| a.saturating_add(l.size)),
        })
    }

    /// Whether `reference` is stored completely (the generator asks this to
    /// decide whether a start may need the network).
    pub fn is_present(&self, reference: &Reference) -> bool {
        matches!(self.image(reference), Ok(Some(_)))
    }

    /// Remove every blob and layer not reachable from a ref or from
    /// `keep_manifests` (images of running containers), and stale temp files.
    /// Takes the exclusive store lock.
    pub fn prune(&self, keep_manifests: &[String]) -> Result<PruneReport, StoreError> {
        let _lock = self.lock_exclusive()?;
        let mut manifests: BTreeSet<String> = keep_manifests.iter().cloned().collect();
        for r in self.refs()?.into_iter().chain(self.holds()) {
            manifests.insert(r.manifest_digest);
        }
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for md in &manifests {
            if !self.has_blob(md) {
                continue;
            }
            blobs.insert(md.clone());
            // A damaged manifest keeps what it can name; never guess wider.
            let Ok(m) = self.manifest(md, md) else {
                continue;
            };
            blobs.insert(m.config.digest.clone());
            for l in &m.layers {
                blobs.insert(l.digest.clone());
            }
            if let Ok(raw) = self.read_blob(
                &m.config.digest,
                "an image config",
                manifest::MAX_METADATA_BYTES,
            ) {
                if let Ok(cfg) = manifest::parse_config(&raw) {
                    layers.extend(cfg.rootfs().diff_ids().iter().cloned());
                }
            }
        }
        let mut report = PruneReport::default();
        let bdir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&bdir)
            .map_err(io_err("cannot list", &bdir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if name.starts_with(".tmp-") || !blobs.contains(&digest) {
                report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err("cannot remove", &e.path()))?;
                if !name.starts_with(".tmp-") {
                    report.blobs.push(digest);
                }
            }
        }
        let ldir = self.root.join("layers/sha256");
        for e in fs::read_dir(&ldir)
            .map_err(io_err("cannot list", &ldir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if name.starts_with(".tmp-") || !layers.contains(&digest) {
                // Rename first so a half-deleted layer never looks complete.
                let doomed = tmp_name(&ldir, "prune");
                fs::rename(e.path(), &doomed).map_err(io_err("cannot remove", &e.path()))?;
                fs::remove_dir_all(&doomed).map_err(io_err("cannot remove", &doomed))?;
                if !name.starts_with(".tmp-") {
                    report.layers.push(digest);
                }
            }
        }
        // Pulls hold the shared store lock for their whole run, so under the
        // exclusive one no per-blob or per-layer lock file is in use.
        let kdir = self.root.join("locks");
        if let Ok(rd) = fs::read_dir(&kdir) {
            for e in rd.flatten() {
                if e.file_name() != "store.lock" {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let tdir = self.root.join("tmp");
        if let Ok(rd) = fs::read_dir(&tdir) {
            for e in rd.flatten() {
                let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
            }
        }
        Ok(report)
    }

    /// Verify every stored blob and layer name: blobs hash to their name and
    /// no temp entry looks complete. Returns the problems found.
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let bdir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&bdir)
            .map_err(io_err("cannot list", &bdir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue;
            }
            let mut f = File::open(e.path()).map_err(io_err("cannot open", &e.path()))?;
            let mut h = Sha256::new();
            io::copy(&mut f, &mut h).map_err(io_err("cannot read", &e.path()))?;
            if hex::encode(h.finalize()) != name {
                problems.push(format!("blob '{name}' does not match its digest"));
            }
        }
        for r in self.refs()? {
            if let Err(e) = self.image_by_digest(&r.reference, &r.manifest_digest) {
                problems.push(format!("ref '{}': {e}", r.reference));
            }
        }
        Ok(problems)
    }
}

/// A blob being written: hashed as it goes, renamed into place by `commit`.
pub struct BlobWriter {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    digest: String,
    size: Option<u64>,
    hasher: Sha256,
    written: u64,
    done: bool,
}

impl Drop for BlobWriter {
    /// A writer dropped mid-download (a failed sibling layer, a cancelled
    /// pull) leaves no temp file behind.
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Throw away what was written (to restart a download from zero).
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        use std::io::Seek;
        self.file.seek(io::SeekFrom::Start(0))?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Remove the temp file.
    pub fn abort(self) {
        // Drop removes it.
    }

    /// Check size and digest, fsync, and rename into place.
    pub fn commit(mut self) -> Result<(), StoreError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if let Some(size) = self.size {
            if size != self.written {
                return Err(StoreError::SizeMismatch {
                    digest: self.digest.clone(),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        if actual != self.digest {
            return Err(StoreError::DigestMismatch {
                what: format!("blob '{}'", self.digest),
                expected: self.digest.clone(),
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(io_err("cannot sync", &self.tmp))?;
        fs::rename(&self.tmp, &self.dest).map_err(io_err("cannot rename blob into", &self.dest))?;
        self.done = true;
        if let Some(dir) = self.dest.parent() {
            fsync_dir(dir)?;
        }
        Ok(())
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn ref_names_round_trip() {
        for r in [
            "docker.io/library/nginx:latest",
            "oci:/a/b%c:t",
            "127.0.0.1:5000/x@sha256:00",
        ] {
            let f = ref_file_name(r);
            assert!(!f.contains('/'));
            assert_eq!(ref_from_file_name(&f), r);
        }
    }

    #[test]
    fn blobs_are_verified_and_refs_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_blob(b"hello", None).unwrap();
        assert!(s.has_blob(&d));
        assert_eq!(s.read_blob(&d, "x", 10).unwrap(), b"hello");
        assert!(s
            .read_blob(&d, "x", 2)
            .unwrap_err()
            .to_string()
            .contains("limit"));
        let e = s
            .put_blob(b"hello", Some(&sha256_digest(b"other")))
            .unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        // The blob exists already, so copying it again is a no-op.
        s.copy_blob(&b"whatever"[..], &d, Some(5)).unwrap();
        let other = sha256_digest(b"abcdef");
        let e = s
            .copy_blob(&b"abc"[..], &other, Some(6))
            .unwrap_err()
            .to_string();
        assert!(e.contains("size mismatch"), "{e}");
        assert!(!s.has_blob(&other));
        s.set_ref(&r("nginx"), &d).unwrap();
        assert_eq!(
            s.get_ref(&r("docker.io/library/nginx:latest")).unwrap(),
            Some(d.clone())
        );
        assert_eq!(s.refs().unwrap().len(), 1);
        assert_eq!(
            s.refs().unwrap()[0].reference,
            "docker.io/library/nginx:latest"
        );
        assert!(
            !s.is_present(&r("nginx")),
            "a ref to a non-manifest is not an image"
        );
        // A `docker://` spelling, as `berth pull` or a definition writes it,
        // is the same ref.
        assert!(s.remove_ref(&r("docker://nginx:latest")).unwrap());
        assert!(!s.remove_ref(&r("nginx")).unwrap());
        // An oci-archive tag is part of the ref: two tags of one archive are
        // two images.
        s.set_ref(&r("oci-archive:/srv/a.tar:v1"), &d).unwrap();
        assert_eq!(
            s.get_ref(&r("oci-archive:/srv/a.tar:v1")).unwrap(),
            Some(d.clone())
        );
        assert_eq!(s.get_ref(&r("oci-archive:/srv/a.tar:v2")).unwrap(), None);
        assert_eq!(s.get_ref(&r("oci-archive:/srv/a.tar")).unwrap(), None);
        assert!(s.remove_ref(&r("oci-archive:/srv/a.tar:v1")).unwrap());
        // Nothing named like a complete blob besides the one written.
        let names: Vec<_> = fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_read_only_handle_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("missing");
        let s = Store::at(&root);
        assert!(!s.is_present(&r("nginx")));
        assert!(matches!(s.image(&r("nginx")), Ok(None)));
        assert!(!root.exists());
    }

    #[test]
    fn bad_digests_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(s.blob_path("sha256:../../etc/passwd").is_err());
        assert!(s.layer_path("sha256:").is_err());
    }
}
