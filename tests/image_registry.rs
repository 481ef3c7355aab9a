//! Pulls from a real registry (Debian's docker-registry on loopback): plain
//! http, TLS with a CA made on the spot, htpasswd Basic auth, Bearer tokens,
//! multi-layer images with whiteouts, multi-platform indexes, shared layers.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::path::Path;

use berth::config::load_globals;
use berth::image::{self, NoProgress, Platform, PullOptions};
use berth::store::Store;
use reg::{Layout, Member, Registry, RegistryOptions};

macro_rules! require_tools {
    () => {
        require_root!();
        require_program!("docker-registry");
        require_program!("skopeo");
        require_program!("openssl");
    };
}

fn insecure(host: &str) -> String {
    format!("[[registry]]\nhost = \"{host}\"\ninsecure = true\n")
}

fn two_layer_image(layout: &Layout) -> reg::Built {
    let mut l1 = reg::busybox_members();
    l1.extend([
        Member::Dir("etc/", 0o755, 0, 0),
        Member::File("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644, 0, 0),
        Member::File("etc/gone", b"deleted by layer 2", 0o644, 0, 0),
        Member::Dir("opt/", 0o755, 0, 0),
        Member::Dir("opt/dir/", 0o755, 0, 0),
        Member::File("opt/dir/old", b"hidden by the opaque marker", 0o644, 0, 0),
    ]);
    let l2 = vec![
        Member::Dir("etc/", 0o755, 0, 0),
        Member::File("etc/.wh.gone", b"", 0o644, 0, 0),
        Member::Dir("opt/", 0o755, 0, 0),
        Member::Dir("opt/dir/", 0o750, 33, 33),
        Member::File("opt/dir/.wh..wh..opq", b"", 0o644, 0, 0),
        Member::File("opt/dir/new", b"new file", 0o640, 1000, 1001),
        Member::Hardlink("opt/dir/hard", "opt/dir/new"),
        Member::File("usr/bin/suid", b"#!/bin/sh\n", 0o4755, 0, 0),
        Member::Symlink("usr/bin/abs", "/bin/busybox"),
        Member::Fifo("run/fifo"),
        Member::CharDev("dev/null", 1, 3),
        Member::Xattr("opt/xattr", "user.berth", b"hello"),
    ];
    layout.image(
        &[reg::tar_of(&l1), reg::tar_of(&l2)],
        "amd64",
        serde_json::json!({
            "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/bin", "A=b"],
            "WorkingDir": "/opt", "User": "1000:1001", "ExposedPorts": {"80/tcp": {}},
            "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT",
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5000000000u64, "Retries": 2},
        }),
    )
}

#[test]
fn plain_http_pull_unpacks_layers_file_by_file() {
    require_tools!();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = two_layer_image(&layout);
    layout.tag(&built, "v1");
    registry.push(&layout.dir, "v1", "test/multi:v1");

    let storage = tmp.path().join("store");
    let reference = format!("{}/test/multi:v1", registry.host());
    // Plain http is never tried unless the registry is marked insecure.
    let secure_dir = tmp.path().join("secure");
    let secure = load_globals(&reg::globals_root(&secure_dir, &storage, "")).unwrap();
    let err = reg::chain(
        &image::pull(
            &Store::open(&storage).unwrap(),
            &secure,
            &reg::image_ref(&reference),
            &NoProgress,
        )
        .unwrap_err(),
    );
    assert!(
        err.contains(&format!("https://{}/v2/", registry.host()))
            && err.contains("InvalidContentType"),
        "the pull should have tried https only and failed on its handshake: {err}"
    );
    let root = reg::globals_root(tmp.path(), &storage, &insecure(&registry.host()));
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&globals.storage_root).unwrap();
    assert!(!store.is_present(&reg::image_ref(&reference)));
    let img = image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap();
    assert!(store.is_present(&reg::image_ref(&reference)));
    assert_eq!(img.reference, reference);
    assert_eq!(img.layers.len(), 2);
    assert!(img.layers[0].ends_with(&built.diff_ids[0][7..]));

    // The image config is exposed for the planner.
    let cfg = img.config.config().as_ref().unwrap();
    assert_eq!(
        cfg.entrypoint().as_ref().unwrap(),
        &vec!["/bin/sh".to_string(), "-c".into()]
    );
    assert_eq!(cfg.cmd().as_ref().unwrap(), &vec!["echo hi".to_string()]);
    assert_eq!(cfg.working_dir().as_deref(), Some("/opt"));
    assert_eq!(cfg.user().as_deref(), Some("1000:1001"));
    assert_eq!(cfg.stop_signal().as_deref(), Some("SIGQUIT"));
    assert!(cfg
        .exposed_ports()
        .as_ref()
        .unwrap()
        .contains(&"80/tcp".to_string()));
    assert!(cfg
        .volumes()
        .as_ref()
        .unwrap()
        .contains(&"/data".to_string()));
    let hc = img.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, vec!["CMD", "true"]);
    assert_eq!((hc.interval_ns, hc.retries), (5_000_000_000, 2));

    // Layer 2, file by file: owners, modes, links, whiteouts.
    let top = &img.layers[1];
    let got = reg::describe_tree(top);
    let new_sum = &reg::sha256(b"new file")[7..19];
    let suid_sum = &reg::sha256(b"#!/bin/sh\n")[7..19];
    let x_sum = &reg::sha256(b"x")[7..19];
    let want = vec![
        "dev dir 755 0:0".to_string(),
        "dev/null chr 1:3 666 0:0".to_string(),
        "etc dir 755 0:0".to_string(),
        "etc/gone chr 0:0 0 0:0".to_string(),
        "opt dir 755 0:0".to_string(),
        "opt/dir dir 750 33:33".to_string(),
        format!("opt/dir/hard file {new_sum} nlink=2 640 1000:1001"),
        format!("opt/dir/new file {new_sum} nlink=2 640 1000:1001"),
        format!("opt/xattr file {x_sum} nlink=1 644 0:0"),
        "run dir 755 0:0".to_string(),
        "run/fifo fifo 600 0:0".to_string(),
        "usr dir 755 0:0".to_string(),
        "usr/bin dir 755 0:0".to_string(),
        "usr/bin/abs link->/bin/busybox 777 0:0".to_string(),
        format!("usr/bin/suid file {suid_sum} nlink=1 4755 0:0"),
    ];
    assert_eq!(got, want);
    assert_eq!(
        reg::xattr(&top.join("opt/dir"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        reg::xattr(&top.join("opt/xattr"), "user.berth").as_deref(),
        Some(&b"hello"[..])
    );
    let bottom = reg::describe_tree(&img.layers[0]);
    assert!(
        bottom.contains(&"bin/sh link->busybox 777 0:0".to_string()),
        "{bottom:?}"
    );
    assert!(bottom.iter().any(|l| l.starts_with("opt/dir/old file")));
    // The mtime from the archive is kept.
    let m = std::fs::metadata(top.join("opt/dir/new")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mtime(&m), 1_600_000_000);

    assert!(store.verify().unwrap().is_empty());
    // A second pull finds every layer present.
    let again = image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap();
    assert_eq!(again.manifest_digest, img.manifest_digest);

    // Refused without insecure = true: plain http is never the default.
    let root2 = reg::globals_root(&tmp.path().join("strict"), &tmp.path().join("store2"), "");
    let g2 = load_globals(&root2).unwrap();
    let s2 = Store::open(&g2.storage_root).unwrap();
    let err =
        reg::chain(&image::pull(&s2, &g2, &reg::image_ref(&reference), &NoProgress).unwrap_err());
    assert!(
        err.contains(&registry.host()) && err.contains("test/multi:v1"),
        "{err}"
    );
}

#[test]
fn tls_with_ca_from_certs_d_and_basic_auth() {
    require_tools!();
    require_program!("htpasswd");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions {
        tls: true,
        htpasswd: Some(("alice".into(), "wonder".into())),
        ..Default::default()
    });
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[reg::tar_of(&reg::busybox_members())],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&built, "1");
    registry.push_with_creds(&layout.dir, "1", "sec/bb:1", "alice:wonder");
    let reference = format!("{}/sec/bb:1", registry.host());

    let storage = tmp.path().join("store");
    // No insecure: TLS verified against certs.d/HOST:PORT/ca.crt.
    let root = reg::globals_root(
        tmp.path(),
        &storage,
        &format!(
            "[auth]\nfile = \"{}\"\n",
            tmp.path().join("auth.json").display()
        ),
    );
    let certs = root.join("etc/berth/certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&storage).unwrap();

    // Without the CA: a TLS error naming the host.
    let err = reg::chain(
        &image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap_err(),
    );
    assert!(
        err.contains(&registry.host()) && err.contains("invalid peer certificate: UnknownIssuer"),
        "the reason, an unknown CA, should be named: {err}"
    );

    copy_dir(registry.certs_dir.as_ref().unwrap(), &certs);
    // With the CA but no credentials: 401, named.
    let err = reg::chain(
        &image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap_err(),
    );
    assert!(
        err.contains("401") && err.contains(&registry.host()),
        "{err}"
    );

    use base64::Engine;
    let wrong = base64::engine::general_purpose::STANDARD.encode("alice:nope");
    std::fs::write(
        tmp.path().join("auth.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{wrong}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let err = reg::chain(
        &image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap_err(),
    );
    assert!(err.contains("401"), "{err}");

    let good = base64::engine::general_purpose::STANDARD.encode("alice:wonder");
    std::fs::write(
        tmp.path().join("auth.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{good}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let img = image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap();
    assert!(img.layers[0].join("bin/busybox").is_file());
    assert!(!store
        .blob_path(&img.manifest_digest)
        .unwrap()
        .as_os_str()
        .is_empty());

    // Pinned by digest.
    let pinned = format!("{}/sec/bb@{}", registry.host(), built.manifest_digest);
    let img2 = image::pull(&store, &globals, &reg::image_ref(&pinned), &NoProgress).unwrap();
    assert_eq!(img2.manifest_digest, built.manifest_digest);
    let wrong_pin = format!("{}/sec/bb@sha256:{}", registry.host(), "0".repeat(64));
    let err = reg::chain(
        &image::pull(&store, &globals, &reg::image_ref(&wrong_pin), &NoProgress).unwrap_err(),
    );
    assert!(err.contains("404") || err.contains("manifest"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn multi_platform_index_picks_the_right_image() {
    require_tools!();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let amd = layout.image(
        &[reg::tar_of(&[Member::File("arch", b"amd64", 0o644, 0, 0)])],
        "amd64",
        serde_json::json!({}),
    );
    let arm = layout.image(
        &[reg::tar_of(&[Member::File("arch", b"arm64", 0o644, 0, 0)])],
        "arm64",
        serde_json::json!({}),
    );
    layout.tag_index(&[(&amd, "amd64"), (&arm, "arm64")], "multi");
    registry.push(&layout.dir, "multi", "plat/img:multi");
    let reference = format!("{}/plat/img:multi", registry.host());
    let storage = tmp.path().join("store");
    let root = reg::globals_root(tmp.path(), &storage, &insecure(&registry.host()));
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&storage).unwrap();

    let host = Platform::host();
    let img = image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap();
    let content = std::fs::read_to_string(img.layers[0].join("arch")).unwrap();
    if host.architecture == "amd64" || host.architecture == "arm64" {
        assert_eq!(content, host.architecture);
    }
    for (arch, built) in [("arm64", &arm), ("amd64", &amd)] {
        let opts = PullOptions {
            platform: Platform::parse(&format!("linux/{arch}")),
        };
        let img = image::pull_with(
            &store,
            &globals,
            &reg::image_ref(&reference),
            &opts,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(img.manifest_digest, built.manifest_digest);
        assert_eq!(
            std::fs::read_to_string(img.layers[0].join("arch")).unwrap(),
            arch
        );
    }
    let opts = PullOptions {
        platform: Platform::parse("linux/s390x"),
    };
    let err = reg::chain(
        &image::pull_with(
            &store,
            &globals,
            &reg::image_ref(&reference),
            &opts,
            &NoProgress,
        )
        .unwrap_err(),
    );
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
}

#[test]
fn a_layer_shared_by_two_images_is_unpacked_once() {
    require_tools!();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let base = reg::tar_of(&reg::busybox_members());
    let a = layout.image(
        &[
            base.clone(),
            reg::tar_of(&[Member::File("a", b"a", 0o644, 0, 0)]),
        ],
        "amd64",
        serde_json::json!({}),
    );
    let b = layout.image(
        &[base, reg::tar_of(&[Member::File("b", b"b", 0o644, 0, 0)])],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&a, "a");
    layout.tag(&b, "b");
    registry.push(&layout.dir, "a", "shared/a:1");
    registry.push(&layout.dir, "b", "shared/b:1");
    let storage = tmp.path().join("store");
    let root = reg::globals_root(tmp.path(), &storage, &insecure(&registry.host()));
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&storage).unwrap();
    // Both at once: the shared layer is still unpacked only once.
    let (ra, rb) = (
        format!("{}/shared/a:1", registry.host()),
        format!("{}/shared/b:1", registry.host()),
    );
    let (ia, ib) = std::thread::scope(|s| {
        let ha =
            s.spawn(|| image::pull(&store, &globals, &reg::image_ref(&ra), &NoProgress).unwrap());
        let hb =
            s.spawn(|| image::pull(&store, &globals, &reg::image_ref(&rb), &NoProgress).unwrap());
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(ia.layers[0], ib.layers[0]);
    let layer_dirs: Vec<_> = std::fs::read_dir(storage.join("layers/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(layer_dirs.len(), 3, "{layer_dirs:?}");
    assert!(store.verify().unwrap().is_empty());

    // Removing one image keeps the shared layer for the other.
    store.remove_ref(&reg::image_ref(&ra)).unwrap();
    let report = store.prune(&[]).unwrap();
    assert_eq!(report.layers.len(), 1);
    assert!(store.is_present(&reg::image_ref(&rb)));
    assert!(!store.is_present(&reg::image_ref(&ra)));
    assert!(ib.layers[0].join("bin/busybox").is_file());
}

#[test]
fn bearer_token_flow_against_a_token_registry() {
    require_tools!();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions {
        token: true,
        ..Default::default()
    });
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[reg::tar_of(&[Member::File("hello", b"token", 0o644, 0, 0)])],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&built, "t");
    registry.push(&layout.dir, "t", "tok/img:t");
    let ts = registry.token_server.as_ref().unwrap();
    let before = ts.hits.load(std::sync::atomic::Ordering::Relaxed);
    let storage = tmp.path().join("store");
    let root = reg::globals_root(tmp.path(), &storage, &insecure(&registry.host()));
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&storage).unwrap();
    let img = image::pull(
        &store,
        &globals,
        &reg::image_ref(&format!("{}/tok/img:t", registry.host())),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        std::fs::read(img.layers[0].join("hello")).unwrap(),
        b"token"
    );
    assert!(
        ts.hits.load(std::sync::atomic::Ordering::Relaxed) > before,
        "the token endpoint was never asked"
    );
}

#[test]
fn mirrors_are_tried_first_and_a_dead_one_is_skipped() {
    require_tools!();
    let tmp = tempfile::tempdir().unwrap();
    let mirror = Registry::start(RegistryOptions::default());
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[reg::tar_of(&[Member::File("from", b"mirror", 0o644, 0, 0)])],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&built, "1");
    mirror.push(&layout.dir, "1", "mirrored/img:1");
    // The registry named in the reference does not exist at all: only the
    // mirror can answer.
    let dead = reg::free_port();
    let origin = format!("127.0.0.1:{dead}");
    let storage = tmp.path().join("store");
    let conf = format!(
        "[[registry]]\nhost = \"{origin}\"\ninsecure = true\nmirrors = [\"127.0.0.1:{}\", \"{}\"]\n[[registry]]\nhost = \"{}\"\ninsecure = true\n",
        reg::free_port(),
        mirror.host(),
        mirror.host(),
    );
    let root = reg::globals_root(tmp.path(), &storage, &conf);
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&storage).unwrap();
    let reference = format!("{origin}/mirrored/img:1");
    let img = image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap();
    // Stored under the name the user asked for.
    assert_eq!(img.reference, reference);
    assert_eq!(
        std::fs::read(img.layers[0].join("from")).unwrap(),
        b"mirror"
    );
    // No mirror has it and the origin is down: every host is named.
    let err = reg::chain(
        &image::pull(
            &store,
            &globals,
            &reg::image_ref(&format!("{origin}/other/img:1")),
            &NoProgress,
        )
        .unwrap_err(),
    );
    assert!(
        err.contains(&mirror.host()) && err.contains(&origin),
        "{err}"
    );
}

#[test]
fn concurrent_pulls_of_one_image_all_succeed_and_unpack_once() {
    require_tools!();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[
            reg::tar_of(&reg::busybox_members()),
            reg::tar_of(&[Member::File("x", b"x", 0o644, 0, 0)]),
        ],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&built, "c");
    registry.push(&layout.dir, "c", "conc/img:c");
    let storage = tmp.path().join("store");
    let root = reg::globals_root(tmp.path(), &storage, &insecure(&registry.host()));
    let reference = format!("{}/conc/img:c", registry.host());
    // Separate processes, as concurrent `systemctl start`s would be.
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(support::berth_bin())
                .args(["pull", "-q", &reference])
                .env("BERTH_ROOT", &root)
                .stderr(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            built.manifest_digest
        );
    }
    let layers: Vec<_> = std::fs::read_dir(storage.join("layers/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(layers.len(), 2, "{layers:?}");
    let store = Store::open(&storage).unwrap();
    assert!(store.verify().unwrap().is_empty());
    assert!(store.is_present(&reg::image_ref(&reference)));
}

/// A registry that demands a client certificate: refused without one, a
/// clear error for a certificate without its key, and pulled once
/// `certs.d/HOST/NAME.cert` and `NAME.key` are there (Docker's convention).
#[test]
fn client_certificate_from_certs_d() {
    require_tools!();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions {
        tls: true,
        client_certs: true,
        ..Default::default()
    });
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[reg::tar_of(&[Member::File(
            "who",
            b"client-cert",
            0o644,
            0,
            0,
        )])],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&built, "1");
    registry.push(&layout.dir, "1", "mtls/img:1");
    let reference = format!("{}/mtls/img:1", registry.host());
    let storage = tmp.path().join("store");
    let root = reg::globals_root(tmp.path(), &storage, "");
    let certs = root.join("etc/berth/certs.d");
    copy_dir(registry.certs_dir.as_ref().unwrap(), &certs);
    let globals = load_globals(&root).unwrap();
    let store = Store::open(&storage).unwrap();

    // The CA alone: the server's certificate is trusted, ours is missing.
    let err = reg::chain(
        &image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap_err(),
    );
    // The server refuses the handshake: rustls names its alert when it
    // reads it first, else (TLS 1.3 lets the client finish first) the
    // connection is seen closing. Not the CA: that one is trusted now.
    assert!(
        err.contains(&registry.host())
            && !err.contains("UnknownIssuer")
            && [
                "BadCertificate",
                "CertificateRequired",
                "connection closed",
                "broken pipe"
            ]
            .iter()
            .any(|r| err.contains(r)),
        "the pull should fail on the server's refusal of the handshake: {err}"
    );

    let host_dir = certs.join(registry.host());
    let client = registry.client_dir.as_ref().unwrap();
    std::fs::copy(client.join("client.cert"), host_dir.join("client.cert")).unwrap();
    let err = reg::chain(
        &image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap_err(),
    );
    assert!(
        err.contains("client.cert' has no key") && err.contains("client.key"),
        "{err}"
    );

    std::fs::copy(client.join("client.key"), host_dir.join("client.key")).unwrap();
    let img = image::pull(&store, &globals, &reg::image_ref(&reference), &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(img.layers[0].join("who")).unwrap(),
        b"client-cert"
    );
}
