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
            serde_json::to_value(berth::runtime::seccomp::default_profile(&[])).unwrap();
        c["annotations"] = json!({"org.example.k": "v"});
    });
    let process = json!({
        "args": ["sh", "-c", "echo pid1=$(cat /proc/1/comm); echo procs=$(ls -d /proc/[0-9]* | wc -l); echo nnp=$(grep NoNewPrivs /proc/self/status | cut -f2); echo seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2); echo capeff=$(grep CapEff /proc/self/status | cut -f2); echo cwd=$(pwd); echo uid=$(id -u); echo fds=$(ls /proc/self/fd | tr '\\n' ' ')"],
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
    // The exec'd process: same PID namespace, the container's confinement;
    // a non-root user keeps capabilities across exec only through ambient.
    assert_eq!(line(&out, "pid1"), "sleep", "{d}");
    // sleep, sh, the $(...) subshell, ls, wc: nothing of the host.
    assert!(line(&out, "procs").parse::<u32>().unwrap() <= 5, "{d}");
    assert_eq!(line(&out, "nnp"), "1");
    assert_eq!(line(&out, "seccomp"), "2");
    assert_eq!(line(&out, "capeff"), "0000000020000420");
    assert_eq!(line(&out, "cwd"), "/etc");
    assert_eq!(line(&out, "uid"), "101");
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
/// exec FIFO: the FIFO must be writable by the container's (mapped) root.
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
        c["process"]["args"] = json!(["sh", "-c", "echo \"uid=$(id -u) map=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')\" > /tmp/out"]);
    });
    let o = sb.sh(&format!(
        "$RT create -b {} u1 </dev/null; echo create=$?; $RT start u1; echo start=$?\nfor i in $(seq 100); do $RT state u1 | grep -q stopped && break; sleep 0.02; done\n$RT delete u1; echo delete=$?",
        bundle.display()
    ));
    let out = stdout(&o);
    assert_eq!(line(&out, "create"), "0", "{}", describe(&o));
    assert_eq!(line(&out, "start"), "0", "{}", describe(&o));
    assert_eq!(line(&out, "delete"), "0", "{}", describe(&o));
    let seen = std::fs::read_to_string(out_dir.join("out")).unwrap();
    assert_eq!(seen.trim(), "uid=0 map=0 100000 65536", "{}", describe(&o));
}
