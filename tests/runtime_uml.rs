//! cgroup limits are enforced: `berth-runtime run` inside a User-Mode Linux
//! guest (TESTING.md; the host box has no cgroup controllers). The guest mounts
//! the host's root read-only through hostfs, enables memory and pids at its
//! cgroup2 root, and runs two containers: a 100 MB allocation under
//! memory.max 20M is OOM-killed, and forks beyond pids.max 5 fail.

#[path = "support/runtime.rs"]
mod rt;
mod support;

use std::process::Command;

use rt::{sh_args, Sandbox};
use serde_json::json;

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no '{key}=' line in guest output:\n{out}"))
}

#[test]
fn memory_and_pids_limits_are_enforced_in_uml() {
    require_root!();
    require_program!("linux.uml");
    require_program!("gcc");
    // Only the bundles and the guest script are used; nothing runs in the
    // sandbox cgroup on the host.
    let sb = Sandbox::new();
    let no_devices = |c: &mut serde_json::Value| {
        c["linux"]["resources"]["devices"] = json!([]);
    };
    let mem = sb.bundle("mem", |c| {
        no_devices(c);
        c["linux"]["resources"]["memory"] = json!({"limit": 20971520, "swap": 20971520});
        sh_args(
            c,
            "echo memmax=$(cat /sys/fs/cgroup/memory.max); exec dd if=/dev/zero of=/dev/null bs=100M count=1",
        );
    });
    let pids = sb.bundle("pids", |c| {
        no_devices(c);
        c["linux"]["resources"]["pids"] = json!({"limit": 5});
        sh_args(
            c,
            // The forking shell dies when a fork is refused; the outer one reads
            // pids.current with builtins only (a fork would be refused too).
            "echo pidsmax=$(cat /sys/fs/cgroup/pids.max); sh -c 'i=0; while [ $i -lt 10 ]; do sleep 3 & i=$((i+1)); done' 2>/dev/null; read cur < /sys/fs/cgroup/pids.current; echo pidscur=$cur",
        );
    });
    let script = sb.path().join("guest-init.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+memory +pids" > /sys/fs/cgroup/cgroup.subtree_control
RT="{rt} --root /run/berth"
$RT run -b {mem} m1; echo "memrun=$?"
$RT run -b {pids} p1; echo "pidsrun=$?"
echo "left=$(ls /sys/fs/cgroup/berth 2>/dev/null | grep -c 1)"
echo o > /proc/sysrq-trigger
"#,
            rt = sb.runtime().display(),
            mem = mem.display(),
            pids = pids.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new("timeout")
        .args([
            "120",
            "linux.uml",
            "mem=512M",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
        ])
        .arg(format!("init={}", script.display()))
        .args(["con0=null,fd:1", "con=null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run linux.uml");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(line(&out, "memmax"), "20971520", "{out}");
    assert_eq!(
        line(&out, "memrun"),
        "137",
        "the 100 MB allocation is OOM-killed:\n{out}"
    );
    assert!(out.contains("fork rejected by pids controller"), "{out}");
    assert_eq!(line(&out, "pidsmax"), "5", "{out}");
    let cur: u32 = line(&out, "pidscur").parse().unwrap();
    assert!(cur <= 5, "no more than pids.max tasks: {out}");
    assert_eq!(line(&out, "pidsrun"), "0", "{out}");
    assert_eq!(line(&out, "left"), "0", "cgroups removed after run:\n{out}");
}
