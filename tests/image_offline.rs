//! Offline sources: OCI layout directories and archives, `docker save`-format
//! archives (written by skopeo), and rootfs tarballs imported as images.
#[path = "support/registry.rs"]
mod reg;
mod support;

use berth::config::Globals;
use berth::image::{self, NoProgress};
use berth::store::Store;
use reg::{Layout, Member};

fn layout_with_image(dir: &std::path::Path) -> (Layout, reg::Built) {
    let mut layout = Layout::new(dir);
    let mut members = reg::busybox_members();
    members.push(Member::File("etc/motd", b"offline\n", 0o644, 0, 0));
    let built = layout.image(
        &[
            reg::tar_of(&members),
            reg::tar_of(&[
                Member::File("etc/.wh.motd", b"", 0o644, 0, 0),
                Member::File("top", b"t", 0o600, 5, 6),
            ]),
        ],
        "amd64",
        serde_json::json!({"Cmd": ["/bin/sh"]}),
    );
    layout.tag(&built, "v1");
    (layout, built)
}

fn store_in(dir: &std::path::Path) -> (Store, Globals) {
    let g = Globals {
        storage_root: dir.join("store"),
        ..Default::default()
    };
    (Store::open(&g.storage_root).unwrap(), g)
}

#[test]
fn oci_layout_directory_by_tag() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = layout_with_image(&tmp.path().join("layout"));
    let (store, g) = store_in(tmp.path());
    let r = format!("oci:{}:v1", layout.dir.display());
    let img = image::pull(&store, &g, &reg::image_ref(&r), &NoProgress).unwrap();
    assert_eq!(img.manifest_digest, built.manifest_digest);
    assert_eq!(img.reference, r);
    assert!(store.is_present(&reg::image_ref(&r)));
    assert!(img.layers[0].join("bin/busybox").is_file());
    let tree = reg::describe_tree(&img.layers[1]);
    assert_eq!(
        tree,
        vec![
            "etc dir 755 0:0".to_string(),
            "etc/motd chr 0:0 0 0:0".into(),
            format!("top file {} nlink=1 600 5:6", &reg::sha256(b"t")[7..19])
        ]
    );
    // One image in the layout: the tag may be left out.
    let untagged = format!("oci:{}", layout.dir.display());
    assert_eq!(
        image::pull(&store, &g, &reg::image_ref(&untagged), &NoProgress)
            .unwrap()
            .manifest_digest,
        built.manifest_digest
    );
    let err = reg::chain(
        &image::pull(
            &store,
            &g,
            &reg::image_ref(&format!("oci:{}:nope", layout.dir.display())),
            &NoProgress,
        )
        .unwrap_err(),
    );
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_corrupt_blob_in_a_layout_is_refused() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = layout_with_image(&tmp.path().join("layout"));
    let p = layout
        .dir
        .join("blobs/sha256")
        .join(&built.layer_digests[1][7..]);
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 5] ^= 1;
    std::fs::write(&p, b).unwrap();
    let (store, g) = store_in(tmp.path());
    let r = format!("oci:{}:v1", layout.dir.display());
    let err = reg::chain(&image::pull(&store, &g, &reg::image_ref(&r), &NoProgress).unwrap_err());
    assert!(
        err.contains("digest mismatch") && err.contains(&built.layer_digests[1]),
        "{err}"
    );
    assert!(!store.is_present(&reg::image_ref(&r)));
    assert!(store.verify().unwrap().is_empty());
    assert!(!store.has_blob(&built.layer_digests[1]));
}

#[test]
fn oci_archive() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = layout_with_image(&tmp.path().join("layout"));
    let archive = tmp.path().join("img.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    b.append_dir_all(".", &layout.dir).unwrap();
    b.finish().unwrap();
    drop(b);
    let (store, g) = store_in(tmp.path());
    let r = format!("oci-archive:{}:v1", archive.display());
    let img = image::pull(&store, &g, &reg::image_ref(&r), &NoProgress).unwrap();
    assert_eq!(img.manifest_digest, built.manifest_digest);
    assert!(img.layers[0].join("bin/busybox").is_file());
    assert!(store.is_present(&reg::image_ref(&r)));
}

#[test]
fn docker_archive_written_by_skopeo() {
    require_root!();
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = layout_with_image(&tmp.path().join("layout"));
    let archive = tmp.path().join("docker.tar");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", layout.dir.display()))
        .arg(format!("docker-archive:{}:saved/img:v1", archive.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (store, g) = store_in(tmp.path());
    let r = format!("docker-archive:{}", archive.display());
    let img = image::pull(&store, &g, &reg::image_ref(&r), &NoProgress).unwrap();
    // Same layers (by diff id) as the OCI original.
    let got: Vec<String> = img
        .layers
        .iter()
        .map(|p| format!("sha256:{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    assert_eq!(got, built.diff_ids);
    assert_eq!(
        img.config
            .config()
            .as_ref()
            .unwrap()
            .cmd()
            .as_ref()
            .unwrap(),
        &vec!["/bin/sh".to_string()]
    );
    assert!(img.layers[0].join("bin/busybox").is_file());
    // The scratch extraction is gone.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("store/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn import_a_rootfs_tarball() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = support::busybox_rootfs(&tmp.path().join("rootfs"));
    let tarball = tmp.path().join("rootfs.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&tarball).unwrap(),
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs).unwrap();
    b.into_inner().unwrap().finish().unwrap();
    let (store, _) = store_in(tmp.path());
    let img = image::import(&store, &tarball, &reg::image_ref("local/bb:1"), &NoProgress).unwrap();
    assert_eq!(img.reference, "docker.io/local/bb:1");
    assert_eq!(img.layers.len(), 1);
    assert_eq!(
        std::fs::read_link(img.layers[0].join("bin/sh")).unwrap(),
        std::path::PathBuf::from("/bin/busybox")
    );
    assert_eq!(
        std::fs::read(img.layers[0].join("etc/passwd")).unwrap(),
        std::fs::read(rootfs.join("etc/passwd")).unwrap()
    );
    assert!(store.is_present(&reg::image_ref("local/bb:1")));
    assert_eq!(img.config.rootfs().diff_ids().len(), 1);
    assert!(store.verify().unwrap().is_empty());
}
