//! The image commands as a user runs them: `berth pull` (plain progress lines
//! and sd_notify), `images`, `inspect`, `rmi` (refusing an image a running
//! container uses), `prune`, `import`.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use berth::supervise::state::State;
use reg::{Layout, Member, Registry, RegistryOptions};

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

fn layer_count(storage: &Path) -> usize {
    std::fs::read_dir(storage.join("layers/sha256"))
        .unwrap()
        .count()
}

#[test]
fn pull_images_inspect_rmi_prune() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[reg::tar_of(&reg::busybox_members()), reg::tar_of(&[Member::File("hello", b"hi", 0o644, 0, 0)])],
        "amd64",
        serde_json::json!({"Cmd": ["/bin/sh"], "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Retries": 3}}),
    );
    layout.tag(&built, "v1");
    registry.push(&layout.dir, "v1", "cli/img:v1");
    let storage = tmp.path().join("store");
    let root = reg::globals_root(
        tmp.path(),
        &storage,
        &format!(
            "[[registry]]\nhost = \"{}\"\ninsecure = true\n",
            registry.host()
        ),
    );
    let reference = format!("{}/cli/img:v1", registry.host());

    // Under systemd: STATUS= and EXTEND_TIMEOUT_USEC= reach the notify socket.
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let out = Command::new(support::berth_bin())
        .args(["pull", &reference, "--storage-root"])
        .arg(&storage)
        .env("BERTH_ROOT", &root)
        .env("NOTIFY_SOCKET", &sock_path)
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains(&built.manifest_digest), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Not a terminal: plain lines, one per layer step.
    assert!(
        stderr.contains("2 layers") && stderr.contains("unpacking") && stderr.contains("done"),
        "{stderr}"
    );
    let mut msgs = String::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        msgs += &String::from_utf8_lossy(&buf[..n]);
        msgs.push('\n');
    }
    assert!(
        msgs.contains("STATUS=pulling") && msgs.contains("EXTEND_TIMEOUT_USEC="),
        "{msgs}"
    );

    let table = ok(&berth(&root, &storage, &["images"]));
    let line = table
        .lines()
        .find(|l| l.starts_with(&reference))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains(&built.manifest_digest[7..19]), "{line}");
    assert!(table.starts_with("REFERENCE"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(&berth(&root, &storage, &["inspect", &reference]))).unwrap();
    assert_eq!(json["manifest_digest"], built.manifest_digest.as_str());
    assert_eq!(json["config"]["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(json["healthcheck"]["Test"][1], "true");
    assert_eq!(json["layers"].as_array().unwrap().len(), 2);
    // By digest prefix too.
    ok(&berth(
        &root,
        &storage,
        &["inspect", &built.manifest_digest[7..19]],
    ));

    // Records as the supervisor writes them (its own type). One whose
    // supervisor is gone (SIGKILLed before `berth cleanup`) does not pin the
    // image; one whose supervisor runs does.
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id() as i32
    };
    let record = |name: &str, pid: i32| {
        let dir = root.join("run/berth/containers").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        State {
            name: name.to_string(),
            supervisor_pid: pid,
            image: Some(reference.clone()),
            image_digest: Some(built.manifest_digest.clone()),
            ..State::default()
        }
        .save(&dir)
        .unwrap();
    };
    record("old", dead);
    // A stand-in supervisor: a live process named as berth's.
    let mut supervisor = KillOnDrop(
        Command::new("sleep")
            .arg0("berth")
            .arg("300")
            .spawn()
            .unwrap(),
    );
    record("web", supervisor.0.id() as i32);
    let out = berth(&root, &storage, &["rmi", &reference]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'web'") && err.contains("--force") && !err.contains("'old'"),
        "{err}"
    );
    assert_eq!(layer_count(&storage), 2);
    // --force untags, but the layers stay while the container runs.
    ok(&berth(&root, &storage, &["rmi", "--force", &reference]));
    assert!(!ok(&berth(&root, &storage, &["images", "-q"])).contains(&reference));
    assert_eq!(layer_count(&storage), 2);
    ok(&berth(&root, &storage, &["prune"]));
    assert_eq!(
        layer_count(&storage),
        2,
        "prune removed layers a running container uses"
    );
    // The container's supervisor is gone, its record still there (a crash
    // before cleanup): prune frees everything.
    supervisor.0.kill().unwrap();
    supervisor.0.wait().unwrap();
    let out = ok(&berth(&root, &storage, &["prune"]));
    assert!(out.contains("2 layers"), "{out}");
    assert_eq!(layer_count(&storage), 0);
    assert_eq!(
        std::fs::read_dir(storage.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // Errors name what was asked for.
    let out = berth(&root, &storage, &["inspect", "nothing:here"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'nothing:here'"));
}

#[test]
fn import_then_rmi() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = support::busybox_rootfs(&tmp.path().join("rootfs"));
    let tarball = tmp.path().join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    let storage = tmp.path().join("store");
    let root = reg::globals_root(tmp.path(), &storage, "");
    let out = ok(&berth(
        &root,
        &storage,
        &["import", tarball.to_str().unwrap(), "mybox:2"],
    ));
    assert!(
        out.starts_with("docker.io/library/mybox:2 sha256:"),
        "{out}"
    );
    assert!(ok(&berth(&root, &storage, &["images"])).contains("docker.io/library/mybox:2"));
    assert_eq!(layer_count(&storage), 1);
    ok(&berth(&root, &storage, &["rmi", "mybox:2"]));
    assert_eq!(layer_count(&storage), 0);
    // Without --storage-root the store comes from berth.toml under BERTH_ROOT.
    let out = Command::new(support::berth_bin())
        .args(["import", tarball.to_str().unwrap(), "viaconf"])
        .env("BERTH_ROOT", &root)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(layer_count(&storage), 1);
}

/// A mirror that is down does not stop a pull, but it is not silent either:
/// a warning names it and the host used instead; `BERTH_LOG` sets how much
/// berth says (`off` silences it, `debug` adds each attempt).
#[test]
fn a_dead_mirror_is_warned_about() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let built = layout.image(
        &[reg::tar_of(&[Member::File("hello", b"hi", 0o644, 0, 0)])],
        "amd64",
        serde_json::json!({}),
    );
    layout.tag(&built, "v1");
    registry.push(&layout.dir, "v1", "cli/img:v1");
    let dead = format!("127.0.0.1:{}", reg::free_port());
    let conf = format!(
        "[[registry]]\nhost = \"{0}\"\ninsecure = true\nmirrors = [\"{dead}\"]\n[[registry]]\nhost = \"{dead}\"\ninsecure = true\n",
        registry.host()
    );
    let reference = format!("{}/cli/img:v1", registry.host());
    let pull = |level: Option<&str>, store: &str| {
        let storage = tmp.path().join(store);
        let root = reg::globals_root(&tmp.path().join(format!("{store}-root")), &storage, &conf);
        let mut c = Command::new(support::berth_bin());
        c.args(["pull", &reference, "--storage-root"])
            .arg(&storage)
            .env("BERTH_ROOT", &root)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("BERTH_LOG");
        if let Some(l) = level {
            c.env("BERTH_LOG", l);
        }
        let out = c.output().unwrap();
        ok(&out);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = pull(None, "s1");
    let warning = stderr
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning in {stderr}"));
    assert!(
        warning.contains(&dead) && warning.contains(&format!("used {} instead", registry.host())),
        "{warning}"
    );
    assert!(!stderr.contains("DEBUG"), "{stderr}");
    let stderr = pull(Some("off"), "s2");
    assert!(!stderr.contains("WARN"), "{stderr}");
    let stderr = pull(Some("debug"), "s3");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains(&dead)),
        "{stderr}"
    );
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
