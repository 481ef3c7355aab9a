//! Hostile and broken registries: each pull is refused with a clear error, no
//! file appears outside the store and nothing incomplete appears inside it;
//! transient failures (resets, 500s) are retried until the pull succeeds.
//!
//! The registry here is a small fake on loopback (a std TcpListener thread)
//! because a real one refuses to serve what these tests need to send.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::config::load_globals;
use berth::image::{self, NoProgress, Progress, ProgressEvent};
use berth::store::Store;
use reg::{sha256, Member};

#[derive(Clone)]
enum Reply {
    Body(&'static str, Vec<u8>),
    Status(u16),
    /// Announce the whole body, send `send` bytes, then reset the connection.
    ResetAfter(Vec<u8>, usize),
    /// Announce the whole body, send `send` bytes, then close normally.
    CloseAfter(Vec<u8>, usize),
    /// A body of `len` bytes announced by Content-Length (or not), sent slowly.
    Huge(u64, bool),
}

type Handler = Arc<dyn Fn(&str, usize) -> Reply + Send + Sync>;

struct Fake {
    port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reset(conn: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket and option buffer.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
}

fn serve(
    mut conn: TcpStream,
    handler: Handler,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut first = [0u8; 1];
    if conn.peek(&mut first).ok() == Some(1) && first[0] == 0x16 {
        return; // a TLS ClientHello: this fake speaks plain http only
    }
    let head = reg::read_request(&mut conn);
    let path = head
        .lines()
        .next()
        .unwrap_or("")
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_string();
    let range_from: Option<usize> = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .map(|r| r.trim_end_matches('-').trim().to_string())
        })
        .and_then(|v| v.parse().ok());
    let n = {
        let mut h = hits.lock().unwrap();
        let c = h.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let reply = handler(&path, n);
    let is_reset = matches!(reply, Reply::ResetAfter(..));
    let mut write = |b: &[u8]| -> bool {
        let ok = conn.write_all(b).is_ok();
        if ok {
            sent.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        ok
    };
    match reply {
        Reply::Body(ct, body) => {
            let (status, body) = match range_from {
                Some(from) if from > 0 && from < body.len() => {
                    ("206 Partial Content", body[from..].to_vec())
                }
                _ => ("200 OK", body),
            };
            write(format!("HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
            write(&body);
        }
        Reply::Status(code) => {
            write(
                format!("HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
        Reply::ResetAfter(body, send) | Reply::CloseAfter(body, send) => {
            write(format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
            write(&body[..send]);
            std::thread::sleep(Duration::from_millis(50));
            if is_reset {
                reset(&conn);
            }
        }
        Reply::Huge(len, announce) => {
            let cl = if announce {
                format!("Content-Length: {len}\r\n")
            } else {
                String::new()
            };
            write(format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n{cl}Connection: close\r\n\r\n").as_bytes());
            let chunk = vec![b' '; 64 * 1024];
            let mut left = len;
            while left > 0 && !stop.load(Ordering::Relaxed) {
                let n = left.min(chunk.len() as u64) as usize;
                if !write(&chunk[..n]) {
                    break;
                }
                left -= n as u64;
            }
        }
    }
}

impl Fake {
    fn start(handler: Handler) -> Fake {
        reg::private_netns();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, st) = (hits.clone(), sent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let (handler, h, s, st) =
                            (handler.clone(), h.clone(), s.clone(), st.clone());
                        std::thread::spawn(move || serve(conn, handler, h, s, st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Fake {
            port,
            hits,
            sent,
            stop,
            thread: Some(thread),
        }
    }

    fn hits(&self, suffix: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, v)| *v)
            .sum()
    }
}

/// An image's content as the fake serves it.
struct Content {
    manifest: Vec<u8>,
    blobs: HashMap<String, Vec<u8>>,
    layer: String,
}

/// One-layer image from an uncompressed tar.
fn content(layer_tar: &[u8]) -> Content {
    let gz = reg::gzip(layer_tar);
    let ld = sha256(&gz);
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture":"amd64","os":"linux","config":{},
        "rootfs":{"type":"layers","diff_ids":[sha256(layer_tar)]},
    }))
    .unwrap();
    let cd = sha256(&cfg);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cfg.len()},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":ld,"size":gz.len()}],
    }))
    .unwrap();
    let mut blobs = HashMap::new();
    blobs.insert(cd, cfg);
    blobs.insert(ld.clone(), gz);
    Content {
        manifest,
        blobs,
        layer: ld,
    }
}

/// Serve `c` normally; `tweak` may override a reply for a path and attempt.
fn handler(
    c: Content,
    tweak: impl Fn(&str, usize, &Content) -> Option<Reply> + Send + Sync + 'static,
) -> Handler {
    let c = Arc::new(c);
    Arc::new(move |path: &str, n: usize| {
        if let Some(r) = tweak(path, n, &c) {
            return r;
        }
        if path == "/v2/" {
            return Reply::Body("application/json", b"{}".to_vec());
        }
        if path.contains("/manifests/") {
            return Reply::Body(
                "application/vnd.oci.image.manifest.v1+json",
                c.manifest.clone(),
            );
        }
        if let Some((_, d)) = path.split_once("/blobs/") {
            if let Some(b) = c.blobs.get(d) {
                return Reply::Body("application/octet-stream", b.clone());
            }
        }
        Reply::Status(404)
    })
}

struct Env {
    tmp: tempfile::TempDir,
    store: Store,
    globals: berth::config::Globals,
    reference: String,
}

fn env(fake: &Fake) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("store");
    let host = format!("127.0.0.1:{}", fake.port);
    let root = reg::globals_root(
        tmp.path(),
        &storage,
        &format!("[[registry]]\nhost = \"{host}\"\ninsecure = true\n"),
    );
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&storage).unwrap();
    Env {
        tmp,
        store,
        globals,
        reference: format!("{host}/hostile/img:1"),
    }
}

/// Nothing incomplete in the store: no temp entries, no layers, no ref, and
/// every blob verifies.
fn assert_nothing_stored(e: &Env) {
    let s = e.tmp.path().join("store");
    for sub in ["blobs/sha256", "layers/sha256", "refs"] {
        for entry in std::fs::read_dir(s.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".tmp-"),
                "temp entry left in {sub}: {name}"
            );
            assert!(sub == "blobs/sha256", "unexpected entry in {sub}: {name}");
        }
    }
    assert!(!e.store.is_present(&reg::image_ref(&e.reference)));
    assert!(e.store.verify().unwrap().is_empty());
}

fn assert_no_escape(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains("escape") && !name.contains("planted") && name != "shadow",
                "found '{}'",
                entry.path().display()
            );
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
}

fn pull_err(e: &Env) -> String {
    let err = image::pull(
        &e.store,
        &e.globals,
        &reg::image_ref(&e.reference),
        &NoProgress,
    )
    .unwrap_err();
    let mut msg = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        msg += &format!(": {s}");
        src = s.source();
    }
    eprintln!("pull error: {msg}");
    msg
}

#[test]
fn layer_digest_mismatch_is_refused() {
    require_root!();
    let c = content(&reg::tar_of(&[Member::File("f", b"good", 0o644, 0, 0)]));
    let layer = c.layer.clone();
    let fake = Fake::start(handler(c, |path, _, c| {
        let (_, d) = path.split_once("/blobs/")?;
        (d == c.layer).then(|| {
            let mut bad = c.blobs[&c.layer].clone();
            let last = bad.len() - 1;
            bad[last] ^= 0xff;
            Reply::Body("application/octet-stream", bad)
        })
    }));
    let e = env(&fake);
    let err = pull_err(&e);
    assert!(
        err.contains("digest mismatch") && err.contains(&layer),
        "{err}"
    );
    assert!(!e.store.has_blob(&layer));
    assert_nothing_stored(&e);
}

#[test]
fn truncated_blob_is_refused_after_retries() {
    require_root!();
    let c = content(&reg::tar_of(&[Member::BigFile("big", vec![7u8; 300_000])]));
    let layer = c.layer.clone();
    let fake = Fake::start(handler(c, |path, _, c| {
        let (_, d) = path.split_once("/blobs/")?;
        (d == c.layer).then(|| {
            let b = c.blobs[&c.layer].clone();
            let half = b.len() / 2;
            Reply::CloseAfter(b, half)
        })
    }));
    let e = env(&fake);
    let err = pull_err(&e);
    assert!(
        err.contains(&layer) && err.contains(&format!("127.0.0.1:{}", fake.port)),
        "{err}"
    );
    assert!(fake.hits(&layer) > 1, "the blob was not retried");
    assert_nothing_stored(&e);
}

#[test]
fn dotdot_entries_are_refused() {
    require_root!();
    let c = content(&reg::tar_of(&[
        Member::RawFile("ok".into(), b"fine".to_vec()),
        Member::RawFile("../../escape".into(), b"out".to_vec()),
    ]));
    let fake = Fake::start(handler(c, |_, _, _| None));
    let e = env(&fake);
    let err = pull_err(&e);
    assert!(
        err.contains("'../../escape'") && err.contains(".."),
        "{err}"
    );
    assert_no_escape(e.tmp.path());
    assert_nothing_stored(&e);
}

#[test]
fn absolute_symlink_then_file_through_it_is_refused() {
    require_root!();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().display().to_string();
    let c = content(&reg::tar_of(&[
        Member::RawSymlink("evil".into(), target),
        Member::RawFile("evil/planted".into(), b"gotcha".to_vec()),
    ]));
    let fake = Fake::start(handler(c, |_, _, _| None));
    let e = env(&fake);
    let err = pull_err(&e);
    assert!(
        err.contains("'evil/planted'") && err.contains("symlink"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "a file was written through the symlink"
    );
    assert_no_escape(e.tmp.path());
    assert_nothing_stored(&e);
}

#[test]
fn hardlink_to_etc_shadow_is_refused() {
    require_root!();
    for target in ["/etc/shadow", "../../../../../../etc/shadow"] {
        let c = content(&reg::tar_of(&[Member::RawHardlink(
            "shadow".into(),
            target.into(),
        )]));
        let fake = Fake::start(handler(c, |_, _, _| None));
        let e = env(&fake);
        let err = pull_err(&e);
        assert!(err.contains("'shadow'"), "{err}");
        assert_no_escape(&e.tmp.path().join("store"));
        assert_nothing_stored(&e);
    }
}

#[test]
fn a_100_mb_manifest_is_refused_without_reading_it() {
    require_root!();
    for announce in [true, false] {
        let fake = Fake::start(handler(content(b""), move |path, _, _| {
            path.contains("/manifests/")
                .then_some(Reply::Huge(100 << 20, announce))
        }));
        let e = env(&fake);
        let t = Instant::now();
        let err = pull_err(&e);
        assert!(err.contains("limit") && err.contains("manifest"), "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
        // Let the server notice the closed connection, then count.
        std::thread::sleep(Duration::from_millis(200));
        let sent = fake.sent.load(Ordering::Relaxed);
        assert!(sent < 50 << 20, "read {sent} bytes of the 100 MB manifest");
        assert_nothing_stored(&e);
    }
}

#[derive(Default)]
struct Retries(Mutex<Vec<String>>);

impl Progress for Retries {
    fn event(&self, ev: ProgressEvent<'_>) {
        if let ProgressEvent::Retry { what, .. } = ev {
            self.0.lock().unwrap().push(what.to_string());
        }
    }
}

#[test]
fn a_connection_reset_mid_blob_is_retried_and_the_pull_succeeds() {
    require_root!();
    let c = content(&reg::tar_of(&[Member::BigFile(
        "big",
        (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect(),
    )]));
    let layer = c.layer.clone();
    let fake = Fake::start(handler(c, |path, n, c| {
        let (_, d) = path.split_once("/blobs/")?;
        // The first request for the layer is cut off with a RST.
        (d == c.layer && n == 1).then(|| {
            let b = c.blobs[&c.layer].clone();
            let third = b.len() / 3;
            Reply::ResetAfter(b, third)
        })
    }));
    let e = env(&fake);
    let progress = Retries::default();
    let img = image::pull(
        &e.store,
        &e.globals,
        &reg::image_ref(&e.reference),
        &progress,
    )
    .unwrap();
    assert!(img.layers[0].join("big").is_file());
    assert!(fake.hits(&layer) >= 2);
    assert!(
        !progress.0.lock().unwrap().is_empty(),
        "no retry was reported"
    );
    assert!(e.store.verify().unwrap().is_empty());
}

#[test]
fn a_registry_answering_500_fails_clearly_and_transient_500s_are_retried() {
    require_root!();
    let fake = Fake::start(handler(content(b""), |path, _, _| {
        path.contains("/manifests/").then_some(Reply::Status(500))
    }));
    let e = env(&fake);
    let err = pull_err(&e);
    assert!(
        err.contains("500")
            && err.contains(&format!("127.0.0.1:{}", fake.port))
            && err.contains("hostile/img:1"),
        "{err}"
    );
    assert!(fake.hits("/manifests/1") > 1, "500 was not retried");
    assert_nothing_stored(&e);

    let c = content(&reg::tar_of(&[Member::File("f", b"x", 0o644, 0, 0)]));
    let fake = Fake::start(handler(c, |path, n, _| {
        (path.contains("/blobs/") && n <= 2).then_some(Reply::Status(503))
    }));
    let e = env(&fake);
    let img = image::pull(
        &e.store,
        &e.globals,
        &reg::image_ref(&e.reference),
        &NoProgress,
    )
    .unwrap();
    assert!(img.layers[0].join("f").is_file());
}

#[test]
fn not_found_and_schema1_are_named() {
    require_root!();
    let fake = Fake::start(handler(content(b""), |path, _, _| {
        if path.contains("/manifests/old") {
            return Some(Reply::Body(
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                br#"{"schemaVersion":1,"name":"x"}"#.to_vec(),
            ));
        }
        path.contains("/manifests/").then_some(Reply::Status(404))
    }));
    let e = env(&fake);
    let err = pull_err(&e);
    assert!(
        err.contains("404") && err.contains("hostile/img:1"),
        "{err}"
    );
    let old = format!("127.0.0.1:{}/hostile/img:old", fake.port);
    let err = reg::chain(
        &image::pull(&e.store, &e.globals, &reg::image_ref(&old), &NoProgress).unwrap_err(),
    );
    assert!(
        err.contains("schema 1") && err.contains("hostile/img:old"),
        "{err}"
    );
}
