//! `berth save` and `berth load`: images of the store written as an OCI layout
//! archive or a `docker save` archive, and either kind read back with the
//! names it carries.
//!
//! Reading reuses `offline.rs` (the same verified, bounded path as a pull of
//! `oci-archive:` or `docker-archive:`); this module only finds the names
//! (`io.containerd.image.name` / `org.opencontainers.image.ref.name` in
//! index.json, `RepoTags` in manifest.json) and files refs under them.
//! Writing follows what `skopeo copy … oci-archive:` and `docker save` write:
//! an OCI archive is `oci-layout`, `index.json` and `blobs/sha256/*` as
//! stored (compressed), plus the `manifest.json` Docker 25+ adds so that
//! older Dockers load it too; a docker archive is `manifest.json`, `<config>.json`
//! and each layer uncompressed as `<diffid>/layer.tar` (what Docker's
//! `image/tarexport` writes, which every reader accepts).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::distribution::manifest::{self, Manifest};
use crate::distribution::reference::Reference;
use crate::image::pull::PullOptions;
use crate::image::{offline, ImageError, Progress};
use crate::store::{unpack, Store};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's and Docker's name annotation (Docker 25+ `docker save`).
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The two archive kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OciArchive,
    DockerArchive,
}

/// One image to save: its canonical name and manifest digest.
#[derive(Debug, Clone)]
pub struct Saved {
    pub reference: Reference,
    pub digest: String,
}

fn offline_err(file: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Offline {
        reference: file.display().to_string(),
        reason: reason.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A name a registry reference may be filed under (`NAME:TAG`), or None for
/// a bare tag or a digest-only reference (neither can be a `RepoTags` entry).
fn repo_tag(r: &Reference) -> Option<String> {
    let reg = r.as_registry()?;
    let tag = reg.tag.as_deref()?;
    Some(format!("{}/{}:{tag}", reg.registry, reg.repository))
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    out: &Path,
) -> Result<(), ImageError> {
    let mut h = header(bytes.len() as u64, 0o644);
    tar.append_data(&mut h, name, bytes).map_err(io(out))
}

fn append_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    store: &Store,
    name: &str,
    digest: &str,
    out: &Path,
) -> Result<(), ImageError> {
    let p = store.blob_path(digest)?;
    let f = File::open(&p).map_err(|_| {
        offline_err(
            out,
            format!("blob '{digest}' is not in the store (pull the image again)"),
        )
    })?;
    let size = f.metadata().map_err(io(&p))?.len();
    let mut h = header(size, 0o644);
    tar.append_data(&mut h, name, f).map_err(io(out))
}

/// Write `images` from `store` to `out` as `format`. The archive is written
/// to a temporary file beside `out` and renamed over it when complete.
pub fn save(store: &Store, images: &[Saved], format: Format, out: &Path) -> Result<(), ImageError> {
    let _shared = store.lock_shared()?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let tmp_path: PathBuf = dir.join(format!(".{name}.berth-save.{}", std::process::id()));
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp_path)
            .map_err(io(out))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(&file));
        match format {
            Format::OciArchive => save_oci(store, images, &mut tar, out)?,
            Format::DockerArchive => save_docker(store, images, &mut tar, out)?,
        }
        let mut w = tar.into_inner().map_err(io(out))?;
        w.flush().map_err(io(out))?;
        drop(w);
        file.sync_all().map_err(io(out))?;
        std::fs::rename(&tmp_path, out).map_err(io(out))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result?;
    Ok(())
}

fn manifest_of(store: &Store, s: &Saved) -> Result<(Vec<u8>, Manifest), ImageError> {
    let canonical = s.reference.canonical();
    let bytes = store.read_blob(&s.digest, "a manifest", manifest::MAX_METADATA_BYTES)?;
    let m = store.manifest(&canonical, &s.digest)?;
    Ok((bytes, m))
}

fn save_oci<W: Write>(
    store: &Store,
    images: &[Saved],
    tar: &mut tar::Builder<W>,
    out: &Path,
) -> Result<(), ImageError> {
    let mut entries = Vec::new();
    let mut docker_entries: Vec<serde_json::Value> = Vec::new();
    let mut blobs: Vec<String> = Vec::new();
    for s in images {
        let (bytes, m) = manifest_of(store, s)?;
        // A manifest.json beside index.json, pointing into blobs/, as Docker
        // 25+ writes its archives: Docker before 25 loads only that (layers
        // may be compressed: its loader decompresses them).
        docker_entries.push(serde_json::json!({
            "Config": format!("blobs/sha256/{}", &m.config.digest[7..]),
            "RepoTags": repo_tag(&s.reference).into_iter().collect::<Vec<_>>(),
            "Layers": m.layers.iter().map(|l| format!("blobs/sha256/{}", &l.digest[7..])).collect::<Vec<_>>(),
        }));
        let mut annotations = serde_json::Map::new();
        if let Some(name) = repo_tag(&s.reference) {
            annotations.insert(REF_NAME.into(), name.clone().into());
            annotations.insert(CONTAINERD_NAME.into(), name.into());
        }
        let media_type = if m.media_type.is_empty() {
            manifest::OCI_MANIFEST.to_string()
        } else {
            m.media_type.clone()
        };
        entries.push(serde_json::json!({
            "mediaType": media_type,
            "digest": s.digest,
            "size": bytes.len(),
            "annotations": annotations,
        }));
        for d in [&s.digest, &m.config.digest]
            .into_iter()
            .chain(m.layers.iter().map(|l| &l.digest))
        {
            if !blobs.contains(d) {
                blobs.push(d.clone());
            }
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": entries,
    });
    append_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, out)?;
    let index = serde_json::to_vec(&index).map_err(|e| offline_err(out, e.to_string()))?;
    append_bytes(tar, "index.json", &index, out)?;
    let mj = serde_json::to_vec(&docker_entries).map_err(|e| offline_err(out, e.to_string()))?;
    append_bytes(tar, "manifest.json", &mj, out)?;
    for d in &blobs {
        let name = format!("blobs/sha256/{}", &d[7..]);
        append_blob(tar, store, &name, d, out)?;
    }
    Ok(())
}

/// A stored layer blob decompressed into a temporary file, its digest checked
/// against the diff id the config names.
fn uncompressed_layer(store: &Store, blob: &str, diff_id: &str) -> Result<File, ImageError> {
    let p = store.blob_path(blob)?;
    let f = File::open(&p).map_err(io(&p))?;
    let tmp_dir = store.root().join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
    // Unlinked at once: only the descriptor holds it, so nothing is left behind.
    let tmp_path = tmp_dir.join(format!(
        "save-layer-{}-{}",
        std::process::id(),
        &diff_id[7..]
    ));
    let mut tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(io(&tmp_path))?;
    let _ = std::fs::remove_file(&tmp_path);
    let mut reader = unpack::decompress(f).map_err(io(&p))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(io(&p))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(io(&tmp_dir))?;
    }
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != diff_id {
        return Err(ImageError::Digest {
            reference: blob.to_string(),
            what: "uncompressed layer".into(),
            expected: diff_id.to_string(),
            actual: got,
        });
    }
    use std::io::Seek;
    tmp.seek(std::io::SeekFrom::Start(0))
        .map_err(io(&tmp_dir))?;
    Ok(tmp)
}

fn save_docker<W: Write>(
    store: &Store,
    images: &[Saved],
    tar: &mut tar::Builder<W>,
    out: &Path,
) -> Result<(), ImageError> {
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for s in images {
        let canonical = s.reference.canonical();
        let (_, m) = manifest_of(store, s)?;
        let raw = store.read_blob(
            &m.config.digest,
            "an image config",
            manifest::MAX_METADATA_BYTES,
        )?;
        let mf = |source| ImageError::Manifest {
            reference: canonical.clone(),
            source,
        };
        let config = manifest::parse_config(&raw).map_err(mf)?;
        let diff_ids = manifest::diff_ids(&config, &m).map_err(mf)?;
        let config_name = format!("{}.json", &m.config.digest[7..]);
        if !written.contains(&config_name) {
            append_bytes(tar, &config_name, &raw, out)?;
            written.push(config_name.clone());
        }
        let mut layers = Vec::new();
        for (l, id) in m.layers.iter().zip(&diff_ids) {
            let name = format!("{}/layer.tar", &id[7..]);
            if !written.contains(&name) {
                let f = uncompressed_layer(store, &l.digest, id)?;
                let size = f.metadata().map_err(io(out))?.len();
                let mut h = header(size, 0o644);
                tar.append_data(&mut h, &name, f).map_err(io(out))?;
                written.push(name.clone());
            }
            layers.push(name);
        }
        // Several names of one image are one entry with several tags.
        let tags: Vec<String> = repo_tag(&s.reference).into_iter().collect();
        if let Some(e) = entries
            .iter_mut()
            .find(|e| e["Config"] == config_name.as_str())
        {
            if let Some(a) = e["RepoTags"].as_array_mut() {
                a.extend(tags.into_iter().map(serde_json::Value::from));
            }
            continue;
        }
        entries.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": tags,
            "Layers": layers,
        }));
    }
    let mj = serde_json::to_vec(&entries).map_err(|e| offline_err(out, e.to_string()))?;
    append_bytes(tar, "manifest.json", &mj, out)
}

/// What kind of archive `path` is: an OCI layout (index.json) wins over a
/// docker one (manifest.json), as Docker 25+ writes both.
pub fn detect(path: &Path) -> Result<Format, ImageError> {
    let f = File::open(path).map_err(io(path))?;
    let mut archive = tar::Archive::new(f);
    let (mut oci, mut docker) = (false, false);
    for entry in archive.entries().map_err(io(path))? {
        let entry = entry.map_err(|e| offline_err(path, format!("not a tar archive: {e}")))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match name.trim_start_matches("./") {
            "index.json" => oci = true,
            "manifest.json" => docker = true,
            _ => {}
        }
    }
    match (oci, docker) {
        (true, _) => Ok(Format::OciArchive),
        (false, true) => Ok(Format::DockerArchive),
        _ => Err(offline_err(
            path,
            "neither an OCI layout archive (index.json) nor a docker archive (manifest.json)",
        )),
    }
}

/// A small member of the archive, read whole (bounded).
fn member(path: &Path, wanted: &str) -> Result<Option<Vec<u8>>, ImageError> {
    let f = File::open(path).map_err(io(path))?;
    let mut archive = tar::Archive::new(f);
    for entry in archive.entries().map_err(io(path))? {
        let entry = entry.map_err(io(path))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if name.trim_start_matches("./") == wanted {
            let mut b = Vec::new();
            entry
                .take(manifest::MAX_METADATA_BYTES + 1)
                .read_to_end(&mut b)
                .map_err(io(path))?;
            if b.len() as u64 > manifest::MAX_METADATA_BYTES {
                return Err(offline_err(path, format!("{wanted} is larger than 4 MiB")));
            }
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// A name from an archive, if it is a full reference (a bare tag, as some
/// tools write in `ref.name`, names nothing).
fn name_of(text: &str) -> Option<Reference> {
    if !text.contains('/') && !text.contains(':') {
        return None;
    }
    Reference::parse(text)
        .ok()
        .filter(|r| r.as_registry().is_some())
}

/// One image loaded: the names filed and its manifest digest.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub names: Vec<String>,
    pub digest: String,
}

/// Load every image of the archive at `path` into the store, filing refs
/// under the names it carries. An image with no name keeps the
/// `oci-archive:`/`docker-archive:` ref a pull of the file would give it.
pub fn load(
    store: &Store,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Loaded>, ImageError> {
    let path = std::fs::canonicalize(path).map_err(io(path))?;
    match detect(&path)? {
        Format::OciArchive => load_oci(store, &path, progress),
        Format::DockerArchive => load_docker(store, &path, progress),
    }
}

fn file_under(
    store: &Store,
    source: &Reference,
    names: &[Reference],
    digest: &str,
) -> Result<Vec<String>, ImageError> {
    if names.is_empty() {
        return Ok(vec![source.canonical()]);
    }
    let mut out = Vec::new();
    for n in names {
        store.set_ref(n, digest)?;
        out.push(n.canonical());
    }
    store.remove_ref(source)?;
    Ok(out)
}

fn load_oci(
    store: &Store,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Loaded>, ImageError> {
    let index = member(path, "index.json")?.ok_or_else(|| offline_err(path, "no index.json"))?;
    let index: serde_json::Value = serde_json::from_slice(&index)
        .map_err(|e| offline_err(path, format!("index.json: {e}")))?;
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return Err(offline_err(path, "index.json lists no image"));
    }
    let mut out = Vec::new();
    for e in &entries {
        let ann = |k: &str| e["annotations"][k].as_str().map(String::from);
        let tag = if entries.len() == 1 {
            None
        } else {
            ann(REF_NAME)
        };
        if entries.len() > 1 && tag.is_none() {
            return Err(offline_err(
                path,
                "an image of several in index.json has no org.opencontainers.image.ref.name",
            ));
        }
        let source = Reference::OciArchive {
            path: path.to_path_buf(),
            tag,
        };
        let img = offline::load(store, &source, &PullOptions::default(), progress)?;
        let name = ann(CONTAINERD_NAME)
            .and_then(|n| name_of(&n))
            .or_else(|| ann(REF_NAME).and_then(|n| name_of(&n)));
        let names = file_under(
            store,
            &source,
            &name.into_iter().collect::<Vec<_>>(),
            &img.manifest_digest,
        )?;
        out.push(Loaded {
            names,
            digest: img.manifest_digest,
        });
    }
    Ok(out)
}

fn load_docker(
    store: &Store,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Loaded>, ImageError> {
    let mj = member(path, "manifest.json")?.ok_or_else(|| offline_err(path, "no manifest.json"))?;
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&mj)
        .map_err(|e| offline_err(path, format!("manifest.json: {e}")))?;
    if entries.len() > 1 {
        // offline.rs reads the first image of a docker archive.
        return Err(offline_err(
            path,
            format!("holds {} images; berth loads docker archives of one image (save them as oci-archive)", entries.len()),
        ));
    }
    let names: Vec<Reference> = entries
        .first()
        .and_then(|e| e["RepoTags"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str())
                .filter_map(name_of)
                .collect()
        })
        .unwrap_or_default();
    let source = Reference::DockerArchive {
        path: path.to_path_buf(),
    };
    let img = offline::load(store, &source, &PullOptions::default(), progress)?;
    let names = file_under(store, &source, &names, &img.manifest_digest)?;
    Ok(vec![Loaded {
        names,
        digest: img.manifest_digest,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_archives() {
        assert!(name_of("latest").is_none());
        assert_eq!(
            name_of("busybox:1").map(|r| r.canonical()).as_deref(),
            Some("docker.io/library/busybox:1")
        );
        assert_eq!(
            name_of("localhost/x/y:2").map(|r| r.canonical()).as_deref(),
            Some("localhost/x/y:2")
        );
    }

    #[test]
    fn repo_tags_need_a_tag() {
        let r = Reference::parse("127.0.0.1:5000/a/b:1").unwrap();
        assert_eq!(repo_tag(&r).as_deref(), Some("127.0.0.1:5000/a/b:1"));
        let d = format!("x/y@sha256:{}", "a".repeat(64));
        assert_eq!(repo_tag(&Reference::parse(&d).unwrap()), None);
    }
}
