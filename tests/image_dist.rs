//! Distribution as a user runs it: `berth tag`, `history`, `login`/`logout`,
//! `save`/`load`, `push`, against the real loopback registry and the other
//! engines' archives.
#[path = "support/podman.rs"]
mod podman;
#[path = "support/registry.rs"]
mod reg;
#[path = "support/runtime.rs"]
mod rt;
mod support;

use std::io::{Read, Write};
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
    // rmi by a digest several names share is ambiguous, as in Docker.
    let err = fails(&berth(&root, &storage, &["rmi", &digest[7..19]]));
    assert!(err.contains("remove them by name"), "{err}");
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
    // Pushes use the same credentials (Basic, here).
    let out = berth(
        &root,
        &storage,
        &["push", &reference, &format!("{host}/sec/copy:1")],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mounted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&out);

    let out = ok(&berth_in(&root, None, &["logout", &host], None));
    assert!(out.contains(&host), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    assert!(v["auths"].get(&host).is_none(), "{v}");
    assert_eq!(v["auths"]["other.example"]["auth"], "b3RoZXI6b25l");
    let err = fails(&berth(&root, &storage, &["pull", &reference]));
    assert!(err.contains("401"), "{err}");
    let err = fails(&berth(
        &root,
        &storage,
        &["push", &reference, &format!("{host}/sec/copy:2")],
    ));
    assert!(err.contains("401") && err.contains(&host), "{err}");
    let err = fails(&berth_in(&root, None, &["logout", &host], None));
    assert!(err.contains("not logged in"), "{err}");
}

fn tree_of(root: &Path, storage: &Path, reference: &str) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&ok(&berth(root, storage, &["inspect", reference]))).unwrap();
    json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| reg::describe_tree(Path::new(l["path"].as_str().unwrap())))
        .collect()
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no '{key}=' line in:\n{out}"))
}

#[test]
fn save_and_load_round_trip_with_podman() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let (root, storage, digest) = stored_image(tmp.path(), "");
    let want = tree_of(&root, &storage, "local/hist:v1");
    let oci = tmp.path().join("img-oci.tar");
    let dock = tmp.path().join("img-docker.tar");
    ok(&berth(
        &root,
        &storage,
        &["save", "-o", oci.to_str().unwrap(), "local/hist:v1"],
    ));
    ok(&berth(
        &root,
        &storage,
        &[
            "save",
            "--format",
            "docker-archive",
            "-o",
            dock.to_str().unwrap(),
            "local/hist:v1",
        ],
    ));
    let err = fails(&berth(
        &root,
        &storage,
        &["save", "-o", "/nonexistent/x.tar", "local/hist:v1"],
    ));
    assert!(err.contains("/nonexistent/x.tar"), "{err}");
    let err = fails(&berth(
        &root,
        &storage,
        &["load", "-i", tmp.path().join("nope.tar").to_str().unwrap()],
    ));
    assert!(err.contains("nope.tar"), "{err}");

    // berth → berth, each format, into an empty store: the same name, tree and
    // (for OCI, which keeps the manifest) the same digest.
    for (file, same_digest) in [(&oci, true), (&dock, false)] {
        let other = tmp.path().join(format!(
            "store-{}",
            file.file_name().unwrap().to_string_lossy()
        ));
        let out = ok(&berth(
            &root,
            &other,
            &["load", "-i", file.to_str().unwrap()],
        ));
        assert!(
            out.contains("Loaded image: docker.io/local/hist:v1"),
            "{out}"
        );
        assert_eq!(out.contains(&digest), same_digest, "{out}");
        assert_eq!(
            tree_of(&root, &other, "local/hist:v1"),
            want,
            "{}",
            file.display()
        );
        let table = ok(&berth(&root, &other, &["images"]));
        assert!(
            !table.contains("archive:"),
            "no ref is left under the file's name: {table}"
        );
        let hist = ok(&berth(&root, &other, &["history", "local/hist:v1"]));
        assert!(hist.contains("step two"), "{hist}");
    }

    // Podman reads both archives, and berth reads what Podman saves.
    if !support::is_root() || Command::new("podman").arg("--version").output().is_err() {
        eprintln!("skipping the Podman half: podman is not installed");
        return;
    }
    let pm = podman::Podman::new();
    let t = pm.sandbox.path().join("podman");
    std::fs::copy(&oci, t.join("berth-oci.tar")).unwrap();
    std::fs::copy(&dock, t.join("berth-docker.tar")).unwrap();
    let out = pm.sh(
        Path::new("/bin/true"),
        r#"
if [ -d /var/lib/containers ]; then mount -t tmpfs tmpfs /var/lib/containers || exit 90; fi
P load -i $T/berth-docker.tar >/dev/null; echo rc_load_docker=$?
echo cmd_docker=$(P image inspect docker.io/local/hist:v1 --format '{{.Config.Cmd}}')
P rmi docker.io/local/hist:v1 >/dev/null; echo rc_rmi=$?
P load -i $T/berth-oci.tar >/dev/null; echo rc_load_oci=$?
echo digest_oci=$(P image inspect docker.io/local/hist:v1 --format '{{.Digest}}')
P tag docker.io/local/hist:v1 localhost/from/podman:2
P save -o $T/podman-docker.tar localhost/from/podman:2; echo rc_save=$?
P save --format oci-archive -o $T/podman-oci.tar localhost/from/podman:2; echo rc_save_oci=$?
"#,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(line(&text, "rc_load_docker"), "0", "{text}");
    assert_eq!(line(&text, "cmd_docker"), "[/bin/sh]", "{text}");
    assert_eq!(line(&text, "rc_load_oci"), "0", "{text}");
    assert_eq!(line(&text, "digest_oci"), digest, "{text}");
    assert_eq!(line(&text, "rc_save"), "0", "{text}");
    assert_eq!(line(&text, "rc_save_oci"), "0", "{text}");
    for f in ["podman-docker.tar", "podman-oci.tar"] {
        let other = tmp.path().join(format!("store-{f}"));
        let out = ok(&berth(
            &root,
            &other,
            &["load", "-i", t.join(f).to_str().unwrap()],
        ));
        assert!(
            out.contains("Loaded image: localhost/from/podman:2"),
            "{f}: {out}"
        );
        assert_eq!(
            tree_of(&root, &other, "localhost/from/podman:2"),
            want,
            "{f}"
        );
    }
}

#[test]
fn push_skips_mounts_and_chunks() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = reg::Registry::start(reg::RegistryOptions::default());
    let host = registry.host();
    let (root, storage, digest) = stored_image(
        tmp.path(),
        &format!("[[registry]]\nhost = \"{host}\"\ninsecure = true\n"),
    );
    // A second image with a layer bigger than one upload chunk (16 MiB):
    // incompressible, so its blob goes up in PATCH chunks.
    let mut noise = vec![0u8; 17 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    let mut layout = Layout::new(&tmp.path().join("big"));
    let big = layout.image(
        &[reg::tar_of(&[Member::BigFile("noise", noise)])],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&big, "1");
    let big_src = format!("oci:{}:1", tmp.path().join("big").display());
    ok(&berth(&root, &storage, &["pull", &big_src]));

    let dest = format!("{host}/dist/img:1");
    let out = berth(&root, &storage, &["push", "local/hist:v1", &dest]);
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = ok(&out);
    assert!(stdout.contains(&digest), "{stdout}");
    assert!(
        report.contains("3 blobs: 3 pushed, 0 mounted, 0 already there"),
        "{report}"
    );
    let big_dest = format!("{host}/dist/big:1");
    ok(&berth(&root, &storage, &["push", &big_src, &big_dest]));

    // skopeo sees both, with berth's manifest digests.
    for (r, d) in [(&dest, &digest), (&big_dest, &big.manifest_digest)] {
        let o = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", &format!("docker://{r}")])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&ok(&o).into_bytes()).unwrap();
        assert_eq!(v["Digest"], d.as_str(), "{r}");
    }
    // berth pulls them back: the same digest and files.
    let other = tmp.path().join("store-pulled");
    let pulled = ok(&berth(&root, &other, &["pull", &dest]));
    assert!(pulled.contains(&digest), "{pulled}");
    assert_eq!(
        tree_of(&root, &other, &dest),
        tree_of(&root, &storage, "local/hist:v1")
    );
    let pulled = ok(&berth(&root, &other, &["pull", &big_dest]));
    assert!(pulled.contains(&big.manifest_digest), "{pulled}");

    // Podman pulls it too (in this thread's network namespace, where the
    // registry listens; its configuration and storage in the temp dir, vfs
    // so that nothing is mounted, in a mount namespace of its own whose
    // /var/lib/containers, where its blob-info cache goes, is a tmpfs).
    if Command::new("podman").arg("--version").output().is_ok() {
        let t = tmp.path().join("podman");
        for d in ["conf", "storage", "run", "tmp", "xdg"] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        std::fs::write(
            t.join("conf/containers.conf"),
            "[engine]\nevents_logger = \"none\"\n",
        )
        .unwrap();
        std::fs::write(t.join("conf/registries.conf"), "").unwrap();
        let o = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "if [ -d /var/lib/containers ]; then mount -t tmpfs tmpfs /var/lib/containers || exit 90; fi; \
                 P() { podman --root $T/storage --runroot $T/run --storage-driver vfs --tmpdir $T/tmp \"$@\"; }; \
                 P pull -q --tls-verify=false docker://$REF >/dev/null && P image inspect --format '{{.Digest}}' $REF",
            )
            .env("T", &t)
            .env("REF", &dest)
            .env("CONTAINERS_CONF", t.join("conf/containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", t.join("conf/registries.conf"))
            .env("XDG_RUNTIME_DIR", t.join("xdg"))
            .output()
            .unwrap();
        assert_eq!(ok(&o).trim(), digest, "podman pull of what berth pushed");
    } else {
        eprintln!("skipping the Podman pull: podman is not installed");
    }

    // A second push uploads nothing.
    let out = berth(&root, &storage, &["push", "local/hist:v1", &dest]);
    ok(&out);
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        report.contains("3 blobs: 0 pushed, 0 mounted, 3 already there"),
        "{report}"
    );

    // Pulled from dist/img, pushed to copy/img on the same registry: mounted.
    let out = berth(
        &root,
        &other,
        &["push", &dest, &format!("{host}/copy/img:2")],
    );
    ok(&out);
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        report.contains("3 blobs: 0 pushed, 3 mounted, 0 already there"),
        "{report}"
    );
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{host}/copy/img:2"),
        ])
        .output()
        .unwrap();
    assert!(ok(&o).contains(&digest));

    // Errors name what failed.
    let err = fails(&berth(&root, &storage, &["push", "no/such:img", &dest]));
    assert!(err.contains("no/such:img"), "{err}");
    let err = fails(&berth(
        &root,
        &storage,
        &["push", "local/hist:v1", "127.0.0.1:1/x/y:1"],
    ));
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn push_through_a_token_service() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = reg::Registry::start(reg::RegistryOptions {
        token: true,
        ..Default::default()
    });
    let host = registry.host();
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[reg::tar_of(&[Member::File("hello", b"token", 0o644, 0, 0)])],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&built, "t");
    registry.push(&layout.dir, "t", "tok/img:t");
    let storage = tmp.path().join("store");
    let root = reg::globals_root(
        tmp.path(),
        &storage,
        &format!("[[registry]]\nhost = \"{host}\"\ninsecure = true\n"),
    );
    let src = format!("{host}/tok/img:t");
    ok(&berth(&root, &storage, &["pull", &src]));
    // Each request's challenge names the scope it needs (pull, then
    // pull,push; a mount also pull on the source): berth asks for each.
    let out = berth(
        &root,
        &storage,
        &["push", &src, &format!("{host}/tok/copy:t")],
    );
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(report.contains("2 blobs: 0 pushed, 2 mounted"), "{report}");
    let (dir, _) = layout_with_history(&tmp.path().join("hist"));
    let hist = format!("oci:{}:v1", dir.display());
    ok(&berth(&root, &storage, &["pull", &hist]));
    let out = berth(
        &root,
        &storage,
        &["push", &hist, &format!("{host}/tok/new:1")],
    );
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(report.contains("3 blobs: 3 pushed"), "{report}");
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{host}/tok/new:1"),
        ])
        .output()
        .unwrap();
    ok(&o);
}
