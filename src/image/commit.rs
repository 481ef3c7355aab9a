//! `berth commit`: a container's changes (its overlay upper dir) as one more
//! layer over its image's, with a new config and manifest under a new ref.
//! The plan (config and manifest values) is `distribution::commit`; the layer
//! is `store::layer`; this file only reads the base and stores the result.

use std::path::Path;

use crate::distribution::commit::{plan_config, plan_manifest, Change, CommitPlan};
use crate::distribution::manifest::{self, Descriptor};
use crate::distribution::reference::Reference;
use crate::store::layer::{IdMap, LayerBlob, TreeOptions};
use crate::store::{Image, Store, StoreError};

/// Why a commit failed, naming the container's image or the new reference.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the config of image '{reference}' is not JSON: {reason}")]
    BaseConfig { reference: String, reason: String },
}

/// What to commit and how to describe it.
#[derive(Debug, Clone)]
pub struct CommitOptions<'a> {
    /// The container's overlay upper dir.
    pub upper: &'a Path,
    /// The container's ID maps (its upper dir holds host IDs of them).
    pub uids: IdMap,
    pub gids: IdMap,
    /// The container's mount points (`etc/hosts`): left out when they are
    /// empty files in the upper dir.
    pub mount_points: std::collections::BTreeSet<std::path::PathBuf>,
    /// The image the container runs: reference and manifest digest.
    pub base_reference: &'a str,
    pub base_digest: &'a str,
    pub target: &'a Reference,
    pub message: Option<&'a str>,
    pub author: Option<&'a str>,
    pub changes: &'a [Change],
    /// The history entry's `created_by`.
    pub created_by: &'a str,
    /// RFC 3339 time of the commit.
    pub created: &'a str,
}

/// Write the layer, config and manifest, point `target` at it, and return
/// the new image with its layer.
pub fn commit(store: &Store, o: &CommitOptions) -> Result<(Image, LayerBlob), CommitError> {
    // Held from the layer to the ref, so a prune cannot take the new blobs.
    let _shared = store.lock_shared()?;
    let base = store.manifest(o.base_reference, o.base_digest)?;
    let raw = store.read_blob(
        &base.config.digest,
        "an image config",
        manifest::MAX_METADATA_BYTES,
    )?;
    let base_config: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|e| CommitError::BaseConfig {
            reference: o.base_reference.to_string(),
            reason: e.to_string(),
        })?;
    let layer = store.write_layer(
        o.upper,
        &TreeOptions {
            overlay_whiteouts: true,
            uids: o.uids.clone(),
            gids: o.gids.clone(),
            clamp_mtime: None,
            skip_empty_files: o.mount_points.clone(),
            as_layer_dir: false,
        },
    )?;
    let config = plan_config(
        &base_config,
        &CommitPlan {
            diff_id: &layer.diff_id,
            message: o.message,
            author: o.author,
            created: o.created,
            created_by: o.created_by,
            changes: o.changes,
        },
    );
    let config = serde_json::to_vec(&config).map_err(|e| CommitError::BaseConfig {
        reference: o.base_reference.to_string(),
        reason: e.to_string(),
    })?;
    let config_digest = store.put_blob(&config, None)?;
    let m = plan_manifest(
        &base,
        Descriptor {
            media_type: String::new(),
            digest: config_digest,
            size: config.len() as u64,
            platform: None,
            annotations: None,
        },
        &layer.digest,
        layer.size,
    );
    let bytes = serde_json::to_vec(&m).map_err(|e| CommitError::BaseConfig {
        reference: o.base_reference.to_string(),
        reason: e.to_string(),
    })?;
    let digest = store.put_blob(&bytes, None)?;
    store.set_ref(o.target, &digest)?;
    let image = store.image_by_digest(&o.target.canonical(), &digest)?;
    Ok((image, layer))
}
