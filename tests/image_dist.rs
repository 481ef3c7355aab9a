//! Distribution as a user runs it: `berth tag`, `history`, `login`/`logout`,
//! `save`/`load`, `push`, against the real loopback registry and the other
//! engines' archives.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use reg::{Layout, Member};

fn berth(root: &Path, storage: &Path, args: &[&str]) -> Output {
    berth_in(root, Some(storage), args, None)
}

fn berth_in(root: &Path, storage: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(support::berth_bin());
    cmd.args(args);
    if let Some(s) = storage {
        cmd.arg("--storage-root").arg(s);
    }
    let mut child = cmd
        .env("BERTH_ROOT", root)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An OCI layout `DIR:v1` of two layers (busybox, a file) whose config has a
/// Docker-style history with empty steps between the layers.
fn layout_with_history(dir: &Path) -> (PathBuf, String) {
    let layout = Layout::new(dir);
    let layers = [
        reg::tar_of(&reg::busybox_members()),
        reg::tar_of(&[Member::File("hello", b"hi\n", 0o644, 0, 0)]),
    ];
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in &layers {
        diff_ids.push(reg::sha256(l));
        let gz = reg::gzip(l);
        let d = layout.blob(&gz);
        descs.push(serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":d,"size":gz.len()}));
    }
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type":"layers","diff_ids": diff_ids},
        "history": [
            {"created": "2024-05-01T10:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:busybox in / "},
            {"created": "2024-05-01T10:00:01Z", "created_by": "/bin/sh -c #(nop)  ENV PATH=/bin", "empty_layer": true},
            {"created": "2024-05-01T10:00:02Z", "created_by": "/bin/sh -c echo hi > /hello && a very long command line that goes on and on", "comment": "step two"},
            {"created": "2024-05-01T10:00:03Z", "created_by": "/bin/sh -c #(nop)  CMD [\"/bin/sh\"]", "empty_layer": true},
        ],
    }))
    .unwrap();
    let cd = layout.blob(&cfg);
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cfg.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = layout.blob(&m);
    let idx = serde_json::json!({"schemaVersion":2,"manifests":[{
        "mediaType":"application/vnd.oci.image.manifest.v1+json","digest": md, "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    (dir.to_path_buf(), md)
}

/// A host root and store holding `local/hist:v1` (from `layout_with_history`).
fn stored_image(tmp: &Path, extra_globals: &str) -> (PathBuf, PathBuf, String) {
    let storage = tmp.join("store");
    let root = reg::globals_root(tmp, &storage, extra_globals);
    let (dir, digest) = layout_with_history(&tmp.join("layout"));
    let src = format!("oci:{}:v1", dir.display());
    ok(&berth(&root, &storage, &["pull", &src]));
    let out = ok(&berth(&root, &storage, &["tag", &src, "local/hist:v1"]));
    assert!(
        out.contains("docker.io/local/hist:v1") && out.contains(&digest),
        "{out}"
    );
    (root, storage, digest)
}

#[test]
fn tag_and_history() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let (root, storage, digest) = stored_image(tmp.path(), "");
    // Both names list, with one digest.
    let table = ok(&berth(&root, &storage, &["images"]));
    let with_digest = table.lines().filter(|l| l.contains(&digest[7..19])).count();
    assert_eq!(with_digest, 2, "{table}");
    // Tagging by digest prefix, and a missing source named in the error.
    ok(&berth(
        &root,
        &storage,
        &["tag", &digest[7..19], "local/hist:again"],
    ));
    let err = fails(&berth(&root, &storage, &["tag", "no/such:img", "x:y"]));
    assert!(err.contains("no/such:img"), "{err}");

    let table = ok(&berth(&root, &storage, &["history", "local/hist:v1"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY"),
        "{table}"
    );
    // Newest first: CMD (empty, 0 B, the image's ID), the RUN layer, ENV, ADD.
    assert!(
        lines[1].contains(&digest[7..19]) && lines[1].contains("CMD") && lines[1].contains("0 B"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("<missing>")
            && lines[2].contains("step two")
            && lines[2].contains('…'),
        "{table}"
    );
    assert!(
        lines[4].contains("ADD file:busybox") && lines[4].contains("2024-05-01T10:00:00"),
        "{table}"
    );
    let full = ok(&berth(
        &root,
        &storage,
        &["history", "--no-trunc", "local/hist:v1"],
    ));
    assert!(
        full.contains("goes on and on") && full.contains(&digest),
        "{full}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&berth(
        &root,
        &storage,
        &["history", "--format", "json", "local/hist:v1"],
    )))
    .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["empty_layer"], true);
    assert_eq!(rows[1]["empty_layer"], false);
    assert!(rows[1]["size"].as_u64().unwrap() > 0);
    assert!(rows[3]["size"].as_u64().unwrap() > rows[1]["size"].as_u64().unwrap());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn login_then_pull_then_logout() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    require_program!("htpasswd");
    let tmp = tempfile::tempdir().unwrap();
    let registry = reg::Registry::start(reg::RegistryOptions {
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
    let host = registry.host();
    let reference = format!("{host}/sec/bb:1");
    let storage = tmp.path().join("store");
    // No [auth] file: the default, ROOT/etc/berth/auth.json, is written and read.
    let root = reg::globals_root(tmp.path(), &storage, "");
    copy_dir(
        registry.certs_dir.as_ref().unwrap(),
        &root.join("etc/berth/certs.d"),
    );
    let auth = root.join("etc/berth/auth.json");
    std::fs::write(
        &auth,
        r#"{"auths":{"other.example":{"auth":"b3RoZXI6b25l"}}}"#,
    )
    .unwrap();
    let before = std::fs::read(&auth).unwrap();

    let err = fails(&berth(&root, &storage, &["pull", &reference]));
    assert!(err.contains("401") && err.contains(&host), "{err}");

    // A wrong password: refused by the registry, named, and nothing written.
    let out = berth_in(
        &root,
        None,
        &["login", "-u", "alice", "--password-stdin", &host],
        Some("nope\n"),
    );
    let err = fails(&out);
    assert!(
        err.contains(&host) && err.contains("nothing was written") && err.contains("401"),
        "{err}"
    );
    assert_eq!(std::fs::read(&auth).unwrap(), before);

    let out = ok(&berth_in(
        &root,
        None,
        &["login", "-u", "alice", "--password-stdin", &host],
        Some("wonder\n"),
    ));
    assert!(out.contains("Login Succeeded"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    assert_eq!(v["auths"]["other.example"]["auth"], "b3RoZXI6b25l");
    assert!(v["auths"][&host]["auth"].is_string(), "{v}");
    ok(&berth(&root, &storage, &["pull", &reference]));

    let out = ok(&berth_in(&root, None, &["logout", &host], None));
    assert!(out.contains(&host), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    assert!(v["auths"].get(&host).is_none(), "{v}");
    assert_eq!(v["auths"]["other.example"]["auth"], "b3RoZXI6b25l");
    let err = fails(&berth(&root, &storage, &["pull", &reference]));
    assert!(err.contains("401"), "{err}");
    let err = fails(&berth_in(&root, None, &["logout", &host], None));
    assert!(err.contains("not logged in"), "{err}");
}
