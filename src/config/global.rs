//! Global settings: `/etc/berth/berth.toml` (every key optional).
//!
//! Pure: reads one file, no other side effects. The config module's diagnostics
//! (file:line:column) apply here too.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the global settings file lives, relative to the host root.
pub const GLOBAL_FILE: &str = "etc/berth/berth.toml";

/// Validated global settings with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Globals {
    /// Image store and named volumes (`[storage] root`), default `/var/lib/berth`.
    pub storage_root: PathBuf,
    /// Most file data one layer may unpack (`[storage] max_layer_size`);
    /// None: 90% of the store's free space when the layer starts.
    pub max_layer_size: Option<u64>,
    /// Most members one layer may have (`[storage] max_layer_entries`);
    /// None: 90% of the store's free inodes.
    pub max_layer_entries: Option<u64>,
    /// Subnet the `default` network is carved from (`[network] default_subnet`).
    pub default_subnet: String,
    /// Per-registry settings (`[[registry]]`).
    pub registries: Vec<Registry>,
    /// Credentials file in auth.json / docker config.json format (`[auth] file`).
    pub auth_file: Option<PathBuf>,
    /// CA directory root: `certs.d/HOST[:PORT]/*.crt` (`/etc/berth/certs.d`).
    pub certs_dir: PathBuf,
}

/// Settings of one registry host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// `host[:port]` as written in image references.
    pub host: String,
    /// Plain http allowed; never the default.
    #[serde(default)]
    pub insecure: bool,
    /// Hosts tried before `host`, in order.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Hosts (`host` or `host:port`) other than `host` that may receive its
    /// credentials as a Bearer token realm (an auth service of its own).
    #[serde(default)]
    pub auth_realms: Vec<String>,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            storage_root: PathBuf::from("/var/lib/berth"),
            max_layer_size: None,
            max_layer_entries: None,
            default_subnet: "10.89.0.0/16".to_string(),
            registries: Vec::new(),
            auth_file: None,
            certs_dir: PathBuf::from("/etc/berth/certs.d"),
        }
    }
}

impl Globals {
    /// The settings for `host`, if `[[registry]]` names it.
    pub fn registry(&self, host: &str) -> Option<&Registry> {
        self.registries.iter().find(|r| r.host == host)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobals {
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    registry: Vec<Registry>,
    #[serde(default)]
    auth: RawAuth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    root: Option<PathBuf>,
    max_layer_size: Option<RawSize>,
    max_layer_entries: Option<u64>,
}

/// A size as bytes (`1048576`) or with a unit (`"10G"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    default_subnet: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    file: Option<PathBuf>,
}

/// Why the global settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GlobalsError {
    #[error("cannot read '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// Parse global settings from text; `path` is only used in messages.
pub fn parse_globals(text: &str, path: &Path) -> Result<Globals, GlobalsError> {
    let raw: RawGlobals = toml::from_str(text).map_err(|e| {
        // One line, compiler style (`FILE:LINE:COLUMN: message`), like
        // definition errors; toml's own Display draws a multi-line snippet.
        let message = match e.span() {
            Some(span) => {
                let (line, column) = super::diag::line_column(text, span.start);
                format!("{line}:{column}: {}", e.message().trim_end())
            }
            None => e.message().trim_end().to_string(),
        };
        GlobalsError::Parse {
            path: path.to_path_buf(),
            message,
        }
    })?;
    let mut g = Globals::default();
    if let Some(root) = raw.storage.root {
        if !root.is_absolute() {
            return Err(GlobalsError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    " [storage] root: relative path \"{}\": expected an absolute path",
                    root.display()
                ),
            });
        }
        g.storage_root = root;
    }
    g.max_layer_size = match raw.storage.max_layer_size {
        None => None,
        Some(RawSize::Bytes(n)) => Some(n),
        Some(RawSize::Text(t)) => {
            Some(
                super::values::parse_size(&t).map_err(|e| GlobalsError::Parse {
                    path: path.to_path_buf(),
                    message: format!(" [storage] max_layer_size: \"{t}\": {e}"),
                })?,
            )
        }
    };
    g.max_layer_entries = raw.storage.max_layer_entries;
    if let Some(subnet) = raw.network.default_subnet {
        g.default_subnet = subnet;
    }
    g.registries = raw.registry;
    g.auth_file = raw.auth.file;
    Ok(g)
}

/// Load `ROOT/etc/berth/berth.toml`; a missing file means all defaults.
/// `root` is `/` on a host and a fixture directory in tests.
pub fn load_globals(root: &Path) -> Result<Globals, GlobalsError> {
    let path = root.join(GLOBAL_FILE);
    let mut g = match std::fs::read_to_string(&path) {
        Ok(text) => parse_globals(&text, &path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Globals::default(),
        Err(source) => return Err(GlobalsError::Read { path, source }),
    };
    g.certs_dir = root.join("etc/berth/certs.d");
    // DESIGN's default: the file `berth login` writes is the one pulls read.
    if g.auth_file.is_none() {
        g.auth_file = Some(root.join("etc/berth/auth.json"));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_limits_parse_with_units() {
        let g = parse_globals(
            "[storage]\nmax_layer_size = \"20G\"\nmax_layer_entries = 1000\n",
            Path::new("b.toml"),
        )
        .unwrap();
        assert_eq!(g.max_layer_size, Some(20 << 30));
        assert_eq!(g.max_layer_entries, Some(1000));
        let g = parse_globals("[storage]\nmax_layer_size = 4096\n", Path::new("b.toml")).unwrap();
        assert_eq!(g.max_layer_size, Some(4096));
        let e = parse_globals(
            "[storage]\nmax_layer_size = \"lots\"\n",
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_layer_size"), "{e}");
        assert_eq!(Globals::default().max_layer_size, None);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let g = parse_globals("", Path::new("berth.toml")).unwrap();
        assert_eq!(g.storage_root, PathBuf::from("/var/lib/berth"));
        assert_eq!(g.default_subnet, "10.89.0.0/16");
    }

    #[test]
    fn registries_and_auth() {
        let g = parse_globals(
            "[storage]\nroot = \"/srv/berth\"\n[[registry]]\nhost = \"127.0.0.1:5000\"\ninsecure = true\nmirrors = [\"m:5000\"]\n[auth]\nfile = \"/etc/berth/auth.json\"\n",
            Path::new("berth.toml"),
        )
        .unwrap();
        assert_eq!(g.storage_root, PathBuf::from("/srv/berth"));
        let r = g.registry("127.0.0.1:5000").unwrap();
        assert!(r.insecure);
        assert_eq!(r.mirrors, vec!["m:5000".to_string()]);
        assert_eq!(g.auth_file, Some(PathBuf::from("/etc/berth/auth.json")));
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = parse_globals("[storage]\nrot = \"/x\"\n", Path::new("b.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("b.toml:2:1: unknown field `rot`"),
            "{err}"
        );
    }
}
