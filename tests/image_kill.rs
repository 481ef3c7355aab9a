//! `berth pull` killed (SIGKILL, by PID) at chosen points — while a blob
//! downloads, while a layer unpacks, after some layers are complete — each
//! seen in the store before the kill, through a throttling proxy that makes
//! the pull slow enough to catch: whatever is left in the store is either
//! complete and verified or named as temporary, and the next pull always
//! succeeds.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::store::Store;
use reg::{Layout, Member, Registry, RegistryOptions};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// path → (content hash or kind, size, mode) for every entry of an
/// unpacked layer.
fn listing(root: &Path) -> BTreeMap<String, (String, u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            let kind = if m.is_dir() {
                stack.push(e.path());
                "d"
            } else if m.file_type().is_symlink() {
                "l"
            } else {
                "f"
            };
            // Regular files are compared by content hash, not just size.
            let sum = if kind == "f" {
                reg::sha256(&std::fs::read(e.path()).unwrap())
            } else {
                kind.to_string()
            };
            out.insert(
                e.path().strip_prefix(root).unwrap().display().to_string(),
                (sum, if m.is_dir() { 0 } else { m.len() }, m.mode() & 0o7777),
            );
        }
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every complete-looking entry is complete: blobs hash to their names,
/// layer directories match a reference unpack, refs name whole images.
fn check_store(
    storage: &Path,
    reference: &BTreeMap<String, BTreeMap<String, (String, u64, u32)>>,
    round: usize,
) {
    let store = Store::open(storage).unwrap();
    let problems = store.verify().unwrap();
    assert!(problems.is_empty(), "round {round}: {problems:?}");
    for name in names(&storage.join("layers/sha256")) {
        if name.starts_with(".tmp-") {
            continue;
        }
        let want = reference
            .get(&name)
            .unwrap_or_else(|| panic!("round {round}: unknown layer {name}"));
        assert_eq!(
            &listing(&storage.join("layers/sha256").join(&name)),
            want,
            "round {round}: layer {name} is incomplete"
        );
    }
}

#[test]
fn killed_pulls_leave_nothing_half_done() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());

    // Three layers: a binary, many small files, one large incompressible file.
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let mut small = vec![Member::Dir("data/", 0o755, 0, 0)];
    let mut data_rng = Rng(0x9e3779b97f4a7c15);
    let file_names: Vec<&'static str> = (0..500)
        .map(|i| &*Box::leak(format!("data/f{:04}", i).into_boxed_str()))
        .collect();
    for n in &file_names {
        let body: Vec<u8> = (0..700).map(|_| data_rng.next() as u8).collect();
        small.push(Member::File(
            n,
            Box::leak(body.into_boxed_slice()),
            0o644,
            0,
            0,
        ));
    }
    let big: Vec<u8> = (0..1_500_000).map(|_| data_rng.next() as u8).collect();
    let built = layout.image(
        &[
            reg::tar_of(&reg::busybox_members()),
            reg::tar_of(&small),
            reg::tar_of(&[Member::BigFile("big", big)]),
        ],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&built, "k");
    registry.push(&layout.dir, "k", "kill/img:k");
    let proxy = SlowProxy::start(registry.port);
    let r = format!("{}/kill/img:k", proxy.host());
    let root = reg::globals_root(
        tmp.path(),
        &tmp.path().join("unused"),
        &format!(
            "[[registry]]\nhost = \"{}\"\ninsecure = true\n",
            proxy.host()
        ),
    );
    let pull = |storage: &Path| {
        let mut c = Command::new(support::berth_bin());
        c.args(["pull", "-q", &r, "--storage-root"])
            .arg(storage)
            .env("BERTH_ROOT", &root)
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };

    // A reference pull, at full speed: its layers are what complete layers
    // look like.
    let ref_store = tmp.path().join("ref-store");
    let out = pull(&ref_store).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: BTreeMap<_, _> = built
        .diff_ids
        .iter()
        .map(|d| {
            (
                d[7..].to_string(),
                listing(&ref_store.join("layers/sha256").join(&d[7..])),
            )
        })
        .collect();

    let points = [
        KillPoint::Downloading,
        KillPoint::Unpacking,
        KillPoint::SomeLayersDone,
    ];
    for round in 1..=9 {
        let point = points[(round - 1) % points.len()];
        let storage = tmp.path().join(format!("store-{round}"));
        // Reuse a partly filled store every other round, so kills also land
        // in pulls that find some layers present.
        if round % 2 == 0 {
            let prev = tmp.path().join(format!("store-{}", round - 1));
            std::fs::rename(&prev, &storage).unwrap();
        }
        proxy.throttle(true);
        let mut child = pull(&storage).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                panic!("round {round}: the pull ended ({st}) before {point:?} was seen");
            }
            if point.reached(&storage) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {point:?} never seen"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        child.kill().unwrap();
        let _ = child.wait();
        proxy.throttle(false);
        assert!(
            !Store::open(&storage)
                .unwrap()
                .is_present(&reg::image_ref(&r)),
            "round {round}: killed at {point:?}, yet the image is complete"
        );
        check_store(&storage, &reference, round);
        // The next pull succeeds and leaves a whole, verified image.
        let out = pull(&storage).output().unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_store(&storage, &reference, round);
        let store = Store::open(&storage).unwrap();
        assert!(store.is_present(&reg::image_ref(&r)), "round {round}");
        assert_eq!(
            names(&storage.join("layers/sha256")).len(),
            3,
            "round {round}: {:?}",
            names(&storage.join("layers/sha256"))
        );
        for sub in ["blobs/sha256", "layers/sha256"] {
            let tmps: Vec<_> = names(&storage.join(sub))
                .into_iter()
                .filter(|n| n.starts_with(".tmp-"))
                .collect();
            assert!(
                tmps.is_empty(),
                "round {round}: stale temp entries in {sub}: {tmps:?}"
            );
        }
        if round % 2 == 1 {
            // Undo part of the pull so the next round's kill has work to hit.
            store.remove_ref(&reg::image_ref(&r)).unwrap();
            std::fs::remove_dir_all(storage.join("layers/sha256").join(&built.diff_ids[2][7..]))
                .unwrap();
            std::fs::remove_file(
                storage
                    .join("blobs/sha256")
                    .join(&built.layer_digests[2][7..]),
            )
            .unwrap();
        }
    }
}

/// Where a pull is killed, each recognised by what the store holds.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// A blob is being written (`blobs/sha256/.tmp-*` holds bytes).
    Downloading,
    /// A layer is being unpacked (`layers/sha256/.tmp-*`).
    Unpacking,
    /// At least one layer is complete, the image is not.
    SomeLayersDone,
}

impl KillPoint {
    fn reached(self, storage: &Path) -> bool {
        let tmps = |sub: &str| -> Vec<std::path::PathBuf> {
            names(&storage.join(sub))
                .into_iter()
                .filter(|n| n.starts_with(".tmp-"))
                .map(|n| storage.join(sub).join(n))
                .collect()
        };
        match self {
            KillPoint::Downloading => tmps("blobs/sha256")
                .iter()
                .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0)),
            KillPoint::Unpacking => !tmps("layers/sha256").is_empty(),
            KillPoint::SomeLayersDone => names(&storage.join("layers/sha256"))
                .iter()
                .any(|n| !n.starts_with(".tmp-")),
        }
    }
}

/// A TCP proxy on loopback in front of the registry. Throttled, it passes the
/// registry's answers on at about 1 MB/s per connection, so a pull of the
/// test image takes seconds and each kill point can be seen before the kill.
struct SlowProxy {
    port: u16,
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowProxy {
    fn start(upstream: u16) -> SlowProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        reg::private_netns();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let slow = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (slow.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(c2, s2, None));
                let slow = s.clone();
                std::thread::spawn(move || pump(server, client, Some(slow)));
            }
        });
        SlowProxy { port, slow, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn throttle(&self, on: bool) {
        self.slow.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copy `from` to `to` until either side closes; with `slow` set, 16 KiB
/// every 16 ms.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    slow: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if slow
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            std::thread::sleep(Duration::from_millis(16));
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
