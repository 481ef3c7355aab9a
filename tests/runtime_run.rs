//! `berth-runtime run` of a busybox bundle, checked from inside the container:
//! isolation, confinement (caps, NNP, seccomp), exit codes, volumes, tmpfs,
//! users; and the library API with an overlay root. Root only; every run is
//! inside namespaces and a cgroup the test makes (tests/support/runtime.rs).

#[path = "support/runtime.rs"]
mod rt;
mod support;

use rt::{describe, sh_args, stdout, Sandbox};
use serde_json::{json, Value};

fn default_seccomp(caps: &[oci_spec::runtime::Capability]) -> Value {
    serde_json::to_value(berth::runtime::seccomp::default_profile(caps).unwrap()).unwrap()
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no '{key}=' line in:\n{out}"))
}

#[test]
fn container_sees_only_itself_and_is_confined() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    // cap_add NET_RAW, cap_drop KILL on the default set.
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]);
    let script = r#"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "self=$$"
echo "host=$(hostname)"
echo "procs=$(ls -d /proc/[0-9]* | wc -l)"
echo "kcore=$(cat /proc/kcore | wc -c)"
if echo 1 > /proc/sys/kernel/sysrq 2>/dev/null; then echo procsys=writable; else echo procsys=readonly; fi
if mount -t tmpfs none /mnt 2>/dev/null; then echo mount=ok; else echo mount=denied; fi
if touch /newfile 2>/dev/null; then echo rootwrite=ok; else echo rootwrite=denied; fi
echo "capeff=$(grep CapEff /proc/self/status | cut -f2)"
echo "capbnd=$(grep CapBnd /proc/self/status | cut -f2)"
echo "nnp=$(grep NoNewPrivs /proc/self/status | cut -f2)"
echo "seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2)"
echo "unshare=$(unshare -U true 2>&1)"
echo "keyctl=$(probe keyctl)"
echo "lo=$(cat /sys/class/net/lo/operstate 2>&1)"
echo "ping=$(cat /proc/sys/net/ipv4/ping_group_range | tr '\t' ' ')"
echo "nofile=$(ulimit -n):$(ulimit -Hn)"
"#;
    let bundle = sb.bundle("b", |c| {
        sh_args(c, script);
        c["hostname"] = json!("box1");
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
        c["process"]["capabilities"]["inheritable"] = json!([]);
        c["process"]["capabilities"]["ambient"] = json!([]);
        c["linux"]["seccomp"] = default_seccomp(&[]);
        c["linux"]["sysctl"] = json!({"net.ipv4.ping_group_range": "0 2147483647"});
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]);
    });
    let o = sb.sh(&format!("$RT run -b {} c1", bundle.display()));
    assert!(o.status.success(), "{}", describe(&o));
    let out = stdout(&o);
    assert!(
        line(&out, "pid1").starts_with("sh -c"),
        "PID 1 is the container's own sh:\n{out}"
    );
    assert_eq!(line(&out, "self"), "1");
    assert_eq!(line(&out, "host"), "box1");
    // sh, its $(...) subshell and ls: nothing of the host.
    assert!(line(&out, "procs").parse::<u32>().unwrap() <= 4, "{out}");
    assert_eq!(line(&out, "kcore"), "0", "/proc/kcore must be masked");
    assert_eq!(line(&out, "procsys"), "readonly");
    assert_eq!(line(&out, "mount"), "denied");
    assert_eq!(line(&out, "rootwrite"), "denied");
    // NET_BIND_SERVICE (10) | NET_RAW (13) | AUDIT_WRITE (29); no KILL (5).
    assert_eq!(line(&out, "capeff"), "0000000020002400");
    assert_eq!(line(&out, "capbnd"), "0000000020002400");
    assert_eq!(line(&out, "nnp"), "1");
    assert_eq!(line(&out, "seccomp"), "2");
    assert!(
        line(&out, "unshare").contains("Operation not permitted"),
        "{out}"
    );
    assert_eq!(line(&out, "keyctl"), "keyctl: Operation not permitted");
    assert_eq!(
        line(&out, "lo"),
        "unknown",
        "lo is up (operstate of loopback reads unknown)"
    );
    assert_eq!(
        line(&out, "ping"),
        "0 2147483647",
        "sysctl set in the container's netns"
    );
    assert_eq!(line(&out, "nofile"), "100:200");
}

#[test]
fn exit_codes_and_signals_pass_through() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let three = sb.bundle("three", |c| sh_args(c, "exit 3"));
    let sleeper = sb.bundle("sleeper", |c| sh_args(c, "sleep 30"));
    let trapper = sb.bundle("trapper", |c| {
        sh_args(
            c,
            "trap 'exit 7' TERM; echo ready > /dev/shm/x; while true; do sleep 0.05; done",
        )
    });
    let o = sb.sh(&format!(
        r#"$RT run -b {three} c3; echo "three=$?"
$RT run -b {sleeper} c9 & RUN=$!
for i in $(seq 200); do $RT state c9 2>/dev/null | grep -q '"running"' && break; sleep 0.02; done
$RT kill c9 KILL
wait $RUN; echo "killed=$?"
$RT run -b {trapper} ct & RUN=$!
# Until the trap is set (the container wrote its file) and the waiter took over.
for i in $(seq 250); do
    PID=$($RT state ct 2>/dev/null | tr -d ' \n' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    [ -n "$PID" ] && [ -e /proc/$PID/root/dev/shm/x ] && [ "$(cat /proc/$RUN/comm)" = "berth:[wait]" ] && break
    sleep 0.02
done
echo "waiter=$(cat /proc/$RUN/comm)"
kill -TERM $RUN
wait $RUN; echo "forwarded=$?"
ls $STATE | wc -l | sed 's/^/left=/'
"#,
        three = three.display(),
        sleeper = sleeper.display(),
        trapper = trapper.display()
    ));
    let out = stdout(&o);
    assert_eq!(line(&out, "three"), "3", "{}", describe(&o));
    assert_eq!(line(&out, "killed"), "137", "{}", describe(&o));
    // A container still running after a moment is waited for by the small
    // re-executed personality, which still forwards signals.
    assert_eq!(line(&out, "waiter"), "berth:[wait]", "{}", describe(&o));
    assert_eq!(line(&out, "forwarded"), "7", "{}", describe(&o));
    assert_eq!(
        line(&out, "left"),
        "0",
        "run removes its state: {}",
        describe(&o)
    );
}

#[test]
fn volumes_persist_and_tmpfs_has_its_size_and_user_is_set() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let vol = sb.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(101), Some(101)).unwrap();
    let mounts = |c: &mut Value| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/data", "type": "bind", "source": vol, "options": ["rbind", "rw", "nosuid"]}));
        m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=2m", "mode=1777"]}));
        c["process"]["user"] = json!({"uid": 101, "gid": 101, "additionalGids": [5]});
    };
    let writer = sb.bundle("w", |c| {
        mounts(c);
        sh_args(
            c,
            r#"echo hello > /data/f && echo "df=$(df -k /scratch | tail -1 | awk '{print $2}')"
echo "fstype=$(awk '$2 == "/scratch" {print $3}' /proc/mounts)"
echo "ids=$(id -u):$(id -g):$(id -G)"
touch /scratch/x && echo scratch=writable"#,
        )
    });
    let reader = sb.bundle("r", |c| {
        mounts(c);
        sh_args(c, r#"echo "got=$(cat /data/f)""#)
    });
    let o = sb.sh(&format!(
        "$RT run -b {} w1 && $RT run -b {} r1",
        writer.display(),
        reader.display()
    ));
    assert!(o.status.success(), "{}", describe(&o));
    let out = stdout(&o);
    assert_eq!(line(&out, "df"), "2048", "{out}");
    assert_eq!(line(&out, "fstype"), "tmpfs");
    assert_eq!(line(&out, "ids"), "101:101:101 5", "{out}");
    assert_eq!(line(&out, "scratch"), "writable");
    assert_eq!(
        line(&out, "got"),
        "hello",
        "the volume's file persists across runs"
    );
    assert_eq!(std::fs::read_to_string(vol.join("f")).unwrap(), "hello\n");
}

/// The library API from a forked, single-threaded child of the test: overlay
/// root with a read-only lower, writes landing in the upper dir.
#[test]
fn library_create_start_wait_cleanup_with_overlay_root() {
    require_root!();
    require_program!("gcc");
    use berth::runtime::{self, CreateOptions, RootfsSource, Stdio};
    let sb = Sandbox::new();
    let bundle = sb.bundle("ov", |c| {
        c["root"]["readonly"] = json!(false);
        sh_args(
            c,
            r#"echo upper > /written; echo "intruder:x:0:0::/:/bin/sh" >> /etc/passwd; echo "fs=$(awk '$2 == "/" {print $3}' /proc/mounts)""#,
        );
    });
    let lower = bundle.join("rootfs");
    let upper = sb.path().join("upper");
    let work = sb.path().join("work");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let out_file = sb.path().join("out.txt");
    let spec: oci_spec::runtime::Spec =
        oci_spec::runtime::Spec::load(bundle.join("config.json")).unwrap();
    let state_dir = sb.path().join("libstate");
    let cgroup = sb.cgroup.clone();

    // SAFETY: the child only runs the runtime and _exits; glibc's fork keeps
    // malloc usable in the child.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = (|| -> Result<i32, String> {
            std::fs::write(cgroup.join("cgroup.procs"), "0").map_err(|e| e.to_string())?;
            nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_NEWCGROUP,
            )
            .map_err(|e| e.to_string())?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            nix::mount::mount(
                Some("cgroup2"),
                "/sys/fs/cgroup",
                Some("cgroup2"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            let f = std::fs::File::create(&out_file).map_err(|e| e.to_string())?;
            let mut opts = CreateOptions::new("ov1", spec, &state_dir);
            opts.rootfs = RootfsSource::Overlay {
                lowers: vec![lower.clone()],
                upper: upper.clone(),
                work: work.clone(),
            };
            opts.cgroup = Some("/sys/fs/cgroup/berth/ov1".into());
            opts.stdio = Stdio::Fds {
                stdin: None,
                stdout: Some(f.into()),
                stderr: None,
            };
            let c = runtime::create(opts).map_err(|e| e.to_string())?;
            if !std::path::Path::new("/sys/fs/cgroup/berth/ov1").exists() {
                return Err("cgroup missing while running".into());
            }
            c.start().map_err(|e| e.to_string())?;
            let code = c.wait().map_err(|e| e.to_string())?;
            runtime::cleanup(&state_dir, "ov1").map_err(|e| format!("{e:?}"))?;
            if std::path::Path::new("/sys/fs/cgroup/berth/ov1").exists() {
                return Err("cgroup left after cleanup".into());
            }
            Ok(code)
        })();
        match code {
            Ok(c) => unsafe { libc::_exit(c) },
            Err(e) => {
                eprintln!("child: {e}");
                unsafe { libc::_exit(99) }
            }
        }
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child status {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child failed; see stderr");
    let out = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(line(&out, "fs"), "overlay", "{out}");
    assert_eq!(
        std::fs::read_to_string(upper.join("written")).unwrap(),
        "upper\n"
    );
    assert!(
        !lower.join("written").exists(),
        "writes must land in the upper dir"
    );
    assert!(
        !std::fs::read_to_string(lower.join("etc/passwd"))
            .unwrap()
            .contains("intruder"),
        "the lower stays unchanged"
    );
    assert!(
        std::fs::read_to_string(upper.join("etc/passwd"))
            .unwrap()
            .contains("intruder"),
        "copy-up lands in the upper"
    );
    assert!(
        !state_dir.join("ov1").exists(),
        "cleanup removes the record"
    );
}

/// `--preserve-fds N` passes descriptors 3..3+N into the container (socket
/// activation); every other inherited descriptor stays out.
#[test]
fn preserved_fds_pass_and_others_do_not() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let marker = sb.path().join("marker");
    std::fs::write(&marker, "passed-through\n").unwrap();
    let b = sb.bundle("pf", |c| {
        sh_args(
            c,
            "echo fds=$(ls /proc/self/fd | tr '\\n' ' '); if read l <&3; then echo got=$l; else echo got=none; fi",
        )
    });
    let o = sb.sh(&format!(
        "exec 3<{m} 4<{m} 5<{m}\n$RT run --preserve-fds 1 -b {b} p1 | sed 's/^/with-/'\n$RT run -b {b} p2 | sed 's/^/without-/'",
        m = marker.display(),
        b = b.display()
    ));
    let out = stdout(&o);
    // 0-2, the preserved 3, and the fd `ls` opens for the listing.
    assert_eq!(
        line(&out, "with-fds").trim(),
        "0 1 2 3 4",
        "{}",
        describe(&o)
    );
    assert_eq!(line(&out, "with-got"), "passed-through");
    assert_eq!(
        line(&out, "without-fds").trim(),
        "0 1 2 3",
        "{}",
        describe(&o)
    );
    assert_eq!(line(&out, "without-got"), "none");
}

/// `BERTH_TRACE_START=1` (src/trace.rs) names each step of a start, from the
/// protected re-execution to the init's execve, with growing times; unset,
/// nothing of it is printed.
#[test]
fn a_traced_start_names_its_steps_in_order() {
    require_root!();
    let sb = Sandbox::new();
    let bundle = sb.bundle("b", |c| {
        sh_args(c, "echo ran");
        c["linux"]["seccomp"] = default_seccomp(&[]);
    });
    let o = sb.sh(&format!(
        "BERTH_TRACE_START=1 $RT run -b {b} t1 && $RT run -b {b} t2",
        b = bundle.display()
    ));
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(stdout(&o).lines().filter(|l| *l == "ran").count(), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    let steps: Vec<(f64, &str)> = err
        .lines()
        .filter_map(|l| l.strip_prefix("berth-trace:"))
        .map(|l| {
            let (ms, rest) = l
                .trim_start()
                .split_once(" ms ")
                .expect("`N ms` in a trace line");
            let what = rest.split_once("] ").map_or(rest, |(_, w)| w);
            (ms.parse().expect("milliseconds"), what)
        })
        .collect();
    let at = |what: &str| {
        steps
            .iter()
            .find(|(_, w)| *w == what)
            .unwrap_or_else(|| panic!("no trace step {what:?} in:\n{err}"))
            .0
    };
    // The traced run alone: the untraced one printed none.
    assert_eq!(
        steps.iter().filter(|(_, w)| *w == "init: execve").count(),
        1,
        "{err}"
    );
    let order = [
        "protected copy made, re-executing",
        "running from a protected copy of the binary",
        "runtime: planned (seccomp compiled)",
        "runtime: cloned",
        "init: released by the parent",
        "init: set up, waiting to be started",
        "init: execve",
    ];
    for pair in order.windows(2) {
        assert!(
            at(pair[0]) <= at(pair[1]),
            "{} before {}:\n{err}",
            pair[0],
            pair[1]
        );
    }
}
