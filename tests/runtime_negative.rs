//! The negative battery: what a container must not be able to do, each tried
//! from inside with a static probe, under the default confinement (runc's
//! default capabilities, NNP, berth's default seccomp profile). Where a control
//! run can show the check would catch a regression, it runs too.

#[path = "support/runtime.rs"]
mod rt;
mod support;

use rt::{describe, sh_args, stdout, Sandbox};
use serde_json::{json, Value};

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no '{key}=' line in:\n{out}"))
}

fn confined(c: &mut Value, extra_caps: &[&str]) {
    let mut caps = vec!["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    caps.extend_from_slice(extra_caps);
    for set in ["bounding", "effective", "permitted"] {
        c["process"]["capabilities"][set] = json!(caps);
    }
    c["process"]["capabilities"]["inheritable"] = json!([]);
    c["process"]["capabilities"]["ambient"] = json!([]);
    let oci: Vec<oci_spec::runtime::Capability> = caps
        .iter()
        .map(|n| serde_json::from_value(json!(n)).unwrap())
        .collect();
    c["linux"]["seccomp"] =
        serde_json::to_value(berth::runtime::seccomp::default_profile(&oci).unwrap()).unwrap();
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
}

#[test]
fn escapes_fail() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let host_pid = std::process::id();
    let marker = sb.path().join("host-only-marker");
    std::fs::write(&marker, "host").unwrap();
    let script = format!(
        r#"
echo "mountproc=$(probe mount-proc /tmp/hostproc)"
echo "hostpid=$(kill -0 {host_pid} 2>&1 && echo reachable)"
echo "ptrace=$(probe ptrace {host_pid})"
if echo b > /proc/sysrq-trigger 2>/dev/null; then echo sysrq=written; else echo sysrq=denied; fi
echo "init_module=$(probe init_module)"
echo "finit_module=$(probe finit_module)"
echo "blockdev=$(probe open /dev/vda)"
echo "mknod=$(probe mknod /tmp/sda 8 0)"
echo "marker=$(cat {marker} 2>&1 || true)"
echo "sysfs=$(probe openw /sys/kernel/mm/transparent_hugepage/enabled)"
"#,
        marker = marker.display()
    );
    let bundle = sb.bundle("neg", |c| {
        confined(c, &[]);
        sh_args(c, &script);
    });
    let o = sb.sh(&format!("$RT run -b {} neg", bundle.display()));
    assert!(o.status.success(), "{}", describe(&o));
    let out = stdout(&o);
    assert_eq!(
        line(&out, "mountproc"),
        "mount-proc: Operation not permitted"
    );
    assert!(line(&out, "hostpid").contains("No such process"), "{out}");
    assert_eq!(line(&out, "ptrace"), "ptrace: No such process");
    assert_eq!(line(&out, "sysrq"), "denied");
    assert_eq!(
        line(&out, "init_module"),
        "init_module: Operation not permitted"
    );
    assert_eq!(
        line(&out, "finit_module"),
        "finit_module: Operation not permitted"
    );
    assert_eq!(line(&out, "blockdev"), "open: No such file or directory");
    assert_eq!(line(&out, "mknod"), "mknod: Operation not permitted");
    assert!(line(&out, "marker").contains("No such file"), "{out}");
    assert!(
        line(&out, "sysfs").contains("Read-only file system"),
        "{out}"
    );
}

/// With CAP_SYS_CHROOT the classic chroot escape works against a chroot'ed
/// runtime; against pivot_root it ends at the container's own root.
#[test]
fn chroot_escape_stays_in_the_container() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let marker = sb.path().join("host-only-marker");
    std::fs::write(&marker, "host").unwrap();
    let denied = sb.bundle("nochroot", |c| {
        confined(c, &[]);
        sh_args(c, &format!("probe chroot-escape {}", marker.display()));
    });
    let allowed = sb.bundle("chroot", |c| {
        confined(c, &["CAP_SYS_CHROOT"]);
        sh_args(c, &format!("probe chroot-escape {}", marker.display()));
    });
    let o = sb.sh(&format!(
        "$RT run -b {} a; $RT run -b {} b",
        denied.display(),
        allowed.display()
    ));
    let out = stdout(&o);
    assert!(
        out.contains("chroot-escape: Operation not permitted"),
        "{}",
        describe(&o)
    );
    assert!(
        out.contains("chroot-escape: stayed in container"),
        "{}",
        describe(&o)
    );
    assert!(!out.contains("reached host"), "{}", describe(&o));
}

/// A setuid-root binary gains nothing under no_new_privileges; the control
/// run without NNP shows the binary really is setuid.
#[test]
fn setuid_binary_gains_nothing_under_no_new_privileges() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let make = |name: &str, nnp: bool| {
        let b = sb.bundle(name, |c| {
            confined(c, &[]);
            c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
            c["process"]["noNewPrivileges"] = json!(nnp);
            sh_args(c, "/bin/suidprobe euid");
        });
        let p = b.join("rootfs/bin/suidprobe");
        std::fs::copy(b.join("rootfs/bin/probe"), &p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
        b
    };
    let with = make("nnp", true);
    let without = make("control", false);
    let o = sb.sh(&format!(
        "echo with=$($RT run -b {} s1); echo without=$($RT run -b {} s2)",
        with.display(),
        without.display()
    ));
    let out = stdout(&o);
    assert_eq!(line(&out, "with"), "euid=1000", "{}", describe(&o));
    assert_eq!(line(&out, "without"), "euid=0", "control: {}", describe(&o));
}

/// Even holding CAP_MKNOD, a container cannot open a host block device: the
/// cgroup device filter (runc's default deny-all plus the default nodes)
/// refuses it. The control run with an allow-all rule shows the probe would
/// otherwise succeed.
#[test]
fn device_filter_blocks_a_mknoded_host_disk() {
    require_root!();
    require_program!("gcc");
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    // A block device this host lets root open (its own disk is off limits
    // to the test's agent): loop0, so the control run can show success.
    let Ok(meta) = std::fs::metadata("/dev/loop0") else {
        support::skip("no /dev/loop0 to try the device filter on");
        return;
    };
    let dev = meta.rdev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let script = format!(
        "probe mknod /dev/hostdisk {major} {minor}; probe open /dev/hostdisk; probe open /dev/null"
    );
    let make = |name: &str, allow_all: bool| {
        sb.bundle(name, |c| {
            confined(c, &["CAP_MKNOD"]);
            if allow_all {
                c["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
            }
            sh_args(c, &script);
        })
    };
    let filtered = make("filtered", false);
    let open = make("open", true);
    let o = sb.sh(&format!(
        "echo '--- filtered'; $RT run -b {} f; echo '--- open'; $RT run -b {} o",
        filtered.display(),
        open.display()
    ));
    let out = stdout(&o);
    let (f, c) = out
        .split_once("--- open")
        .unwrap_or_else(|| panic!("{}", describe(&o)));
    assert!(f.contains("mknod: ok"), "{}", describe(&o));
    assert!(
        f.contains("open: Operation not permitted"),
        "{}",
        describe(&o)
    );
    assert!(
        f.contains("open: ok"),
        "default nodes stay usable: {}",
        describe(&o)
    );
    assert!(
        !c.contains("Operation not permitted"),
        "control: {}",
        describe(&o)
    );
}
