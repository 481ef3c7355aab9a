//! Image commands: `pull`, `images`, `inspect`, `rmi`, `prune`, `import`.
//!
//! Thin: parse arguments, open the store, call `image`/`store`, print. Owns the
//! terminal rendering of pull progress (indicatif bars on a terminal, plain
//! lines otherwise, sd_notify under systemd).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{bail, Context};
use clap::Args;

use crate::config::load_globals;
use crate::image::{self, NotifyProgress, Progress, ProgressEvent, PullOptions, Reference};
use crate::store::Store;
use crate::supervise::state::State;

/// Where the image store lives.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Image store directory (default: `[storage] root` of /etc/berth/berth.toml)
    #[arg(long, value_name = "DIR", global = true)]
    pub storage_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference: NAME[:TAG][@DIGEST], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE
    pub reference: String,
    /// Platform to pick from a multi-platform image (os/arch[/variant]); default: this host's
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the manifest digest
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print only references
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image reference, or a manifest digest (or its first hex digits)
    pub image: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image references to remove
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove the reference even when a running container uses the image
    /// (its layers stay until no container uses them)
    #[arg(long, short)]
    pub force: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A rootfs tarball (plain, gzip or zstd)
    pub file: PathBuf,
    /// Name for the image: NAME[:TAG]
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `root` is the host root from the global `--root` / `$BERTH_ROOT` (`/` on a host).
pub(crate) fn open_store(
    root: &Path,
    args: &StoreArgs,
) -> anyhow::Result<(Store, crate::config::Globals)> {
    let globals = load_globals(root)?;
    let storage = args
        .storage_root
        .clone()
        .unwrap_or_else(|| globals.storage_root.clone());
    let store = Store::open(&storage)
        .with_context(|| format!("cannot open image store '{}'", storage.display()))?
        .with_limits(crate::store::LayerLimits::from_globals(&globals));
    Ok((store, globals))
}

pub fn pull(root: &Path, args: PullArgs) -> anyhow::Result<ExitCode> {
    let (store, globals) = open_store(root, &args.store)?;
    let platform = match &args.platform {
        Some(p) => Some(image::Platform::parse(p).with_context(|| {
            format!("invalid platform '{p}' (expected os/arch[/variant], e.g. linux/arm64)")
        })?),
        None => None,
    };
    let reference = Reference::parse(&args.reference)?;
    let progress = CliProgress::new(args.quiet);
    let img = image::pull_with(
        &store,
        &globals,
        &reference,
        &PullOptions { platform },
        &progress,
    )?;
    progress.finish();
    if args.quiet {
        println!("{}", img.manifest_digest);
    } else {
        println!("{} {}", img.reference, img.manifest_digest);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(root: &Path, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let progress = CliProgress::new(false);
    let name = Reference::parse(&args.name)?;
    let img = image::import(&store, &args.file, &name, &progress)?;
    progress.finish();
    println!("{} {}", img.reference, img.manifest_digest);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn images(root: &Path, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let refs = store.refs()?;
    if args.quiet {
        for r in refs {
            println!("{}", r.reference);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "REFERENCE".to_string(),
        "DIGEST".into(),
        "SIZE".into(),
        "CREATED".into(),
    ]];
    for r in refs {
        let (size, created) = match store.image_by_digest(&r.reference, &r.manifest_digest) {
            Ok(img) => (
                human(img.size),
                img.config
                    .created()
                    .clone()
                    .map(|c| c.chars().take(19).collect::<String>().replace('T', " "))
                    .unwrap_or_else(|| "-".into()),
            ),
            Err(_) => ("damaged".into(), "-".into()),
        };
        rows.push([
            r.reference,
            image::short(&r.manifest_digest).to_string(),
            size,
            created,
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        println!(
            "{:w0$}  {:w1$}  {:>w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolve what the user typed (a reference or a digest prefix) to
/// (reference, manifest digest).
pub(crate) fn find(store: &Store, what: &str) -> anyhow::Result<(Reference, String)> {
    if let Ok(r) = Reference::parse(what) {
        if let Some(d) = store.get_ref(&r)? {
            return Ok((r, d));
        }
    }
    let hex = what.strip_prefix("sha256:").unwrap_or(what);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let matches: Vec<_> = store
            .refs()?
            .into_iter()
            .filter(|r| r.manifest_digest[7..].starts_with(hex))
            .collect();
        // Several names of one image are one image.
        let one_image = matches
            .iter()
            .all(|m| m.manifest_digest == matches[0].manifest_digest);
        if let (true, Some(one)) = (one_image, matches.first()) {
            return Ok((
                Reference::parse(&one.reference)?,
                one.manifest_digest.clone(),
            ));
        }
        if matches.len() > 1 {
            bail!(
                "'{what}' matches {} images; give more digits or a reference",
                matches.len()
            );
        }
    }
    bail!("no image '{what}' in the store (see 'berth images')")
}

pub fn inspect(root: &Path, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let (reference, digest) = find(&store, &args.image)?;
    let reference = reference.canonical();
    let img = store.image_by_digest(&reference, &digest)?;
    let m = store.manifest(&reference, &digest)?;
    let raw = store.read_blob(
        &m.config.digest,
        "an image config",
        image::manifest::MAX_METADATA_BYTES,
    )?;
    let config: serde_json::Value = serde_json::from_slice(&raw)?;
    let out = serde_json::json!({
        "reference": img.reference,
        "manifest_digest": img.manifest_digest,
        "config_digest": m.config.digest,
        "size": img.size,
        "layers": m.layers.iter().zip(img.layers.iter()).map(|(l, p)| serde_json::json!({
            "digest": l.digest, "size": l.size, "media_type": l.media_type, "path": p,
        })).collect::<Vec<_>>(),
        "healthcheck": img.healthcheck,
        "config": config,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Images of running containers: `/run/berth/containers/NAME/state.json`
/// with `"image"` (a reference or manifest digest) and optionally
/// `"image_digest"`. Returns (container, canonical reference or digest, digest).
fn images_in_use(root: &Path, store: &Store) -> Vec<(String, Option<String>, Option<String>)> {
    let dir = root.join("run/berth/containers");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // The supervisor's own record type: a field it does not write cannot
        // be read here by mistake.
        let Ok(Some(state)) = State::load(&e.path()) else {
            continue;
        };
        // A record left behind by a supervisor that is gone (killed before
        // `berth cleanup` ran) does not pin its image.
        if !state.supervisor_alive() {
            continue;
        }
        let image = state.image;
        let mut digest = state.image_digest;
        let parsed = image.as_deref().and_then(|i| {
            if i.starts_with("sha256:") {
                digest.get_or_insert_with(|| i.to_string());
                None
            } else {
                Reference::parse(i).ok()
            }
        });
        let canonical = parsed.as_ref().map(Reference::canonical);
        if digest.is_none() {
            if let (Some(r), Some(c)) = (&parsed, &canonical) {
                digest = store.get_ref(r).ok().flatten().or_else(|| {
                    store
                        .holds()
                        .into_iter()
                        .find(|h| &h.reference == c)
                        .map(|h| h.manifest_digest)
                });
            }
        }
        out.push((name, canonical, digest));
    }
    out
}

/// Free what no ref and no running container needs any more; holds of images
/// no container uses are released first.
fn prune_unused(
    store: &Store,
    in_use: &[(String, Option<String>, Option<String>)],
) -> anyhow::Result<crate::store::PruneReport> {
    let keep: Vec<String> = in_use.iter().filter_map(|(_, _, d)| d.clone()).collect();
    for h in store.holds() {
        if !keep.contains(&h.manifest_digest) {
            store.release(&h.manifest_digest)?;
        }
    }
    Ok(store.prune(&keep)?)
}

pub fn rmi(root: &Path, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let in_use = images_in_use(root, &store);
    let mut failed = false;
    for what in &args.images {
        let (parsed, digest) = match find(&store, what) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("berth: error: {e}");
                failed = true;
                continue;
            }
        };
        // By digest, an image of several names is ambiguous for rmi (as in
        // Docker): untag by name.
        let by_name = Reference::parse(what)
            .ok()
            .is_some_and(|r| store.get_ref(&r).ok().flatten().is_some());
        let names: Vec<String> = store
            .refs()?
            .into_iter()
            .filter(|r| r.manifest_digest == digest)
            .map(|r| r.reference)
            .collect();
        if !by_name && names.len() > 1 {
            eprintln!(
                "berth: error: '{what}' is the image of {} names ('{}'); remove them by name",
                names.len(),
                names.join("', '")
            );
            failed = true;
            continue;
        }
        let reference = parsed.canonical();
        let users: Vec<&str> = in_use
            .iter()
            .filter(|(_, c, d)| {
                c.as_deref() == Some(reference.as_str()) || d.as_deref() == Some(digest.as_str())
            })
            .map(|(n, _, _)| n.as_str())
            .collect();
        if !users.is_empty() && !args.force {
            eprintln!(
                "berth: error: image '{reference}' is used by running container(s) '{}'; stop them first or use --force",
                users.join("', '")
            );
            failed = true;
            continue;
        }
        if !users.is_empty() {
            store.hold(&reference, &digest)?;
        }
        store.remove_ref(&parsed)?;
        println!("Untagged: {reference}");
    }
    let report = prune_unused(&store, &in_use)?;
    if !report.layers.is_empty() || !report.blobs.is_empty() {
        println!(
            "Deleted: {} layers, {} blobs, {}",
            report.layers.len(),
            report.blobs.len(),
            human(report.bytes)
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn prune(root: &Path, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let report = prune_unused(&store, &images_in_use(root, &store))?;
    println!(
        "Deleted: {} layers, {} blobs, {} reclaimed",
        report.layers.len(),
        report.blobs.len(),
        human(report.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

/// Pull progress on the terminal: a bar per layer on a tty, plain lines
/// otherwise; also sd_notify when NOTIFY_SOCKET is set.
pub(crate) struct CliProgress {
    bars: Option<(
        indicatif::MultiProgress,
        Mutex<HashMap<String, indicatif::ProgressBar>>,
    )>,
    quiet: bool,
    notify: Option<NotifyProgress>,
}

impl CliProgress {
    pub(crate) fn new(quiet: bool) -> CliProgress {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            (
                indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        CliProgress {
            bars,
            quiet,
            notify: std::env::var_os("NOTIFY_SOCKET").map(|_| NotifyProgress::default()),
        }
    }

    fn bar(&self, digest: &str, size: u64) -> Option<indicatif::ProgressBar> {
        let (multi, map) = self.bars.as_ref()?;
        let mut map = map.lock().ok()?;
        Some(
            map.entry(digest.to_string())
                .or_insert_with(|| {
                    let b = multi.add(indicatif::ProgressBar::new(size));
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{prefix} {bar:30} {bytes}/{total_bytes} {msg}",
                    ) {
                        b.set_style(style);
                    }
                    b.set_prefix(image::short(digest).to_string());
                    b
                })
                .clone(),
        )
    }

    pub(crate) fn finish(&self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }

    fn line(&self, s: &str) {
        if !self.quiet && self.bars.is_none() {
            eprintln!("{s}");
        }
    }
}

impl Progress for CliProgress {
    fn event(&self, event: ProgressEvent<'_>) {
        if let Some(n) = &self.notify {
            n.event(event);
        }
        match event {
            ProgressEvent::Resolved {
                reference,
                digest,
                layers,
                total,
            } => self.line(&format!(
                "{reference}: manifest {}, {layers} layers, {}",
                image::short(digest),
                human(total)
            )),
            ProgressEvent::LayerStart { digest, size } => {
                if self.bar(digest, size).is_none() {
                    self.line(&format!(
                        "layer {}: downloading {}",
                        image::short(digest),
                        human(size)
                    ));
                }
            }
            ProgressEvent::LayerBytes {
                digest,
                done,
                total,
            } => {
                if let Some(b) = self.bar(digest, total) {
                    b.set_position(done);
                }
            }
            ProgressEvent::LayerExists { digest } => {
                if let Some(b) = self.bar(digest, 0) {
                    b.finish_with_message("already present");
                } else {
                    self.line(&format!("layer {}: already present", image::short(digest)));
                }
            }
            ProgressEvent::LayerUnpacking { digest } => {
                if let Some(b) = self.bar(digest, 0) {
                    b.set_message("unpacking");
                } else {
                    self.line(&format!("layer {}: unpacking", image::short(digest)));
                }
            }
            ProgressEvent::LayerDone { digest } => {
                if let Some(b) = self.bar(digest, 0) {
                    b.finish_with_message("done");
                } else {
                    self.line(&format!("layer {}: done", image::short(digest)));
                }
            }
            ProgressEvent::Retry {
                what,
                attempt,
                error,
            } => {
                let msg = format!("retrying {what} (attempt {attempt}): {error}");
                match &self.bars {
                    Some((m, _)) => {
                        let _ = m.println(msg);
                    }
                    None => self.line(&msg),
                }
            }
            ProgressEvent::Done { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(1_500_000), "1.5 MB");
    }
}
