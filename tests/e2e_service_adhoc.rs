//! Ad hoc `berth run --rootfs DIR CMD…` in the foreground, without systemd:
//! output passes through, the exit status is the container's, the rootfs dir
//! is never written (writes go to a fresh overlay upper), and nothing is left
//! behind. Every run happens in a `Sandbox` (tests/support/runtime.rs): its
//! own PID, network, mount, cgroup, UTS and IPC namespaces and a cgroup the
//! test made, with its own BERTH_ROOT and storage root, so the host's
//! namespaces and cgroups are never used.
#[path = "support/runtime.rs"]
mod rt;
mod support;

use std::path::Path;
use std::process::Command;

struct Env {
    dir: tempfile::TempDir,
    sb: rt::Sandbox,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc/berth")).unwrap();
        std::fs::write(
            root.join("etc/berth/berth.toml"),
            format!(
                "[storage]\nroot = \"{}\"\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        support::busybox_rootfs(&dir.path().join("rootfs"));
        Env {
            dir,
            sb: rt::Sandbox::new(),
        }
    }

    /// `berth ARGS…` in the sandbox, BERTH_ROOT set; stdin is /dev/null.
    fn berth(&self) -> Command {
        let mut c = self.sb.command();
        c.arg(support::berth_bin())
            .env("BERTH_ROOT", self.path("root"));
        c
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.berth().arg("run").args(args).output().unwrap()
    }
}

fn tree(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(tree(&e.path()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn run_rootfs_in_the_foreground() {
    require_root!();
    require_program!("unshare");
    let env = Env::new();
    let rootfs = env.path("rootfs");
    let before = tree(&rootfs);
    let out = env.run(&[
        "--name",
        "adhoc",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sh",
        "-c",
        "echo out-$(hostname); cat /etc/resolv.conf; echo written > /new-file; cat /new-file; echo err >&2; exit 5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        stdout, "out-adhoc\nnameserver 192.0.2.53\nwritten\n",
        "stderr: {stderr}"
    );
    assert!(stderr.contains("err\n"), "{stderr}");
    // The directory is a read-only lower layer: the write went elsewhere.
    assert_eq!(tree(&rootfs), before);
    // Nothing left: run dir, upper/work dirs.
    assert_eq!(
        tree(&env.path("root/run/berth/containers")),
        Vec::<String>::new()
    );
    assert_eq!(tree(&env.path("storage/containers")), Vec::<String>::new());

    // stdin reaches the container only with -i.
    let with_input = |flag: &[&str]| {
        let mut c = env.berth();
        c.arg("run")
            .args(flag)
            .args([
                "--rootfs",
                rootfs.to_str().unwrap(),
                "sh",
                "-c",
                "echo read-$(cat)",
            ])
            .env("BERTH_ROOT", env.path("root"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"typed").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(with_input(&["-i"]), "read-typed\n");
    assert_eq!(with_input(&[]), "read-\n");

    // A command that is not there fails the run, clearly.
    let out = env.run(&["--rootfs", rootfs.to_str().unwrap(), "/no/such/program"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such/program"), "{stderr}");
    assert_eq!(
        tree(&env.path("root/run/berth/containers")),
        Vec::<String>::new()
    );

    // -d goes through the host's systemd, never from a test root.
    let out = env.run(&["-d", "--rootfs", rootfs.to_str().unwrap(), "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with --root"));

    // Without systemd as init, `berth ps` lists a foreground run from berth's
    // own records instead of failing on systemctl. The sandbox hides the
    // machine's /run/systemd (sd_booted(3) looks for /run/systemd/system),
    // and runs both in one PID namespace, as a user would.
    let script = format!(
        r#"
[ -d /run/systemd ] && mount -t tmpfs berth-test /run/systemd
export BERTH_ROOT={root}
# The container says when its trap is set: a SIGTERM before that would meet
# a PID 1 without a handler, which the kernel does not kill.
{berth} run --name bg --rootfs {rootfs} sh -c "trap 'exit 0' TERM; echo trapped; sleep 30 & wait" >$BERTH_ROOT/bg.out & BG=$!
for i in $(seq 250); do grep -q trapped $BERTH_ROOT/bg.out 2>/dev/null && break; sleep 0.02; done
{berth} ps; echo "ps=$?"
kill -TERM $BG; wait $BG; echo "bg=$?"
"#,
        root = env.path("root").display(),
        berth = support::berth_bin().display(),
        rootfs = rootfs.display()
    );
    let o = env.sb.sh(&script);
    let text = rt::stdout(&o);
    assert!(text.contains("ps=0"), "{}", rt::describe(&o));
    assert!(
        text.lines()
            .any(|l| l.starts_with("bg ") && l.contains("running (ad hoc)")),
        "{}",
        rt::describe(&o)
    );
    // SIGTERM reached the supervisor, which stopped the container.
    assert!(text.contains("bg=0"), "{}", rt::describe(&o));
}

/// The Docker-style options become the definition's keys, and the container
/// shows each of them; a bad value is named by its key, not a temp file.
#[test]
fn run_with_options_as_docker_spells_them() {
    require_root!();
    require_program!("unshare");
    let env = Env::new();
    let rootfs = env.path("rootfs");
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in"), "from-host\n").unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let envfile = env.path("app.env");
    std::fs::write(&envfile, "FROM_FILE=yes\n").unwrap();
    let out = env
        .berth()
        .args(["run", "--rm", "--rootfs", rootfs.to_str().unwrap()])
        .args(["-e", "GREETING=hi", "-e", "PASSED", "--env-file", envfile.to_str().unwrap()])
        .args(["-v", &format!("{}:/data", data.display())])
        .args(["-v", &format!("{}:/ro:ro", data.display())])
        .args(["-v", "cache:/cache"])
        .args(["--tmpfs", "/scratch:size=4M,mode=0700"])
        .args(["-u", "1000:1000", "-w", "/data", "--hostname", "adhoc-opts"])
        .args(["--read-only", "--cap-drop", "ALL", "--cap-add", "KILL"])
        .args(["--security-opt", "seccomp=unconfined", "--pids-limit", "50"])
        .args([
            "sh",
            "-c",
            "echo env=$GREETING,$PASSED,$FROM_FILE; echo host=$(hostname); echo id=$(id -u):$(id -g); \
             echo cwd=$(pwd); cat in; echo w > out; echo ro=$(touch /ro/x 2>/dev/null && echo rw || echo ro); \
             echo root=$(touch /x 2>/dev/null && echo rw || echo ro); \
             echo scratch=$(stat -c %a /scratch) $(grep ' /scratch ' /proc/self/mounts | grep -o 'size=[0-9]*k'); \
             echo cache=$(grep -c ' /cache ' /proc/self/mounts); \
             grep -E '^(CapBnd|Seccomp):' /proc/self/status",
        ])
        .env("BERTH_ROOT", env.path("root"))
        .env("PASSED", "from-shell")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    for want in [
        "env=hi,from-shell,yes",
        "host=adhoc-opts",
        "id=1000:1000",
        "cwd=/data",
        "from-host",
        "ro=ro",
        "root=ro",
        "scratch=700 size=4096k",
        "cache=1",
        "CapBnd:\t0000000000000020",
        "Seccomp:\t0",
    ] {
        assert!(
            stdout.lines().any(|l| l == want),
            "no {want:?} in\n{stdout}\n{stderr}"
        );
    }
    // The bind mount wrote through to the host; the named volume exists.
    assert_eq!(std::fs::read_to_string(data.join("out")).unwrap(), "w\n");
    assert!(env.path("storage/volumes/cache/_data").is_dir());

    // Bad values: each named by its key, never by a temporary file.
    let out = env.run(&[
        "--rootfs",
        rootfs.to_str().unwrap(),
        "-m",
        "12Q",
        "--cap-add",
        "FLY",
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the arguments of berth run make an invalid definition"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: [resources] memory: invalid size \"12Q\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: [security] cap_add: unknown capability \"FLY\""),
        "{stderr}"
    );
    assert!(!stderr.contains("/tmp/"), "{stderr}");
    let out = env.run(&[
        "--rootfs",
        rootfs.to_str().unwrap(),
        "-v",
        "/a:/b:c:d",
        "true",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("-v \"/a:/b:c:d\": expected TARGET, SOURCE:TARGET or SOURCE:TARGET:OPTIONS"));
    let out = env.run(&[
        "--rootfs",
        rootfs.to_str().unwrap(),
        "--restart",
        "always",
        "true",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--restart needs -d"));
}

#[test]
fn run_with_a_terminal() {
    require_root!();
    require_program!("unshare");
    require_program!("script");
    let env = Env::new();
    let rootfs = env.path("rootfs");
    // `script` gives berth a terminal; what we type reaches the container's
    // pty and its output comes back.
    let inner = format!(
        "{} {} run -it --rootfs {} sh -c 'tty; read line; echo got-$line; exit 3'",
        env.sb.shell_prefix(),
        support::berth_bin().display(),
        rootfs.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("BERTH_ROOT", env.path("root"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Type only once the container is reading (it printed its tty), and
    // hang up only once it echoed what it read.
    let seen = read_in_background(child.stdout.take().unwrap());
    wait_for_output(&seen, "/dev/pts/");
    use std::io::Write;
    stdin.write_all(b"typed\n").unwrap();
    wait_for_output(&seen, "got-typed");
    drop(stdin);
    let status = child.wait().unwrap();
    let stdout = seen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("/dev/pts/0"), "{stdout}");
    assert!(stdout.contains("got-typed"), "{stdout}");
    assert_eq!(
        tree(&env.path("root/run/berth/containers")),
        Vec::<String>::new()
    );
}

/// Collect what `out` prints, as it arrives.
fn read_in_background(
    mut out: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    seen
}

/// Wait (10 s at most) until `seen` contains `what`.
fn wait_for_output(seen: &std::sync::Mutex<String>, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.lock().unwrap().contains(what) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {what:?} in the output: {}",
            seen.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
