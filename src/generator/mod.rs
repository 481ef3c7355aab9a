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
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use render::{
    cpu_quota, may_pull, render, systemd_time, unit_name, Generated, RenderContext, DROPIN_NAME,
    STOP_MARGIN, TEMPLATE_PATH,
};

use crate::config::{self, Globals, ImageRef};

/// Why generated output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error("cannot write '{path}': {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether `image` (a reference as written in the definition) is already in
/// the image store under `globals.storage_root`.
///
/// Always false for now: the image store wires this in. False is the safe
/// answer, it only adds a dependency on network-online.target.
pub fn image_present(globals: &Globals, image: &str) -> bool {
    let _ = (globals, image);
    false
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
    let mut report = Report::default();
    // The global file only tunes where images live; a broken one must not stop
    // the generator, so it falls back to defaults (and `berth check` says why).
    let globals = config::load_globals(root).unwrap_or_default();
    let present = |image: &ImageRef| image_present(&globals, &image.to_string());
    let ctx = RenderContext {
        image_present: &present,
    };
    let loaded = config::load_all(root);
    let mut made = HashSet::new();
    for (name, diags) in loaded.errors {
        report
            .skipped
            .push((name, diags.iter().map(|d| d.to_string()).collect()));
    }
    for def in &loaded.definitions {
        match write_with(dir, &render(def, &ctx), &mut made) {
            Ok(()) => report.generated.push(def.name.clone()),
            Err(e) => report
                .skipped
                .push((def.name.clone(), vec![format!("error: {e}")])),
        }
    }
    report
}

/// Write `g` under `dir`: each file to a temporary name then renamed into
/// place, so systemd never reads half a file; links the same way.
pub fn write_generated(dir: &Path, g: &Generated) -> Result<(), GeneratorError> {
    write_with(dir, g, &mut HashSet::new())
}

/// [`write_generated`], remembering the directories already made so a run
/// over many definitions does not ask for `multi-user.target.wants` each time.
fn write_with(
    dir: &Path,
    g: &Generated,
    made: &mut HashSet<PathBuf>,
) -> Result<(), GeneratorError> {
    let mut ensure_parent = |path: &Path| -> std::io::Result<()> {
        let parent = path.parent().unwrap_or(dir);
        if !made.contains(parent) {
            std::fs::create_dir_all(parent)?;
            made.insert(parent.to_path_buf());
        }
        Ok(())
    };
    for (rel, content) in &g.files {
        let path = dir.join(rel);
        let w = |source| GeneratorError::Write {
            path: path.clone(),
            source,
        };
        ensure_parent(&path).map_err(w)?;
        let tmp = temp_name(&path);
        let result = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(w(e));
        }
    }
    for (rel, target) in &g.links {
        let path = dir.join(rel);
        let w = |source| GeneratorError::Write {
            path: path.clone(),
            source,
        };
        ensure_parent(&path).map_err(w)?;
        let tmp = temp_name(&path);
        let mut result = std::os::unix::fs::symlink(target, &tmp);
        if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists) {
            // Left over from an interrupted run.
            let _ = std::fs::remove_file(&tmp);
            result = std::os::unix::fs::symlink(target, &tmp);
        }
        if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, &path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(w(e));
        }
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
