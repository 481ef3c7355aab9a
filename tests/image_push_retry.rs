//! `berth push` through faults: a small HTTP proxy in front of the real
//! loopback registry drops requests (the connection closed with no answer)
//! or answers 503, as a flaky network or a restarting registry would. The
//! push retries, says so on stderr, and succeeds — the registry then serves
//! the image — or, when the faults persist, fails naming the registry
//! after a bounded number of attempts, leaving no manifest.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reg::{Layout, Member};

/// What the proxy does to a request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Close the client's connection without an answer.
    Drop,
    /// `503 Service Unavailable`.
    Unavailable,
}

/// The proxy's rule: the first `count` requests that `applies` to get
/// `fault` (`usize::MAX`: all of them); `seen` logs "METHOD PATH -> what".
struct Rule {
    fault: Fault,
    count: usize,
    applies: fn(&str, &str) -> bool,
    seen: Vec<String>,
}

/// Blob uploads: opening a session, a chunk, the closing PUT.
fn upload(method: &str, path: &str) -> bool {
    path.contains("/blobs/uploads/") && matches!(method, "POST" | "PUT" | "PATCH")
}

/// A forwarding proxy on 127.0.0.1 in the test's network namespace.
struct Proxy {
    port: u16,
    rule: Arc<Mutex<Rule>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rule = Arc::new(Mutex::new(Rule {
            fault: Fault::Drop,
            count: 0,
            applies: upload,
            seen: Vec::new(),
        }));
        let r = rule.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let r = r.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(conn, upstream, &r) {
                        eprintln!("proxy: {e}");
                    }
                });
            }
        });
        Proxy { port, rule }
    }

    fn set(&self, fault: Fault, count: usize) {
        let mut r = self.rule.lock().unwrap();
        r.fault = fault;
        r.count = count;
        r.seen.clear();
    }

    fn seen(&self) -> Vec<String> {
        self.rule.lock().unwrap().seen.clone()
    }
}

/// One client connection: request by request (HTTP/1.1 with
/// Content-Length bodies, as reqwest sends them), each either faulted or
/// forwarded on a fresh upstream connection marked `Connection: close`,
/// whose whole answer is relayed.
fn serve(conn: TcpStream, upstream: u16, rule: &Mutex<Rule>) -> std::io::Result<()> {
    let mut client = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let end = line == "\r\n";
            if !line.to_ascii_lowercase().starts_with("connection:") {
                head.push(line);
            }
            if end {
                break;
            }
        }
        let len: usize = head
            .iter()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        let mut words = head[0].split_whitespace();
        let (method, path) = (
            words.next().unwrap_or("").to_string(),
            words.next().unwrap_or("").to_string(),
        );
        let fault = {
            let mut r = rule.lock().unwrap();
            let hit = r.count > 0 && (r.applies)(&method, &path);
            if hit && r.count != usize::MAX {
                r.count -= 1;
            }
            let what = if hit {
                format!("{:?}", r.fault)
            } else {
                "forwarded".into()
            };
            r.seen.push(format!("{method} {path} -> {what}"));
            hit.then_some(r.fault)
        };
        match fault {
            Some(Fault::Drop) => {
                let _ = client.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Some(Fault::Unavailable) => {
                client.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(());
            }
            None => {
                let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
                let last = head.len() - 1;
                for l in &head[..last] {
                    up.write_all(l.as_bytes())?;
                }
                up.write_all(b"Connection: close\r\n\r\n")?;
                up.write_all(&body)?;
                let mut answer = Vec::new();
                up.read_to_end(&mut answer)?;
                client.write_all(&answer)?;
            }
        }
    }
}

fn berth(root: &Path, storage: &Path, args: &[&str]) -> Output {
    Command::new(support::berth_bin())
        .args(args)
        .arg("--storage-root")
        .arg(storage)
        .env("BERTH_ROOT", root)
        .env("BERTH_LOG", std::env::var("T_LOG").unwrap_or_default())
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A store holding `local/app:1` (a busybox layer and a file), and the
/// root whose berth.toml lets it talk plain http to both ports.
fn stored_image(tmp: &Path, ports: &[u16]) -> (PathBuf, PathBuf, String) {
    let storage = tmp.join("store");
    let registries: String = ports
        .iter()
        .map(|p| format!("[[registry]]\nhost = \"127.0.0.1:{p}\"\ninsecure = true\n"))
        .collect();
    let root = reg::globals_root(tmp, &storage, &registries);
    let mut layout = Layout::new(&tmp.join("layout"));
    let built = layout.image(
        &[
            reg::tar_of(&reg::busybox_members()),
            reg::tar_of(&[Member::File("hello", b"hi\n", 0o644, 0, 0)]),
        ],
        "amd64",
        serde_json::json!({"Cmd": ["/bin/sh"]}),
    );
    layout.tag(&built, "1");
    let src = format!("oci:{}:1", tmp.join("layout").display());
    let o = berth(&root, &storage, &["pull", &src]);
    assert!(o.status.success(), "{}", text(&o));
    let o = berth(&root, &storage, &["tag", &src, "local/app:1"]);
    assert!(o.status.success(), "{}", text(&o));
    (root, storage, built.manifest_digest)
}

/// The manifest digest the registry itself (not the proxy) serves for
/// `repo:tag`, through a pull into a fresh store.
fn served_digest(tmp: &Path, root: &Path, reference: &str) -> Option<String> {
    let fresh = tempfile::tempdir_in(tmp).unwrap();
    let o = berth(root, fresh.path(), &["pull", "-q", reference]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn push_retries_transient_faults_and_fails_clearly_when_they_persist() {
    require_root!();
    require_program!("docker-registry");
    let tmp = tempfile::tempdir().unwrap();
    let registry = reg::Registry::start(reg::RegistryOptions::default());
    let proxy = Proxy::start(registry.port);
    let (root, storage, digest) = stored_image(tmp.path(), &[registry.port, proxy.port]);
    let via = |repo: &str| format!("127.0.0.1:{}/{repo}:1", proxy.port);
    let direct = |repo: &str| format!("{}/{repo}:1", registry.host());

    // Two upload requests dropped with no answer (a reset connection):
    // retried, and the push succeeds.
    proxy.set(Fault::Drop, 2);
    let o = berth(
        &root,
        &storage,
        &["push", "local/app:1", &via("retry/dropped")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        stderr.matches("retrying").count(),
        2,
        "each retry is said on stderr:\n{stderr}\n{:#?}",
        proxy.seen()
    );
    assert_eq!(
        served_digest(tmp.path(), &root, &direct("retry/dropped")).as_deref(),
        Some(digest.as_str())
    );

    // The registry answers 503 once to an upload: retried, succeeds.
    proxy.set(Fault::Unavailable, 1);
    let o = berth(
        &root,
        &storage,
        &["push", "local/app:1", &via("retry/unavailable")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("503") && stderr.contains("retrying"),
        "{stderr}"
    );
    assert_eq!(
        served_digest(tmp.path(), &root, &direct("retry/unavailable")).as_deref(),
        Some(digest.as_str())
    );

    // Every upload dropped: a bounded number of tries, then a clear error
    // naming the registry, and no manifest there.
    proxy.set(Fault::Drop, usize::MAX);
    let started = Instant::now();
    let o = berth(
        &root,
        &storage,
        &["push", "local/app:1", &via("retry/never")],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("berth: ") && last.contains(&format!("127.0.0.1:{}", proxy.port)),
        "the last line names the registry: {stderr}"
    );
    let tries = proxy
        .seen()
        .iter()
        .filter(|l| l.ends_with("-> Drop"))
        .count();
    assert!(
        (3..=30).contains(&tries),
        "{tries} tries: {:#?}",
        proxy.seen()
    );
    assert_eq!(
        served_digest(tmp.path(), &root, &direct("retry/never")),
        None
    );
}
