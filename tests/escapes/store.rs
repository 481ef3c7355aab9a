//! Class 7 of issue 12: hostile archives and layers. Each attack is a real
//! archive built here and given to the `berth` command line, with a store
//! and a berth.toml of the test's own; each must be refused, with nothing
//! read from outside the archive and the disk not filled.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::reg::{self, tar_of, Member};
#[allow(unused_imports)]
use crate::{require_program, require_root};

/// A host root (berth.toml) and a store under `dir`; `extra` goes into
/// `[storage]`.
fn host(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let store = dir.join("store");
    (reg::globals_root(dir, &store, extra), store)
}

fn berth(root: &Path, args: &[&str]) -> Output {
    std::process::Command::new(crate::support::berth_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every regular file in `dir` (recursively) whose content contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if t.is_file() {
            if let Ok(b) = std::fs::read(&p) {
                if b.windows(needle.len()).any(|w| w == needle) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// A docker-archive whose manifest names `d/secret` as a layer, where `d` is
/// a symlink to a host directory: the member check looked at the last
/// component only, so the host file was hashed and copied into the store.
#[test]
fn docker_archive_member_behind_a_symlinked_parent_is_refused() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let hostdir = tmp.path().join("host-only");
    std::fs::create_dir(&hostdir).unwrap();
    std::fs::write(hostdir.join("secret"), b"HOST-SECRET-7f3a\n").unwrap();
    let (root, store) = host(tmp.path(), "");
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    let manifest = br#"[{"Config":"config.json","RepoTags":["x:1"],"Layers":["d/secret"]}]"#;
    let archive = tar_of(&[
        Member::File("manifest.json", manifest, 0o644, 0, 0),
        Member::File("config.json", config, 0o644, 0, 0),
        Member::RawSymlink("d".into(), hostdir.display().to_string()),
    ]);
    let file = tmp.path().join("evil.tar");
    std::fs::write(&file, archive).unwrap();
    let o = berth(
        &root,
        &["pull", &format!("docker-archive:{}", file.display())],
    );
    let out = text(&o);
    println!("{out}");
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("d/secret"),
        "the error names the member: {out}"
    );
    let leaked = files_containing(&store, b"HOST-SECRET-7f3a");
    assert!(
        leaked.is_empty(),
        "host file read into the store: {leaked:?}"
    );
}

/// An image whose `etc` is a symlink to a host directory holding a passwd
/// with the image's user: berth must not resolve the user from the host's
/// file, neither for the start (read_image_file, on the store's layers) nor
/// for `berth exec -u NAME` (read_container_file, through /proc/PID/root).
/// Both followed the symlinked parent: the container ran as the host's uid
/// for that name.
#[test]
fn image_user_is_not_looked_up_through_a_symlinked_etc() {
    require_root!();
    require_program!("nsenter");
    use crate::support::systemd_box::{BoxOptions, SystemdBox};
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let layout_dir = tmp.path().join("layout");
    let mut layout = reg::Layout::new(&layout_dir);
    let busybox: &'static [u8] = Box::leak(
        std::fs::read(crate::support::BUSYBOX)
            .unwrap()
            .into_boxed_slice(),
    );
    let built = layout.image(
        &[tar_of(&[
            Member::Dir("bin/", 0o755, 0, 0),
            Member::File("bin/busybox", busybox, 0o755, 0, 0),
            Member::Symlink("bin/sh", "busybox"),
            Member::Symlink("bin/id", "busybox"),
            Member::Symlink("bin/sleep", "busybox"),
            Member::Symlink("etc", "/srv/hostetc"),
        ])],
        "amd64",
        serde_json::json!({"User": "app", "Env": ["PATH=/bin"],
            "Cmd": ["sh", "-c", "echo uid=$(id -u) home=$HOME"]}),
    );
    layout.tag(&built, "1");
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file(
                "/srv/hostetc/passwd",
                "root:x:0:0::/root:/bin/sh\napp:x:4242:4242::/host-home:/bin/sh\n",
            )
            .file("/etc/berth/containers/c.toml", "image = \"oci:/srv/img:1\"\n")
            .file(
                "/etc/berth/containers/d.toml",
                "image = \"oci:/srv/img:1\"\nuser = \"0\"\ncommand = [\"sleep\", \"1000\"]\n[service]\nstop_timeout = \"1s\"\n",
            ),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    b.copy_in(&layout_dir, "/srv/img");
    let _ = b.sh("systemctl start berth@c");
    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@c",
        |t| t.contains("exited with code") || t.contains("Failed"),
        Duration::from_secs(20),
    );
    println!("{log}");
    assert!(
        !log.contains("uid=4242"),
        "user resolved from the host's passwd:\n{log}"
    );
    assert!(log.contains("no /etc/passwd"), "{log}");

    b.sh_ok("systemctl start berth@d");
    let o = b.sh("berth exec -u app d id -u");
    let out = format!(
        "{:?} {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    println!("exec -u app: {out}");
    assert!(
        !out.contains("4242"),
        "exec resolved the user from the host's passwd: {out}"
    );
    assert!(
        !o.status.success() && out.contains("no /etc/passwd"),
        "{out}"
    );
    b.sh_ok("systemctl stop berth@d");
}

/// Bytes used on disk under `dir` (allocated blocks, so holes count nothing
/// and a written-out sparse file counts in full).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            n += m.blocks() * 512;
            if m.is_dir() {
                n += disk_usage(&e.path());
            }
        }
    }
    n
}

fn gzip_file(path: &Path, data: &[u8]) {
    std::fs::write(path, reg::gzip(data)).unwrap();
}

/// Layer bombs given to `berth import` with a small cap in berth.toml: a
/// 64 MiB file of zeros (64 KiB of gzip) under a 4 MiB cap, 3000 empty
/// files under a 1000-member cap, and a GNU sparse file of 256 MiB (a few
/// KiB of tar) whose holes would be written out as data. Each is refused,
/// and the store stays small.
#[test]
fn layer_bombs_are_refused_before_they_fill_the_disk() {
    require_root!();
    require_program!("tar");
    let tmp = tempfile::tempdir().unwrap();
    let (root, store) = host(
        tmp.path(),
        "max_layer_size = \"4M\"\nmax_layer_entries = 1000\n",
    );
    let zeros: Vec<u8> = vec![0u8; 64 << 20];
    let big = tmp.path().join("big.tar.gz");
    gzip_file(&big, &tar_of(&[Member::BigFile("zeros", zeros)]));
    let names: Vec<String> = (0..3000).map(|i| format!("f{i}")).collect();
    let many: Vec<Member> = names
        .iter()
        .map(|n| Member::RawFile(n.clone(), Vec::new()))
        .collect();
    let many_path = tmp.path().join("many.tar.gz");
    gzip_file(&many_path, &tar_of(&many));
    // GNU tar writes a sparse member for a file that is mostly holes.
    let sp = tmp.path().join("sparse");
    std::fs::create_dir(&sp).unwrap();
    let f = std::fs::File::create(sp.join("holes")).unwrap();
    f.set_len(256 << 20).unwrap();
    drop(f);
    let sparse = tmp.path().join("sparse.tar");
    let o = std::process::Command::new("tar")
        .args(["--format=gnu", "-S", "-cf"])
        .arg(&sparse)
        .arg("-C")
        .arg(&sp)
        .arg("holes")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::metadata(&sparse).unwrap().len() < 64 << 10);
    for (file, want) in [
        (&big, "max_layer_size"),
        (&many_path, "max_layer_entries"),
        (&sparse, "sparse"),
    ] {
        let o = berth(&root, &["import", &file.display().to_string(), "bomb:1"]);
        let out = text(&o);
        println!("{}: {out}", file.display());
        assert!(!o.status.success(), "{out}");
        assert!(out.contains(want), "{out}");
        let used = disk_usage(&store);
        assert!(used < 8 << 20, "the store grew to {used} bytes");
    }
}

/// `berth import` has no digest to check: a tarball cut short (inside a
/// member, or at a header boundary with no end-of-archive block) must be an
/// error, not a smaller image.
#[test]
fn a_truncated_import_is_an_error() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let (root, _store) = host(tmp.path(), "");
    let data = tar_of(&[
        Member::File("a", &[b'a'; 3000], 0o644, 0, 0),
        Member::File("b", &[b'b'; 3000], 0o644, 0, 0),
    ]);
    // Header 512 + 3000 data padded to 3072: "b"'s header starts at 3584.
    let whole = tmp.path().join("whole.tar");
    std::fs::write(&whole, &data).unwrap();
    let o = berth(&root, &["import", &whole.display().to_string(), "ok:1"]);
    assert!(o.status.success(), "{}", text(&o));
    for (name, cut) in [("mid-member", 2000usize), ("at-header", 3584)] {
        let p = tmp.path().join(format!("{name}.tar"));
        std::fs::write(&p, &data[..cut]).unwrap();
        let o = berth(
            &root,
            &["import", &p.display().to_string(), &format!("cut-{name}:1")],
        );
        let out = text(&o);
        println!("{name}: {out}");
        assert!(!o.status.success(), "{name} accepted: {out}");
        assert!(out.contains("truncated"), "{out}");
    }
}
