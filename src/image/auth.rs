//! `berth login` / `logout`: credentials checked against the registry (the
//! pull client's `/v2/` ping and token flow), then kept in the auth file that
//! pulls read (`[auth] file`, docker config.json format).
//!
//! The file is rewritten whole: read, the one entry changed, written to a
//! 0600 temporary beside it, fsynced and renamed over, so a reader never sees
//! half a file and other registries' entries (and other top-level keys, as
//! docker's `credsStore`) are kept.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::config::Globals;
use crate::distribution::reference::{RegistryRef, DOCKER_HUB};
use crate::image::hosts::{self, Credentials};
use crate::image::registry::Client;
use crate::image::ImageError;

/// Why the auth file could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read auth file '{path}'")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "auth file '{path}' is not docker config.json / auth.json: {reason}; fix or remove it"
    )]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write auth file '{path}'")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `registry` as the auth file keys it: no scheme, no path, Docker Hub's
/// aliases as `docker.io`.
pub fn registry_key(registry: &str) -> String {
    let bare = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let bare = bare.split('/').next().unwrap_or(bare);
    match bare {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

/// Check `creds` against `registry` (its own host, not a mirror): the `/v2/`
/// ping must succeed with them. Blocking; runs and drops a private runtime.
pub fn verify(globals: &Globals, registry: &str, creds: &Credentials) -> Result<(), ImageError> {
    let r = RegistryRef {
        registry: registry.to_string(),
        repository: String::new(),
        tag: None,
        digest: None,
    };
    let endpoint = hosts::plan_endpoints(globals, &r)
        .into_iter()
        .find(|e| !e.mirror)
        .ok_or_else(|| ImageError::Task("no endpoint for the registry".into()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::Task(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(Client::connect_as(
        globals,
        &endpoint,
        registry,
        "",
        registry,
        Some(creds.clone()),
    ));
    drop(rt);
    result.map(|_| ())
}

fn read_config(path: &Path) -> Result<serde_json::Value, AuthFileError> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Ok(serde_json::json!({})),
        Ok(t) => {
            let v: serde_json::Value =
                serde_json::from_str(&t).map_err(|e| AuthFileError::Parse {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            if !v.is_object() {
                return Err(AuthFileError::Parse {
                    path: path.to_path_buf(),
                    reason: "the top level is not an object".into(),
                });
            }
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(source) => Err(AuthFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `config` with `key`'s entry set to `creds` (pure). Keys spelled with a
/// scheme (`https://host`, as docker writes them) are replaced too, so one
/// registry has one entry.
pub fn with_entry(
    mut config: serde_json::Value,
    key: &str,
    creds: Option<&Credentials>,
) -> (serde_json::Value, bool) {
    let mut removed = false;
    if !config.get("auths").is_some_and(|a| a.is_object()) {
        config["auths"] = serde_json::json!({});
    }
    if let Some(auths) = config.get_mut("auths").and_then(|a| a.as_object_mut()) {
        let same: Vec<String> = auths
            .keys()
            .filter(|k| registry_key(k) == key)
            .cloned()
            .collect();
        for k in same {
            auths.remove(&k);
            removed = true;
        }
        if let Some(c) = creds {
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            auths.insert(key.to_string(), serde_json::json!({ "auth": auth }));
        }
    }
    (config, removed)
}

/// Write `config` to `path` atomically with mode 0600.
fn write_config(path: &Path, config: &serde_json::Value) -> Result<(), AuthFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| AuthFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "auth.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let text = serde_json::to_vec_pretty(config).map_err(|e| err(e.into()))?;
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Store `creds` for `registry` in the auth file at `path`.
pub fn save(path: &Path, registry: &str, creds: &Credentials) -> Result<(), AuthFileError> {
    let (config, _) = with_entry(read_config(path)?, &registry_key(registry), Some(creds));
    write_config(path, &config)
}

/// Remove `registry`'s entry; false when there was none (the file is then
/// left as it was).
pub fn remove(path: &Path, registry: &str) -> Result<bool, AuthFileError> {
    let (config, removed) = with_entry(read_config(path)?, &registry_key(registry), None);
    if removed {
        write_config(path, &config)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bare_hosts() {
        assert_eq!(registry_key("https://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("quay.io"), "quay.io");
    }

    #[test]
    fn entries_are_replaced_and_others_kept() {
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        let start = serde_json::json!({
            "auths": {"https://reg:5000": {"auth": "old"}, "other:1": {"auth": "keep"}},
            "credsStore": "x"
        });
        let (v, removed) = with_entry(start, "reg:5000", Some(&c));
        assert!(removed);
        assert_eq!(v["auths"]["reg:5000"]["auth"], "dTpwOnc=");
        assert!(v["auths"].get("https://reg:5000").is_none());
        assert_eq!(v["auths"]["other:1"]["auth"], "keep");
        assert_eq!(v["credsStore"], "x");
        // What pulls read back.
        let text = v.to_string();
        let got = hosts::credentials_from(&text, Path::new("a"), "reg:5000").unwrap();
        assert_eq!(got, Some(c));
        let (v, removed) = with_entry(v, "reg:5000", None);
        assert!(removed && v["auths"].get("reg:5000").is_none());
        let (_, removed) = with_entry(v, "reg:5000", None);
        assert!(!removed);
    }
}
