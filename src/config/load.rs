//! Finding and reading definition files: the `/etc` > `/run` > `/usr/lib`
//! precedence, masks, drop-ins, and the size/UTF-8 limits, for containers and
//! networks.
//!
//! Reads files and directories under a root prefix (`/` on a host, a fixture
//! directory in tests) and nothing else: no writes, no processes, no syscalls
//! beyond open/read/stat/readdir.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::definition::{Definition, NetworkDefinition};
use super::diag::{Diagnostic, Diagnostics};
use super::raw::{self, Merge, RawError};
use super::validate::{self, References};
use super::values::validate_name;

/// Container definition directories, highest priority first (DESIGN.md §1).
pub const CONTAINER_DIRS: [&str; 3] = [
    "etc/berth/containers",
    "run/berth/containers",
    "usr/lib/berth/containers",
];

/// Network definition directories, highest priority first.
pub const NETWORK_DIRS: [&str; 3] = [
    "etc/berth/networks",
    "run/berth/networks",
    "usr/lib/berth/networks",
];

/// Definition files larger than this are refused unread: a definition is a few
/// hundred bytes, and the generator runs at boot.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Drop-in files are `NAME.toml.d/*.conf.toml`.
pub const DROPIN_SUFFIX: &str = ".conf.toml";

/// The name of the network that exists without a file.
pub const DEFAULT_NETWORK: &str = "default";

/// One file of a definition, as read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// Everything `load_all` found: the valid definitions (sorted by name) and,
/// per broken one, every error.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub definitions: Vec<Definition>,
    pub errors: Vec<(String, Diagnostics)>,
}

/// What a directory entry is, from `readdir`'s d_type (no extra syscall).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Symlink,
    Dir,
    Other,
}

fn kind_of(ft: std::fs::FileType) -> Kind {
    if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else {
        Kind::Other
    }
}

/// The entries of the three directories of one kind, listed once. The
/// generator runs at every boot, so the lookups below avoid a `stat` per file
/// wherever d_type already answers.
struct Scan {
    /// (directory, its entries), highest priority first.
    dirs: Vec<(PathBuf, HashMap<String, Kind>)>,
    /// `exists` answers, which may need a stat each; behind a lock because
    /// the generator validates on several threads.
    exists: Mutex<HashMap<String, bool>>,
}

impl Scan {
    fn new(root: &Path, dirs: &[&str]) -> Scan {
        let dirs = dirs
            .iter()
            .map(|d| {
                let dir = root.join(d);
                // A missing directory is normal (podman #23620); an unreadable one
                // is as good as empty here.
                (dir.clone(), list_dir(&dir))
            })
            .collect();
        Scan {
            dirs,
            exists: Mutex::new(HashMap::new()),
        }
    }

    /// Names with a `NAME.toml` entry in any directory.
    fn names(&self) -> BTreeSet<String> {
        self.dirs
            .iter()
            .flat_map(|(_, names)| names.keys())
            .filter_map(|n| n.strip_suffix(".toml"))
            .filter(|n| !n.starts_with('.'))
            .map(str::to_string)
            .collect()
    }

    /// The highest-priority `NAME.toml` entry (masked or not).
    fn main(&self, name: &str) -> Option<(PathBuf, Kind)> {
        let file = format!("{name}.toml");
        self.dirs
            .iter()
            .find_map(|(dir, names)| names.get(&file).map(|k| (dir.join(&file), *k)))
    }

    /// Whether `name` has a definition that is not masked (broken ones count).
    fn exists(&self, name: &str) -> bool {
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still a valid cache.
        let cached = |m: &Mutex<HashMap<String, bool>>| {
            m.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(name)
                .copied()
        };
        if let Some(v) = cached(&self.exists) {
            return v;
        }
        let v = match self.main(name) {
            None => false,
            Some((path, _)) => !is_mask(&path),
        };
        self.exists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), v);
        v
    }

    /// Drop-ins of `name` in merge order: by file name, a higher-priority
    /// directory's file replacing a same-named lower one (masks are dropped
    /// when read).
    fn dropins(&self, name: &str) -> Vec<(PathBuf, Kind)> {
        let dir_name = format!("{name}.toml.d");
        let mut by_name: BTreeMap<String, (PathBuf, Kind)> = BTreeMap::new();
        for (dir, names) in &self.dirs {
            if !names.contains_key(&dir_name) {
                continue;
            }
            let dropin_dir = dir.join(&dir_name);
            for (file, kind) in list_dir(&dropin_dir) {
                if file.ends_with(DROPIN_SUFFIX) && !file.starts_with('.') {
                    by_name
                        .entry(file)
                        .or_insert_with_key(|f| (dropin_dir.join(f), kind));
                }
            }
        }
        by_name.into_values().collect()
    }
}

fn list_dir(dir: &Path) -> HashMap<String, Kind> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let kind = e.file_type().map_or(Kind::Other, kind_of);
            e.file_name().into_string().ok().map(|n| (n, kind))
        })
        .collect()
}

/// systemd's masks: an empty file or a symlink to /dev/null.
fn is_mask(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::read_link(path).is_ok_and(|t| t == Path::new("/dev/null"))
                || std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
        }
        Ok(m) => m.is_file() && m.len() == 0,
        Err(_) => false,
    }
}

/// A file read for a definition, or a mask.
enum Entry {
    Masked,
    File(SourceFile),
}

/// Read a definition file, refusing directories, special files, files over
/// [`MAX_FILE_SIZE`] (without reading them) and bytes that are not UTF-8.
/// An empty file or a symlink to /dev/null is a mask, reported as an error
/// here (callers that honour masks never get that far).
pub fn read_source(path: &Path) -> Result<SourceFile, Diagnostic> {
    let kind = match std::fs::symlink_metadata(path) {
        Ok(m) => kind_of(m.file_type()),
        Err(_) => Kind::File, // let open() say what is wrong
    };
    match read_entry(path, kind)? {
        Entry::File(f) => Ok(f),
        Entry::Masked => Err(Diagnostic::file(
            path,
            "",
            "the file is a mask (empty or a symlink to /dev/null)",
        )),
    }
}

fn read_entry(path: &Path, kind: Kind) -> Result<Entry, Diagnostic> {
    let err = |m: String| Diagnostic::file(path, "", m);
    let is_dir = || err("cannot read file: it is a directory, expected a TOML file".into());
    // Opening a FIFO would block the generator (and the boot) until a writer
    // appears, and a device may never end: only regular files are opened.
    let special = || {
        err("cannot read file: it is not a regular file (a device, FIFO or socket), expected a TOML file".into())
    };
    match kind {
        Kind::File => {}
        Kind::Dir => return Err(is_dir()),
        Kind::Other => return Err(special()),
        Kind::Symlink => {
            if std::fs::read_link(path).is_ok_and(|t| t == Path::new("/dev/null")) {
                return Ok(Entry::Masked);
            }
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => return Err(is_dir()),
                Ok(m) if !m.is_file() => return Err(special()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(err(
                        "cannot read file: it is a symlink to a file that does not exist".into(),
                    ))
                }
                Err(e) => return Err(err(format!("cannot read file: {}", io_message(&e)))),
            }
        }
    }
    // O_NONBLOCK: should the entry have become a FIFO since it was listed,
    // open() returns at once and the fstat below refuses it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if kind == Kind::Symlink && e.kind() == std::io::ErrorKind::NotFound {
                err("cannot read file: it is a symlink to a file that does not exist".into())
            } else {
                err(format!("cannot read file: {}", io_message(&e)))
            }
        })?;
    // One fstat of the opened file: its type (the entry may have changed
    // since it was listed) and its size, so the whole file is read in one
    // read() and a huge one is refused unread.
    let meta = file
        .metadata()
        .map_err(|e| err(format!("cannot read file: {}", io_message(&e))))?;
    if meta.is_dir() {
        return Err(is_dir());
    }
    if !meta.is_file() {
        return Err(special());
    }
    let too_large = |size: u64| {
        err(format!(
            "file is too large ({size} bytes): expected at most {MAX_FILE_SIZE} bytes (1 MiB)"
        ))
    };
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large(meta.len()));
    }
    let bytes = read_sized(&file, meta.len())
        .map_err(|e| err(format!("cannot read file: {}", io_message(&e))))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        // It grew past the limit after the fstat.
        let size = file.metadata().map_or(bytes.len() as u64, |m| m.len());
        return Err(too_large(size));
    }
    if bytes.is_empty() {
        return Ok(Entry::Masked);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Entry::File(SourceFile {
            path: path.to_path_buf(),
            text,
        })),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            // Everything before the bad byte is valid, so line/column are exact.
            let prefix = String::from_utf8_lossy(&bytes[..valid]);
            let (line, column) = super::diag::line_column(&prefix, valid);
            Err(Diagnostic {
                file: path.to_path_buf(),
                line,
                column,
                key: String::new(),
                message: format!(
                    "invalid UTF-8 (byte 0x{:02x}): expected a UTF-8 text file",
                    bytes[valid]
                ),
            })
        }
    }
}

/// Read a regular file whose fstat said `size` bytes, with one read() in the
/// common case: once `size` bytes are in, a short read is the end of the file
/// (regular files return less than asked only at EOF), so the extra read()
/// that would only confirm EOF is skipped. A file that grew since the fstat
/// is read on to EOF, but never more than one byte past [`MAX_FILE_SIZE`].
fn read_sized(mut file: &std::fs::File, size: u64) -> std::io::Result<Vec<u8>> {
    let limit = MAX_FILE_SIZE as usize + 1;
    // One spare byte, so that a file that grew shows it in the same read.
    let mut bytes = vec![0u8; (size as usize).saturating_add(1).min(limit)];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            if len >= limit {
                break;
            }
            let grow = len.max(4096).min(limit - len);
            bytes.resize(len + grow, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len < bytes.len() && len as u64 >= size {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(len);
    Ok(bytes)
}

/// `std::io::Error`'s text without the "(os error N)" tail.
fn io_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s.to_lowercase(),
    }
}

fn to_diag(files: &[SourceFile], idx: usize, e: RawError) -> Diagnostic {
    let f = &files[idx];
    match e.span {
        Some(span) => Diagnostic::at(&f.path, &f.text, span, &e.key, e.message),
        None => Diagnostic::file(&f.path, &e.key, e.message),
    }
}

/// sha256 over the files' bytes, in merge order.
fn hash_files(files: &[SourceFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.text.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Read the drop-ins of a definition whose main file (at `main_path`) read
/// as `main`, then parse, merge and validate; `Ok(None)` when the main file
/// is a mask.
fn load_from(
    name: &str,
    main_path: &Path,
    main: Result<Entry, Diagnostic>,
    containers: &Scan,
    container_exists: &dyn Fn(&str) -> bool,
    networks: &Scan,
) -> Result<Option<Definition>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut files = Vec::new();
    match main {
        Ok(Entry::Masked) => return Ok(None),
        Ok(Entry::File(f)) => files.push(f),
        Err(d) => diags.push(d),
    }
    if let Err(e) = validate_name(name) {
        return Err(Diagnostics(vec![Diagnostic::file(
            main_path,
            "",
            e.replacen("invalid name", "invalid container name", 1),
        )]));
    }
    for (path, kind) in containers.dropins(name) {
        match read_entry(&path, kind) {
            Ok(Entry::File(f)) => files.push(f),
            Ok(Entry::Masked) => {}
            Err(d) => diags.push(d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut merged = raw::RawDefinition::default();
    for idx in 0..files.len() {
        let (r, errs) = raw::parse_definition(&files[idx].text, idx);
        for e in errs {
            diags.push(to_diag(&files, idx, e));
        }
        merged.merge(r);
    }
    let network_exists = |n: &str| n == DEFAULT_NETWORK || networks.exists(n);
    // The container's /etc/localtime is bound from this host's zoneinfo,
    // so a zone is checked here, where the definition is read.
    let zone_exists = |z: &str| Path::new(super::definition::ZONEINFO).join(z).is_file();
    let refs = References {
        container_exists,
        network_exists: &network_exists,
        zone_exists: &zone_exists,
    };
    let hash = hash_files(&files);
    match validate::validate_definition(name, merged, &files, hash, &refs) {
        Ok(def) if diags.is_empty() => Ok(Some(def)),
        Ok(_) => Err(diags),
        Err(more) => {
            // After a parse error a key may be missing only because it could not
            // be read; "missing" complaints would then be noise.
            let had_parse_errors = !diags.is_empty();
            diags.0.extend(more.0.into_iter().filter(|d| {
                !had_parse_errors
                    || !(d.message.starts_with("missing key")
                        || d.message.starts_with("no image source"))
            }));
            diags.sort();
            diags.0.dedup();
            Err(diags)
        }
    }
}

/// Read, parse, merge and validate one definition whose main file is
/// `main`; `Ok(None)` when that file is a mask.
fn load_one(
    name: &str,
    main: (PathBuf, Kind),
    containers: &Scan,
    networks: &Scan,
) -> Result<Option<Definition>, Diagnostics> {
    let entry = read_entry(&main.0, main.1);
    load_from(
        name,
        &main.0,
        entry,
        containers,
        &|n| containers.exists(n),
        networks,
    )
}

/// `f` over every item on up to `jobs` threads (the calling one included),
/// results in the items' order. Threads take small blocks from a shared
/// cursor, so a slow item does not leave the other threads idle. Every thread
/// is joined before this returns: the process is single-threaded again after.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    // Blocks big enough that taking one costs nothing next to its work, small
    // enough to balance a thousand definitions over a few threads.
    const BLOCK: usize = 16;
    let jobs = jobs.clamp(1, items.len().div_ceil(BLOCK).max(1));
    if jobs == 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let start = next.fetch_add(BLOCK, std::sync::atomic::Ordering::Relaxed);
            if start >= items.len() {
                return done;
            }
            let end = (start + BLOCK).min(items.len());
            done.push((start, items[start..end].iter().map(&f).collect::<Vec<R>>()));
        }
    };
    let mut blocks = std::thread::scope(|s| {
        let others: Vec<_> = (1..jobs).map(|_| s.spawn(work)).collect();
        let mut blocks = work();
        for h in others {
            match h.join() {
                Ok(b) => blocks.extend(b),
                // Re-raise a worker's panic here, as a serial loop would have.
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        blocks
    });
    blocks.sort_unstable_by_key(|(start, _)| *start);
    blocks.into_iter().flat_map(|(_, rs)| rs).collect()
}

/// [`par_map`] over owned items, each moved into `f` once.
pub(crate) fn par_map_owned<T: Send, R: Send>(
    items: Vec<T>,
    jobs: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    if jobs <= 1 {
        return items.into_iter().map(f).collect();
    }
    // A slot per item lets whichever thread takes it move it out.
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    par_map(&slots, jobs, |slot| {
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .map(&f)
    })
    .into_iter()
    // Every slot is full until its one visit, so none is None here.
    .flatten()
    .collect()
}

/// How many threads the generator uses: the CPUs it may run on, at most 8
/// (past that, directory locks and the allocator gain nothing).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Load the definition `name` from under `root`: `Ok(None)` when there is no
/// such definition or it is masked, `Err` with every problem found otherwise.
pub fn load_definition(root: &Path, name: &str) -> Result<Option<Definition>, Diagnostics> {
    if let Err(e) = validate_name(name) {
        let path = root.join(CONTAINER_DIRS[0]).join(format!("{name}.toml"));
        return Err(Diagnostics(vec![Diagnostic::file(
            &path,
            "",
            e.replacen("invalid name", "invalid container name", 1),
        )]));
    }
    let containers = Scan::new(root, &CONTAINER_DIRS);
    let networks = Scan::new(root, &NETWORK_DIRS);
    match containers.main(name) {
        None => Ok(None),
        Some(main) => load_one(name, main, &containers, &networks),
    }
}

/// Load every definition under `root`. Broken ones are reported in `errors`
/// and never stop the others. Dependency cycles (`requires`) are not errors:
/// systemd breaks them at start; see [`super::validate::requires_cycles`].
pub fn load_all(root: &Path) -> LoadResult {
    load_all_with(root, 1)
}

/// [`load_all`] on up to `jobs` threads (see [`default_jobs`]); the same
/// result.
pub fn load_all_with(root: &Path, jobs: usize) -> LoadResult {
    let mut out = LoadResult::default();
    for (name, result) in load_all_each(root, jobs, |_, r| r) {
        match result {
            Ok(Some(def)) => out.definitions.push(def),
            Ok(None) => {}
            Err(d) => out.errors.push((name, d)),
        }
    }
    out
}

/// Load every definition under `root` on up to `jobs` threads and hand each
/// result to `f` as soon as it is ready (the generator renders and writes it
/// there, so no more than a few definitions are in memory at once). Returns
/// what `f` returned, by name, in name order; masked definitions are left out.
///
/// Each file is read once: whether a definition that another one `requires`
/// exists (is not masked) comes from having read its main file, in a first
/// pass over the main files only, not from a stat of its own.
pub fn load_all_each<R: Send>(
    root: &Path,
    jobs: usize,
    f: impl Fn(&str, Result<Option<Definition>, Diagnostics>) -> R + Sync,
) -> Vec<(String, R)> {
    let containers = Scan::new(root, &CONTAINER_DIRS);
    let networks = Scan::new(root, &NETWORK_DIRS);
    let mains: Vec<(String, PathBuf, Kind)> = containers
        .names()
        .into_iter()
        .filter_map(|name| containers.main(&name).map(|(p, k)| (name, p, k)))
        .collect();
    let read = par_map(&mains, jobs, |(_, path, kind)| read_entry(path, *kind));
    // Only a main file that could not be read needs a stat to tell a mask.
    let exists: HashMap<&str, bool> = mains
        .iter()
        .zip(&read)
        .map(|((name, _, _), entry)| {
            let exists = match entry {
                Ok(Entry::Masked) => false,
                Ok(Entry::File(_)) => true,
                Err(_) => containers.exists(name),
            };
            (name.as_str(), exists)
        })
        .collect();
    let container_exists = |n: &str| exists.get(n).copied().unwrap_or(false);
    let todo: Vec<_> = mains.iter().zip(read).collect();
    par_map_owned(todo, jobs, |((name, path, _), entry)| {
        let masked = matches!(entry, Ok(Entry::Masked));
        let result = load_from(name, path, entry, &containers, &container_exists, &networks);
        (!masked).then(|| (name.clone(), f(name, result)))
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Names of every definition under `root` that is not masked (valid or not).
pub fn definition_names(root: &Path) -> Vec<String> {
    let containers = Scan::new(root, &CONTAINER_DIRS);
    containers
        .names()
        .into_iter()
        .filter(|n| containers.exists(n))
        .collect()
}

fn load_network_file(
    name: &str,
    (path, kind): (PathBuf, Kind),
) -> Result<Option<NetworkDefinition>, Diagnostics> {
    let file = match read_entry(&path, kind).map_err(|d| Diagnostics(vec![d]))? {
        Entry::Masked => return Ok(None),
        Entry::File(f) => f,
    };
    if let Err(e) = validate_name(name) {
        return Err(Diagnostics(vec![Diagnostic::file(
            &path,
            "",
            e.replacen("invalid name", "invalid network name", 1),
        )]));
    }
    let files = [file];
    let (r, errs) = raw::parse_network(&files[0].text, 0);
    if !errs.is_empty() {
        return Err(Diagnostics(
            errs.into_iter().map(|e| to_diag(&files, 0, e)).collect(),
        ));
    }
    validate::validate_network_def(name, r, &files).map(Some)
}

/// Load network `name`: `default` exists without a file; `Ok(None)` when there
/// is no such network or it is masked.
pub fn load_network(root: &Path, name: &str) -> Result<Option<NetworkDefinition>, Diagnostics> {
    let networks = Scan::new(root, &NETWORK_DIRS);
    match networks.main(name) {
        Some(main) => load_network_file(name, main),
        None if name == DEFAULT_NETWORK => Ok(Some(builtin_default_network())),
        None => Ok(None),
    }
}

fn builtin_default_network() -> NetworkDefinition {
    NetworkDefinition {
        name: DEFAULT_NETWORK.to_string(),
        source_path: None,
        subnet: None,
        gateway: None,
        subnet6: None,
        internal: false,
        mtu: None,
        dns: true,
        subnet_at: None,
        subnet6_at: None,
    }
}

/// Every network under `root` (always including `default`), and the errors of
/// the broken ones.
pub fn load_all_networks(root: &Path) -> (Vec<NetworkDefinition>, Vec<(String, Diagnostics)>) {
    let networks = Scan::new(root, &NETWORK_DIRS);
    let mut names = networks.names();
    names.insert(DEFAULT_NETWORK.to_string());
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match networks.main(&name) {
            Some(main) => match load_network_file(&name, main) {
                Ok(Some(n)) => ok.push(n),
                Ok(None) => {}
                Err(d) => errors.push((name, d)),
            },
            None if name == DEFAULT_NETWORK => ok.push(builtin_default_network()),
            None => {}
        }
    }
    (ok, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn etc_overrides_usr_lib_and_masks() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "usr/lib/berth/containers/web.toml",
            "image = \"vendor\"\n",
        );
        assert_eq!(
            load_definition(r, "web").unwrap().unwrap().image,
            crate::config::ImageSource::Image(crate::config::Reference::parse("vendor").unwrap())
        );
        write(r, "run/berth/containers/web.toml", "image = \"run\"\n");
        write(r, "etc/berth/containers/web.toml", "image = \"admin\"\n");
        let d = load_definition(r, "web").unwrap().unwrap();
        assert_eq!(d.source_path, r.join("etc/berth/containers/web.toml"));
        // An empty file in /etc masks.
        write(r, "etc/berth/containers/web.toml", "");
        assert_eq!(load_definition(r, "web").unwrap(), None);
        // So does a symlink to /dev/null, even over a /run file.
        fs::remove_file(r.join("etc/berth/containers/web.toml")).unwrap();
        std::os::unix::fs::symlink("/dev/null", r.join("etc/berth/containers/web.toml")).unwrap();
        assert_eq!(load_definition(r, "web").unwrap(), None);
        assert!(load_all(r).definitions.is_empty());
        assert_eq!(load_definition(r, "nothere").unwrap(), None);
    }

    #[test]
    fn dropins_merge_in_order_and_override_by_name() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "usr/lib/berth/containers/web.toml",
            "image = \"a\"\nhostname = \"h0\"\n",
        );
        write(
            r,
            "usr/lib/berth/containers/web.toml.d/10-x.conf.toml",
            "hostname = \"vendor10\"\n",
        );
        write(
            r,
            "usr/lib/berth/containers/web.toml.d/20-y.conf.toml",
            "hostname = \"vendor20\"\n",
        );
        write(
            r,
            "etc/berth/containers/web.toml.d/20-y.conf.toml",
            "hostname = \"admin20\"\n",
        );
        write(
            r,
            "etc/berth/containers/web.toml.d/05-z.conf.toml",
            "[resources]\npids = 5\n",
        );
        write(
            r,
            "etc/berth/containers/web.toml.d/ignored.toml",
            "hostname = \"no\"\n",
        );
        let d = load_definition(r, "web").unwrap().unwrap();
        assert_eq!(d.hostname.as_deref(), Some("admin20"));
        assert_eq!(d.resources.pids, Some(5));
        let names: Vec<_> = d
            .dropins
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                PathBuf::from("etc/berth/containers/web.toml.d/05-z.conf.toml"),
                PathBuf::from("usr/lib/berth/containers/web.toml.d/10-x.conf.toml"),
                PathBuf::from("etc/berth/containers/web.toml.d/20-y.conf.toml"),
            ]
        );
        // A /dev/null drop-in masks the vendor one of the same name.
        fs::remove_file(r.join("etc/berth/containers/web.toml.d/20-y.conf.toml")).unwrap();
        std::os::unix::fs::symlink(
            "/dev/null",
            r.join("etc/berth/containers/web.toml.d/20-y.conf.toml"),
        )
        .unwrap();
        let d = load_definition(r, "web").unwrap().unwrap();
        assert_eq!(d.hostname.as_deref(), Some("vendor10"));
        assert_eq!(d.dropins.len(), 2);
    }

    #[test]
    fn errors_point_into_the_dropin() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "etc/berth/containers/web.toml", "image = \"a\"\n");
        write(
            r,
            "etc/berth/containers/web.toml.d/10.conf.toml",
            "\n[resources]\nmemory = \"1Q\"\n",
        );
        let e = load_definition(r, "web").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e.0[0].file,
            r.join("etc/berth/containers/web.toml.d/10.conf.toml")
        );
        assert_eq!((e.0[0].line, e.0[0].column), (3, 10));
    }

    #[test]
    fn load_all_reports_broken_and_keeps_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "etc/berth/containers/a.toml", "image = \"a\"\n");
        write(r, "etc/berth/containers/b.toml", "image = 5\n");
        write(r, "etc/berth/containers/bad name.toml", "image = \"a\"\n");
        write(
            r,
            "etc/berth/containers/c.toml",
            "image = \"c\"\n[service]\nrequires = [\"a\", \"zz\"]\n",
        );
        let res = load_all(r);
        let ok: Vec<_> = res.definitions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(ok, vec!["a"]);
        let bad: Vec<_> = res.errors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(bad, vec!["b", "bad name", "c"]);
        assert!(res.errors[2]
            .1
            .to_string()
            .contains("unknown container \"zz\""));
        assert_eq!(res.errors[0].1.len(), 1, "{}", res.errors[0].1);
    }

    #[test]
    fn hash_covers_every_file() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "etc/berth/containers/web.toml", "image = \"a\"\n");
        let h1 = load_definition(r, "web").unwrap().unwrap().hash;
        write(
            r,
            "etc/berth/containers/web.toml.d/1.conf.toml",
            "# nothing\n",
        );
        let h2 = load_definition(r, "web").unwrap().unwrap().hash;
        assert_ne!(h1, h2);
        assert_eq!(h1.len(), 64);
    }

    #[test]
    fn networks() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        assert!(load_network(r, "default").unwrap().is_some());
        write(
            r,
            "etc/berth/networks/back.toml",
            "subnet = \"10.90.0.0/24\"\ngateway = \"10.90.0.1\"\n",
        );
        write(
            r,
            "etc/berth/networks/bad.toml",
            "subnet = \"10.90.0.0/24\"\ngateway = \"10.91.0.1\"\nmtu = 1\n",
        );
        let n = load_network(r, "back").unwrap().unwrap();
        assert_eq!(n.gateway, Some("10.90.0.1".parse().unwrap()));
        let (ok, errs) = load_all_networks(r);
        assert_eq!(ok.len(), 2);
        assert_eq!(errs.len(), 1);
        write(
            r,
            "etc/berth/containers/web.toml",
            "image = \"a\"\n[network]\nnetworks = [\"back\", \"nope\"]\n",
        );
        let e = load_definition(r, "web").unwrap_err();
        assert_eq!(e.len(), 1, "{e}");
        assert!(e.to_string().contains("unknown network \"nope\""));
    }

    #[test]
    fn oversized_and_non_utf8_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("big.toml");
        fs::write(&p, vec![b'#'; (MAX_FILE_SIZE + 1) as usize]).unwrap();
        assert!(read_source(&p).unwrap_err().message.contains("too large"));
        fs::write(&p, b"image = \"a\"\nx = \"\xff\"\n").unwrap();
        let d = read_source(&p).unwrap_err();
        assert_eq!((d.line, d.column), (2, 6));
        fs::remove_file(&p).unwrap();
        fs::create_dir(&p).unwrap();
        assert!(read_source(&p).unwrap_err().message.contains("directory"));
    }

    #[test]
    fn a_fifo_listed_as_a_file_is_refused_without_blocking() {
        // d_type said "file" but the entry is a FIFO by the time it is opened:
        // the O_NONBLOCK open returns and the fstat refuses it.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.toml");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let Err(d) = read_entry(&p, Kind::File) else {
            panic!("a FIFO was read")
        };
        assert!(d.message.contains("not a regular file"), "{}", d.message);
        let Err(d) = read_entry(t.path(), Kind::File) else {
            panic!("a directory was read")
        };
        assert!(d.message.contains("directory"), "{}", d.message);
    }

    #[test]
    fn read_sized_reads_the_whole_file_whatever_fstat_said() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        fs::write(&p, &text).unwrap();
        let f = fs::File::open(&p).unwrap();
        // Exact, smaller (the file grew since the fstat) and zero (a
        // pseudo-file) size hints all give the whole content.
        for size in [10_000, 100, 0] {
            let mut f = &f;
            std::io::Seek::rewind(&mut f).unwrap();
            assert_eq!(read_sized(f, size).unwrap(), text, "size hint {size}");
        }
        // Never more than one byte past the limit.
        fs::write(&p, vec![b'#'; MAX_FILE_SIZE as usize + 100]).unwrap();
        let f = fs::File::open(&p).unwrap();
        assert_eq!(
            read_sized(&f, 10).unwrap().len(),
            MAX_FILE_SIZE as usize + 1
        );
        fs::write(&p, "").unwrap();
        let f = fs::File::open(&p).unwrap();
        assert!(read_sized(&f, 0).unwrap().is_empty());
    }

    #[test]
    fn par_map_keeps_order_and_moves_items_once() {
        let items: Vec<usize> = (0..1000).collect();
        for jobs in [0, 1, 2, 3, 8] {
            assert_eq!(
                par_map(&items, jobs, |i| i * 2),
                (0..2000).step_by(2).collect::<Vec<_>>()
            );
            let owned: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            assert_eq!(
                par_map_owned(owned.clone(), jobs, |s| s + "!"),
                owned.iter().map(|s| format!("{s}!")).collect::<Vec<_>>()
            );
        }
        assert!(par_map(&[] as &[u8], 4, |_| 0).is_empty());
    }

    #[test]
    fn load_all_with_threads_matches_the_serial_load() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "etc/berth/networks/back.toml",
            "subnet = \"10.90.0.0/24\"\n",
        );
        for i in 0..100 {
            let dir = if i % 2 == 0 { "etc" } else { "usr/lib" };
            write(
                r,
                &format!("{dir}/berth/containers/c{i}.toml"),
                &format!(
                    "image = \"a{i}\"\n[network]\nnetworks = [\"back\"]\n[service]\nrequires = [\"c{}\"]\n",
                    (i + 1) % 100
                ),
            );
            write(
                r,
                &format!("usr/lib/berth/containers/c{i}.toml.d/10.conf.toml"),
                "[resources]\npids = 10\n",
            );
        }
        // A mask, a broken one, and one whose main file cannot be read: the
        // definitions that require them see them as missing, broken and
        // present, as load_definition does.
        write(r, "etc/berth/containers/c7.toml", "");
        write(r, "etc/berth/containers/c8.toml", "image = 5\n");
        fs::create_dir_all(r.join("etc/berth/containers/c9.toml")).unwrap();
        let serial = load_all(r);
        let parallel = load_all_with(r, 3);
        assert_eq!(serial.definitions, parallel.definitions);
        let errs = |l: &LoadResult| {
            l.errors
                .iter()
                .map(|(n, d)| (n.clone(), d.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(errs(&serial), errs(&parallel));
        let bad: Vec<_> = parallel.errors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(bad, vec!["c6", "c8", "c9"]);
        assert!(parallel.errors[0]
            .1
            .to_string()
            .contains("unknown container \"c7\""));
        assert_eq!(parallel.definitions.len(), 96);
        for d in &parallel.definitions {
            assert_eq!(
                load_definition(r, &d.name).unwrap().as_ref(),
                Some(d),
                "{}",
                d.name
            );
        }
    }
}
