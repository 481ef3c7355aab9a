//! image: where images come from. References (pure), manifests (pure), the
//! registry client, offline sources (OCI layouts and archives, `docker save`
//! archives, rootfs tarballs) and the pull that ties them to the store.
//!
//! Owns: fetching and verifying content. Must not: lay out files on disk
//! itself (the store does) or start containers.
//!
//! Threads: [`pull`] runs a private tokio runtime for registry pulls and drops
//! it — joining every worker and blocking thread — before it returns, so a
//! caller that must clone(2) single-threaded can call it first.

pub mod archive;
pub mod auth;
pub mod commit;
pub mod hosts;
pub mod offline;
pub mod pull;
pub mod push;
pub mod registry;

// References and manifests live below the store (`crate::distribution`); the
// old paths stay for callers of the image API.
pub use crate::distribution::{manifest, reference};

use std::path::PathBuf;

pub use manifest::{Healthcheck, Platform};
pub use offline::import;
pub use pull::{pull, pull_async, pull_with, PullOptions};
pub use reference::Reference;

use crate::store::StoreError;

/// Why an image could not be fetched. Every variant names the reference and,
/// for registries, the host that was asked.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("'{reference}'")]
    InStore {
        reference: String,
        #[source]
        source: StoreError,
    },
    #[error("'{reference}'")]
    Manifest {
        reference: String,
        #[source]
        source: manifest::ManifestError,
    },
    #[error("'{reference}'")]
    Hosts {
        reference: String,
        #[source]
        source: hosts::HostsError,
    },
    #[error("bad CA certificate '{path}': {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot reach registry '{host}' for '{reference}'")]
    Connect {
        reference: String,
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("transfer of {what} of '{reference}' from '{host}' failed")]
    Transfer {
        reference: String,
        host: String,
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} of '{reference}' from '{host}' ended after {actual} of {expected} bytes")]
    Truncated {
        reference: String,
        host: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("registry '{host}' refused '{reference}': authentication required (401); add credentials for '{host}' to the auth file")]
    Unauthorized { reference: String, host: String },
    #[error("registry '{host}' denied access to '{reference}' (403)")]
    Denied { reference: String, host: String },
    #[error("registry '{host}' has no {what} for '{reference}' (404)")]
    NotFound {
        reference: String,
        host: String,
        what: String,
    },
    #[error("registry '{host}' answered '{status}' for {what} of '{reference}'")]
    Status {
        reference: String,
        host: String,
        what: String,
        status: String,
    },
    #[error(
        "{what} of '{reference}' from '{host}' is {size} bytes, more than the {limit}-byte limit"
    )]
    TooLarge {
        reference: String,
        host: String,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("registry '{host}' for '{reference}': {reason}")]
    Protocol {
        reference: String,
        host: String,
        reason: String,
    },
    #[error("digest mismatch for {what} of '{reference}': expected '{expected}', got '{actual}'")]
    Digest {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("cannot read or write '{path}'")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("'{reference}': {reason}")]
    Offline { reference: String, reason: String },
    #[error("'{reference}' is a local source; nothing to pull from a registry")]
    NotRegistry { reference: String },
    #[error("background task failed: {0}")]
    Task(String),
    #[error("all registry hosts failed for '{reference}': {errors}")]
    AllFailed { reference: String, errors: String },
}

/// What a pull reports as it goes. Digests are layer blob digests.
#[derive(Debug, Clone, Copy)]
pub enum ProgressEvent<'a> {
    /// The manifest is known: `layers` layers, `total` compressed bytes.
    Resolved {
        reference: &'a str,
        digest: &'a str,
        layers: usize,
        total: u64,
    },
    /// A layer needs fetching.
    LayerStart { digest: &'a str, size: u64 },
    /// Bytes of a layer downloaded so far.
    LayerBytes {
        digest: &'a str,
        done: u64,
        total: u64,
    },
    /// The layer is already unpacked in the store.
    LayerExists { digest: &'a str },
    /// The layer is downloaded and unpacking starts.
    LayerUnpacking { digest: &'a str },
    /// The layer is downloaded, verified and unpacked.
    LayerDone { digest: &'a str },
    /// A transfer failed and is tried again.
    Retry {
        what: &'a str,
        attempt: u32,
        error: &'a str,
    },
    /// Everything is stored and the ref written.
    Done { reference: &'a str, digest: &'a str },
}

/// Receives [`ProgressEvent`]s; called from several threads at once.
pub trait Progress: Send + Sync {
    fn event(&self, event: ProgressEvent<'_>);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: ProgressEvent<'_>) {}
}

/// Progress for a pull under systemd: `STATUS=` lines and
/// `EXTEND_TIMEOUT_USEC=` so a long pull never trips the start timeout
/// (sd_notify(3)). Sends at most one status per second, plus each layer's end.
pub struct NotifyProgress {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    done: std::sync::atomic::AtomicU64,
    total: std::sync::atomic::AtomicU64,
    bytes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Default for NotifyProgress {
    fn default() -> Self {
        NotifyProgress {
            last: std::sync::Mutex::new(None),
            done: std::sync::atomic::AtomicU64::new(0),
            total: std::sync::atomic::AtomicU64::new(0),
            bytes: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl NotifyProgress {
    /// How much more time each notification asks for.
    pub const EXTEND_USEC: u64 = 30_000_000;

    fn send(&self, status: &str, force: bool) {
        let now = std::time::Instant::now();
        if let Ok(mut last) = self.last.lock() {
            if !force && last.is_some_and(|t| now.duration_since(t).as_millis() < 1000) {
                return;
            }
            *last = Some(now);
        }
        crate::systemd::notify(&format!(
            "STATUS={status}\nEXTEND_TIMEOUT_USEC={}",
            Self::EXTEND_USEC
        ));
    }
}

impl Progress for NotifyProgress {
    fn event(&self, event: ProgressEvent<'_>) {
        use std::sync::atomic::Ordering;
        match event {
            ProgressEvent::Resolved {
                reference,
                total,
                layers,
                ..
            } => {
                self.total.store(total, Ordering::Relaxed);
                self.send(
                    &format!("pulling {reference}: {layers} layers, {total} bytes"),
                    true,
                );
            }
            ProgressEvent::LayerBytes { digest, done, .. } => {
                let sum = self.bytes.lock().map_or(0, |mut m| {
                    m.insert(digest.to_string(), done);
                    m.values().sum()
                });
                self.done.store(sum, Ordering::Relaxed);
                let total = self.total.load(Ordering::Relaxed).max(1);
                self.send(
                    &format!(
                        "pulling: {} of {} MB ({}%)",
                        sum >> 20,
                        total >> 20,
                        sum * 100 / total
                    ),
                    false,
                );
            }
            ProgressEvent::LayerUnpacking { digest } => {
                self.send(&format!("unpacking layer {}", short(digest)), false)
            }
            ProgressEvent::LayerDone { digest } => {
                self.send(&format!("layer {} ready", short(digest)), true)
            }
            ProgressEvent::Retry {
                what,
                attempt,
                error,
            } => self.send(
                &format!("retrying {what} (attempt {attempt}): {error}"),
                true,
            ),
            ProgressEvent::Done { reference, .. } => {
                self.send(&format!("pulled {reference}"), true)
            }
            ProgressEvent::LayerStart { .. } | ProgressEvent::LayerExists { .. } => {}
        }
    }
}

/// The first 12 hex digits of a digest, as `docker images` shows them.
pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let end = hex.char_indices().nth(12).map_or(hex.len(), |(i, _)| i);
    &hex[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_digests() {
        assert_eq!(
            super::short(&format!("sha256:{}", "ab".repeat(32))),
            "abababababab"
        );
        assert_eq!(super::short("sha256:ab"), "ab");
        assert_eq!(super::short("ééééééééééééééé"), "éééééééééééé");
    }
}
