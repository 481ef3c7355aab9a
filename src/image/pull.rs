//! The pull: resolve a reference to a manifest (mirrors first), fetch the
//! config, download and unpack the missing layers in parallel, then write the
//! ref. Offline sources are handed to `offline.rs`.
//!
//! Owns: the order of a pull and its concurrency. Must not: parse HTTP (the
//! registry client) or touch files directly (the store).

use std::sync::Arc;

use crate::config::Globals;
use crate::distribution::manifest::{self, Fetched, Manifest, Platform};
use crate::distribution::reference::{Reference, RegistryRef};
use crate::image::registry::Client;
use crate::image::{hosts, offline, ImageError, Progress, ProgressEvent};
use crate::store::{Image, Store};

/// Choices for one pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Platform to select from an index; the host's when None.
    pub platform: Option<Platform>,
}

/// Pull `reference` into `store` (blocking). Registry pulls run on a private
/// tokio runtime that is dropped — all its threads joined — before this
/// returns, so the caller is single-threaded again afterwards (the runtime
/// clones containers only from a single-threaded process).
pub fn pull(
    store: &Store,
    globals: &Globals,
    reference: &Reference,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    pull_with(store, globals, reference, &PullOptions::default(), progress)
}

/// [`pull`] with options.
pub fn pull_with(
    store: &Store,
    globals: &Globals,
    reference: &Reference,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    if !reference.is_remote() {
        return offline::load(store, reference, options, progress);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::Task(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(pull_async(store, globals, reference, options, progress));
    // Dropping the runtime joins its blocking pool (layer unpackers); nothing
    // of it outlives this call.
    drop(rt);
    result
}

/// The async pull for callers that already run tokio (registry references only).
pub async fn pull_async(
    store: &Store,
    globals: &Globals,
    reference: &Reference,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    let canonical = reference.canonical();
    let Some(r) = reference.as_registry() else {
        return Err(ImageError::NotRegistry {
            reference: canonical,
        });
    };
    let _shared = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.lock_shared())
            .await
            .map_err(|e| ImageError::Task(e.to_string()))??
    };
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let (client, manifest_bytes, digest, m) =
        resolve_any(globals, r, &canonical, &platform).await?;
    let client = Arc::new(client);

    let config_bytes = if store.has_blob(&m.config.digest) {
        store.read_blob(
            &m.config.digest,
            "an image config",
            manifest::MAX_METADATA_BYTES,
        )?
    } else {
        let b = client.small_blob(&m.config.digest).await?;
        store.put_blob(&b, Some(&m.config.digest))?;
        b
    };
    let mf_err = |source| ImageError::Manifest {
        reference: canonical.clone(),
        source,
    };
    let config = manifest::parse_config(&config_bytes).map_err(mf_err)?;
    let diff_ids = manifest::diff_ids(&config, &m).map_err(mf_err)?;
    progress.event(ProgressEvent::Resolved {
        reference: &canonical,
        digest: &digest,
        layers: m.layers.len(),
        total: manifest::layers_size(&m).map_err(mf_err)?,
    });

    let unpack_slots = Arc::new(tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    ));
    let canonical_ref = &canonical;
    let jobs = m
        .layers
        .iter()
        .zip(diff_ids.iter())
        .map(|(layer, diff_id)| {
            let client = client.clone();
            let slots = unpack_slots.clone();
            async move {
                if store.has_layer(diff_id) {
                    progress.event(ProgressEvent::LayerExists {
                        digest: &layer.digest,
                    });
                    return Ok(());
                }
                progress.event(ProgressEvent::LayerStart {
                    digest: &layer.digest,
                    size: layer.size,
                });
                client
                    .download_blob(store, &layer.digest, layer.size, progress)
                    .await?;
                let _slot = slots
                    .acquire_owned()
                    .await
                    .map_err(|e| ImageError::Task(e.to_string()))?;
                progress.event(ProgressEvent::LayerUnpacking {
                    digest: &layer.digest,
                });
                let (s, blob, id) = (store.clone(), layer.digest.clone(), diff_id.clone());
                tokio::task::spawn_blocking(move || s.unpack_layer(&blob, &id))
                    .await
                    .map_err(|e| ImageError::Task(e.to_string()))?
                    .map_err(|source| ImageError::InStore {
                        reference: canonical_ref.to_string(),
                        source,
                    })?;
                progress.event(ProgressEvent::LayerDone {
                    digest: &layer.digest,
                });
                crate::fault::point("pull-layer");
                Ok::<(), ImageError>(())
            }
        });
    futures_util::future::try_join_all(jobs).await?;

    store.put_blob(&manifest_bytes, Some(&digest))?;
    store.set_ref(reference, &digest)?;
    progress.event(ProgressEvent::Done {
        reference: &canonical,
        digest: &digest,
    });
    Ok(store.image_by_digest(&canonical, &digest)?)
}

/// The first host (mirrors first) that answers with a manifest for `r`:
/// its client, the manifest's bytes and digest, and the parsed manifest.
async fn resolve_any(
    globals: &Globals,
    r: &RegistryRef,
    canonical: &str,
    platform: &Platform,
) -> Result<(Client, Vec<u8>, String, Manifest), ImageError> {
    let canonical = canonical.to_string();
    let endpoints = hosts::plan_endpoints(globals, r);
    let mut errors = Vec::new();
    let mut resolved = None;
    for ep in &endpoints {
        let attempt = async {
            let client =
                Client::connect(globals, ep, &r.registry, &r.repository, &canonical).await?;
            let (bytes, digest, m) = resolve(&client, r, &canonical, platform).await?;
            Ok::<_, ImageError>((client, bytes, digest, m))
        }
        .await;
        match attempt {
            Ok(x) => {
                // Worth a warning: a broken mirror otherwise goes unnoticed
                // for as long as the next host answers. (When every host
                // fails, the error lists them all instead.)
                for e in &errors {
                    tracing::warn!("{e}; used {} instead", ep.host);
                }
                resolved = Some(x);
                break;
            }
            Err(e) => {
                tracing::debug!(host = %ep.host, error = %e, "registry host failed");
                errors.push(e);
            }
        }
    }
    let Some(found) = resolved else {
        return Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            ImageError::AllFailed {
                reference: canonical,
                errors: errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        });
    };
    Ok(found)
}

/// The manifest digest `reference` (a registry reference) has now, for this
/// host's platform, without pulling anything (`berth auto-update --dry-run`).
pub fn remote_digest(globals: &Globals, reference: &Reference) -> Result<String, ImageError> {
    let Some(r) = reference.as_registry() else {
        return Err(ImageError::NotRegistry {
            reference: reference.canonical(),
        });
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::Task(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(async {
        resolve_any(globals, r, &reference.canonical(), &Platform::host())
            .await
            .map(|(_, _, digest, _)| digest)
    });
    drop(rt);
    result
}

/// Fetch the manifest for `r`, following an index to `platform`'s manifest.
/// Returns the manifest bytes, their digest and the parsed manifest.
async fn resolve(
    client: &Client,
    r: &RegistryRef,
    canonical: &str,
    platform: &Platform,
) -> Result<(Vec<u8>, String, Manifest), ImageError> {
    let mf_err = |source| ImageError::Manifest {
        reference: canonical.to_string(),
        source,
    };
    let (bytes, ct, digest) = client.manifest(r.manifest_reference()).await?;
    if let Some(pinned) = &r.digest {
        if &digest != pinned {
            return Err(ImageError::Digest {
                reference: canonical.to_string(),
                what: "manifest".to_string(),
                expected: pinned.clone(),
                actual: digest,
            });
        }
    }
    match manifest::parse(&bytes, &ct).map_err(mf_err)? {
        Fetched::Manifest(m) => Ok((bytes, digest, m)),
        Fetched::Index(index) => {
            let d = manifest::select_platform(&index, platform).map_err(mf_err)?;
            let (bytes, ct, got) = client.manifest(&d.digest).await?;
            if got != d.digest {
                return Err(ImageError::Digest {
                    reference: canonical.to_string(),
                    what: format!("manifest for platform '{platform}'"),
                    expected: d.digest.clone(),
                    actual: got,
                });
            }
            match manifest::parse(&bytes, &ct).map_err(mf_err)? {
                Fetched::Manifest(m) => Ok((bytes, got, m)),
                Fetched::Index(_) => Err(ImageError::Protocol {
                    reference: canonical.to_string(),
                    host: client.host.clone(),
                    reason: format!(
                        "index entry '{}' is another index; nested indexes are not supported",
                        d.digest
                    ),
                }),
            }
        }
    }
}
