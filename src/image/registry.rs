//! The registry client (OCI distribution spec, pull side) over reqwest/rustls:
//! `/v2/` ping, Bearer token and Basic auth, manifests with a size limit, and
//! blobs streamed to the store with digest verification, retries with backoff
//! and resumption by `Range`.
//!
//! Owns: HTTP. Must not: decide where content lives (the store) or what to pull
//! (`pull.rs`).

use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::config::Globals;
use crate::distribution::manifest::{MANIFEST_ACCEPT, MAX_METADATA_BYTES};
use crate::image::hosts::{self, Credentials, Endpoint};
use crate::image::{ImageError, Progress, ProgressEvent};
use crate::store::Store;

/// How often a request is tried before its error is returned.
const ATTEMPTS: u32 = 6;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i] == b' ') {
            i += 1;
        }
        let ks = i;
        while i < bytes.len() && bytes[i] != b'=' {
            i += 1;
        }
        let key = rest[ks..i].trim().to_ascii_lowercase();
        i += 1;
        let value = if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let vs = i;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            let v = rest.get(vs..i).unwrap_or("").to_string();
            i += 1;
            v
        } else {
            let vs = i.min(bytes.len());
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            rest.get(vs..i).unwrap_or("").trim().to_string()
        };
        match key.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

/// A connection to one registry host for one repository.
pub struct Client {
    http: reqwest::Client,
    base: String,
    pub host: String,
    repository: String,
    reference: String,
    creds: Option<Credentials>,
    auth: Mutex<Option<String>>,
    /// `insecure = true` for this host: an http token realm is allowed.
    insecure: bool,
    /// Other hosts the admin lets receive this registry's credentials
    /// (`[[registry]] auth_realms`).
    auth_realms: Vec<String>,
}

/// Docker Hub's token service lives on its own host; docker sends Hub
/// credentials there, and so does berth without being told.
const DOCKER_HUB_HOSTS: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];
const DOCKER_HUB_REALM: &str = "auth.docker.io";

/// Whether a Bearer challenge's realm may be asked for a token, and whether
/// the registry's credentials may go with the request. The realm is the
/// registry's to name, so a hostile or compromised registry could point it at
/// any host and scheme and collect the Basic credentials berth sends there
/// (issue 12, class 8). So: https only, unless the registry is insecure; and
/// credentials only to the registry's own host[:port], Docker Hub's token
/// host, or a host the admin listed in `auth_realms`. Without credentials
/// there is nothing to leak, and a token is asked for anonymously.
pub fn realm_policy(
    realm: &reqwest::Url,
    registry: &reqwest::Url,
    insecure: bool,
    auth_realms: &[String],
    have_creds: bool,
) -> Result<bool, String> {
    let registry_host = registry.host_str().unwrap_or("");
    let shown = match registry.port() {
        Some(p) => format!("{registry_host}:{p}"),
        None => registry_host.to_string(),
    };
    match realm.scheme() {
        "https" => {}
        "http" if insecure => {}
        other => {
            return Err(format!(
                "token realm '{realm}' is not https ({other}); berth asks for tokens over https only, unless [[registry]] insecure = true for '{shown}'"
            ))
        }
    }
    let authority = |u: &reqwest::Url| {
        (
            u.host_str().unwrap_or("").to_ascii_lowercase(),
            u.port_or_known_default(),
        )
    };
    let (host, port) = authority(realm);
    let hub = DOCKER_HUB_HOSTS.contains(&registry_host) && host == DOCKER_HUB_REALM;
    let listed = auth_realms.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == host || port.is_some_and(|p| a == format!("{host}:{p}"))
    });
    if authority(realm) == authority(registry) || hub || listed {
        return Ok(true);
    }
    if have_creds {
        return Err(format!(
            "token realm '{realm}' is on another host than the registry '{shown}'; berth sends the registry's credentials only to the registry itself or to a host listed in its [[registry]] auth_realms"
        ));
    }
    Ok(false)
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(6))
}

/// The deepest cause of a reqwest error ("connection closed before message
/// completed", "Connection reset by peer"): its own text only names the URL.
fn innermost(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

fn retryable_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT
}

impl Client {
    /// Build a client for `endpoint` and ping `/v2/` (https first; plain http
    /// only for insecure hosts), authenticating when the registry asks.
    pub async fn connect(
        globals: &Globals,
        endpoint: &Endpoint,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Client, ImageError> {
        Self::connect_as(globals, endpoint, registry, repository, reference, None).await
    }

    /// [`Client::connect`] with `creds` instead of the auth file's (`berth
    /// login` checks credentials before it writes them). An empty
    /// `repository` asks a token service for no scope, as `docker login` does.
    pub async fn connect_as(
        globals: &Globals,
        endpoint: &Endpoint,
        registry: &str,
        repository: &str,
        reference: &str,
        creds: Option<Credentials>,
    ) -> Result<Client, ImageError> {
        let host = endpoint.host.clone();
        let hosts_err = |source| ImageError::Hosts {
            reference: reference.to_string(),
            source,
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60));
        for (path, pem) in hosts::ca_certificates(globals, &host).map_err(hosts_err)? {
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ImageError::Cert {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        if let Some(id) = hosts::client_identity(globals, &host).map_err(hosts_err)? {
            let identity = reqwest::Identity::from_pem(&id.pem).map_err(|e| ImageError::Cert {
                path: id.cert.clone(),
                reason: format!("with key '{}': {e}", id.key.display()),
            })?;
            builder = builder.identity(identity);
        }
        if endpoint.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|source| ImageError::Connect {
            reference: reference.to_string(),
            host: host.clone(),
            source,
        })?;
        // Credentials are looked up under the name in the reference, and under
        // the host for mirrors.
        let given = creds;
        let creds = match given {
            Some(c) => Some(c),
            None => {
                match hosts::credentials(globals, if endpoint.mirror { &host } else { registry })
                    .map_err(hosts_err)?
                {
                    Some(c) => Some(c),
                    None if !endpoint.mirror && host != registry => {
                        hosts::credentials(globals, &host).map_err(hosts_err)?
                    }
                    None => None,
                }
            }
        };
        // Realm hosts the admin trusts with credentials: those of the host we
        // talk to (a mirror's own settings for a mirror).
        let auth_realms: Vec<String> = globals
            .registry(if endpoint.mirror { &host } else { registry })
            .or_else(|| globals.registry(&host))
            .map(|r| r.auth_realms.clone())
            .unwrap_or_default();
        let schemes: &[&str] = if endpoint.insecure {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut last_err = None;
        for scheme in schemes {
            let client = Client {
                http: http.clone(),
                base: format!("{scheme}://{host}"),
                host: host.clone(),
                repository: repository.to_string(),
                reference: reference.to_string(),
                creds: creds.clone(),
                auth: Mutex::new(None),
                insecure: endpoint.insecure,
                auth_realms: auth_realms.clone(),
            };
            match client.ping().await {
                Ok(()) => return Ok(client),
                Err(e @ ImageError::Connect { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ImageError::Protocol {
            reference: reference.to_string(),
            host,
            reason: "no scheme to try".to_string(),
        }))
    }

    async fn ping(&self) -> Result<(), ImageError> {
        let url = format!("{}/v2/", self.base);
        let resp = self.send(&url, None, None, "registry ping").await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(self.status_error(s, "registry API '/v2/'")),
        }
    }

    fn status_error(&self, status: StatusCode, what: &str) -> ImageError {
        let (reference, host, what) = (self.reference.clone(), self.host.clone(), what.to_string());
        match status {
            StatusCode::UNAUTHORIZED => ImageError::Unauthorized { reference, host },
            StatusCode::FORBIDDEN => ImageError::Denied { reference, host },
            StatusCode::NOT_FOUND => ImageError::NotFound {
                reference,
                host,
                what,
            },
            status => ImageError::Status {
                reference,
                host,
                what,
                status: status.to_string(),
            },
        }
    }

    fn connect_error(&self, source: reqwest::Error) -> ImageError {
        ImageError::Connect {
            reference: self.reference.clone(),
            host: self.host.clone(),
            source,
        }
    }

    /// GET with auth, answering one 401 challenge, and retrying 5xx and
    /// connection failures with backoff. Other statuses are returned as is.
    /// A refused connection ends it early (the ping tries the next scheme).
    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        range_from: Option<u64>,
        what: &str,
    ) -> Result<Response, ImageError> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            if let Ok(v) = HeaderValue::from_str(a) {
                headers.insert(ACCEPT, v);
            }
        }
        if let Some(from) = range_from.filter(|f| *f > 0) {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={from}-")) {
                headers.insert(RANGE, v);
            }
        }
        self.send_retrying(reqwest::Method::GET, url, headers, None, what, true)
            .await
    }

    /// The one request loop of both sides: `method` with `headers` and
    /// `body` (resent whole on a retry) and the auth header; one 401
    /// challenge answered; 5xx, 408, 429 and dropped connections retried
    /// with backoff, up to [`ATTEMPTS`] in all. With `refused_ends`, a
    /// connection nobody accepts is given up after two tries (at once for
    /// the `/v2/` ping: the scheme is wrong, or nobody listens).
    async fn send_retrying(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
        body: Option<&[u8]>,
        what: &str,
        refused_ends: bool,
    ) -> Result<Response, ImageError> {
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            let mut h = headers.clone();
            if let Some(a) = self.auth.lock().await.as_ref() {
                if let Ok(v) = HeaderValue::from_str(a) {
                    h.insert(AUTHORIZATION, v);
                }
            }
            let mut req = self.http.request(method.clone(), url).headers(h);
            if let Some(b) = body {
                req = req.body(b.to_vec());
            }
            let result = req.send().await;
            attempt += 1;
            match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    let Some(challenge) = challenge else {
                        return Ok(resp);
                    };
                    self.authenticate(challenge).await?;
                    authenticated = true;
                }
                Ok(resp) if retryable_status(resp.status()) && attempt < ATTEMPTS => {
                    self.say_retry(what, &resp.status().to_string(), attempt);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Ok(resp) => return Ok(resp),
                Err(e) if attempt < ATTEMPTS && !e.is_builder() && !e.is_redirect() => {
                    tracing::debug!(url, error = %e, "retrying {what}");
                    if refused_ends && e.is_connect() && (attempt >= 2 || url.ends_with("/v2/")) {
                        // Nobody listens, or this scheme is wrong (the ping
                        // decides between https and http): no point waiting.
                        return Err(self.connect_error(e));
                    }
                    self.say_retry(what, &innermost(&e), attempt);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(self.connect_error(e)),
            }
        }
    }

    /// A retry is said on stderr (the journal under systemd), as skopeo
    /// does (`retry.IfNecessary`'s "Attempt n/m failed"), so that a slow
    /// transfer on a flaky link is not a silent one.
    fn say_retry(&self, what: &str, why: &str, attempt: u32) {
        tracing::warn!(
            "{}: {what}: {why}; retrying in {} ms (attempt {} of {ATTEMPTS})",
            self.host,
            backoff(attempt).as_millis(),
            attempt + 1
        );
    }

    async fn authenticate(&self, challenge: Challenge) -> Result<(), ImageError> {
        let basic = self.creds.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )
        });
        match challenge {
            Challenge::Basic => {
                let Some(b) = basic else {
                    return Err(ImageError::Unauthorized {
                        reference: self.reference.clone(),
                        host: self.host.clone(),
                    });
                };
                *self.auth.lock().await = Some(b);
                Ok(())
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                // The /v2/ ping's challenge carries no scope: ask for pull on
                // our repository, as docker does.
                let scope = scope.or_else(|| {
                    (!self.repository.is_empty())
                        .then(|| format!("repository:{}:pull", self.repository))
                });
                let mut url = reqwest::Url::parse(&realm).map_err(|e| ImageError::Protocol {
                    reference: self.reference.clone(),
                    host: self.host.clone(),
                    reason: format!("token realm '{realm}' is not a URL: {e}"),
                })?;
                let base = reqwest::Url::parse(&self.base).map_err(|e| ImageError::Protocol {
                    reference: self.reference.clone(),
                    host: self.host.clone(),
                    reason: format!("registry address '{}': {e}", self.base),
                })?;
                let send_creds = realm_policy(
                    &url,
                    &base,
                    self.insecure,
                    &self.auth_realms,
                    basic.is_some(),
                )
                .map_err(|reason| ImageError::Protocol {
                    reference: self.reference.clone(),
                    host: self.host.clone(),
                    reason,
                })?;
                let basic = basic.filter(|_| send_creds);
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    // A challenge may name several scopes, space-separated
                    // (distribution's `accessSet.scopeParam`: a mount needs
                    // push here and pull on the source); the token service
                    // takes one `scope` parameter each, as docker sends them.
                    for one in scope.iter().flat_map(|s| s.split_whitespace()) {
                        q.append_pair("scope", one);
                    }
                }
                let mut req = self.http.get(url);
                if let Some(b) = &basic {
                    req = req.header(AUTHORIZATION, b);
                }
                let resp = req.send().await.map_err(|source| ImageError::Connect {
                    reference: self.reference.clone(),
                    host: realm.clone(),
                    source,
                })?;
                if resp.status() == StatusCode::UNAUTHORIZED
                    || resp.status() == StatusCode::FORBIDDEN
                {
                    return Err(ImageError::Unauthorized {
                        reference: self.reference.clone(),
                        host: self.host.clone(),
                    });
                }
                if !resp.status().is_success() {
                    return Err(ImageError::Protocol {
                        reference: self.reference.clone(),
                        host: self.host.clone(),
                        reason: format!("token endpoint '{realm}' answered {}", resp.status()),
                    });
                }
                let body = read_limited(
                    resp,
                    64 * 1024,
                    &self.reference,
                    &self.host,
                    "token response",
                )
                .await?;
                let v: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| ImageError::Protocol {
                        reference: self.reference.clone(),
                        host: self.host.clone(),
                        reason: format!("token response is not JSON: {e}"),
                    })?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| ImageError::Protocol {
                        reference: self.reference.clone(),
                        host: self.host.clone(),
                        reason: "token response has no 'token' or 'access_token'".to_string(),
                    })?;
                *self.auth.lock().await = Some(format!("Bearer {token}"));
                Ok(())
            }
        }
    }

    /// Fetch a manifest or index by tag or digest: (bytes, content type, digest).
    /// Refuses more than 4 MiB before reading it when the length is announced.
    pub async fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String, String), ImageError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base, self.repository, reference
        );
        let what = format!("manifest '{reference}'");
        let resp = self.send(&url, Some(MANIFEST_ACCEPT), None, &what).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp.status(), &what));
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes =
            read_limited(resp, MAX_METADATA_BYTES, &self.reference, &self.host, &what).await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        Ok((bytes, ct, digest))
    }

    /// Fetch a small blob (an image config) into memory, limited and verified.
    pub async fn small_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repository, digest);
        let what = format!("blob '{digest}'");
        let resp = self.send(&url, None, None, &what).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp.status(), &what));
        }
        let bytes =
            read_limited(resp, MAX_METADATA_BYTES, &self.reference, &self.host, &what).await?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != digest {
            return Err(ImageError::Digest {
                reference: self.reference.clone(),
                what,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Download a blob into the store: streamed to a temp file, hashed on the
    /// way, resumed with `Range` (or restarted) after a dropped connection,
    /// renamed into place only when size and digest match.
    pub async fn download_blob(
        &self,
        store: &Store,
        digest: &str,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<(), ImageError> {
        let lock = {
            let store = store.clone();
            let d = digest.to_string();
            tokio::task::spawn_blocking(move || store.lock_blob(&d))
                .await
                .map_err(|e| ImageError::Task(e.to_string()))??
        };
        if store.has_blob(digest) {
            progress.event(ProgressEvent::LayerBytes {
                digest,
                done: size,
                total: size,
            });
            drop(lock);
            return Ok(());
        }
        store.clean_stale_blob(digest);
        let mut w = store.blob_writer(digest, Some(size))?;
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repository, digest);
        let what = format!("blob '{digest}'");
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let from = w.written();
            let result = async {
                let resp = self.send(&url, None, Some(from), &what).await?;
                match resp.status() {
                    StatusCode::PARTIAL_CONTENT if from > 0 => {}
                    s if s.is_success() => {
                        if from > 0 {
                            // The server ignored Range: start over.
                            w.reset().map_err(|e| ImageError::Io {
                                path: store.root().to_path_buf(),
                                source: e,
                            })?;
                        }
                    }
                    s => return Err(self.status_error(s, &what)),
                }
                let mut stream = resp.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|source| ImageError::Transfer {
                        reference: self.reference.clone(),
                        host: self.host.clone(),
                        what: what.clone(),
                        source,
                    })?;
                    if w.written() + chunk.len() as u64 > size {
                        return Err(ImageError::Digest {
                            reference: self.reference.clone(),
                            what: what.clone(),
                            expected: format!("{size} bytes"),
                            actual: "more bytes than the manifest announced".to_string(),
                        });
                    }
                    std::io::Write::write_all(&mut w, &chunk).map_err(|e| ImageError::Io {
                        path: store.root().to_path_buf(),
                        source: e,
                    })?;
                    progress.event(ProgressEvent::LayerBytes {
                        digest,
                        done: w.written(),
                        total: size,
                    });
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) if w.written() == size => break,
                Ok(()) if attempt < ATTEMPTS => {
                    progress.event(ProgressEvent::Retry {
                        what: &what,
                        attempt,
                        error: "connection closed before the end of the blob",
                    });
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e @ ImageError::Transfer { .. }) if attempt < ATTEMPTS => {
                    progress.event(ProgressEvent::Retry {
                        what: &what,
                        attempt,
                        error: &e.to_string(),
                    });
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Ok(()) => {
                    let got = w.written();
                    w.abort();
                    return Err(ImageError::Truncated {
                        reference: self.reference.clone(),
                        host: self.host.clone(),
                        what,
                        expected: size,
                        actual: got,
                    });
                }
                Err(e) => {
                    w.abort();
                    return Err(e);
                }
            }
        }
        w.commit().map_err(|source| ImageError::InStore {
            reference: self.reference.clone(),
            source,
        })?;
        drop(lock);
        Ok(())
    }
}

/// What a push asks of the registry (OCI distribution spec, push side).
impl Client {
    /// Any request with auth (one 401 challenge answered, so a push's
    /// `pull,push` scope is asked for when the registry demands it) and the
    /// pull's retries of 5xx and dropped connections. `body` is resent whole
    /// on a retry.
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
        body: Option<&[u8]>,
        what: &str,
    ) -> Result<Response, ImageError> {
        self.send_retrying(method, url, headers, body, what, false)
            .await
    }

    /// `/v2/REPO/…` on this registry.
    pub fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.repository)
    }

    /// A `Location` header made absolute (registries may answer a path).
    pub fn location(&self, resp: &Response, what: &str) -> Result<String, ImageError> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ImageError::Protocol {
                reference: self.reference.clone(),
                host: self.host.clone(),
                reason: format!("{what}: the answer has no Location"),
            })?;
        if loc.starts_with("http://") || loc.starts_with("https://") {
            Ok(loc.to_string())
        } else {
            Ok(format!("{}{loc}", self.base))
        }
    }

    /// Whether the registry has `digest` in this repository (HEAD).
    pub async fn has_blob(&self, digest: &str) -> Result<bool, ImageError> {
        let what = format!("blob '{digest}'");
        let resp = self
            .request(
                reqwest::Method::HEAD,
                &self.url(&format!("blobs/{digest}")),
                HeaderMap::new(),
                None,
                &what,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.status_error(s, &what)),
        }
    }

    /// Start an upload, mounting `digest` from `from` (a repository on this
    /// registry) when given: Ok(None) when the mount was made (201), else
    /// the upload session's URL (202; a registry that cannot mount opens a
    /// session instead, as the spec says).
    pub async fn start_upload(
        &self,
        mount: Option<(&str, &str)>,
    ) -> Result<Option<String>, ImageError> {
        let mut url = self.url("blobs/uploads/");
        if let Some((digest, from)) = mount {
            url = format!("{url}?mount={digest}&from={from}");
        }
        let what = "blob upload";
        let resp = self
            .request(
                reqwest::Method::POST,
                &url,
                HeaderMap::new(),
                Some(&[]),
                what,
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED => self.location(&resp, what).map(Some),
            s => Err(self.status_error(s, what)),
        }
    }

    /// Send one piece of an upload: PATCH `chunk` (at `offset`), or, with
    /// `digest`, PUT it as the last piece. Returns the next URL.
    pub async fn upload_piece(
        &self,
        session: &str,
        offset: u64,
        chunk: &[u8],
        digest: Option<&str>,
    ) -> Result<String, ImageError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let (method, url, what) = match digest {
            Some(d) => {
                let sep = if session.contains('?') { '&' } else { '?' };
                (
                    reqwest::Method::PUT,
                    format!("{session}{sep}digest={d}"),
                    format!("blob '{d}'"),
                )
            }
            None => {
                if !chunk.is_empty() {
                    let range = format!("{offset}-{}", offset + chunk.len() as u64 - 1);
                    if let Ok(v) = HeaderValue::from_str(&range) {
                        headers.insert(reqwest::header::CONTENT_RANGE, v);
                    }
                }
                (
                    reqwest::Method::PATCH,
                    session.to_string(),
                    "blob chunk".to_string(),
                )
            }
        };
        let resp = self
            .request(method, &url, headers, Some(chunk), &what)
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::ACCEPTED | StatusCode::NO_CONTENT => {
                if digest.is_some() {
                    Ok(String::new())
                } else {
                    self.location(&resp, &what)
                }
            }
            s => Err(self.status_error(s, &what)),
        }
    }

    /// PUT a manifest under `tag` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), ImageError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(media_type) {
            headers.insert(CONTENT_TYPE, v);
        }
        let what = format!("manifest '{tag}'");
        let resp = self
            .request(
                reqwest::Method::PUT,
                &self.url(&format!("manifests/{tag}")),
                headers,
                Some(bytes),
                &what,
            )
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Err(ImageError::Status {
                reference: self.reference.clone(),
                host: self.host.clone(),
                what: format!("{what} ({})", body.chars().take(300).collect::<String>()),
                status: status.to_string(),
            })
        }
    }
}

/// Read a response body of at most `limit` bytes; an announced larger length
/// is refused before reading anything.
async fn read_limited(
    resp: Response,
    limit: u64,
    reference: &str,
    host: &str,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    let too_large = |size: u64| ImageError::TooLarge {
        reference: reference.to_string(),
        host: host.to_string(),
        what: what.to_string(),
        size,
        limit,
    };
    if let Some(len) = resp.content_length() {
        if len > limit {
            return Err(too_large(len));
        }
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| ImageError::Transfer {
            reference: reference.to_string(),
            host: host.to_string(),
            what: what.to_string(),
            source,
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large(out.len() as u64 + chunk.len() as u64));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="http://127.0.0.1:1/t""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn realm_policy_keeps_credentials_at_home() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        let reg = u("https://reg.example:5000");
        // The registry's own host and port: credentials go.
        assert_eq!(
            realm_policy(&u("https://reg.example:5000/token"), &reg, false, &[], true),
            Ok(true)
        );
        // Another port is another service.
        let e =
            realm_policy(&u("https://reg.example:5001/token"), &reg, false, &[], true).unwrap_err();
        assert!(e.contains("auth_realms"), "{e}");
        // Another host: refused with credentials, anonymous without.
        assert!(realm_policy(&u("https://evil.example/t"), &reg, false, &[], true).is_err());
        assert_eq!(
            realm_policy(&u("https://evil.example/t"), &reg, false, &[], false),
            Ok(false)
        );
        // Listed by the admin, by host or host:port.
        let listed = ["auth.example".to_string(), "tok.example:8443".to_string()];
        assert_eq!(
            realm_policy(&u("https://auth.example/t"), &reg, false, &listed, true),
            Ok(true)
        );
        assert_eq!(
            realm_policy(&u("https://tok.example:8443/t"), &reg, false, &listed, true),
            Ok(true)
        );
        assert!(realm_policy(&u("https://tok.example/t"), &reg, false, &listed, true).is_err());
        // Plain http only for an insecure registry, whatever the host.
        let e = realm_policy(&u("http://reg.example:5000/t"), &reg, false, &[], false).unwrap_err();
        assert!(e.contains("https"), "{e}");
        assert!(realm_policy(&u("http://reg.example:5000/t"), &reg, true, &[], true).is_ok());
        assert!(realm_policy(&u("ftp://reg.example/t"), &reg, true, &[], true).is_err());
        // Docker Hub's token host.
        let hub = u("https://registry-1.docker.io");
        assert_eq!(
            realm_policy(&u("https://auth.docker.io/token"), &hub, false, &[], true),
            Ok(true)
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) < backoff(2));
        assert_eq!(backoff(10), backoff(6));
    }
}
