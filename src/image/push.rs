//! `berth push`: a stored image to a registry, as `skopeo copy` does it. Each
//! blob (config, then layers) is asked for first (HEAD) and skipped when the
//! registry has it; else mounted from a repository of the same registry that
//! is known to hold it (`POST …/uploads/?mount=D&from=REPO`: the image was
//! pulled from there); else uploaded — one PUT for a small blob, PATCH
//! chunks then a closing PUT for a big one — and the whole upload is tried
//! again with a fresh session when it fails. The manifest goes last, so the
//! tag never names an image whose blobs are missing.
//!
//! Owns: the order of a push. HTTP is the registry client's.

use std::io::Read;

use crate::config::Globals;
use crate::distribution::manifest::{self, Descriptor};
use crate::distribution::reference::RegistryRef;
use crate::image::registry::Client;
use crate::image::{hosts, ImageError};
use crate::store::Store;

/// Blobs up to this size go in one PUT; bigger ones in PATCH chunks of it.
pub const CHUNK: u64 = 16 * 1024 * 1024;
/// Whole-blob attempts (each with a fresh upload session); every request
/// inside also has the client's own retries.
pub const BLOB_ATTEMPTS: u32 = 3;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobFate {
    /// The registry had it (HEAD).
    Exists,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// A push's report, blob by blob.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    pub blobs: Vec<(String, u64, Option<BlobFate>)>,
    pub manifest_digest: String,
}

impl PushReport {
    pub fn count(&self, fate: BlobFate) -> usize {
        self.blobs.iter().filter(|b| b.2 == Some(fate)).count()
    }
}

/// A line per blob and step, for the terminal.
pub trait PushProgress: Send + Sync {
    fn blob(&self, digest: &str, size: u64, fate: BlobFate);
    fn retry(&self, digest: &str, attempt: u32, error: &str);
}

/// What to push where.
pub struct PushPlan<'a> {
    pub manifest_digest: &'a str,
    pub dest: &'a RegistryRef,
    /// Repositories on the destination's registry the image came from.
    pub mount_from: Vec<String>,
}

/// Push the stored image `plan.manifest_digest` to `plan.dest` (blocking; a
/// private runtime is dropped before returning).
pub fn push(
    store: &Store,
    globals: &Globals,
    plan: &PushPlan<'_>,
    progress: &dyn PushProgress,
) -> Result<PushReport, ImageError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::Task(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(push_async(store, globals, plan, progress));
    drop(rt);
    result
}

async fn push_async(
    store: &Store,
    globals: &Globals,
    plan: &PushPlan<'_>,
    progress: &dyn PushProgress,
) -> Result<PushReport, ImageError> {
    let dest = plan.dest;
    let canonical = format!("{}/{}", dest.registry, dest.repository);
    let _shared = store.lock_shared()?;
    let bytes = store.read_blob(
        plan.manifest_digest,
        "a manifest",
        manifest::MAX_METADATA_BYTES,
    )?;
    let m = store.manifest(&canonical, plan.manifest_digest)?;
    // The registry itself, never a mirror: mirrors are read-only.
    let endpoint = hosts::plan_endpoints(globals, dest)
        .into_iter()
        .find(|e| !e.mirror)
        .ok_or_else(|| ImageError::Task("no endpoint for the registry".into()))?;
    let client = Client::connect(
        globals,
        &endpoint,
        &dest.registry,
        &dest.repository,
        &canonical,
    )
    .await?;
    let mut report = PushReport {
        manifest_digest: plan.manifest_digest.to_string(),
        ..PushReport::default()
    };
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        let fate = push_blob(&client, store, d, &plan.mount_from, progress).await?;
        progress.blob(&d.digest, d.size, fate);
        report.blobs.push((d.digest.clone(), d.size, Some(fate)));
    }
    let media_type = if m.media_type.is_empty() {
        manifest::OCI_MANIFEST
    } else {
        &m.media_type
    };
    let tag = dest.manifest_reference();
    client.put_manifest(tag, &bytes, media_type).await?;
    Ok(report)
}

async fn push_blob(
    client: &Client,
    store: &Store,
    d: &Descriptor,
    mount_from: &[String],
    progress: &dyn PushProgress,
) -> Result<BlobFate, ImageError> {
    if client.has_blob(&d.digest).await? {
        return Ok(BlobFate::Exists);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match upload(client, store, d, mount_from).await {
            Ok(fate) => return Ok(fate),
            Err(e) if attempt < BLOB_ATTEMPTS && retryable(&e) => {
                progress.retry(&d.digest, attempt, &e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
}

fn retryable(e: &ImageError) -> bool {
    matches!(
        e,
        ImageError::Connect { .. } | ImageError::Transfer { .. } | ImageError::Status { .. }
    )
}

async fn upload(
    client: &Client,
    store: &Store,
    d: &Descriptor,
    mount_from: &[String],
) -> Result<BlobFate, ImageError> {
    // One mount attempt: a registry that cannot mount (or lacks the blob
    // there) answers with an upload session, which is used as is.
    let mount = mount_from
        .first()
        .map(|from| (d.digest.as_str(), from.as_str()));
    let mut session = match client.start_upload(mount).await? {
        None => return Ok(BlobFate::Mounted),
        Some(s) => s,
    };
    let path = store.blob_path(&d.digest)?;
    let io = |source| ImageError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if size <= CHUNK {
        let mut all = Vec::with_capacity(size as usize);
        f.read_to_end(&mut all).map_err(io)?;
        client
            .upload_piece(&session, 0, &all, Some(&d.digest))
            .await?;
        return Ok(BlobFate::Uploaded);
    }
    let mut offset = 0u64;
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        let n = read_full(&mut f, &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        session = client
            .upload_piece(&session, offset, &buf[..n], None)
            .await?;
        offset += n as u64;
    }
    client
        .upload_piece(&session, offset, &[], Some(&d.digest))
        .await?;
    Ok(BlobFate::Uploaded)
}

/// Fill `buf` unless the file ends first; returns the bytes read.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
