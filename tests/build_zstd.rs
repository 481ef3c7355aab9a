//! `berth build --compression zstd`: the new layer is a zstd blob
//! (`application/vnd.oci.image.layer.v1.tar+zstd`, zstd's magic), pushed to
//! the real loopback registry, read back by skopeo (which verifies every
//! blob's digest) and by `berth pull` into a fresh store, and run there
//! with `berth run` in a `Sandbox`. A gzip build of the same file is
//! another image of the same diff ids.
#[path = "support/registry.rs"]
mod reg;
#[path = "support/runtime.rs"]
mod rt;
mod support;

use std::path::Path;
use std::process::{Command, Output};

use reg::{Registry, RegistryOptions};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn berth(root: &Path, args: &[&str]) -> Output {
    Command::new(support::berth_bin())
        .args(args)
        .env("BERTH_ROOT", root)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn zstd_build_pushes_pulls_and_runs() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let host = registry.host();
    let layout = reg::busybox_image_layout(tmp.path());
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello from a zstd layer\n").unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM oci:{}:1\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n",
            layout.display()
        ),
    )
    .unwrap();
    let registries = format!("[[registry]]\nhost = \"{host}\"\ninsecure = true\n");
    let root = reg::globals_root(tmp.path(), &tmp.path().join("store"), &registries);
    let c = ctx.to_str().unwrap();

    // Built: the base's layer as it was, the COPY's as zstd.
    let zs = ok(&berth(
        &root,
        &[
            "build",
            "-q",
            "--compression",
            "zstd",
            "-t",
            "localhost/zs:1",
            c,
        ],
    ));
    let inspect = json(&ok(&berth(&root, &["inspect", "localhost/zs:1"])));
    let layers = inspect["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{inspect:#}");
    assert_eq!(
        layers[1]["media_type"], "application/vnd.oci.image.layer.v1.tar+zstd",
        "{inspect:#}"
    );
    let blob = tmp.path().join("store/blobs/sha256").join(
        layers[1]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    assert_eq!(std::fs::read(&blob).unwrap()[..4], ZSTD_MAGIC);
    // gzip (the default) of the same file: another digest, same content.
    let gz = ok(&berth(&root, &["build", "-q", "-t", "localhost/gz:1", c]));
    assert_ne!(gz.trim(), zs.trim());
    let gz_inspect = json(&ok(&berth(&root, &["inspect", "localhost/gz:1"])));
    assert_eq!(
        gz_inspect["layers"][1]["media_type"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // Pushed; skopeo reads it back, every blob verified.
    let dest = format!("{host}/zs/app:1");
    ok(&berth(&root, &["push", "localhost/zs:1", &dest]));
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    let manifest = json(&ok(&raw));
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let copied = tmp.path().join("skopeo-copy");
    ok(&Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{dest}"))
        .arg(format!("oci:{}:1", copied.display()))
        .output()
        .unwrap());
    let copied_blob = copied.join("blobs/sha256").join(
        manifest["layers"][1]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    assert_eq!(std::fs::read(&copied_blob).unwrap()[..4], ZSTD_MAGIC);

    // berth pulls it into a fresh store and runs it.
    let root2 = reg::globals_root(
        &tmp.path().join("second"),
        &tmp.path().join("store2"),
        &registries,
    );
    let pulled = ok(&berth(&root2, &["pull", "-q", &dest]));
    assert_eq!(pulled.trim(), zs.trim());
    let sb = rt::Sandbox::new();
    let run = sb
        .command()
        .arg(support::berth_bin())
        .env("BERTH_ROOT", &root2)
        .args(["run", "--rm", &dest])
        .output()
        .unwrap();
    assert_eq!(ok(&run), "hello from a zstd layer\n");
}
