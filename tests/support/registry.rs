//! Test support for image tests: a real `docker-registry` on loopback (plain,
//! TLS with a CA made on the spot, htpasswd Basic auth, or Bearer tokens signed
//! on the spot), OCI layouts written by hand (tar + sha256), and pushes with
//! skopeo. Every server runs in the test thread's own network namespace
//! (`private_netns`), never on the machine's loopback; every process started
//! here is killed by PID on drop, and by the kernel when its test ends.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// `s` parsed as the one image reference grammar (what the store and the
/// pull take); a test's reference is always valid.
pub fn image_ref(s: &str) -> berth::image::Reference {
    berth::image::Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Put the calling test's thread, and so every thread and process it starts
/// from now on, into a network namespace of its own with `lo` up. The test's
/// registries, token servers and fake servers listen there, never on the
/// machine's own loopback, and no other test can take their ports between
/// `free_port` and the bind. Idempotent per thread; needs root.
pub fn private_netns() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if DONE.get() {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare(CLONE_NEWNET) for the test's own network namespace (needs root)");
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip link set lo up (iproute2)");
    assert!(st.success(), "ip link set lo up: {st}");
    DONE.set(true);
}

/// Ask the kernel to SIGKILL a child when the thread that started it ends,
/// so a server outlives neither its test nor a killed test binary.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A port that was free a moment ago on 127.0.0.1 of the test's own network
/// namespace (nothing else binds there).
pub fn free_port() -> u16 {
    private_netns();
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// A child process killed by PID when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default, Clone)]
pub struct RegistryOptions {
    pub tls: bool,
    /// With `tls`: the registry demands a client certificate signed by its
    /// CA; `Registry::client_dir` holds one (`client.cert`, `client.key`).
    pub client_certs: bool,
    pub htpasswd: Option<(String, String)>,
    pub token: bool,
}

/// A running docker-registry.
pub struct Registry {
    _proc: Killed,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// `certs.d`-style directory holding `127.0.0.1:PORT/ca.crt` (TLS only).
    pub certs_dir: Option<PathBuf>,
    /// A client certificate and key the registry accepts (`client_certs`).
    pub client_dir: Option<PathBuf>,
    pub token_server: Option<TokenServer>,
}

/// A key `NAME.key` and a certificate `NAME.crt` for `subject`, signed by
/// `ca.crt` in `dir`, with the extensions in `ext` (an openssl extfile).
fn issue_cert(dir: &Path, subject: &str, name: &str, ext: &str) {
    let (key, csr, crt, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}-ext.cnf"),
    );
    openssl(
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ],
        dir,
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ],
        dir,
    );
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Registry {
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// berth.toml's entry that lets berth use this registry over plain http.
    pub fn insecure_toml(&self) -> String {
        format!(
            "[[registry]]\nhost = \"{}\"\ninsecure = true\n",
            self.host()
        )
    }

    /// Shell lines serving this registry's content at the same address in
    /// the network namespace the script runs in (a `Sandbox` has its own,
    /// where the test's registry cannot be reached), ready when they end;
    /// the sandbox's end ends it.
    pub fn serve_in_script(&self) -> String {
        format!(
            "/usr/bin/docker-registry serve {cfg} >/dev/null 2>&1 &\n\
             for i in $(seq 100); do curl -fs -o /dev/null http://{host}/v2/ && break; sleep 0.1; done\n",
            cfg = self.dir.path().join("config.yml").display(),
            host = self.host(),
        )
    }

    pub fn start(opts: RegistryOptions) -> Registry {
        private_netns();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            d.join("data").display()
        );
        let mut certs_dir = None;
        let mut client_dir = None;
        if opts.tls {
            openssl(
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=berth test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
                d,
            );
            issue_cert(
                d,
                "/CN=127.0.0.1",
                "srv",
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            );
            yaml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("srv.crt").display(),
                d.join("srv.key").display()
            );
            if opts.client_certs {
                yaml += &format!("    clientcas:\n      - {}\n", d.join("ca.crt").display());
                issue_cert(
                    d,
                    "/CN=berth test client",
                    "client",
                    "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
                );
                // Named as certs.d wants them: NAME.cert and NAME.key.
                let cd = d.join("client");
                std::fs::create_dir_all(&cd).unwrap();
                std::fs::copy(d.join("client.crt"), cd.join("client.cert")).unwrap();
                std::fs::copy(d.join("client.key"), cd.join("client.key")).unwrap();
                client_dir = Some(cd);
            }
            let cd = d.join("certs.d");
            std::fs::create_dir_all(cd.join(format!("127.0.0.1:{port}"))).unwrap();
            std::fs::copy(
                d.join("ca.crt"),
                cd.join(format!("127.0.0.1:{port}/ca.crt")),
            )
            .unwrap();
            certs_dir = Some(cd);
        }
        if let Some((u, p)) = &opts.htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .unwrap();
            assert!(out.status.success());
            std::fs::write(d.join("htpasswd"), &out.stdout).unwrap();
            yaml += &format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                d.join("htpasswd").display()
            );
        }
        let mut token_server = None;
        if opts.token {
            let ts = TokenServer::start(d);
            yaml += &format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: berth-test\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
                ts.port,
                d.join("token.crt").display()
            );
            token_server = Some(ts);
        }
        let cfg = d.join("config.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let child = die_with_parent(&mut Command::new("/usr/bin/docker-registry"))
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Killed(child);
        wait_for_port(port);
        Registry {
            _proc: proc,
            port,
            dir,
            certs_dir,
            client_dir,
            token_server,
        }
    }

    /// Push an OCI layout with skopeo (`--all` keeps indexes whole).
    pub fn push(&self, layout: &Path, tag: &str, name: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        if let Some(cd) = &self.client_dir {
            cmd.arg("--dest-cert-dir").arg(cd);
        }
        if let Some(ts) = &self.token_server {
            let _ = ts;
            cmd.args(["--dest-creds", "pusher:secret"]);
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{name}", self.port));
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn push_with_creds(&self, layout: &Path, tag: &str, name: &str, creds: &str) {
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--all",
                "--dest-tls-verify=false",
                "--dest-creds",
                creds,
            ])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{name}", self.port))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A token endpoint for docker-registry's `auth: token`: answers every request
/// with a JWT (RS256, `x5c` header) signed by a key made on the spot, which
/// grants pull and push on every repository named in the request's scope.
pub struct TokenServer {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn make_jwt(dir: &Path, scopes: &[String]) -> String {
    use base64::Engine;
    let pem = std::fs::read_to_string(dir.join("token.crt")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let header = serde_json::json!({"typ":"JWT","alg":"RS256","x5c":[base64::engine::general_purpose::STANDARD.encode(der)]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<_> = scopes
        .iter()
        .filter_map(|s| {
            let mut p = s.splitn(3, ':');
            let (t, n, _) = (p.next()?, p.next()?, p.next()?);
            Some(serde_json::json!({"type": t, "name": n, "actions": ["pull", "push"]}))
        })
        .collect();
    let claims = serde_json::json!({"iss":"berth-test-issuer","sub":"tester","aud":"berth-test","exp":now+600,"nbf":now-60,"iat":now-60,"jti":format!("{now}-{}", scopes.len()),"access":access});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("token.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    format!("{signing_input}.{}", b64url(&out.stdout))
}

impl TokenServer {
    fn start(dir: &Path) -> TokenServer {
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=berth token signer",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
            ],
            dir,
        );
        private_netns();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, s, d) = (hits.clone(), stop.clone(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let req = read_request(&mut conn);
                        h.fetch_add(1, Ordering::Relaxed);
                        let line = req.lines().next().unwrap_or("").to_string();
                        let query = line
                            .split(' ')
                            .nth(1)
                            .unwrap_or("")
                            .split_once('?')
                            .map(|x| x.1)
                            .unwrap_or("");
                        let scopes: Vec<String> = query
                            .split('&')
                            .filter_map(|kv| kv.strip_prefix("scope="))
                            .map(|v| {
                                v.replace("%3A", ":")
                                    .replace("%2F", "/")
                                    .replace("%2C", ",")
                            })
                            .collect();
                        let token = make_jwt(&d, &scopes);
                        let body =
                            format!("{{\"token\":\"{token}\",\"access_token\":\"{token}\"}}");
                        let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenServer {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read an HTTP request head.
pub fn read_request(conn: &mut TcpStream) -> String {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------- layouts

/// One member of a test layer.
#[derive(Clone)]
pub enum Member {
    Dir(&'static str, u32, u64, u64),
    File(&'static str, &'static [u8], u32, u64, u64),
    BigFile(&'static str, Vec<u8>),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Fifo(&'static str),
    CharDev(&'static str, u32, u32),
    /// A raw name written byte for byte (hostile names).
    RawFile(String, Vec<u8>),
    RawSymlink(String, String),
    RawHardlink(String, String),
    Xattr(&'static str, &'static str, &'static [u8]),
}

/// Build an uncompressed tar from members.
pub fn tar_of(members: &[Member]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let raw = |b: &mut tar::Builder<Vec<u8>>,
               name: &str,
               kind: tar::EntryType,
               link: Option<&str>,
               data: &[u8],
               mode: u32,
               uid: u64,
               gid: u64| {
        let mut h = tar::Header::new_gnu();
        let nb = name.as_bytes();
        h.as_old_mut().name[..nb.len()].copy_from_slice(nb);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            let lb = l.as_bytes();
            h.as_old_mut().linkname[..lb.len()].copy_from_slice(lb);
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    for m in members {
        use tar::EntryType as T;
        match m {
            Member::Dir(n, mode, u, g) => raw(&mut b, n, T::Directory, None, b"", *mode, *u, *g),
            Member::File(n, d, mode, u, g) => raw(&mut b, n, T::Regular, None, d, *mode, *u, *g),
            Member::BigFile(n, d) => raw(&mut b, n, T::Regular, None, d, 0o644, 0, 0),
            Member::Symlink(n, t) => raw(&mut b, n, T::Symlink, Some(t), b"", 0o777, 0, 0),
            Member::Hardlink(n, t) => raw(&mut b, n, T::Link, Some(t), b"", 0o644, 0, 0),
            Member::Fifo(n) => raw(&mut b, n, T::Fifo, None, b"", 0o600, 0, 0),
            Member::CharDev(n, ma, mi) => {
                let mut h = tar::Header::new_gnu();
                h.set_path(n).unwrap();
                h.set_entry_type(T::Char);
                h.set_mode(0o666);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(1_600_000_000);
                h.set_size(0);
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                h.set_cksum();
                b.append(&h, &b""[..]).unwrap();
            }
            Member::RawFile(n, d) => raw(&mut b, n, T::Regular, None, d, 0o644, 0, 0),
            Member::RawSymlink(n, t) => raw(&mut b, n, T::Symlink, Some(t), b"", 0o777, 0, 0),
            Member::RawHardlink(n, t) => raw(&mut b, n, T::Link, Some(t), b"", 0o644, 0, 0),
            Member::Xattr(n, k, v) => {
                let key = format!("SCHILY.xattr.{k}");
                b.append_pax_extensions([(key.as_str(), *v)]).unwrap();
                raw(&mut b, n, T::Regular, None, b"x", 0o644, 0, 0);
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// An OCI image layout being written by hand.
pub struct Layout {
    pub dir: PathBuf,
    pub index: Vec<serde_json::Value>,
}

pub struct Built {
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub diff_ids: Vec<String>,
    pub layer_digests: Vec<String>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        }
    }

    pub fn blob(&self, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        d
    }

    /// Write an image from uncompressed layer tars (gzipped here); returns
    /// its manifest descriptor data.
    pub fn image(&self, layers: &[Vec<u8>], arch: &str, config: serde_json::Value) -> Built {
        self.image_with_history(layers, arch, config, &[])
    }

    /// [`Layout::image`] whose config has a `history` entry per
    /// `created_by` (buildah refuses a base whose history counts no
    /// layer); none when it is empty.
    pub fn image_with_history(
        &self,
        layers: &[Vec<u8>],
        arch: &str,
        config: serde_json::Value,
        created_by: &[&str],
    ) -> Built {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layer_digests = Vec::new();
        for l in layers {
            diff_ids.push(sha256(l));
            let gz = gzip(l);
            let d = self.blob(&gz);
            layer_digests.push(d.clone());
            descs.push(serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":d,"size":gz.len()}));
        }
        let mut cfg = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": config,
            "rootfs": {"type":"layers","diff_ids": diff_ids},
        });
        if !created_by.is_empty() {
            cfg["history"] = created_by
                .iter()
                .map(|c| serde_json::json!({ "created_by": c }))
                .collect();
        }
        let cfg = serde_json::to_vec(&cfg).unwrap();
        let cd = self.blob(&cfg);
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cfg.len()},
            "layers": descs,
        });
        let m = serde_json::to_vec(&m).unwrap();
        let md = self.blob(&m);
        Built {
            manifest_digest: md,
            manifest_size: m.len() as u64,
            diff_ids,
            layer_digests,
        }
    }

    /// Tag a single-platform image.
    pub fn tag(&mut self, b: &Built, tag: &str) {
        self.index.push(serde_json::json!({
            "mediaType":"application/vnd.oci.image.manifest.v1+json",
            "digest": b.manifest_digest, "size": b.manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
    }

    /// Tag an index of (image, arch) pairs.
    pub fn tag_index(&mut self, images: &[(&Built, &str)], tag: &str) -> String {
        let ms: Vec<_> = images
            .iter()
            .map(|(b, arch)| {
                serde_json::json!({
                    "mediaType":"application/vnd.oci.image.manifest.v1+json",
                    "digest": b.manifest_digest, "size": b.manifest_size,
                    "platform": {"os":"linux","architecture": arch},
                })
            })
            .collect();
        let idx = serde_json::to_vec(&serde_json::json!({
            "schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests": ms,
        }))
        .unwrap();
        let d = self.blob(&idx);
        self.index.push(serde_json::json!({
            "mediaType":"application/vnd.oci.image.index.v1+json",
            "digest": d, "size": idx.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
        d
    }

    fn write_index(&self) {
        let idx = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests": self.index});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
    }
}

/// An OCI layout at `work/layout` holding `:1`, one layer of busybox-static
/// with its applet links (the tree `busybox_rootfs` makes, /etc/hostname
/// "image"), for clients that import whole images (containerd, Docker).
pub fn busybox_image_layout(work: &Path) -> PathBuf {
    busybox_image_layout_with_history(work, &[])
}

/// [`busybox_image_layout`] with a config `history` entry per `created_by`.
pub fn busybox_image_layout_with_history(work: &Path, created_by: &[&str]) -> PathBuf {
    let rootfs = super::support::busybox_rootfs(&work.join("image-rootfs"));
    std::fs::write(rootfs.join("etc/hostname"), "image\n").unwrap();
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-cf", "-", "."])
        .output()
        .expect("run tar");
    assert!(tar.status.success(), "tar of the image rootfs failed");
    let layout_dir = work.join("layout");
    let mut layout = Layout::new(&layout_dir);
    let built = layout.image_with_history(
        &[tar.stdout],
        "amd64",
        serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}),
        created_by,
    );
    layout.tag(&built, "1");
    layout_dir
}

/// The image the declared-container tests run (`oci:DIR:1`): a first layer of
/// busybox (`bin/busybox` 0755, `bin/sh` → busybox) and `base`, then one
/// layer per `upper`; `busybox sh -c` is its entrypoint and PATH=/bin, with
/// `config`'s keys (an object) added to that.
pub fn busybox_sh_layout(
    dir: &Path,
    base: Vec<Member>,
    upper: &[Vec<Member>],
    config: serde_json::Value,
) {
    let mut layout = Layout::new(dir);
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    let mut first = vec![
        Member::Dir("bin/", 0o755, 0, 0),
        Member::File("bin/busybox", busybox, 0o755, 0, 0),
        Member::Symlink("bin/sh", "busybox"),
    ];
    first.extend(base);
    let mut layers = vec![tar_of(&first)];
    layers.extend(upper.iter().map(|m| tar_of(m)));
    let mut cfg = serde_json::json!({
        "Entrypoint": ["/bin/busybox", "sh", "-c"],
        "Env": ["PATH=/bin"],
    });
    if let (Some(c), Some(extra)) = (cfg.as_object_mut(), config.as_object()) {
        c.extend(extra.clone());
    }
    let built = layout.image(&layers, "amd64", cfg);
    layout.tag(&built, "1");
}

/// The busybox binary as a layer: `bin/busybox` and `bin/sh` → busybox.
pub fn busybox_members() -> Vec<Member> {
    let bb = std::fs::read("/bin/busybox").unwrap();
    vec![
        Member::Dir("bin/", 0o755, 0, 0),
        Member::BigFile("bin/busybox", bb),
        Member::Symlink("bin/sh", "busybox"),
    ]
}

/// A file-by-file description of an unpacked tree: path, kind, mode, uid, gid,
/// and content digest / link target / device numbers.
pub fn describe_tree(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let mode = m.mode() & 0o7777;
            use std::os::unix::fs::FileTypeExt;
            let what = if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link->{}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_char_device() {
                format!("chr {}:{}", libc::major(m.rdev()), libc::minor(m.rdev()))
            } else if ft.is_fifo() {
                "fifo".to_string()
            } else {
                let d = sha256(&std::fs::read(&p).unwrap());
                format!("file {} nlink={}", &d[7..19], m.nlink())
            };
            let mode = if ft.is_symlink() { 0o777 } else { mode };
            out.push(format!("{rel} {what} {mode:o} {}:{}", m.uid(), m.gid()));
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// Write `ROOT/etc/berth/berth.toml` and return ROOT, for `load_globals`.
pub fn globals_root(dir: &Path, storage: &Path, extra: &str) -> PathBuf {
    let root = dir.join("hostroot");
    std::fs::create_dir_all(root.join("etc/berth")).unwrap();
    std::fs::write(
        root.join("etc/berth/berth.toml"),
        format!("[storage]\nroot = \"{}\"\n{extra}", storage.display()),
    )
    .unwrap();
    root
}

/// An error and its sources on one line, as the CLI prints them.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        msg += &format!(": {s}");
        src = s.source();
    }
    msg
}
