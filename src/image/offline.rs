//! Offline image sources: OCI layout directories (`oci:DIR[:tag]`), OCI layout
//! archives (`oci-archive:FILE[:tag]`), `docker save` archives
//! (`docker-archive:FILE`) and plain rootfs tarballs (`berth import`).
//!
//! Owns: reading those formats and handing verified blobs to the store. Every
//! blob is hashed as it is copied, so a layout with a wrong digest is refused
//! like a registry would be. Must not: extract anything outside the store
//! (archives are read entry by entry, or extracted with the store's safe
//! unpacker into its scratch directory).

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::distribution::manifest::{self, Descriptor, Fetched, Manifest, Platform};
use crate::distribution::reference::{check_digest, Reference};
use crate::image::pull::PullOptions;
use crate::image::{ImageError, Progress, ProgressEvent};
use crate::store::{unpack, Image, Store};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn offline(reference: &str, reason: impl Into<String>) -> ImageError {
    ImageError::Offline {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Load an offline source into the store and return the image.
pub fn load(
    store: &Store,
    r: &Reference,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    let _shared = store.lock_shared()?;
    let canonical = r.canonical();
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    match r {
        Reference::OciDir { path, tag } => {
            let index = read_limited_file(&path.join("index.json"), &canonical)?;
            let read = |digest: &str| -> Result<Vec<u8>, ImageError> {
                read_limited_file(&layout_blob(path, digest, &canonical)?, &canonical)
            };
            let (bytes, digest, m) = select(&index, tag.as_deref(), &platform, &canonical, &read)?;
            // Copy config and layers, verified, into the store.
            for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                let p = layout_blob(path, &d.digest, &canonical)?;
                let f = File::open(&p).map_err(io(&p))?;
                store.copy_blob(f, &d.digest, Some(d.size))?;
            }
            finish(store, r, &bytes, &digest, &m, progress)
        }
        Reference::OciArchive { path, tag } => {
            let f = File::open(path).map_err(io(path))?;
            let mut archive = tar::Archive::new(f);
            let mut index = None;
            for entry in archive.entries().map_err(io(path))? {
                let mut entry = entry.map_err(io(path))?;
                // `tar -cf x.tar -C layout .` lists the layout's directories
                // too (`./blobs/sha256/`): they hold nothing to load.
                if entry.header().entry_type().is_dir() {
                    continue;
                }
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let name = name.trim_start_matches("./");
                if name == "index.json" {
                    let mut b = Vec::new();
                    (&mut entry)
                        .take(manifest::MAX_METADATA_BYTES + 1)
                        .read_to_end(&mut b)
                        .map_err(io(path))?;
                    if b.len() as u64 > manifest::MAX_METADATA_BYTES {
                        return Err(offline(&canonical, "index.json is larger than 4 MiB"));
                    }
                    index = Some(b);
                } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                    let digest = format!("sha256:{hex}");
                    if !check_digest(&digest) {
                        return Err(offline(
                            &canonical,
                            format!("archive member '{name}' is not a sha256 blob name"),
                        ));
                    }
                    let size = entry.header().size().map_err(io(path))?;
                    // Blobs go straight into the store, hashed on the way in.
                    store.copy_blob(&mut entry, &digest, Some(size))?;
                }
            }
            let index = index.ok_or_else(|| {
                offline(
                    &canonical,
                    "archive has no index.json (is it an OCI layout archive?)",
                )
            })?;
            let read = |digest: &str| {
                store
                    .read_blob(digest, "a manifest", manifest::MAX_METADATA_BYTES)
                    .map_err(ImageError::from)
            };
            let (bytes, digest, m) = select(&index, tag.as_deref(), &platform, &canonical, &read)?;
            for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                if !store.has_blob(&d.digest) {
                    return Err(offline(
                        &canonical,
                        format!("blob '{}' is missing from the archive", d.digest),
                    ));
                }
            }
            finish(store, r, &bytes, &digest, &m, progress)
        }
        Reference::DockerArchive { path } => load_docker_archive(store, r, path, progress),
        Reference::Registry(_) => Err(offline(&canonical, "not an offline source")),
    }
}

fn layout_blob(dir: &Path, digest: &str, canonical: &str) -> Result<PathBuf, ImageError> {
    if !check_digest(digest) {
        return Err(offline(
            canonical,
            format!("invalid digest '{digest}' in the layout"),
        ));
    }
    Ok(dir.join("blobs/sha256").join(&digest[7..]))
}

fn read_limited_file(path: &Path, canonical: &str) -> Result<Vec<u8>, ImageError> {
    let f = File::open(path).map_err(io(path))?;
    read_limited(f, path, canonical)
}

fn read_limited(f: File, path: &Path, canonical: &str) -> Result<Vec<u8>, ImageError> {
    let mut b = Vec::new();
    f.take(manifest::MAX_METADATA_BYTES + 1)
        .read_to_end(&mut b)
        .map_err(io(path))?;
    if b.len() as u64 > manifest::MAX_METADATA_BYTES {
        return Err(offline(
            canonical,
            format!("'{}' is larger than 4 MiB", path.display()),
        ));
    }
    Ok(b)
}

/// Pick the manifest from a layout's index.json: by tag annotation, or the only
/// one; an index entry is followed to the platform's manifest.
fn select(
    index: &[u8],
    tag: Option<&str>,
    platform: &Platform,
    canonical: &str,
    read: &dyn Fn(&str) -> Result<Vec<u8>, ImageError>,
) -> Result<(Vec<u8>, String, Manifest), ImageError> {
    let mf = |source| ImageError::Manifest {
        reference: canonical.to_string(),
        source,
    };
    let Fetched::Index(idx) = manifest::parse(index, manifest::OCI_INDEX).map_err(mf)? else {
        return Err(offline(canonical, "index.json is not an image index"));
    };
    let candidates: Vec<&Descriptor> = match tag {
        Some(t) => idx
            .manifests
            .iter()
            .filter(|d| {
                d.annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|n| n == t)
            })
            .collect(),
        None => idx.manifests.iter().collect(),
    };
    let desc = match candidates.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(offline(
                canonical,
                format!("no image tagged '{}' in the layout", tag.unwrap_or("")),
            ))
        }
        many => {
            // Several untagged entries: a multi-platform layout.
            let sub = manifest::Index {
                schema_version: 2,
                media_type: manifest::OCI_INDEX.to_string(),
                manifests: many.iter().map(|d| (*d).clone()).collect(),
            };
            manifest::select_platform(&sub, platform)
                .map_err(mf)?
                .clone()
        }
    };
    let mut desc = desc;
    for _ in 0..2 {
        let bytes = read(&desc.digest)?;
        let digest = crate::store::sha256_digest(&bytes);
        if digest != desc.digest {
            return Err(ImageError::Digest {
                reference: canonical.to_string(),
                what: "manifest".to_string(),
                expected: desc.digest.clone(),
                actual: digest,
            });
        }
        match manifest::parse(&bytes, &desc.media_type).map_err(mf)? {
            Fetched::Manifest(m) => return Ok((bytes, digest, m)),
            Fetched::Index(i) => {
                desc = manifest::select_platform(&i, platform).map_err(mf)?.clone()
            }
        }
    }
    Err(offline(canonical, "nested indexes are not supported"))
}

/// Unpack the layers of a manifest whose blobs are all stored, then write the ref.
fn finish(
    store: &Store,
    r: &Reference,
    bytes: &[u8],
    digest: &str,
    m: &Manifest,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    let canonical = &r.canonical();
    let raw = store.read_blob(
        &m.config.digest,
        "an image config",
        manifest::MAX_METADATA_BYTES,
    )?;
    let mf = |source| ImageError::Manifest {
        reference: canonical.to_string(),
        source,
    };
    let config = manifest::parse_config(&raw).map_err(mf)?;
    let diff_ids = manifest::diff_ids(&config, m).map_err(mf)?;
    progress.event(ProgressEvent::Resolved {
        reference: canonical,
        digest,
        layers: m.layers.len(),
        total: manifest::layers_size(m).map_err(mf)?,
    });
    // Layers unpack in parallel, one thread per core.
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
    let work: Vec<(&Descriptor, &String)> = m.layers.iter().zip(diff_ids.iter()).collect();
    for chunk in work.chunks(slots) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(l, id)| {
                    s.spawn(move || {
                        if store.has_layer(id) {
                            progress.event(ProgressEvent::LayerExists { digest: &l.digest });
                            return Ok(());
                        }
                        progress.event(ProgressEvent::LayerUnpacking { digest: &l.digest });
                        store.unpack_layer(&l.digest, id).map_err(|source| {
                            ImageError::InStore {
                                reference: canonical.to_string(),
                                source,
                            }
                        })?;
                        progress.event(ProgressEvent::LayerDone { digest: &l.digest });
                        Ok::<(), ImageError>(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ImageError::Task("layer unpack panicked".to_string()))
                    })
                })
                .collect::<Result<Vec<()>, ImageError>>()
        })?;
    }
    store.put_blob(bytes, Some(digest))?;
    store.set_ref(r, digest)?;
    progress.event(ProgressEvent::Done {
        reference: canonical,
        digest,
    });
    Ok(store.image_by_digest(canonical, digest)?)
}

/// Hash a file: (digest, size).
fn hash_file(path: &Path) -> Result<(String, u64), ImageError> {
    let mut f = File::open(path).map_err(io(path))?;
    hash_reader(&mut f, path)
}

fn hash_reader(f: &mut File, path: &Path) -> Result<(String, u64), ImageError> {
    let mut h = Sha256::new();
    let n = std::io::copy(f, &mut h).map_err(io(path))?;
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

fn layer_media_type(path: &Path, docker: bool) -> Result<&'static str, ImageError> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(io(path))?;
    let n = f.read(&mut head).map_err(io(path))?;
    Ok(media_type_of(&head[..n], docker))
}

fn media_type_of(head: &[u8], docker: bool) -> &'static str {
    match (unpack::Compression::sniff(head), docker) {
        (unpack::Compression::Gzip, true) => manifest::DOCKER_LAYER_GZIP,
        (unpack::Compression::Gzip, false) => manifest::OCI_LAYER_GZIP,
        (unpack::Compression::Zstd, _) => manifest::OCI_LAYER_ZSTD,
        (unpack::Compression::None, true) => manifest::DOCKER_LAYER_TAR,
        (unpack::Compression::None, false) => manifest::OCI_LAYER_TAR,
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Scratch directory in the store, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_docker_archive(
    store: &Store,
    r: &Reference,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    let canonical = &r.canonical();
    // Members are extracted with the layer unpacker (which never writes
    // outside its directory) into the store's scratch space.
    let scratch = Scratch(store.root().join("tmp").join(format!(
        "docker-archive-{}-{}",
        std::process::id(),
        nanos()
    )));
    std::fs::create_dir_all(&scratch.0).map_err(io(&scratch.0))?;
    let f = File::open(path).map_err(io(path))?;
    // Bounded like a layer, and complete: an archive has no digest.
    unpack::unpack_layer_limited(f, &scratch.0, store.unpack_limits(true))
        .map_err(|e| offline(canonical, format!("cannot read archive: {}", chain(&e))))?;
    // A member must be a regular file of the archive, resolved beneath its
    // root by the kernel with no symlink followed, in the name or any
    // parent: checking only the last component let `d -> /etc` plus
    // `d/shadow` read a host file into the store (issue 12, class 7).
    let member = |name: &str| -> Result<(PathBuf, File), ImageError> {
        let p = scratch.0.join(name);
        match crate::rootfile::open_beneath(&scratch.0, name) {
            Ok(f) => Ok((p, f)),
            Err(e) => Err(offline(
                canonical,
                format!("manifest.json names '{name}', which is not a regular file inside the archive ({e})"),
            )),
        }
    };
    let (cfg_path, cfg_file) = member("manifest.json")?;
    let mj = read_limited(cfg_file, &cfg_path, canonical)?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(&mj)
        .map_err(|e| offline(canonical, format!("manifest.json: {e}")))?;
    let entry = entries
        .into_iter()
        .next()
        .ok_or_else(|| offline(canonical, "manifest.json lists no image"))?;
    let (cfg_path, cfg_file) = member(&entry.config)?;
    let cfg = read_limited(cfg_file, &cfg_path, canonical)?;
    let cfg_digest = store.put_blob(&cfg, None)?;
    let mut layers = Vec::new();
    for l in &entry.layers {
        let (p, mut f) = member(l)?;
        let (digest, size) = hash_reader(&mut f, &p)?;
        f.seek(std::io::SeekFrom::Start(0)).map_err(io(&p))?;
        let mut head = [0u8; 4];
        let n = f.read(&mut head).map_err(io(&p))?;
        f.seek(std::io::SeekFrom::Start(0)).map_err(io(&p))?;
        store.copy_blob(f, &digest, Some(size))?;
        layers.push(Descriptor {
            media_type: media_type_of(&head[..n], true).to_string(),
            digest,
            size,
            platform: None,
            annotations: None,
        });
    }
    let m = Manifest {
        schema_version: 2,
        media_type: manifest::DOCKER_MANIFEST.to_string(),
        config: Descriptor {
            media_type: manifest::DOCKER_CONFIG.to_string(),
            digest: cfg_digest,
            size: cfg.len() as u64,
            platform: None,
            annotations: None,
        },
        layers,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| offline(canonical, e.to_string()))?;
    let digest = crate::store::sha256_digest(&bytes);
    finish(store, r, &bytes, &digest, &m, progress)
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// RFC 3339 UTC time for a Unix timestamp (no calendar crate needed).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `berth import FILE NAME[:tag]`: a plain rootfs tarball (optionally gzip or
/// zstd) becomes a one-layer image under NAME (normalised like any reference).
pub fn import(
    store: &Store,
    file: &Path,
    r: &Reference,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    if r.as_registry().is_none() {
        return Err(offline(
            &r.to_string(),
            "an import name must be 'NAME[:tag]', not a transport reference",
        ));
    }
    let canonical = r.canonical();
    let _shared = store.lock_shared()?;
    let (blob, size) = hash_file(file)?;
    let f = File::open(file).map_err(io(file))?;
    store.copy_blob(f, &blob, Some(size))?;
    let bp = store.blob_path(&blob)?;
    let f = File::open(&bp).map_err(io(&bp))?;
    progress.event(ProgressEvent::LayerUnpacking { digest: &blob });
    let diff_id = store.unpack_layer_from(f)?;
    progress.event(ProgressEvent::LayerDone { digest: &blob });
    let host = Platform::host();
    let now = rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    );
    let mut config = serde_json::json!({
        "created": now,
        "architecture": host.architecture,
        "os": host.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": now, "created_by": format!("berth import {}", file.display())}],
    });
    if let Some(v) = host.variant {
        config["variant"] = serde_json::Value::String(v);
    }
    let cfg = serde_json::to_vec(&config).map_err(|e| offline(&canonical, e.to_string()))?;
    let cfg_digest = store.put_blob(&cfg, None)?;
    let m = Manifest {
        schema_version: 2,
        media_type: manifest::OCI_MANIFEST.to_string(),
        config: Descriptor {
            media_type: manifest::OCI_CONFIG.to_string(),
            digest: cfg_digest,
            size: cfg.len() as u64,
            platform: None,
            annotations: None,
        },
        layers: vec![Descriptor {
            media_type: layer_media_type(file, false)?.to_string(),
            digest: blob,
            size,
            platform: None,
            annotations: None,
        }],
        annotations: None,
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| offline(&canonical, e.to_string()))?;
    let digest = store.put_blob(&bytes, None)?;
    store.set_ref(r, &digest)?;
    progress.event(ProgressEvent::Done {
        reference: &canonical,
        digest: &digest,
    });
    Ok(store.image_by_digest(&canonical, &digest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_115_200 + 3661), "2025-11-26T01:01:01Z");
    }
}
