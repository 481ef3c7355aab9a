//! `image::pull` leaves no thread behind: the runtime may clone(2) only from a
//! single-threaded process, so the private tokio runtime must be gone (every
//! worker and blocking thread joined) when pull returns. One test per file, so
//! no other test's threads are counted.
#[path = "support/registry.rs"]
mod reg;
mod support;

use berth::config::load_globals;
use berth::image::{self, NoProgress};
use berth::store::Store;
use reg::{Layout, Member, Registry, RegistryOptions};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn pull_returns_with_no_threads_left() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| reg::tar_of(&[Member::RawFile(format!("f{i}"), vec![i as u8; 100_000])]))
        .collect();
    let built = layout.image(&layers, "amd64", serde_json::json!({}));
    layout.tag(&built, "t");
    registry.push(&layout.dir, "t", "threads/img:t");
    let storage = tmp.path().join("store");
    let root = reg::globals_root(
        tmp.path(),
        &storage,
        &format!(
            "[[registry]]\nhost = \"{}\"\ninsecure = true\n",
            registry.host()
        ),
    );
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&storage).unwrap();
    let before = threads();
    let img = image::pull(
        &store,
        &globals,
        &reg::image_ref(&format!("{}/threads/img:t", registry.host())),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(img.layers.len(), 4);
    assert_eq!(threads(), before, "pull left threads running");
    // Offline sources too (their unpackers are scoped threads).
    image::pull(
        &store,
        &globals,
        &reg::image_ref(&format!("oci:{}:t", layout.dir.display())),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(threads(), before);
}
