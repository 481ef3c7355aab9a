//! Image references: `name[:tag][@digest]` with Docker Hub normalisation, and the
//! offline transports `oci:DIR[:tag]`, `oci-archive:FILE[:tag]`,
//! `docker-archive:FILE`.
//!
//! Pure: string parsing only, no I/O. The canonical string form
//! ([`Reference::canonical`]) is the key the store files refs under, so two
//! spellings of one image (`nginx`, `docker.io/library/nginx:latest`) share a ref.

use std::fmt;
use std::path::{Path, PathBuf};

/// Docker Hub's name in references, and the host its API really lives on.
pub const DOCKER_HUB: &str = "docker.io";
/// The API endpoint behind `docker.io` (the name in references is an alias).
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why a reference string is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference '{reference}': {reason}")]
    Invalid { reference: String, reason: String },
}

fn invalid(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// A registry reference, normalised: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `host[:port]` as written (Docker Hub is `docker.io`).
    pub registry: String,
    /// Repository path, e.g. `library/nginx`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Pinned manifest digest `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl RegistryRef {
    /// What to ask the registry's manifest endpoint for: the digest when pinned
    /// (a digest wins over a tag, as in Docker), otherwise the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Host to connect to for `registry` (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

/// Every image source berth understands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A registry image (`docker://` is implied).
    Registry(RegistryRef),
    /// An OCI image layout directory, optionally selecting a tag by its
    /// `org.opencontainers.image.ref.name` annotation.
    OciDir { path: PathBuf, tag: Option<String> },
    /// A tar archive of an OCI image layout.
    OciArchive { path: PathBuf, tag: Option<String> },
    /// `docker save` output (manifest.json plus layer tars).
    DockerArchive { path: PathBuf },
}

impl Reference {
    /// Parse and normalise `input`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if let Some(rest) = input.strip_prefix("oci:") {
            let (path, tag) = split_path_tag(input, rest)?;
            return Ok(Reference::OciDir { path, tag });
        }
        if let Some(rest) = input.strip_prefix("oci-archive:") {
            let (path, tag) = split_path_tag(input, rest)?;
            return Ok(Reference::OciArchive { path, tag });
        }
        if let Some(rest) = input.strip_prefix("docker-archive:") {
            if rest.is_empty() {
                return Err(invalid(
                    input,
                    "expected a file path after 'docker-archive:'",
                ));
            }
            // An optional `:name:tag` suffix (skopeo's form) is not supported: an
            // archive berth reads holds one image, the first in manifest.json.
            return Ok(Reference::DockerArchive {
                path: PathBuf::from(rest),
            });
        }
        let rest = input.strip_prefix("docker://").unwrap_or(input);
        parse_registry(input, rest).map(Reference::Registry)
    }

    /// The one string form the store files refs under.
    pub fn canonical(&self) -> String {
        self.to_string()
    }

    /// The registry part, when this is a registry reference.
    pub fn as_registry(&self) -> Option<&RegistryRef> {
        match self {
            Reference::Registry(r) => Some(r),
            _ => None,
        }
    }

    /// Whether getting this image may contact a registry (only a registry
    /// reference can; the other transports read local files).
    pub fn is_remote(&self) -> bool {
        self.as_registry().is_some()
    }

    /// A local source's transport name and file or directory.
    pub fn local_path(&self) -> Option<(&'static str, &Path)> {
        match self {
            Reference::Registry(_) => None,
            Reference::OciDir { path, .. } => Some(("oci", path)),
            Reference::OciArchive { path, .. } => Some(("oci-archive", path)),
            Reference::DockerArchive { path } => Some(("docker-archive", path)),
        }
    }

    /// Why parsing failed, without the reference (for callers that name it).
    pub fn reason(err: &ReferenceError) -> &str {
        match err {
            ReferenceError::Invalid { reason, .. } => reason,
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Registry(r) => write!(f, "{r}"),
            Reference::OciDir { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            Reference::OciArchive { path, tag } => {
                write!(f, "oci-archive:{}", path.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            Reference::DockerArchive { path } => write!(f, "docker-archive:{}", path.display()),
        }
    }
}

/// `PATH[:tag]`: the tag is what follows the last `:` when that part has no `/`
/// (paths may contain colons only before their last slash, like skopeo).
fn split_path_tag(input: &str, rest: &str) -> Result<(PathBuf, Option<String>), ReferenceError> {
    let (path, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if path.is_empty() {
        return Err(invalid(input, "expected a path after the transport name"));
    }
    let tag = match tag {
        Some("") => return Err(invalid(input, "empty tag after ':'")),
        Some(t) => {
            check_tag(input, t)?;
            Some(t.to_string())
        }
        None => None,
    };
    Ok((PathBuf::from(path), tag))
}

fn check_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    // distribution/reference: [\w][\w.-]{0,127}
    let ok = tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            input,
            format!("tag '{tag}' must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"),
        ))
    }
}

/// Check `sha256:<64 lowercase hex>`; the only digest algorithm berth accepts.
pub fn check_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn check_path_component(input: &str, comp: &str) -> Result<(), ReferenceError> {
    // distribution/reference: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let bytes = comp.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut ok = !bytes.is_empty() && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]);
    let mut i = 0;
    while ok && i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: one '.', one or two '_', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &comp[start..i];
        ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
    }
    if ok {
        Ok(())
    } else {
        Err(invalid(
            input,
            format!("repository component '{comp}' must be lowercase letters and digits separated by '.', '_', '__' or '-'"),
        ))
    }
}

fn parse_registry(input: &str, rest: &str) -> Result<RegistryRef, ReferenceError> {
    if rest.is_empty() {
        return Err(invalid(input, "empty reference"));
    }
    let (name_tag, digest) = match rest.split_once('@') {
        Some((n, d)) => {
            if !check_digest(d) {
                return Err(invalid(
                    input,
                    format!("digest '{d}' must be 'sha256:' followed by 64 lowercase hex digits"),
                ));
            }
            (n, Some(d.to_string()))
        }
        None => (rest, None),
    };
    // The tag follows the last ':' after the last '/' (a ':' before it is a port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => {
            let i = last_slash + i;
            let tag = &name_tag[i + 1..];
            check_tag(input, tag)?;
            (&name_tag[..i], Some(tag.to_string()))
        }
        None => (name_tag, None),
    };
    if name.is_empty() {
        return Err(invalid(input, "empty repository name"));
    }
    // The first component is a registry host when it looks like one
    // (a '.', a ':' or exactly "localhost"), as in distribution/reference.
    let (registry, repository) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), remainder.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    check_host(input, &registry)?;
    let registry = if registry == "index.docker.io" || registry == DOCKER_HUB_API {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    for comp in repository.split('/') {
        check_path_component(input, comp)?;
    }
    if repository.len() > 255 {
        return Err(invalid(input, "repository name longer than 255 characters"));
    }
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(RegistryRef {
        registry,
        repository,
        tag,
        digest,
    })
}

fn check_host(input: &str, host: &str) -> Result<(), ReferenceError> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(invalid(
                input,
                format!("registry port '{p}' is not a number 0-65535"),
            ));
        }
    }
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            input,
            format!("registry host '{host}' is not a host name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        match Reference::parse(s).unwrap() {
            Reference::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_normalisation() {
        assert_eq!(
            Reference::parse("nginx").unwrap().canonical(),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            Reference::parse("library/nginx:1.27").unwrap().canonical(),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            Reference::parse("bitnami/redis").unwrap().canonical(),
            "docker.io/bitnami/redis:latest"
        );
        assert_eq!(
            Reference::parse("index.docker.io/nginx")
                .unwrap()
                .canonical(),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            Reference::parse("docker://nginx:1").unwrap().canonical(),
            "docker.io/library/nginx:1"
        );
        assert_eq!(reg("nginx").api_host(), DOCKER_HUB_API);
    }

    #[test]
    fn registries_with_ports() {
        let r = reg("127.0.0.1:5000/x/y:t");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "x/y");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        let r = reg("localhost:5000/busybox");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = reg("localhost/busybox");
        assert_eq!(r.registry, "localhost");
        let r = reg("registry.example.org/library/nginx:1.27");
        assert_eq!(
            r.canonical_string(),
            "registry.example.org/library/nginx:1.27"
        );
    }

    impl RegistryRef {
        fn canonical_string(&self) -> String {
            self.to_string()
        }
    }

    #[test]
    fn digests_are_pinned() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = reg(&format!("nginx@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.manifest_reference(), d);
        let r = reg(&format!("127.0.0.1:5000/x:1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(
            Reference::parse(&format!("127.0.0.1:5000/x:1@{d}"))
                .unwrap()
                .canonical(),
            format!("127.0.0.1:5000/x:1@{d}")
        );
    }

    #[test]
    fn bad_references_are_refused_with_the_reason() {
        for (input, needle) in [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("nginx:", "tag ''"),
            ("nginx:-x", "tag '-x'"),
            ("nginx@sha256:abc", "64 lowercase hex"),
            ("nginx@md5:abc", "sha256"),
            ("host:99999/x", "port '99999'"),
            ("a//b", "component ''"),
            ("a/b_-c", "component 'b_-c'"),
            ("oci:", "path"),
            ("oci:/x:", "empty tag"),
            ("docker-archive:", "file path"),
        ] {
            let err = Reference::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.contains(&format!("'{input}'")), "{input:?}: {err}");
        }
    }

    #[test]
    fn separators_in_components() {
        for ok in ["a.b", "a_b", "a__b", "a---b", "a-b.c_d"] {
            reg(ok);
        }
        for bad in ["a..b", "a___b", "_a", "a-", "a.-b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn transports() {
        assert_eq!(
            Reference::parse("oci:/srv/img:v1").unwrap(),
            Reference::OciDir {
                path: "/srv/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Reference::parse("oci:/srv/img").unwrap(),
            Reference::OciDir {
                path: "/srv/img".into(),
                tag: None
            }
        );
        assert_eq!(
            Reference::parse("oci:/srv/a:b/img").unwrap(),
            Reference::OciDir {
                path: "/srv/a:b/img".into(),
                tag: None
            }
        );
        assert_eq!(
            Reference::parse("oci-archive:/tmp/x.tar:latest").unwrap(),
            Reference::OciArchive {
                path: "/tmp/x.tar".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(
            Reference::parse("docker-archive:/tmp/x.tar").unwrap(),
            Reference::DockerArchive {
                path: "/tmp/x.tar".into()
            }
        );
        assert_eq!(
            Reference::parse("oci-archive:/tmp/x.tar").unwrap(),
            Reference::OciArchive {
                path: "/tmp/x.tar".into(),
                tag: None
            }
        );
        // `docker://` names the registry transport explicitly (skopeo's form).
        assert_eq!(
            Reference::parse("docker://127.0.0.1:5000/x/y:t").unwrap(),
            Reference::parse("127.0.0.1:5000/x/y:t").unwrap()
        );
        assert!(Reference::parse("docker://").is_err());
        for s in [
            "oci:/srv/img:v1",
            "oci-archive:/tmp/x.tar",
            "oci-archive:/tmp/x.tar:v2",
            "docker-archive:/tmp/x.tar",
        ] {
            assert_eq!(Reference::parse(s).unwrap().canonical(), s);
        }
    }

    #[test]
    fn canonical_round_trips() {
        for s in [
            "nginx",
            "127.0.0.1:5000/x/y:t",
            "quay.io/a/b/c:1.0",
            "oci:/d:t",
        ] {
            let c = Reference::parse(s).unwrap().canonical();
            assert_eq!(Reference::parse(&c).unwrap().canonical(), c);
        }
    }

    #[test]
    fn digest_check() {
        assert!(check_digest(&format!("sha256:{}", "0".repeat(64))));
        assert!(!check_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!check_digest("sha256:"));
    }
}
