//! generator: definitions → systemd unit drop-ins and `wanted_by` links.
//!
//! `render` (pure, in `render.rs`) decides the text; this file is the thin
//! systemd generator (`man systemd.generator`) that loads every definition,
//! renders it and writes the result atomically. It writes only into the
//! directory it is given, makes no IPC and never fails the boot: a broken
//! definition is logged (kmsg under systemd, stderr otherwise) and skipped, and
//! the exit status is always 0.

mod render;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

pub use render::{
    cpu_quota, group_unit, may_pull, render, render_group_target, systemd_time, unit_name,
    Generated, RenderContext, DNS_UNIT, DROPIN_NAME, STOP_MARGIN, TEMPLATE_PATH,
};

use crate::config::{self, Globals, Reference};

/// Why generated output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error("cannot write '{path}': {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The image store under `root`, read-only (`Store::at` creates nothing), or
/// None when it holds no image at all (no `refs/`: a fresh host, or /var not
/// mounted yet at boot). Asked once per run, so a host without images costs
/// one stat rather than one failed open per definition.
pub fn image_store(root: &Path, globals: &Globals) -> Option<crate::store::Store> {
    let storage = root.join(
        globals
            .storage_root
            .strip_prefix("/")
            .unwrap_or(&globals.storage_root),
    );
    storage
        .join("refs")
        .is_dir()
        .then(|| crate::store::Store::at(&storage))
}

/// Whether `image` is complete in `store`, so that a start with
/// `pull = "missing"` will not reach the network. False without a store,
/// which only adds a dependency on network-online.target.
pub fn image_present(store: Option<&crate::store::Store>, image: &Reference) -> bool {
    store.is_some_and(|s| s.is_present(image))
}

/// Largest Containerfile the generator reads to find a build's images.
const MAX_CONTAINERFILE: u64 = 1 << 20;

/// Whether starting a `[build]` container may pull: a FROM (or `COPY
/// --from`) of the stages it builds names a registry image missing from
/// `store`. A Containerfile that cannot be read or parsed here (its file
/// system not mounted yet, a typo the start will report) may pull: the
/// unit then waits for network-online.target, as an image it cannot judge.
pub fn build_may_pull(root: &Path, store: Option<&crate::store::Store>, b: &config::Build) -> bool {
    use std::io::Read;
    let under_root = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let path = b.containerfile(|p| under_root(p).is_file());
    let mut text = String::new();
    let read = std::fs::File::open(under_root(&path))
        .and_then(|f| f.take(MAX_CONTAINERFILE).read_to_string(&mut text));
    if read.is_err() {
        return true;
    }
    let file = path.display().to_string();
    let planned = crate::build::containerfile::parse(&file, &text)
        .and_then(|cf| crate::build::plan::plan(&file, &cf, &b.args, b.target.as_deref()));
    match planned {
        Ok(p) => p.images_named().iter().any(|r| match Reference::parse(r) {
            Ok(r) => r.is_remote() && !image_present(store, &r),
            Err(_) => true,
        }),
        Err(_) => true,
    }
}

/// The networks whose file says `dns = false`; every other network, one
/// with a broken file included, has its names served (the default).
pub fn networks_without_dns(root: &Path) -> HashSet<String> {
    config::load_all_networks(root)
        .0
        .into_iter()
        .filter(|n| !n.dns)
        .map(|n| n.name)
        .collect()
}

/// Whether credential `name` is stored encrypted under `root`
/// (`/etc/credstore.encrypted/NAME`, or the /run or /usr/lib one). /etc is
/// there when generators run; /var is not needed.
pub fn credential_encrypted(root: &Path, name: &str) -> bool {
    render::ENCRYPTED_CREDSTORES
        .iter()
        .any(|d| root.join(d).join(name).exists())
}

/// What one generator run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Names of the definitions written.
    pub generated: Vec<String>,
    /// Names skipped, with the diagnostics or write error as text lines.
    pub skipped: Vec<(String, Vec<String>)>,
}

/// The host root: `$BERTH_ROOT` when set (tests, packaging), else `/`.
pub fn root_from_env() -> PathBuf {
    std::env::var_os("BERTH_ROOT")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// Load every definition under `root`, render the valid ones into `dir`, and
/// report the broken ones (their files are not written).
pub fn generate_into(root: &Path, dir: &Path) -> Report {
    generate_into_with(root, dir, config::load::default_jobs())
}

/// [`generate_into`] on up to `jobs` threads. The generator runs at every
/// boot, synchronously (`man systemd.generator`), and is a short-lived process
/// that never forks, so reading, parsing, rendering and writing are spread
/// over the CPUs; every thread is joined before this returns.
pub fn generate_into_with(root: &Path, dir: &Path, jobs: usize) -> Report {
    let mut report = Report::default();
    // The global file only tunes where images live; a broken one must not stop
    // the generator, so it falls back to defaults (and `berth check` says why).
    let globals = config::load_globals(root).unwrap_or_default();
    let store = image_store(root, &globals);
    let present = |image: &Reference| image_present(store.as_ref(), image);
    let no_dns = networks_without_dns(root);
    let network_dns = |n: &str| !no_dns.contains(n);
    let credential_encrypted = |c: &str| credential_encrypted(root, c);
    let build_may_pull = |b: &config::Build| build_may_pull(root, store.as_ref(), b);
    // Directories made so far, shared so that `multi-user.target.wants` is
    // asked for once per run rather than once per definition.
    let made = Mutex::new(HashSet::new());
    // Each definition is rendered and written on the thread that loaded it,
    // then dropped.
    let outcomes = config::load::load_all_each(root, jobs, |_, loaded| {
        let ctx = RenderContext {
            image_present: &present,
            network_dns: &network_dns,
            credential_encrypted: &credential_encrypted,
            build_may_pull: &build_may_pull,
        };
        // Masked definitions never get here; `None` is only for completeness.
        loaded.map(|def| {
            def.map(|def| {
                let mut g = render(&def, &ctx);
                let shared = std::mem::take(&mut g.shared);
                (write_with(dir, &g, &made), shared)
            })
        })
    });
    // Load errors come first, then write errors, each in name order.
    let mut write_errors = Vec::new();
    let mut shared = Generated::default();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(None) => {}
            Ok(Some((Ok(()), files))) => {
                report.generated.push(name);
                shared.files.extend(files);
            }
            Ok(Some((Err(e), _))) => write_errors.push((name, vec![format!("error: {e}")])),
            Err(diags) => report
                .skipped
                .push((name, diags.iter().map(|d| d.to_string()).collect())),
        }
    }
    // Group targets, once each, for the groups with a member written (a
    // target without members would start nothing).
    if let Err(e) = write_with(dir, &shared, &made) {
        write_errors.push(("(group targets)".to_string(), vec![format!("error: {e}")]));
    }
    report.skipped.extend(write_errors);
    report
}

/// Write `g` under `dir`: each file to a temporary name then renamed into
/// place, so systemd never reads half a file; links the same way.
///
/// No fsync: generator output lives on the tmpfs systemd hands generators
/// (/run/systemd/generator*), which systemd reads right after the generators
/// exit; it never has to survive a crash, and is regenerated at every boot
/// and daemon-reload.
pub fn write_generated(dir: &Path, g: &Generated) -> Result<(), GeneratorError> {
    write_with(dir, g, &Mutex::new(HashSet::new()))
}

/// [`write_generated`], remembering the directories already made so a run
/// over many definitions does not ask for `multi-user.target.wants` each time.
fn write_with(
    dir: &Path,
    g: &Generated,
    made: &Mutex<HashSet<OsString>>,
) -> Result<(), GeneratorError> {
    // Keyed by the parent relative to `dir`, as plain bytes: hashing a whole
    // Path walks its components, and this runs twice per definition.
    let ensure_parent = |rel: &Path, path: &Path| -> std::io::Result<()> {
        let key = rel.parent().map_or(OsStr::new(""), Path::as_os_str);
        // A poisoned set is still a valid set; at worst a directory is asked
        // for twice, which create_dir_all allows.
        let known = |m: &Mutex<HashSet<OsString>>| {
            m.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(key)
        };
        if !known(made) {
            std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
            made.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key.to_os_string());
        }
        Ok(())
    };
    for (rel, content) in &g.files {
        let path = dir.join(rel);
        let w = |source| GeneratorError::Write {
            path: path.clone(),
            source,
        };
        ensure_parent(rel, &path).map_err(w)?;
        // 0644 less the umask, as before: systemd and users read units.
        crate::private::write_atomic_mode(&temp_name(&path), &path, content.as_bytes(), 0o644)
            .map_err(w)?;
    }
    for (rel, target) in &g.links {
        let path = dir.join(rel);
        let w = |source| GeneratorError::Write {
            path: path.clone(),
            source,
        };
        ensure_parent(rel, &path).map_err(w)?;
        write_link(target, &path).map_err(w)?;
    }
    Ok(())
}

/// Make `path` a symlink to `target`. symlink(2) is atomic by itself (the
/// link appears whole or not at all), so in the usual empty output directory
/// one call does it; only an existing entry is replaced through a temporary
/// link and a rename, so it never goes missing in between.
fn write_link(target: &Path, path: &Path) -> std::io::Result<()> {
    match std::os::unix::fs::symlink(target, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => return other,
    }
    let tmp = temp_name(path);
    let mut result = std::os::unix::fs::symlink(target, &tmp);
    if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists) {
        // Left over from an interrupted run.
        let _ = std::fs::remove_file(&tmp);
        result = std::os::unix::fs::symlink(target, &tmp);
    }
    if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// `.NAME.berth-tmp` beside `path`: hidden, so systemd ignores it if a crash
/// leaves it behind.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.berth-tmp"))
}

const IDENT: &str = "berth-generator";

/// Entry point of the `berth-generator` personality:
/// `berth-generator NORMAL_DIR [EARLY_DIR LATE_DIR]`.
pub fn main() -> ExitCode {
    // systemd ≥ 251 sets $SYSTEMD_SCOPE for generators; journald may not run
    // yet at that point, so messages go to the kernel log.
    let under_systemd = std::env::var_os("SYSTEMD_SCOPE").is_some();
    let log = |priority: u8, message: &str| {
        if under_systemd {
            crate::systemd::kmsg(priority, IDENT, message);
        } else {
            eprintln!("{IDENT}: {message}");
        }
    };
    // Containers belong to the booted system, not to the initrd (whose
    // generators run too, with this variable set).
    if std::env::var_os("SYSTEMD_IN_INITRD").is_some_and(|v| v == "1") {
        return ExitCode::SUCCESS;
    }
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.len() != 1 && args.len() != 3 {
        log(
            3,
            "usage: berth-generator NORMAL_DIR [EARLY_DIR LATE_DIR]; nothing generated",
        );
        return ExitCode::SUCCESS;
    }
    let report = generate_into(&root_from_env(), &args[0]);
    for (name, lines) in &report.skipped {
        for line in lines {
            log(3, line);
        }
        log(3, &format!("definition \"{name}\" has errors, skipping"));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                if m.is_dir() {
                    stack.push(p);
                } else if m.file_type().is_symlink() {
                    out.push((
                        rel,
                        format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                    ));
                } else {
                    out.push((rel, std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn threads_write_the_same_tree_as_one() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        for i in 0..60 {
            let p = root.join(format!("etc/berth/containers/c{i}.toml"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let text = if i == 13 {
                "image = 5\n".to_string()
            } else {
                format!("image = \"a{i}\"\n[service]\nwanted_by = [\"multi-user.target\"]\n")
            };
            std::fs::write(p, text).unwrap();
        }
        let one = generate_into_with(&root, &t.path().join("one"), 1);
        let four = generate_into_with(&root, &t.path().join("four"), 4);
        assert_eq!(one.generated, four.generated);
        assert_eq!(one.skipped, four.skipped);
        assert_eq!(four.generated.len(), 59);
        assert_eq!(four.skipped[0].0, "c13");
        let (a, b) = (tree(&t.path().join("one")), tree(&t.path().join("four")));
        assert_eq!(a.len(), 59 * 2);
        assert_eq!(a, b);
    }

    #[test]
    fn links_replace_what_is_there() {
        let t = tempfile::tempdir().unwrap();
        let link = t.path().join("berth@web.service");
        write_link(Path::new("/old"), &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/old"));
        // An existing link, and a temporary one left by an interrupted run.
        std::os::unix::fs::symlink("/stale", temp_name(&link)).unwrap();
        write_link(Path::new(TEMPLATE_PATH), &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(TEMPLATE_PATH));
        assert!(std::fs::symlink_metadata(temp_name(&link)).is_err());
    }
}
