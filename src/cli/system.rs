//! `berth system df [-v]`: the disk berth uses, as `docker system df` shows
//! it: images (the store's blobs and unpacked layers), containers (their
//! overlay upper and work dirs), named volumes, and the build cache (berth
//! has none yet: always 0).
//!
//! Sizes are disk usage as `du` counts it (allocated blocks of every file and
//! directory, a hard-linked file once), so the figures add up to what the
//! disk lost and are checked against `du` in tests/e2e_cli_more.rs.
//! Reclaimable: what removing the unused part would free — image content no
//! running container's image needs (`berth rmi` then `berth prune`), the
//! dirs of containers that are not running (left by a crash; `berth cleanup
//! NAME`), and volumes no definition mounts (`berth volume rm`).

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::load_globals;
use crate::containers as ct;
use crate::store::Store;

/// Host-wide information: disk usage
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  berth system df -v")]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show the disk used by images, containers, volumes and the build cache
    #[command(
        after_help = "Examples:\n  berth system df          one line per kind, as docker system df\n  berth system df -v       every image, container and volume\n  berth system df --format json   sizes in bytes, for scripts\n\nSIZE is disk usage as du counts it (shared layers once). RECLAIMABLE is what\nremoving the unused part frees: images no running container uses (berth rmi,\nthen berth prune), dirs of containers that are not running (berth cleanup NAME),\nvolumes no definition mounts (berth volume rm)."
    )]
    Df(DfArgs),
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show each image, container and volume
    #[arg(short, long)]
    pub verbose: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: super::containers::Format,
}

/// One line of the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    #[serde(rename = "type")]
    pub kind: String,
    pub total: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

/// One image, container or volume of `-v`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub name: String,
    /// Bytes on disk (for an image: its blobs and layers, shared ones included).
    pub size: u64,
    /// Of `size`, the part other images use too (images only).
    pub shared: u64,
    /// Running containers that use it.
    pub containers: usize,
    pub status: String,
}

#[derive(Debug, Default, serde::Serialize)]
struct Report {
    summary: Vec<Usage>,
    images: Vec<Item>,
    containers: Vec<Item>,
    volumes: Vec<Item>,
}

/// Disk usage of a tree, as `du -s --block-size=1` counts it: allocated
/// blocks of every entry, directories included, symlinks not followed, a
/// file with several links once per `seen` (shared by one report, as du
/// counts a hard link once across all its arguments).
pub fn disk_usage(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
        return 0;
    }
    let mut total = md.blocks() * 512;
    if md.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                total += disk_usage(&e.path(), seen);
            }
        }
    }
    total
}

/// What one image's manifest names in the store: blob paths, layer dirs.
fn image_entries(store: &Store, reference: &str, digest: &str) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut blob = |d: &str| {
        if let Ok(p) = store.blob_path(d) {
            out.insert(p);
        }
    };
    blob(digest);
    if let Ok(m) = store.manifest(reference, digest) {
        blob(&m.config.digest);
        for l in &m.layers {
            blob(&l.digest);
        }
    }
    if let Ok(img) = store.image_by_digest(reference, digest) {
        out.extend(img.layers);
    }
    out
}

fn images(store: &Store, active_digests: &[String], r: &mut Report) -> Usage {
    let refs = store.refs().unwrap_or_default();
    let mut seen = HashSet::new();
    // Every entry of the store once: the total is the store's content.
    let size: u64 = ["blobs", "layers"]
        .iter()
        .map(|d| disk_usage(&store.root().join(d), &mut seen))
        .sum();
    let per: Vec<BTreeSet<PathBuf>> = refs
        .iter()
        .map(|e| image_entries(store, &e.reference, &e.manifest_digest))
        .collect();
    let mut needed = BTreeSet::new();
    for (e, entries) in refs.iter().zip(&per) {
        if active_digests.contains(&e.manifest_digest) {
            needed.extend(entries.iter().cloned());
        }
    }
    // Reclaimable: each blob and layer (and a pull's leftover temp entry)
    // no active image needs; the store's own directories stay.
    let mut seen = HashSet::new();
    let reclaimable: u64 = ["blobs/sha256", "layers/sha256"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(store.root().join(d))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| !needed.contains(p))
        .map(|p| disk_usage(&p, &mut seen))
        .sum();
    for (i, (e, entries)) in refs.iter().zip(&per).enumerate() {
        let mut seen = HashSet::new();
        let mut item = Item {
            name: e.reference.clone(),
            containers: active_digests
                .iter()
                .filter(|d| **d == e.manifest_digest)
                .count(),
            ..Item::default()
        };
        for p in entries {
            let n = disk_usage(p, &mut seen);
            item.size += n;
            if per.iter().enumerate().any(|(j, o)| j != i && o.contains(p)) {
                item.shared += n;
            }
        }
        r.images.push(item);
    }
    Usage {
        kind: "Images".into(),
        total: refs.len(),
        active: refs
            .iter()
            .filter(|e| active_digests.contains(&e.manifest_digest))
            .count(),
        size,
        reclaimable,
    }
}

fn report(root: &Path) -> anyhow::Result<Report> {
    let g = load_globals(root)?;
    let mut r = Report::default();
    let rows = ct::list(root, &g, true)?;
    let mut active_digests = Vec::new();
    let mut containers = Usage {
        kind: "Containers".into(),
        total: rows.len(),
        ..Usage::default()
    };
    let mut seen = HashSet::new();
    for row in &rows {
        let live = ct::running(root, &g, &row.name).ok();
        if let Some(d) = live.as_ref().and_then(|l| l.state.image_digest.clone()) {
            active_digests.push(d);
        }
        let n = disk_usage(&ct::paths(root, &g, &row.name).storage_dir, &mut seen);
        containers.size += n;
        match live.is_some() {
            true => containers.active += 1,
            false => containers.reclaimable += n,
        }
        r.containers.push(Item {
            name: row.name.clone(),
            size: n,
            containers: usize::from(live.is_some()),
            status: row.status.clone(),
            ..Item::default()
        });
    }
    let store = Store::at(&g.storage_root);
    let images = images(&store, &active_digests, &mut r);
    let is_running = |c: &str| ct::running(root, &g, c).is_ok();
    let vols = crate::supervise::volumes(root, &g.storage_root, &is_running);
    let mut volumes = Usage {
        kind: "Local Volumes".into(),
        total: vols.len(),
        ..Usage::default()
    };
    for v in &vols {
        let dir = v.path.parent().unwrap_or(&v.path);
        let n = disk_usage(dir, &mut seen);
        volumes.size += n;
        if !v.running.is_empty() {
            volumes.active += 1;
        }
        if v.used_by.is_empty() {
            volumes.reclaimable += n;
        }
        r.volumes.push(Item {
            name: v.name.clone(),
            size: n,
            containers: v.running.len(),
            status: v.used_by.join(","),
            ..Item::default()
        });
    }
    let cache = Usage {
        kind: "Build Cache".into(),
        ..Usage::default()
    };
    r.summary = vec![images, containers, volumes, cache];
    Ok(r)
}

/// docker's sizes (go-units `HumanSize`): decimal units, four significant
/// digits, trailing zeros dropped (`16.43MB`, `2GB`).
pub fn human(n: u64) -> String {
    const U: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < U.len() {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v >= 100.0 {
        3
    } else if v >= 10.0 {
        2
    } else {
        1
    };
    let text = format!("{v:.prec$}", prec = 4 - int_digits);
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => text.as_str(),
    };
    format!("{text}{}", U[i])
}

/// `11.63MB (70%)`.
fn reclaim(u: &Usage) -> String {
    match u.size {
        0 => human(u.reclaimable),
        s => format!("{} ({}%)", human(u.reclaimable), u.reclaimable * 100 / s),
    }
}

fn print_rows(rows: &[Vec<String>]) {
    let n = rows.first().map_or(0, Vec::len);
    let w: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

fn print_table(r: &Report, verbose: bool) {
    let mut rows = vec![vec![
        "TYPE".to_string(),
        "TOTAL".into(),
        "ACTIVE".into(),
        "SIZE".into(),
        "RECLAIMABLE".into(),
    ]];
    for u in &r.summary {
        rows.push(vec![
            u.kind.clone(),
            u.total.to_string(),
            u.active.to_string(),
            human(u.size),
            reclaim(u),
        ]);
    }
    print_rows(&rows);
    if !verbose {
        return;
    }
    println!("\nImages space usage:\n");
    let mut rows = vec![[
        "REFERENCE",
        "SIZE",
        "SHARED SIZE",
        "UNIQUE SIZE",
        "CONTAINERS",
    ]
    .map(String::from)
    .to_vec()];
    for i in &r.images {
        rows.push(vec![
            i.name.clone(),
            human(i.size),
            human(i.shared),
            human(i.size - i.shared),
            i.containers.to_string(),
        ]);
    }
    print_rows(&rows);
    println!("\nContainers space usage:\n");
    let mut rows = vec![["CONTAINER", "SIZE", "STATUS"].map(String::from).to_vec()];
    for c in &r.containers {
        rows.push(vec![c.name.clone(), human(c.size), c.status.clone()]);
    }
    print_rows(&rows);
    println!("\nLocal Volumes space usage:\n");
    let mut rows = vec![["VOLUME NAME", "RUNNING", "SIZE", "USED BY"]
        .map(String::from)
        .to_vec()];
    for v in &r.volumes {
        let users = if v.status.is_empty() { "-" } else { &v.status };
        rows.push(vec![
            v.name.clone(),
            v.containers.to_string(),
            human(v.size),
            users.to_string(),
        ]);
    }
    print_rows(&rows);
    println!("\nBuild cache usage: 0B");
}

pub fn run(root: &Path, args: SystemArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SystemCommand::Df(a) => {
            let r = report(root)?;
            if a.format == super::containers::Format::Json {
                match a.verbose {
                    true => println!("{}", serde_json::to_string_pretty(&r)?),
                    false => println!("{}", serde_json::to_string_pretty(&r.summary)?),
                }
            } else {
                print_table(&r, a.verbose);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(999), "999B");
        assert_eq!(human(16_430_000), "16.43MB");
        assert_eq!(human(1_234_567), "1.235MB");
        assert_eq!(human(2_000_000_000), "2GB");
    }

    #[test]
    fn du_counts_blocks_and_hard_links_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        let mut seen = HashSet::new();
        let n = disk_usage(d.path(), &mut seen);
        let file = std::fs::metadata(d.path().join("a")).unwrap().blocks() * 512;
        let dir = std::fs::metadata(d.path()).unwrap().blocks() * 512;
        assert_eq!(n, file + dir);
    }
}
