//! `docker load` reads berth's archives (both kinds), and berth loads what
//! `docker save` writes: Docker (Debian's docker.io) with containerd and
//! dockerd started by hand in a systemd box (tests/support/docker.rs), so
//! nothing of the host's Docker is touched. Root only; skips when dockerd is
//! missing.

#[path = "support/containerd.rs"]
#[allow(dead_code)]
mod containerd;
#[path = "support/docker.rs"]
#[allow(dead_code)]
mod docker;
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::path::Path;
use std::process::{Command, Output};

use docker::Docker;
use reg::{Layout, Member};

fn berth(root: &Path, storage: &Path, args: &[&str]) -> Output {
    Command::new(support::berth_bin())
        .args(args)
        .arg("--storage-root")
        .arg(storage)
        .env("BERTH_ROOT", root)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
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

#[test]
fn docker_loads_berth_archives_and_berth_loads_docker_save() {
    require_root!();
    require_program!("dockerd");
    require_program!("docker");
    require_program!("containerd");
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("store");
    let root = reg::globals_root(tmp.path(), &storage, "");
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[
            // busybox executable: the shared fixture's members are 0644.
            reg::tar_of(&[
                Member::Dir("bin/", 0o755, 0, 0),
                Member::File(
                    "bin/busybox",
                    Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice()),
                    0o755,
                    0,
                    0,
                ),
                Member::Symlink("bin/sh", "busybox"),
            ]),
            reg::tar_of(&[Member::File("hello", b"from berth\n", 0o644, 0, 0)]),
        ],
        "amd64",
        serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Labels": {"made": "berth"}}),
    );
    layout.tag(&built, "1");
    let src = format!("oci:{}:1", tmp.path().join("layout").display());
    ok(&berth(&root, &storage, &["pull", &src]));
    ok(&berth(
        &root,
        &storage,
        &["tag", &src, "saved/by-berth:oci"],
    ));
    ok(&berth(
        &root,
        &storage,
        &["tag", &src, "saved/by-berth:docker"],
    ));
    let oci = tmp.path().join("oci.tar");
    let dock = tmp.path().join("docker.tar");
    ok(&berth(
        &root,
        &storage,
        &["save", "-o", oci.to_str().unwrap(), "saved/by-berth:oci"],
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
            "saved/by-berth:docker",
        ],
    ));

    let d = Docker::start(tmp.path());
    for (file, tag) in [(&dock, "docker"), (&oci, "oci")] {
        let out = d.docker_input("load", &std::fs::read(file).unwrap());
        assert!(
            out.status.success(),
            "docker load of berth's {tag} archive: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let label = d.docker_ok(&format!(
            "image inspect --format '{{{{.Config.Labels.made}}}} {{{{.Config.Cmd}}}}' saved/by-berth:{tag}"
        ));
        assert_eq!(label.trim(), "berth [/bin/sh]", "{tag}");
        let hello = d.docker_ok(&format!(
            "run --rm --network none saved/by-berth:{tag} /bin/busybox cat /hello"
        ));
        assert_eq!(hello, "from berth\n", "{tag}");
    }
    // `docker save` → `berth load`.
    d.docker_ok("tag saved/by-berth:docker from/docker:3");
    let out = d.docker("save from/docker:3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = tmp.path().join("docker-save.tar");
    std::fs::write(&saved, &out.stdout).unwrap();
    let other = tmp.path().join("store2");
    let loaded = ok(&berth(
        &root,
        &other,
        &["load", "-i", saved.to_str().unwrap()],
    ));
    assert!(loaded.contains("docker.io/from/docker:3"), "{loaded}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&berth(&root, &other, &["inspect", "from/docker:3"]))).unwrap();
    assert_eq!(json["config"]["config"]["Labels"]["made"], "berth");
    let top = json["layers"].as_array().unwrap().last().unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&top).join("hello")).unwrap(),
        "from berth\n"
    );
}
