//! Manifests, indexes and image configs as bytes → values: media types (OCI and
//! Docker schema 2), platform selection, and the parts of the image config the
//! planner needs (including Docker's `Healthcheck`, which oci-spec lacks).
//!
//! Pure: no I/O. Callers enforce size limits before handing bytes in.

use serde::{Deserialize, Serialize};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header for manifest requests, most preferred first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest, index or config berth reads (containerd uses 4 MiB too).
pub const MAX_METADATA_BYTES: u64 = 4 * 1024 * 1024;

/// Why manifest bytes were not usable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("docker schema 1 manifests are not supported (media type '{media_type}'); push the image again with a current tool to get schema 2 or OCI")]
    Schema1 { media_type: String },
    #[error("unknown manifest media type '{media_type}' (expected an OCI or Docker schema 2 manifest or index)")]
    UnknownMediaType { media_type: String },
    #[error("unsupported layer media type '{media_type}' for layer '{digest}'")]
    UnknownLayerType { media_type: String, digest: String },
    #[error("malformed {what}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("no image for platform '{wanted}' in the index (available: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error(
        "invalid digest '{digest}' in {what} (expected 'sha256:' and 64 lowercase hex digits)"
    )]
    BadDigest { digest: String, what: &'static str },
    #[error("image config lists {diff_ids} diff ids but the manifest has {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("the manifest's layer sizes add up to more than 2^64 bytes")]
    SizeOverflow,
}

/// The sum of a manifest's layer sizes, in checked arithmetic: the sizes
/// are the image author's, and a wrapped sum would pass any bound.
pub fn layers_size(manifest: &Manifest) -> Result<u64, ManifestError> {
    manifest
        .layers
        .iter()
        .try_fold(0u64, |a, l| a.checked_add(l.size))
        .ok_or(ManifestError::SizeOverflow)
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An image's platform (`os/architecture[/variant]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform berth runs on, with Go's architecture names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let architecture = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest endpoint returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Manifest(Manifest),
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Parse manifest bytes. `content_type` is the HTTP header (may be empty or
/// generic); the document's own `mediaType` wins when present.
pub fn parse(bytes: &[u8], content_type: &str) -> Result<Fetched, ManifestError> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "manifest",
        source,
    })?;
    let header = content_type.split(';').next().unwrap_or("").trim();
    let media_type = if !probe.media_type.is_empty() {
        probe.media_type.clone()
    } else if header.starts_with("application/vnd.") {
        header.to_string()
    } else if probe.schema_version == 1 {
        DOCKER_SCHEMA1.to_string()
    } else if probe.manifests.is_some() {
        OCI_INDEX.to_string()
    } else {
        OCI_MANIFEST.to_string()
    };
    match media_type.as_str() {
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ManifestError::Schema1 { media_type }),
        _ if probe.schema_version == 1 => Err(ManifestError::Schema1 { media_type }),
        OCI_INDEX | DOCKER_LIST => {
            let index: Index =
                serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                    what: "image index",
                    source,
                })?;
            for d in &index.manifests {
                check_descriptor(d, "image index")?;
            }
            Ok(Fetched::Index(index))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: Manifest =
                serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                    what: "image manifest",
                    source,
                })?;
            check_descriptor(&m.config, "image manifest")?;
            for l in &m.layers {
                check_descriptor(l, "image manifest")?;
                layer_is_supported(l)?;
            }
            Ok(Fetched::Manifest(m))
        }
        _ => Err(ManifestError::UnknownMediaType { media_type }),
    }
}

fn check_descriptor(d: &Descriptor, what: &'static str) -> Result<(), ManifestError> {
    if crate::distribution::reference::check_digest(&d.digest) {
        Ok(())
    } else {
        Err(ManifestError::BadDigest {
            digest: d.digest.clone(),
            what,
        })
    }
}

/// Layers berth can unpack (compression is sniffed from the bytes anyway).
fn layer_is_supported(l: &Descriptor) -> Result<(), ManifestError> {
    match l.media_type.as_str() {
        OCI_LAYER_TAR | OCI_LAYER_GZIP | OCI_LAYER_ZSTD | DOCKER_LAYER_GZIP | DOCKER_LAYER_TAR
        | "" => Ok(()),
        _ => Err(ManifestError::UnknownLayerType {
            media_type: l.media_type.clone(),
            digest: l.digest.clone(),
        }),
    }
}

/// Pick the manifest for `want` from an index: os and architecture must match;
/// a variant must match when both sides name one (arm64 without a variant is v8).
pub fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let norm = |p: &Platform| -> Option<String> {
        match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        }
    };
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | ""))
        .collect();
    let exact = candidates.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == want.os && p.architecture == want.architecture && norm(p) == norm(want)
        })
    });
    let loose = || {
        candidates.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == want.os
                    && p.architecture == want.architecture
                    && (p.variant.is_none() || want.variant.is_none())
            })
        })
    };
    if let Some(d) = exact.or_else(loose) {
        return Ok(d);
    }
    // An index of one manifest without platform data (as many single-image OCI
    // layouts are) means "the image".
    if candidates.len() == 1 && candidates[0].platform.is_none() {
        return Ok(candidates[0]);
    }
    Err(ManifestError::NoPlatform {
        wanted: want.to_string(),
        available: index
            .manifests
            .iter()
            .map(|d| {
                d.platform
                    .as_ref()
                    .map_or_else(|| "unknown".to_string(), |p| p.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Docker's healthcheck from the image config (`config.Healthcheck`); durations
/// are nanoseconds in the JSON, as Docker writes them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["CMD", args…]`, `["CMD-SHELL", "cmd"]` or `["NONE"]`.
    #[serde(rename = "Test", default)]
    pub test: Vec<String>,
    #[serde(rename = "Interval", default)]
    pub interval_ns: u64,
    #[serde(rename = "Timeout", default)]
    pub timeout_ns: u64,
    #[serde(rename = "StartPeriod", default)]
    pub start_period_ns: u64,
    #[serde(rename = "Retries", default)]
    pub retries: u32,
    /// Docker 25's `--start-interval`; absent in older images.
    #[serde(rename = "StartInterval", default, skip_serializing_if = "is_zero")]
    pub start_interval_ns: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Extract the healthcheck from raw config JSON; absent or `NONE` gives None.
pub fn healthcheck(config_json: &[u8]) -> Option<Healthcheck> {
    let v: serde_json::Value = serde_json::from_slice(config_json).ok()?;
    let h = v.get("config")?.get("Healthcheck")?;
    let hc: Healthcheck = serde_json::from_value(h.clone()).ok()?;
    if hc.test.is_empty() || hc.test[0] == "NONE" {
        return None;
    }
    Some(hc)
}

/// The config's `rootfs.diff_ids`, checked against the manifest's layer count.
pub fn diff_ids(
    config: &oci_spec::image::ImageConfiguration,
    manifest: &Manifest,
) -> Result<Vec<String>, ManifestError> {
    let ids = config.rootfs().diff_ids().clone();
    if ids.len() != manifest.layers.len() {
        return Err(ManifestError::LayerCount {
            diff_ids: ids.len(),
            layers: manifest.layers.len(),
        });
    }
    for id in &ids {
        if !crate::distribution::reference::check_digest(id) {
            return Err(ManifestError::BadDigest {
                digest: id.clone(),
                what: "image config diff_ids",
            });
        }
    }
    Ok(ids)
}

/// Parse an image config with oci-spec.
pub fn parse_config(bytes: &[u8]) -> Result<oci_spec::image::ImageConfiguration, ManifestError> {
    serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "image config",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: char) -> String {
        format!("sha256:{}", n.to_string().repeat(64))
    }

    #[test]
    fn schema1_is_refused_clearly() {
        let e = parse(
            br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#,
            "application/json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("schema 1"), "{e}");
        let e = parse(br#"{"schemaVersion":1}"#, DOCKER_SCHEMA1_SIGNED)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema 1"), "{e}");
    }

    #[test]
    fn unknown_media_types_are_named() {
        let e = parse(
            br#"{"schemaVersion":2,"mediaType":"application/x-foo"}"#,
            "",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'application/x-foo'"), "{e}");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1}},"layers":[{{"mediaType":"application/x-weird","digest":"{}","size":1}}]}}"#,
            d('a'),
            d('b')
        );
        let e = parse(m.as_bytes(), "").unwrap_err().to_string();
        assert!(
            e.contains("application/x-weird") && e.contains(&d('b')),
            "{e}"
        );
    }

    #[test]
    fn docker_and_oci_manifests_parse() {
        for mt in [OCI_MANIFEST, DOCKER_MANIFEST] {
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{}","size":5}}]}}"#,
                d('a'),
                d('b')
            );
            match parse(m.as_bytes(), "").unwrap() {
                Fetched::Manifest(m) => assert_eq!(m.layers[0].size, 5),
                other => panic!("{other:?}"),
            }
        }
        // No mediaType in the body: the header decides.
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1}}]}}"#,
            d('c')
        );
        assert!(matches!(
            parse(i.as_bytes(), DOCKER_LIST).unwrap(),
            Fetched::Index(_)
        ));
        assert!(matches!(
            parse(i.as_bytes(), "").unwrap(),
            Fetched::Index(_)
        ));
    }

    #[test]
    fn bad_digest_in_manifest_is_refused() {
        let m =
            r#"{"schemaVersion":2,"config":{"digest":"sha256:../../etc","size":1},"layers":[]}"#;
        let e = parse(m.as_bytes(), OCI_MANIFEST).unwrap_err().to_string();
        assert!(e.contains("sha256:../../etc"), "{e}");
    }

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> Index {
        Index {
            schema_version: 2,
            media_type: OCI_INDEX.into(),
            manifests: platforms
                .iter()
                .enumerate()
                .map(|(i, (os, arch, v))| Descriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: d(char::from_digit(i as u32, 10).unwrap()),
                    size: 1,
                    platform: Some(Platform {
                        os: os.to_string(),
                        architecture: arch.to_string(),
                        variant: v.map(str::to_string),
                    }),
                    annotations: None,
                })
                .collect(),
        }
    }

    #[test]
    fn platform_selection() {
        let idx = index(&[
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", None),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
        ]);
        let pick = |s: &str| {
            select_platform(&idx, &Platform::parse(s).unwrap())
                .unwrap()
                .digest
                .clone()
        };
        assert_eq!(pick("linux/amd64"), d('1'));
        assert_eq!(pick("linux/arm64"), d('0'));
        assert_eq!(pick("linux/arm64/v8"), d('0'));
        assert_eq!(pick("linux/arm/v7"), d('3'));
        assert_eq!(pick("linux/arm/v6"), d('2'));
        let e = select_platform(&idx, &Platform::parse("linux/s390x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/arm64/v8"),
            "{e}"
        );
        assert!(Platform::parse("linux").is_none());
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn healthcheck_from_raw_config() {
        let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
            "config":{"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3}}}"#;
        let h = healthcheck(cfg).unwrap();
        assert_eq!(h.test, vec!["CMD-SHELL", "true"]);
        assert_eq!(h.interval_ns, 30_000_000_000);
        assert_eq!(h.retries, 3);
        let none = br#"{"config":{"Healthcheck":{"Test":["NONE"]}}}"#;
        assert!(healthcheck(none).is_none());
        assert!(healthcheck(br#"{"config":{}}"#).is_none());
        let c = parse_config(cfg).unwrap();
        assert_eq!(c.architecture().to_string(), "amd64");
    }
}
