//! Per-registry settings taken from the global settings: which hosts to try in
//! which order (mirrors first), whether plain http is allowed, credentials from
//! the auth file, CA certificates from `certs.d/HOST[:PORT]/*.crt`, and a
//! client certificate from `certs.d/HOST[:PORT]/NAME.cert` + `NAME.key`.
//!
//! Pure apart from reading the auth file and certificate files; no network.

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::config::Globals;
use crate::distribution::reference::{RegistryRef, DOCKER_HUB, DOCKER_HUB_API};

/// One host to try for a registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain http (and unverified TLS) allowed: `insecure = true` for this host.
    pub insecure: bool,
    /// Whether this is a mirror rather than the registry itself.
    pub mirror: bool,
}

/// Hosts to try for `r`, in order: the registry's mirrors, then the registry.
pub fn plan_endpoints(globals: &Globals, r: &RegistryRef) -> Vec<Endpoint> {
    let settings = globals.registry(&r.registry).or_else(|| {
        // Docker Hub may be configured under its API name too.
        (r.registry == DOCKER_HUB)
            .then(|| globals.registry(DOCKER_HUB_API))
            .flatten()
    });
    let insecure_of = |host: &str| globals.registry(host).is_some_and(|s| s.insecure);
    let mut out: Vec<Endpoint> = settings
        .map(|s| {
            s.mirrors
                .iter()
                .map(|m| Endpoint {
                    host: m.clone(),
                    insecure: insecure_of(m),
                    mirror: true,
                })
                .collect()
        })
        .unwrap_or_default();
    out.push(Endpoint {
        host: r.api_host().to_string(),
        insecure: settings.is_some_and(|s| s.insecure),
        mirror: false,
    });
    out
}

/// Why credentials or certificates could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("cannot read auth file '{path}'")]
    AuthRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth file '{path}' is not docker config.json / auth.json: {reason}")]
    AuthParse { path: PathBuf, reason: String },
    #[error("cannot read CA certificate '{path}'")]
    Cert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("client certificate '{cert}' has no key '{key}' beside it (certs.d pairs NAME.cert with NAME.key)")]
    ClientKeyMissing { cert: PathBuf, key: PathBuf },
    #[error("client key '{key}' has no certificate '{cert}' beside it (certs.d pairs NAME.cert with NAME.key)")]
    ClientCertMissing { key: PathBuf, cert: PathBuf },
    #[error("cannot read client certificate or key '{path}'")]
    ClientRead {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// User name and password for `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Credentials for `registry` from auth.json text (`auths.HOST.auth` =
/// base64 `user:pass`). Docker Hub is also found under its legacy keys.
pub fn credentials_from(
    text: &str,
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, HostsError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| HostsError::AuthParse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let mut keys = vec![registry.to_string()];
    if registry == DOCKER_HUB {
        keys.extend(
            [
                "index.docker.io",
                "https://index.docker.io/v1/",
                DOCKER_HUB_API,
            ]
            .map(String::from),
        );
    }
    for key in &keys {
        // Keys may carry a scheme (docker login writes https://host).
        let entry = auths.get(key).or_else(|| {
            auths.iter().find_map(|(k, v)| {
                let bare = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                (bare == key).then_some(v)
            })
        });
        let Some(entry) = entry else { continue };
        let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else {
            continue;
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| HostsError::AuthParse {
                path: path.to_path_buf(),
                reason: format!("auths.\"{key}\".auth is not base64: {e}"),
            })?;
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        let Some((u, p)) = decoded.split_once(':') else {
            return Err(HostsError::AuthParse {
                path: path.to_path_buf(),
                reason: format!("auths.\"{key}\".auth must encode 'user:password'"),
            });
        };
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    Ok(None)
}

/// Credentials for `registry` from the configured auth file, if any.
pub fn credentials(globals: &Globals, registry: &str) -> Result<Option<Credentials>, HostsError> {
    let Some(path) = &globals.auth_file else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(HostsError::AuthRead {
                path: path.clone(),
                source,
            })
        }
    };
    credentials_from(&text, path, registry)
}

/// A client certificate and its key from `certs.d/HOST/NAME.cert` and
/// `NAME.key` (Docker's convention), for registries that ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate then the key, PEM, as TLS libraries take them.
    pub pem: Vec<u8>,
}

/// The client identity for `host`: the first `NAME.cert`/`NAME.key` pair by
/// name. A certificate without its key (or the reverse) is an error rather
/// than a TLS failure later that would not say why.
pub fn client_identity(
    globals: &Globals,
    host: &str,
) -> Result<Option<ClientIdentity>, HostsError> {
    let dir = globals.certs_dir.join(host);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    files.sort();
    let has = |p: &PathBuf, ext: &str| p.extension().is_some_and(|x| x == ext);
    for key in files.iter().filter(|p| has(p, "key")) {
        let cert = key.with_extension("cert");
        if !files.contains(&cert) {
            return Err(HostsError::ClientCertMissing {
                key: key.clone(),
                cert,
            });
        }
    }
    let Some(cert) = files.iter().find(|p| has(p, "cert")) else {
        return Ok(None);
    };
    let key = cert.with_extension("key");
    if !files.contains(&key) {
        return Err(HostsError::ClientKeyMissing {
            cert: cert.clone(),
            key,
        });
    }
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| HostsError::ClientRead {
            path: p.clone(),
            source,
        })
    };
    let mut pem = read(cert)?;
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend(read(&key)?);
    Ok(Some(ClientIdentity {
        cert: cert.clone(),
        key,
        pem,
    }))
}

/// PEM bytes of every `certs.d/HOST/*.crt` for `host`, sorted by name.
pub fn ca_certificates(
    globals: &Globals,
    host: &str,
) -> Result<Vec<(PathBuf, Vec<u8>)>, HostsError> {
    let dir = globals.certs_dir.join(host);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            std::fs::read(&p)
                .map(|b| (p.clone(), b))
                .map_err(|source| HostsError::Cert { path: p, source })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Registry;
    use crate::distribution::reference::Reference;

    fn rr(s: &str) -> RegistryRef {
        Reference::parse(s).unwrap().as_registry().unwrap().clone()
    }

    #[test]
    fn mirrors_first_and_insecure_only_when_set() {
        let mut g = Globals::default();
        g.registries.push(Registry {
            host: "127.0.0.1:5000".into(),
            insecure: true,
            mirrors: vec!["m1:5000".into(), "m2".into()],
            auth_realms: vec![],
        });
        g.registries.push(Registry {
            host: "m2".into(),
            insecure: true,
            mirrors: vec![],
            auth_realms: vec![],
        });
        let e = plan_endpoints(&g, &rr("127.0.0.1:5000/x:1"));
        let hosts: Vec<_> = e
            .iter()
            .map(|e| (e.host.as_str(), e.insecure, e.mirror))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("m1:5000", false, true),
                ("m2", true, true),
                ("127.0.0.1:5000", true, false)
            ]
        );
        let e = plan_endpoints(&g, &rr("nginx"));
        assert_eq!(
            e,
            vec![Endpoint {
                host: DOCKER_HUB_API.into(),
                insecure: false,
                mirror: false
            }]
        );
    }

    #[test]
    fn auth_file_lookup() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let text = format!(
            r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{b64}"}},"https://index.docker.io/v1/":{{"auth":"{b64}"}}}}}}"#
        );
        let p = Path::new("auth.json");
        let c = credentials_from(&text, p, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.password, "s3cr:et");
        assert!(credentials_from(&text, p, DOCKER_HUB).unwrap().is_some());
        assert!(credentials_from(&text, p, "other").unwrap().is_none());
        let e = credentials_from(r#"{"auths":{"h":{"auth":"!!"}}}"#, p, "h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("base64") && e.contains("auth.json"), "{e}");
    }

    #[test]
    fn client_identity_pairs_cert_with_key() {
        let tmp = tempfile::tempdir().unwrap();
        let g = Globals {
            certs_dir: tmp.path().to_path_buf(),
            ..Globals::default()
        };
        let dir = tmp.path().join("reg:5000");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(client_identity(&g, "reg:5000").unwrap(), None);
        assert_eq!(client_identity(&g, "other").unwrap(), None);
        std::fs::write(dir.join("ca.crt"), "CA").unwrap();
        std::fs::write(dir.join("client.cert"), "CERT").unwrap();
        let e = client_identity(&g, "reg:5000").unwrap_err().to_string();
        assert!(
            e.contains("client.cert' has no key") && e.contains("client.key"),
            "{e}"
        );
        std::fs::write(dir.join("client.key"), "KEY").unwrap();
        let id = client_identity(&g, "reg:5000").unwrap().unwrap();
        assert_eq!(id.pem, b"CERT\nKEY");
        assert_eq!(id.key, dir.join("client.key"));
        std::fs::write(dir.join("lonely.key"), "KEY").unwrap();
        let e = client_identity(&g, "reg:5000").unwrap_err().to_string();
        assert!(e.contains("lonely.key' has no certificate"), "{e}");
    }
}
