//! `berth pull` killed (SIGKILL, by PID) at random points, 20 times: whatever
//! is left in the store is either complete and verified or named as
//! temporary, and the next pull always succeeds.
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
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
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
    let r = format!("{}/kill/img:k", registry.host());
    let root = reg::globals_root(
        tmp.path(),
        &tmp.path().join("unused"),
        &format!(
            "[[registry]]\nhost = \"{}\"\ninsecure = true\n",
            registry.host()
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

    // A reference pull: its layers are what complete layers look like.
    let ref_store = tmp.path().join("ref-store");
    let t = Instant::now();
    let out = pull(&ref_store).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = t.elapsed();
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
    eprintln!("a full pull takes {full:?}");

    let mut partial_states = 0;
    for round in 1..=20 {
        let storage = tmp.path().join(format!("store-{round}"));
        // Reuse a partly filled store every other round, so kills also land
        // in pulls that find some layers present.
        if round % 2 == 0 {
            let prev = tmp.path().join(format!("store-{}", round - 1));
            std::fs::rename(&prev, &storage).unwrap();
        }
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 * 12 / 10 + 1));
        let mut child = pull(&storage).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        if storage.join("layers/sha256").is_dir() && !Store::open(&storage).unwrap().is_present(&r)
        {
            partial_states += 1;
        }
        if storage.is_dir() {
            check_store(&storage, &reference, round);
        }
        // The next pull succeeds and leaves a whole, verified image.
        let out = pull(&storage).output().unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_store(&storage, &reference, round);
        let store = Store::open(&storage).unwrap();
        assert!(store.is_present(&r), "round {round}");
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
            store.remove_ref(&r).unwrap();
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
    eprintln!("{partial_states} of 20 kills left a partial store");
}
