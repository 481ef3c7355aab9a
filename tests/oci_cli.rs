//! The OCI command line as a shim drives it: create (pid file, blocked on the
//! exec FIFO) → start → state → exec → pause/resume → ps → kill → delete, with
//! the state JSON of the runtime spec at each step. Root only; inside
//! namespaces and a cgroup the test makes.

#[path = "support/runtime.rs"]
mod rt;
mod support;

use rt::{describe, stdout, Sandbox};
use serde_json::{json, Value};

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no '{key}=' line in:\n{out}"))
}

#[test]
fn lifecycle_state_exec_and_delete() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let bundle = sb.bundle("b", |c| {
        c["process"]["args"] = json!(["sleep", "60"]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
        c["process"]["capabilities"]["inheritable"] = json!([]);
        c["process"]["capabilities"]["ambient"] = json!([]);
        c["linux"]["seccomp"] =
            serde_json::to_value(berth::runtime::seccomp::default_profile(&[]).unwrap()).unwrap();
        c["annotations"] = json!({"org.example.k": "v"});
        c["process"]["oomScoreAdj"] = json!(300);
    });
    let process = json!({
        "args": ["sh", "-c", "i=0; while [ $(cat /proc/1/comm) != sleep ] && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.01; done; echo pid1=$(cat /proc/1/comm); echo procs=$(ls -d /proc/[0-9]* | wc -l); echo nnp=$(grep NoNewPrivs /proc/self/status | cut -f2); echo seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2); echo capeff=$(grep CapEff /proc/self/status | cut -f2); echo cwd=$(pwd); echo uid=$(id -u); echo oom=$(cat /proc/self/oom_score_adj); echo fds=$(ls /proc/self/fd | tr '\\n' ' ')"],
        "env": ["PATH=/bin:/usr/bin"],
        "cwd": "/etc",
        "user": {"uid": 101, "gid": 101},
        "noNewPrivileges": true,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps}
    });
    let pfile = sb.path().join("process.json");
    std::fs::write(&pfile, serde_json::to_vec(&process).unwrap()).unwrap();
    let b = bundle.display();
    let p = pfile.display();
    let script = format!(
        r#"
st() {{ $RT state c1 | tr -d ' \n' | sed 's/.*"status":"\([a-z]*\)".*/\1/'; }}
$RT create -b {b} --pid-file $STATE/../c1.pid c1 >/dev/null 2>&1 </dev/null; echo create=$?
echo pidfile=$(cat $STATE/../c1.pid)
echo statepid=$($RT state c1 | tr -d ' \n' | sed 's/.*"pid":\([0-9]*\).*/\1/')
echo s1=$(st)
$RT state c1 > $STATE/../state1.json
$RT start c1; echo start=$?
echo s2=$(st)
exec 7</etc/hostname
$RT exec --process {p} c1
$RT exec c1 sh -c 'echo argexec=$(id -u):$(pwd)'
$RT start c1 2>/dev/null; echo restart=$?
$RT delete c1 2>/dev/null; echo deleterunning=$?
$RT pause c1; echo s3=$(st)
$RT resume c1; echo s4=$(st)
echo ps=$($RT ps --format json c1)
$RT kill c1 KILL; echo kill=$?
for i in $(seq 100); do [ "$(st)" = stopped ] && break; sleep 0.02; done
echo s5=$(st)
$RT delete c1; echo delete=$?
$RT state c1 2>&1; echo gone=$?
echo left=$(ls $STATE | wc -l)
echo cgroups=$(ls /sys/fs/cgroup/berth 2>/dev/null | wc -l)
"#
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "create"), "0", "{d}");
    assert_eq!(line(&out, "pidfile"), line(&out, "statepid"), "{d}");
    assert_eq!(line(&out, "s1"), "created", "{d}");
    let state1: Value =
        serde_json::from_slice(&std::fs::read(sb.path().join("state1.json")).unwrap()).unwrap();
    assert_eq!(state1["ociVersion"], "1.0.2");
    assert_eq!(state1["id"], "c1");
    assert_eq!(state1["bundle"], json!(bundle));
    assert_eq!(state1["annotations"]["org.example.k"], "v");
    assert_eq!(line(&out, "start"), "0", "{d}");
    assert_eq!(line(&out, "s2"), "running", "{d}");
    // The exec'd process: same PID namespace, the container's confinement.
    // `start` returns once the init is released, as runc's does, so the exec
    // waits (up to 1 s) for the init to have exec'd its process;
    // a non-root user keeps capabilities across exec only through ambient.
    assert_eq!(line(&out, "pid1"), "sleep", "{d}");
    // sleep, sh, the $(...) subshell, ls, wc: nothing of the host.
    assert!(line(&out, "procs").parse::<u32>().unwrap() <= 5, "{d}");
    assert_eq!(line(&out, "nnp"), "1");
    assert_eq!(line(&out, "seccomp"), "2");
    assert_eq!(line(&out, "capeff"), "0000000020000420");
    assert_eq!(line(&out, "cwd"), "/etc");
    assert_eq!(line(&out, "uid"), "101");
    // process.json has no oomScoreAdj: the container's, as runc (Docker's
    // exec relies on it), not the caller's.
    assert_eq!(line(&out, "oom"), "300", "{d}");
    // 0-2, and the fd `ls` opens itself; never the shell's fd 7.
    assert_eq!(
        line(&out, "fds").split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{d}"
    );
    assert_eq!(line(&out, "argexec"), "0:/", "{d}");
    assert_ne!(
        line(&out, "restart"),
        "0",
        "a running container cannot start again"
    );
    assert_ne!(
        line(&out, "deleterunning"),
        "0",
        "delete without --force refuses a running container"
    );
    assert_eq!(line(&out, "s3"), "paused", "{d}");
    assert_eq!(line(&out, "s4"), "running", "{d}");
    let ps: Vec<i32> = serde_json::from_str(line(&out, "ps")).unwrap();
    assert_eq!(ps.len(), 1, "{d}");
    assert_eq!(line(&out, "kill"), "0");
    assert_eq!(line(&out, "s5"), "stopped", "{d}");
    assert_eq!(line(&out, "delete"), "0", "{d}");
    assert_ne!(line(&out, "gone"), "0", "{d}");
    assert!(out.contains("does not exist"), "{d}");
    assert_eq!(line(&out, "left"), "0", "{d}");
    assert_eq!(line(&out, "cgroups"), "0", "{d}");
}

#[test]
fn features_spec_and_version() {
    require_root!();
    let sb = Sandbox::new();
    let o = std::process::Command::new(sb.runtime())
        .arg("features")
        .output()
        .unwrap();
    assert!(o.status.success());
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("pid")));
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    // runtime-spec features.md: every hook point the runtime runs.
    assert_eq!(
        f["hooks"],
        json!([
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ])
    );
    let o = std::process::Command::new(sb.runtime())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("spec: 1.0.2"));
    let dir = sb.path().join("specdir");
    std::fs::create_dir(&dir).unwrap();
    let o = std::process::Command::new(sb.runtime())
        .args(["spec", "--bundle"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success());
    let s: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(s["root"]["path"], "rootfs");
    let again = std::process::Command::new(sb.runtime())
        .args(["spec", "--bundle"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "spec refuses to overwrite config.json"
    );
}

#[test]
fn errors_name_the_failing_step() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("bad", |c| {
        c["process"]["args"] = json!(["/no/such/program"])
    });
    let log = sb.path().join("log.json");
    let o = sb.sh(&format!(
        "$RT --log {} --log-format json create -b {} bad; echo create=$?; echo left=$(ls $STATE | wc -l)",
        log.display(),
        bundle.display()
    ));
    let out = stdout(&o);
    assert_eq!(line(&out, "create"), "1", "{}", describe(&o));
    assert_eq!(
        line(&out, "left"),
        "0",
        "a failed create leaves nothing: {}",
        describe(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("container 'bad': resolve program"), "{err}");
    assert!(err.contains("/no/such/program"), "{err}");
    let logged: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(logged["level"], "error");
    assert!(logged["msg"].as_str().unwrap().contains("resolve program"));
}

/// A container in its own user namespace, created and started through the
/// exec FIFO: the FIFO must be writable by the container's (mapped) root,
/// and reachable although the state root is private to the host's root.
#[test]
fn user_namespace_create_then_start() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    // The rootfs belongs to the host's root, so mount onto a directory that
    // exists (/tmp) a host directory the mapped root may write.
    let out_dir = sb.path().join("userns-out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(
        &out_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let bundle = sb.bundle("u", |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["mounts"].as_array_mut().unwrap().push(json!(
            {"destination": "/tmp", "type": "bind", "source": out_dir, "options": ["rbind", "rw"]}
        ));
        // Docker sets it for every container; /proc/self is not the
        // init's to write once it is root in its user namespace.
        c["process"]["oomScoreAdj"] = json!(100);
        c["process"]["args"] = json!(["sh", "-c", "echo \"uid=$(id -u) map=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //') oom=$(cat /proc/self/oom_score_adj)\" > /tmp/out"]);
    });
    let o = sb.sh(&format!(
        // The state root is private, as Docker's (/run/docker/runtime-runc
        // is 0700): the init, the user namespace's root, cannot walk it.
        "chmod 700 $STATE; $RT create -b {} u1 </dev/null; echo create=$?; $RT start u1; echo start=$?\nfor i in $(seq 100); do $RT state u1 | grep -q stopped && break; sleep 0.02; done\n$RT delete u1; echo delete=$?",
        bundle.display()
    ));
    let out = stdout(&o);
    assert_eq!(line(&out, "create"), "0", "{}", describe(&o));
    assert_eq!(line(&out, "start"), "0", "{}", describe(&o));
    assert_eq!(line(&out, "delete"), "0", "{}", describe(&o));
    let seen = std::fs::read_to_string(out_dir.join("out")).unwrap();
    assert_eq!(
        seen.trim(),
        "uid=0 map=0 100000 65536 oom=100",
        "{}",
        describe(&o)
    );
}

/// `process.terminal` with `--console-socket`: the runtime sends the pty
/// master over the socket (SCM_RIGHTS) and the container sees a terminal on
/// stdio and /dev/console.
#[test]
fn terminal_master_arrives_over_the_console_socket() {
    require_root!();
    require_program!("gcc");
    use std::io::{IoSliceMut, Read};
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::net::UnixListener;
    let sb = Sandbox::new();
    let sock_path = sb.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let bundle = sb.bundle("tty", |c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["args"] = json!(["sh", "-c", "echo tty=$(tty); [ -t 0 ] && echo stdin=terminal; echo console=$(stat -c %t:%T /dev/console) pts=$(stat -c %t:%T $(tty))"]);
    });
    let reader = std::thread::spawn(move || -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => return format!("no connection: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 256];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("an fd in SCM_RIGHTS");
        // SAFETY: the fd just arrived over the socket and is ours alone.
        let mut master = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until the slave side is gone (EIO) or EOF.
        while let Ok(n) = master.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let o = sb.sh(&format!(
        "$RT run --console-socket {} -b {} t1; echo run=$?",
        sock_path.display(),
        bundle.display()
    ));
    let text = reader.join().unwrap().replace('\r', "");
    assert_eq!(line(&stdout(&o), "run"), "0", "{}", describe(&o));
    assert_eq!(line(&text, "tty"), "/dev/pts/0", "{text}");
    assert_eq!(line(&text, "stdin"), "terminal", "{text}");
    // /dev/console is the same device as the pty slave.
    let console = line(&text, "console");
    let (c, pts) = console.split_once(" pts=").unwrap();
    assert_eq!(c, pts, "{text}");
}

/// The lifecycle hooks run at their points, in the right namespaces, with
/// the state JSON on stdin.
#[test]
fn hooks_run_at_each_lifecycle_point() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let host = sb.path().join("hooks");
    std::fs::create_dir(&host).unwrap();
    let h = host.display().to_string();
    let hook = |script: String| json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
    let bundle = sb.bundle("hk", |c| {
        c["hostname"] = json!("hooked");
        c["process"]["args"] = json!(["true"]);
        c["mounts"].as_array_mut().unwrap().push(json!(
            {"destination": "/data", "type": "bind", "source": host, "options": ["rbind", "rw"]}
        ));
        c["hooks"] = json!({
            "createRuntime": [hook(format!("cat > {h}/createRuntime.json; readlink /proc/self/ns/net > {h}/createRuntime.ns"))],
            "createContainer": [hook(format!("cat > /dev/null; readlink /proc/self/ns/net > {h}/createContainer.ns"))],
            "startContainer": [hook("cat > /data/startContainer.json".to_string())],
            "poststart": [hook(format!("cat > {h}/poststart.json"))],
            "poststop": [hook(format!("cat > {h}/poststop.json"))],
        });
    });
    let o = sb.sh(&format!(
        "$RT create -b {} h1 </dev/null; echo create=$?; $RT start h1; echo start=$?\nfor i in $(seq 100); do $RT state h1 | grep -q stopped && break; sleep 0.02; done\n$RT delete h1; echo delete=$?",
        bundle.display()
    ));
    let out = stdout(&o);
    for step in ["create", "start", "delete"] {
        assert_eq!(line(&out, step), "0", "{}", describe(&o));
    }
    let read_json = |f: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(host.join(f))
                .unwrap_or_else(|e| panic!("{f}: {e}\n{}", describe(&o))),
        )
        .unwrap()
    };
    let cr = read_json("createRuntime.json");
    assert_eq!(cr["status"], "creating");
    assert_eq!(cr["id"], "h1");
    assert!(cr["pid"].as_i64().unwrap() > 0);
    assert_eq!(cr["bundle"], json!(bundle));
    let runtime_ns = std::fs::read_to_string(host.join("createRuntime.ns")).unwrap();
    let container_ns = std::fs::read_to_string(host.join("createContainer.ns")).unwrap();
    assert!(runtime_ns.starts_with("net:["), "{runtime_ns}");
    assert!(container_ns.starts_with("net:["), "{container_ns}");
    assert_ne!(
        runtime_ns, container_ns,
        "createRuntime runs in the runtime's namespaces, createContainer in the container's"
    );
    assert_eq!(read_json("startContainer.json")["status"], "created");
    assert_eq!(read_json("poststart.json")["status"], "running");
    assert_eq!(read_json("poststop.json")["status"], "stopped");
    std::fs::remove_file(host.join("poststop.json")).unwrap();
    let o = sb.sh(&format!("$RT run -b {} h2; echo run=$?", bundle.display()));
    assert_eq!(line(&stdout(&o), "run"), "0", "{}", describe(&o));
    assert_eq!(
        read_json("poststop.json")["id"],
        "h2",
        "run fires poststop after cleanup"
    );
}

/// Two containers under one cgroup parent that the first one's create made
/// (`/berth-shared`): deleting the first succeeds and leaves the parent to
/// the second, which keeps running. The parent then stays, as runc leaves
/// parents: only the container's own cgroup is certainly berth's to remove.
#[test]
fn shared_cgroup_parent_outlives_its_creator() {
    require_root!();
    let sb = Sandbox::new();
    let mk = |name: &str| {
        sb.bundle(name, |c| {
            c["process"]["args"] = json!(["sleep", "60"]);
            c["linux"]["cgroupsPath"] = json!(format!("/berth-shared/{name}"));
        })
    };
    let (b1, b2) = (mk("s1"), mk("s2"));
    let script = format!(
        r#"
$RT create -b {b1} s1 </dev/null >/dev/null 2>&1; $RT start s1
$RT create -b {b2} s2 </dev/null >/dev/null 2>&1; $RT start s2
$RT delete --force s1; echo delete1=$?
echo parent1=$(ls -d /sys/fs/cgroup/berth-shared 2>/dev/null | wc -l)
echo s2=$($RT state s2 | tr -d ' \n' | sed 's/.*"status":"\([a-z]*\)".*/\1/')
$RT delete --force s2; echo delete2=$?
echo left=$(ls -d /sys/fs/cgroup/berth-shared/s* 2>/dev/null | wc -l)
rmdir /sys/fs/cgroup/berth-shared
"#,
        b1 = b1.display(),
        b2 = b2.display()
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "delete1"), "0", "{d}");
    assert_eq!(line(&out, "parent1"), "1", "{d}");
    assert_eq!(line(&out, "s2"), "running", "{d}");
    assert_eq!(line(&out, "delete2"), "0", "{d}");
    assert_eq!(line(&out, "left"), "0", "{d}");
}

#[test]
fn cgroup_manager_disabled_creates_no_cgroup() {
    // Podman's `--cgroups=disabled` reaches the runtime as crun's
    // `--cgroup-manager disabled`: the container stays in its caller's cgroup.
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("nocg", |c| {
        rt::sh_args(c, "echo cg=$(grep ^0:: /proc/self/cgroup | cut -d: -f3)");
        // Without a cgroup namespace the path shows where the process is.
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "cgroup");
    });
    let o = sb.sh(&format!(
        "mkdir /sys/fs/cgroup/caller && echo $$ > /sys/fs/cgroup/caller/cgroup.procs\n\
         $RT --cgroup-manager disabled run -b {b} nocg; echo run=$?\n\
         echo berth=$(ls -d /sys/fs/cgroup/berth 2>/dev/null | wc -l)\n\
         $RT --cgroup-manager cgroupfs run -b {b} withcg; echo run2=$?\n\
         $RT --cgroup-manager disabled create -b {b} nocg2 </dev/null >/dev/null 2>&1\n\
         $RT ps nocg2 2>$STATE/../ps.err; echo ps=$?; $RT delete -f nocg2",
        b = bundle.display()
    ));
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "run"), "0", "{d}");
    assert_eq!(line(&out, "berth"), "0", "no cgroup made: {d}");
    let cgs: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("cg=")).collect();
    assert_eq!(cgs, ["/caller", "/berth/withcg"], "{d}");
    assert_eq!(line(&out, "run2"), "0", "{d}");
    assert_eq!(line(&out, "ps"), "1", "{d}");
    let err = std::fs::read_to_string(sb.path().join("ps.err")).unwrap();
    assert!(err.contains("created without a cgroup"), "{err}");
}

#[test]
fn update_writes_resources_into_the_cgroup() {
    // `podman update` and containerd's shim call `update --resources FILE|-`.
    // The box has no controllers, so the file written is a core one
    // (linux.resources.unified), which shows the cgroup really changes.
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("upd", |c| c["process"]["args"] = json!(["sleep", "60"]));
    let res = sb.path().join("res.json");
    std::fs::write(&res, r#"{"unified":{"cgroup.max.descendants":"7"}}"#).unwrap();
    let o = sb.sh(&format!(
        "$RT create -b {b} upd </dev/null >/dev/null 2>&1; $RT start upd\n\
         $RT update --resources {r} upd; echo update=$?\n\
         echo file=$(cat /sys/fs/cgroup/berth/upd/cgroup.max.descendants)\n\
         echo '{{\"unified\":{{\"cgroup.max.descendants\":\"3\"}}}}' | $RT update -r - upd; echo stdin=$?\n\
         echo file2=$(cat /sys/fs/cgroup/berth/upd/cgroup.max.descendants)\n\
         echo '[1]' | $RT update -r - upd; echo bad=$?\n\
         $RT kill upd KILL\n\
         for i in $(seq 250); do $RT state upd | grep -q stopped && break; sleep 0.02; done\n\
         $RT update --resources {r} upd; echo stopped=$?\n\
         $RT delete upd",
        b = bundle.display(),
        r = res.display()
    ));
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "update"), "0", "{d}");
    assert_eq!(line(&out, "file"), "7", "{d}");
    assert_eq!(line(&out, "stdin"), "0", "{d}");
    assert_eq!(line(&out, "file2"), "3", "{d}");
    assert_ne!(line(&out, "bad"), "0", "{d}");
    assert_ne!(line(&out, "stopped"), "0", "{d}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("expected the runtime spec's linux.resources"),
        "{d}"
    );
    assert!(err.contains("it is stopped"), "{d}");
}

#[test]
fn personality_linux32_reaches_the_process() {
    // `podman run --personality LINUX32` (linux.personality); crun honours
    // it in the container's process and in exec'd ones.
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("pers", |c| {
        rt::sh_args(c, "echo machine=$(uname -m)");
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    let o = sb.sh(&format!(
        "$RT run -b {b} pers
         sed -i 's/\"echo machine=.*)\"/\"sleep 60\"/' {b}/config.json
         $RT create -b {b} pers2 </dev/null >/dev/null 2>&1; $RT start pers2
         echo exec=$($RT exec pers2 uname -m)
         $RT delete -f pers2",
        b = bundle.display()
    ));
    let out = stdout(&o);
    assert_eq!(line(&out, "machine"), "i686", "{}", describe(&o));
    assert_eq!(line(&out, "exec"), "i686", "{}", describe(&o));
}

#[test]
fn warnings_go_to_the_log_not_the_containers_stderr() {
    // During `create` stderr is the container's own (conmon's log pipe):
    // with `--log`, a warning belongs in the runtime's log, as with runc.
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("warn", |c| {
        c["process"]["args"] = json!(["true"]);
        // The sandbox has no pids controller: berth-runtime warns.
        c["linux"]["resources"]["pids"] = json!({"limit": 100});
    });
    let log = sb.path().join("log.json");
    let o = sb.sh(&format!(
        "$RT --log {l} --log-format json create -b {b} w1 </dev/null >/dev/null 2>$STATE/../w1.err; echo c1=$?\n\
         $RT delete -f w1\n\
         $RT create -b {b} w2 </dev/null >/dev/null 2>$STATE/../w2.err; echo c2=$?\n\
         $RT delete -f w2",
        l = log.display(),
        b = bundle.display()
    ));
    let out = stdout(&o);
    assert_eq!(line(&out, "c1"), "0", "{}", describe(&o));
    assert_eq!(line(&out, "c2"), "0", "{}", describe(&o));
    let err1 = std::fs::read_to_string(sb.path().join("w1.err")).unwrap();
    assert_eq!(err1, "", "nothing on the container's stderr");
    let logged: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        logged
            .iter()
            .any(|v| v["level"] == "warning" && v["msg"].as_str().unwrap().contains("pids.max")),
        "{logged:?}"
    );
    // Without --log, stderr is the only place left.
    let err2 = std::fs::read_to_string(sb.path().join("w2.err")).unwrap();
    assert!(
        err2.contains("warning") && err2.contains("pids.max"),
        "{err2}"
    );
}

#[test]
fn a_user_namespace_container_owns_its_writable_cgroup() {
    // `podman run --systemd=always --uidmap …`: a cgroup namespace and a
    // writable cgroupfs, so the container's root (host uid 100000) must own
    // its cgroup to make sub-cgroups, as runc and crun arrange.
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("deleg", |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/sys/fs/cgroup" {
                m["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
            }
        }
        rt::sh_args(
            c,
            "echo owner=$(stat -c %u /sys/fs/cgroup); mkdir /sys/fs/cgroup/sub && echo $$ > /sys/fs/cgroup/sub/cgroup.procs; echo moved=$(grep ^0:: /proc/self/cgroup)",
        );
    });
    let o = sb.sh(&format!(
        "$RT run -b {} deleg; echo run=$?\necho left=$(ls /sys/fs/cgroup/berth 2>/dev/null | wc -l)",
        bundle.display()
    ));
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "owner"), "0", "{d}");
    assert_eq!(line(&out, "moved"), "0::/sub", "{d}");
    assert_eq!(line(&out, "run"), "0", "{d}");
    assert_eq!(line(&out, "left"), "0", "{d}");
}

/// `start` returns once the container's program runs, as runc's does: a
/// shim then treats the task as running (containerd's `ctr run -d` exits
/// at once). A slow startContainer hook sits between the FIFO and execve,
/// so a `start` that returned at the FIFO would find the init still berth.
#[test]
fn start_returns_after_the_program_was_executed() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("st", |c| {
        c["process"]["args"] = json!(["sleep", "60"]);
        c["hooks"] = json!({
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat >/dev/null; sleep 0.3"]}],
        });
    });
    let script = format!(
        r#"
$RT create -b {b} --pid-file $STATE/../st.pid st </dev/null >/dev/null 2>&1; echo create=$?
pid=$(cat $STATE/../st.pid)
$RT start st; echo start=$?
echo exe=$(readlink /proc/$pid/exe)
$RT delete --force st
"#,
        b = bundle.display()
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "create"), "0", "{d}");
    assert_eq!(line(&out, "start"), "0", "{d}");
    // busybox: sleep's binary, not berth's.
    assert!(line(&out, "exe").ends_with("/busybox"), "{d}");
}

/// `kill --all` after the init exited reaches what it left in the cgroup,
/// as runc's does: containerd's shim cleans up so after the init of a
/// container without its own PID namespace exits.
#[test]
fn kill_all_reaches_children_of_an_exited_init() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("ka", |c| {
        c["process"]["args"] = json!(["sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & exit 0"]);
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]);
        c["linux"]["cgroupsPath"] = json!("/berth-ka");
    });
    let script = format!(
        r#"
$RT create -b {b} ka </dev/null >/dev/null 2>&1; $RT start ka
for i in $(seq 500); do $RT state ka | grep -q '"stopped"' && break; sleep 0.02; done
echo before=$(wc -l < /sys/fs/cgroup/berth-ka/cgroup.procs)
$RT kill --all ka KILL; echo kill=$?
# cgroupfs files have size 0 (`[ -s ]` never waits): read the list.
for i in $(seq 500); do [ -n "$(cat /sys/fs/cgroup/berth-ka/cgroup.procs)" ] || break; sleep 0.02; done
echo after=$(wc -l < /sys/fs/cgroup/berth-ka/cgroup.procs)
$RT kill ka KILL 2>$STATE/../kill.err; echo killinit=$?
echo killerr=$(cat $STATE/../kill.err)
$RT delete ka; echo delete=$?
$RT kill --all ka KILL 2>/dev/null; echo gone=$?
"#,
        b = bundle.display()
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "before"), "1", "{d}");
    assert_eq!(line(&out, "kill"), "0", "{d}");
    assert_eq!(line(&out, "after"), "0", "{d}");
    assert_eq!(line(&out, "killinit"), "1", "{d}");
    // runc's phrase, which containerd's shim maps to "already finished".
    assert!(
        line(&out, "killerr").contains("container not running"),
        "{d}"
    );
    assert_eq!(line(&out, "delete"), "0", "{d}");
    assert_eq!(line(&out, "gone"), "1", "{d}");
}

/// A rootfs that is itself a mount point (containerd mounts its overlay
/// there) with a shared rootfsPropagation: the mount that becomes the new
/// root's parent is the rootfs mount, and pivot_root needs it private.
#[test]
fn shared_propagation_on_a_mounted_rootfs() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("sp", |c| {
        c["process"]["args"] = json!(["sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo"]);
        c["linux"]["rootfsPropagation"] = json!("rshared");
    });
    let script = format!(
        r#"
mount --bind {b}/rootfs {b}/rootfs && mount --make-rshared {b}/rootfs
$RT run -b {b} sp </dev/null; echo run=$?
umount {b}/rootfs
"#,
        b = bundle.display()
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "run"), "0", "{d}");
    // The root is shared inside the container, as asked.
    assert!(out.contains(" shared:"), "{d}");
}

/// Hook order is a chain of synchronisation points, not of timing: a
/// poststart hook finds the container's process already executed (its
/// /proc/PID/exe is the program, not berth), though a slow startContainer
/// hook sits between the release and execve. Both gates: `create` + `start`
/// (the exec FIFO) and `run -d` (the sync socket). Issue 18 item 6.
#[test]
fn poststart_hooks_run_after_the_program_was_executed() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let host = sb.path().join("ps-hooks");
    std::fs::create_dir(&host).unwrap();
    let h = host.display().to_string();
    let bundle = sb.bundle("ps", |c| {
        c["process"]["args"] = json!(["sleep", "60"]);
        c["hooks"] = json!({
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat >/dev/null; sleep 0.3"]}],
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", format!(
                "p=$(sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p'); readlink /proc/$p/exe > {h}/$p.exe; echo $p >> {h}/pids"
            )]}],
        });
    });
    let script = format!(
        r#"
$RT create -b {b} ps1 </dev/null >/dev/null 2>&1; echo create=$?
$RT start ps1; echo start=$?
$RT run -d -b {b} ps2 </dev/null >/dev/null 2>&1; echo run=$?
$RT delete --force ps1; $RT delete --force ps2
"#,
        b = bundle.display()
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    let d = describe(&o);
    for step in ["create", "start", "run"] {
        assert_eq!(line(&out, step), "0", "{d}");
    }
    let pids = std::fs::read_to_string(host.join("pids")).unwrap_or_default();
    assert_eq!(
        pids.lines().count(),
        2,
        "one poststart per start: {pids}\n{d}"
    );
    for e in std::fs::read_dir(&host).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".exe") {
            let exe = std::fs::read_to_string(e.path()).unwrap();
            // busybox: sleep's binary, not berth's.
            assert!(exe.trim_end().ends_with("/busybox"), "{exe}\n{d}");
        }
    }
}

/// A last step of the init that fails after `start` released it (here a
/// startContainer hook) fails `start`, and no poststart hook runs: the
/// program was never executed. The init reports it through the exec FIFO,
/// whose EOF alone is no proof (runc's `start` succeeds here).
#[test]
fn a_failed_last_step_fails_start_and_runs_no_poststart() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let marker = sb.path().join("poststart-ran");
    let bundle = sb.bundle("fl", |c| {
        c["process"]["args"] = json!(["true"]);
        c["hooks"] = json!({
            "startContainer": [{"path": "/bin/false", "args": ["false"]}],
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", marker.display())]}],
        });
    });
    let script = format!(
        r#"
$RT create -b {b} fl </dev/null >/dev/null 2>&1; echo create=$?
$RT start fl 2>$STATE/../start.err; echo start=$?
echo err=$(cat $STATE/../start.err)
$RT delete --force fl
"#,
        b = bundle.display()
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "create"), "0", "{d}");
    assert_ne!(line(&out, "start"), "0", "{d}");
    assert!(line(&out, "err").contains("startContainer"), "{d}");
    assert!(
        !marker.exists(),
        "poststart ran for a program never executed\n{d}"
    );
}

/// A failing poststart or poststop hook only warns: the hooks after it still
/// run and `start`/`delete` succeed (runtime-spec: "the remaining hooks and
/// lifecycle continue as if the hook had succeeded"; runtime-tools'
/// poststart_fail and poststop_fail).
#[test]
fn a_failing_poststart_or_poststop_hook_lets_the_next_ones_run() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let dir = sb.path().join("wh");
    std::fs::create_dir(&dir).unwrap();
    let touch = |f: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {f} >> {}/{f}", dir.display())]});
    let bundle = sb.bundle("wh", |c| {
        c["process"]["args"] = json!(["true"]);
        c["hooks"] = json!({
            "poststart": [{"path": "/bin/false", "args": ["false"]}, touch("poststart")],
            "poststop": [{"path": "/bin/false", "args": ["false"]}, touch("poststop")],
        });
    });
    let script = format!(
        r#"
$RT create -b {b} wh </dev/null >/dev/null 2>&1; echo create=$?
$RT start wh 2>$STATE/../wh.err; echo start=$?
for i in $(seq 100); do $RT state wh 2>/dev/null | grep -q stopped && break; sleep 0.02; done
$RT delete wh 2>>$STATE/../wh.err; echo delete=$?
echo warned=$(grep -c 'hook.*ignoring' $STATE/../wh.err)
"#,
        b = bundle.display()
    );
    let o = sb.sh(&script);
    let out = stdout(&o);
    let d = describe(&o);
    for step in ["create", "start", "delete"] {
        assert_eq!(line(&out, step), "0", "{d}");
    }
    assert_eq!(
        line(&out, "warned"),
        "2",
        "one warning per failed hook\n{d}"
    );
    for f in ["poststart", "poststop"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        assert_eq!(
            text,
            format!("{f}\n"),
            "{f} hook after the failing one\n{d}"
        );
    }
}
