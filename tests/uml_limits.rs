//! Resource limits the kernel actually enforces, seen in a User-Mode Linux
//! guest (tests/support/uml.rs): the namespace box has no cgroup controllers,
//! so only here does `memory = "20M"` OOM-kill, `pids = 5` stop forks and
//! `cpus = 0.5` throttle.
//!
//! Two guests, each booted once and shared by the tests that read it:
//! - OCI mode (no systemd, cgroup2 at /sys/fs/cgroup): `berth-runtime run` of
//!   bundles whose `linux.resources` ask for the limits, each in a cgroup
//!   below one the test made (as a shim would);
//! - service mode: real systemd with berth installed by packaging/install.sh,
//!   definitions in /etc/berth/containers, `systemctl start berth@NAME`.
//!
//! Every limit has a control run with a looser limit that must succeed, so a
//! workload that never allocated, forked or spun could not pass.
//! `BERTH_UML_KEEP=1` keeps the guests' dirs (console.log, out/log) in /tmp.
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use support::uml::{self, GuestOptions, GuestRun, Mode};

/// One 100 MB buffer, every page of it written (busybox `dd` reads /dev/zero
/// into it); says so only if it survived. A single buffer rather than a
/// growing one: page faults are slow in UML and a realloc'ing `tail` took 11 s.
const HOG: &str = "sleep 1; dd if=/dev/zero of=/dev/null bs=100M count=1 && echo allocated-100M";
/// Forks up to 10 `sleep`s, saying how many started; busybox sh gives up at
/// the first fork that fails.
const FORKS: &str = "i=0; while [ $i -lt 10 ]; do sleep 30 & i=$((i+1)); echo forked=$i; done; echo all-forked; sleep 1";
const SPIN: &str = "while :; do :; done";

// --- OCI mode ------------------------------------------------------------

/// A bundle for `berth-runtime`: busybox rootfs, `berth-runtime spec`'s
/// config, `sh -c CMD`, the given resources and cgroupsPath.
fn bundle(root: &Path, name: &str, cmd: &str, resources: Value, cgroup: &str) {
    let b = root.join(name);
    support::busybox_rootfs(&b.join("rootfs"));
    let rt = root.join("berth-runtime");
    if !rt.exists() {
        std::os::unix::fs::symlink(support::berth_bin(), &rt).unwrap();
    }
    let out = Command::new(&rt)
        .args(["spec", "-b"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth-runtime spec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["sh", "-c", cmd]);
    cfg["linux"]["resources"] = resources;
    cfg["linux"]["cgroupsPath"] = json!(cgroup);
    std::fs::write(
        b.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();
}

/// The guest script for OCI mode. Each case runs in its own parent cgroup
/// (`/oci-NAME`, controllers enabled there as a shim would), so the parent's
/// hierarchical `memory.events` still counts the OOM kill after berth-runtime
/// removed the container's own cgroup.
const OCI_SCRIPT: &str = r#"
R="berth-runtime --root /run/berth-rt"
CG=/sys/fs/cgroup
echo "+cpu +memory +pids +io" > $CG/cgroup.subtree_control
result controllers "$(cat $CG/cgroup.controllers)"
# run NAME: berth-runtime run of /bundles/NAME in /oci-NAME/c, in the
# background; records the container cgroup's FILE while it runs.
start() {
    mkdir -p $CG/oci-$1
    echo "+cpu +memory +pids" > $CG/oci-$1/cgroup.subtree_control
    $R run -b /bundles/$1 $1 > /run/$1.out 2>&1 </dev/null &
    eval "pid_$1=$!"
    i=0; while [ ! -e $CG/oci-$1/c/cgroup.procs ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
}
finish() {
    eval "wait \$pid_$1"; st=$?
    result $1_exit $st
    result $1_out "$(tr '\n' ' ' < /run/$1.out)"
    result $1_done_s "$(cut -d' ' -f1 /proc/uptime)"
}
for n in hog ok200; do
    start $n
    result ${n}_memory_max "$(cat $CG/oci-$n/c/memory.max)"
    finish $n
    result ${n}_oom_kill "$(sed -n 's/^oom_kill //p' $CG/oci-$n/memory.events)"
done
result oom_report "$(dmesg | grep 'oom-kill:' | tail -1)"
for n in forks5 forks50; do
    start $n
    result ${n}_pids_max "$(cat $CG/oci-$n/c/pids.max)"
    finish $n
    result ${n}_forked "$(grep -o 'forked=[0-9]*' /run/$n.out | tail -1 | cut -d= -f2)"
done
result pids_report "$(dmesg | grep 'fork rejected by pids controller' | tail -1)"
for n in spin50 spinfree; do
    start $n
    sleep 0.5
    result ${n}_cpu_max "$(cat $CG/oci-$n/c/cpu.max)"
    u0=$(sed -n 's/^usage_usec //p' $CG/oci-$n/c/cpu.stat); t0=$(date +%s%N)
    sleep 2
    u1=$(sed -n 's/^usage_usec //p' $CG/oci-$n/c/cpu.stat); t1=$(date +%s%N)
    result ${n}_permille $(( (u1 - u0) * 1000000 / (t1 - t0) ))
    result ${n}_throttled "$(sed -n 's/^nr_throttled //p' $CG/oci-$n/c/cpu.stat)"
    $R kill $n KILL
    finish $n
done
"#;

fn oci_guest() -> &'static GuestRun {
    static RUN: OnceLock<GuestRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let mem = |m: u64| json!({"memory": {"limit": m * 1024 * 1024}});
        let pids = |p: i64| json!({"pids": {"limit": p}});
        let cpu = |q: i64| json!({"cpu": {"quota": q, "period": 100000}});
        bundle(tmp.path(), "hog", HOG, mem(20), "/oci-hog/c");
        bundle(tmp.path(), "ok200", HOG, mem(200), "/oci-ok200/c");
        bundle(tmp.path(), "forks5", FORKS, pids(5), "/oci-forks5/c");
        bundle(tmp.path(), "forks50", FORKS, pids(50), "/oci-forks50/c");
        bundle(tmp.path(), "spin50", SPIN, cpu(50000), "/oci-spin50/c");
        bundle(tmp.path(), "spinfree", SPIN, cpu(-1), "/oci-spinfree/c");
        let opts = GuestOptions::new(Mode::Direct, OCI_SCRIPT).dir(tmp.path(), "/bundles");
        let run = uml::run(&opts).unwrap_or_else(|e| panic!("UML guest: {e}"));
        eprintln!(
            "OCI-mode guest: {:?} wall, script ran {}s..{}s of guest uptime",
            run.wall,
            run.get("script_start_s").unwrap_or("?"),
            run.get("script_end_s").unwrap_or("?")
        );
        assert_eq!(
            run.get("script_status"),
            Some("0"),
            "the guest script did not finish\n{}",
            run.diagnostics()
        );
        run
    })
}

#[test]
fn oci_memory_limit_is_enforced_by_oom_kill() {
    require_uml!();
    let g = oci_guest();
    assert!(
        g.value("controllers").contains("memory"),
        "{}",
        g.diagnostics()
    );
    // berth-runtime wrote the limit where the kernel reads it ...
    assert_eq!(g.value("hog_memory_max"), "20971520", "{}", g.diagnostics());
    // ... and the kernel killed the 100 MB allocation under it.
    assert!(
        g.number("hog_oom_kill") >= 1,
        "no OOM kill under 20M\n{}",
        g.diagnostics()
    );
    // dd, SIGKILLed by the OOM killer: 128 + 9, as berth-runtime reports it.
    assert_eq!(g.value("hog_exit"), "137", "{}", g.diagnostics());
    assert!(
        !g.value("hog_out").contains("allocated-100M"),
        "{}",
        g.diagnostics()
    );
    let report = g.value("oom_report");
    assert!(
        report.contains("oom_memcg=/oci-hog/c") && report.contains("CONSTRAINT_MEMCG"),
        "the kernel's OOM report does not name the container's memcg: {report:?}"
    );
    // The same allocation fits under 200M: the workload really allocates.
    assert_eq!(
        g.value("ok200_memory_max"),
        "209715200",
        "{}",
        g.diagnostics()
    );
    assert_eq!(g.number("ok200_oom_kill"), 0, "{}", g.diagnostics());
    assert_eq!(g.value("ok200_exit"), "0", "{}", g.diagnostics());
    assert!(
        g.value("ok200_out").contains("allocated-100M"),
        "{}",
        g.diagnostics()
    );
}

#[test]
fn oci_pids_limit_stops_forks() {
    require_uml!();
    let g = oci_guest();
    assert_eq!(g.value("forks5_pids_max"), "5", "{}", g.diagnostics());
    // sh is one task; four sleeps fit under pids.max 5, the fifth fork fails.
    assert_eq!(g.number("forks5_forked"), 4, "{}", g.diagnostics());
    assert!(
        g.value("forks5_out").contains("can't fork"),
        "{}",
        g.diagnostics()
    );
    assert_ne!(g.value("forks5_exit"), "0", "{}", g.diagnostics());
    let report = g.value("pids_report");
    assert!(
        report.contains("fork rejected by pids controller in /oci-forks5/c"),
        "the kernel did not log the rejected fork: {report:?}"
    );
    assert_eq!(g.value("forks50_pids_max"), "50", "{}", g.diagnostics());
    assert_eq!(g.number("forks50_forked"), 10, "{}", g.diagnostics());
    assert_eq!(g.value("forks50_exit"), "0", "{}", g.diagnostics());
    assert!(
        g.value("forks50_out").contains("all-forked"),
        "{}",
        g.diagnostics()
    );
}

#[test]
fn oci_cpu_quota_throttles() {
    require_uml!();
    let g = oci_guest();
    assert_eq!(
        g.value("spin50_cpu_max"),
        "50000 100000",
        "{}",
        g.diagnostics()
    );
    let limited = g.number("spin50_permille");
    assert!(
        limited <= 550,
        "a busy loop under cpu.max 50000/100000 used {limited}‰ of a CPU\n{}",
        g.diagnostics()
    );
    assert!(g.number("spin50_throttled") >= 5, "{}", g.diagnostics());
    // Without a quota the same loop takes (nearly) the guest's one CPU; the
    // bound is loose because the host's two cores are shared.
    assert_eq!(
        g.value("spinfree_cpu_max"),
        "max 100000",
        "{}",
        g.diagnostics()
    );
    let free = g.number("spinfree_permille");
    assert!(
        free >= 700,
        "an unlimited busy loop used only {free}‰ of a CPU: the host is too busy to tell\n{}",
        g.diagnostics()
    );
}

// --- service mode: systemd + the generator -------------------------------

const ROOTFS: &str = "/srv/root";

fn definition(body: &str) -> String {
    format!(
        "rootfs = \"{ROOTFS}\"\n{body}\n[network]\nmode = \"none\"\n[service]\nrestart = \"no\"\nstop_timeout = \"1s\"\n"
    )
}

fn command(cmd: &str) -> String {
    format!("command = {}\n", json!(["sh", "-c", cmd]))
}

const SYSTEMD_SCRIPT: &str = r#"
CG=/sys/fs/cgroup/berth.slice
sc() { systemctl --no-pager "$@"; }
# Wait until berth@$1 has run and stopped (or 30 s).
wait_done() {
    i=0
    while [ $i -lt 300 ]; do
        case $(sc is-active berth@$1) in active|activating|deactivating|reloading) ;; *) return ;; esac
        sleep 0.1; i=$((i+1))
    done
}
wait_file() { i=0; while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }
report() {
    result $1_result "$(sc show -p Result --value berth@$1)"
    result $1_status "$(sc show -p ExecMainStatus --value berth@$1)"
    result $1_log "$(journalctl --no-pager -b -u berth@$1 -o cat | tr '\n' ' ' | tail -c 3000)"
}
result generated "$(ls /run/systemd/generator/ | tr '\n' ' ')"
for n in hog ok200; do
    sc start --no-block berth@$n
    wait_file $CG/berth@$n.service/memory.max
    result ${n}_memory_max "$(cat $CG/berth@$n.service/memory.max)"
    result ${n}_show_memory_max "$(sc show -p MemoryMax --value berth@$n)"
    result ${n}_procs "$(cat $CG/berth@$n.service/payload/cgroup.procs | tr '\n' ' ')"
    wait_done $n
    report $n
done
result oom_report "$(dmesg | grep 'oom-kill:' | tail -1)"
for n in forks5 forks50; do
    sc start --no-block berth@$n
    wait_file $CG/berth@$n.service/pids.max
    result ${n}_pids_max "$(cat $CG/berth@$n.service/pids.max)"
    sleep 1
    result ${n}_tasks "$(cat $CG/berth@$n.service/supervisor/cgroup.threads | wc -l) supervisor + $(cat $CG/berth@$n.service/payload/cgroup.threads | wc -l) payload"
    result ${n}_pids_max_events "$(sed -n 's/^max //p' $CG/berth@$n.service/pids.events)"
    wait_done $n
    report $n
    result ${n}_forked "$(journalctl --no-pager -b -u berth@$n -o cat | grep -o 'forked=[0-9]*' | tail -1 | cut -d= -f2)"
done
sc start berth@spin
wait_file $CG/berth@spin.service/payload/cgroup.procs
sleep 0.5
S=$CG/berth@spin.service
result spin_cpu_max "$(cat $S/cpu.max)"
u0=$(sed -n 's/^usage_usec //p' $S/cpu.stat); t0=$(date +%s%N)
sleep 2
u1=$(sed -n 's/^usage_usec //p' $S/cpu.stat); t1=$(date +%s%N)
result spin_permille $(( (u1 - u0) * 1000000 / (t1 - t0) ))
result spin_throttled "$(sed -n 's/^nr_throttled //p' $S/cpu.stat)"
sc stop berth@spin
"#;

fn systemd_guest() -> &'static GuestRun {
    static RUN: OnceLock<GuestRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let rootfs = tempfile::tempdir().unwrap();
        support::busybox_rootfs(rootfs.path());
        let defs = [
            ("hog", format!("{}[resources]\nmemory = \"20M\"", command(HOG))),
            ("ok200", format!("{}[resources]\nmemory = \"200M\"", command(HOG))),
            ("forks5", format!("{}[resources]\npids = 5", command(FORKS))),
            ("forks50", format!("{}[resources]\npids = 50", command(FORKS))),
            ("spin", format!("{}[resources]\ncpus = 0.5", command(SPIN))),
        ];
        let mut opts = GuestOptions::new(Mode::Systemd, SYSTEMD_SCRIPT)
            .with_berth()
            .dir(rootfs.path(), ROOTFS);
        opts.timeout = Duration::from_secs(60);
        for (name, body) in &defs {
            opts = opts.file(&format!("/etc/berth/containers/{name}.toml"), definition(body));
        }
        let run = uml::run(&opts).unwrap_or_else(|e| panic!("UML guest: {e}"));
        eprintln!(
            "systemd guest: {:?} wall, system running at {}s ({}), script ended at {}s of guest uptime",
            run.wall,
            run.get("system_running_s").unwrap_or("?"),
            run.get("system_state").unwrap_or("?"),
            run.get("script_end_s").unwrap_or("?")
        );
        assert_eq!(
            run.get("script_status"),
            Some("0"),
            "the guest script did not finish\n{}",
            run.diagnostics()
        );
        run
    })
}

#[test]
fn systemd_memory_limit_is_enforced_by_oom_kill() {
    require_uml!();
    let g = systemd_guest();
    // The generator's MemoryMax= reached the unit's cgroup ...
    assert_eq!(
        g.value("hog_show_memory_max"),
        "20971520",
        "{}",
        g.diagnostics()
    );
    assert_eq!(g.value("hog_memory_max"), "20971520", "{}", g.diagnostics());
    // ... the container ran below it, in payload/ ...
    assert!(
        !g.value("hog_procs").trim().is_empty(),
        "{}",
        g.diagnostics()
    );
    // ... and the kernel OOM-killed it there; systemd saw it.
    assert_eq!(g.value("hog_result"), "oom-kill", "{}", g.diagnostics());
    assert!(
        !g.value("hog_log").contains("allocated-100M"),
        "{}",
        g.diagnostics()
    );
    let report = g.value("oom_report");
    assert!(
        report.contains("oom_memcg=/berth.slice/berth@hog.service")
            && report.contains("task_memcg=/berth.slice/berth@hog.service/payload"),
        "the kernel's OOM report does not name the unit's memcg and payload/: {report:?}"
    );
    // Control: 200M is enough for the same container.
    assert_eq!(
        g.value("ok200_memory_max"),
        "209715200",
        "{}",
        g.diagnostics()
    );
    assert_eq!(g.value("ok200_result"), "success", "{}", g.diagnostics());
    assert!(
        g.value("ok200_log").contains("allocated-100M"),
        "{}",
        g.diagnostics()
    );
}

#[test]
fn systemd_pids_limit_stops_forks() {
    require_uml!();
    let g = systemd_guest();
    assert_eq!(g.value("forks5_pids_max"), "5", "{}", g.diagnostics());
    // TasksMax= covers the whole unit, the supervisor's threads included, so
    // fewer than 4 sleeps may start; what matters is that forks failed.
    let forked = g.number("forks5_forked");
    assert!(forked < 10, "{}", g.diagnostics());
    assert!(
        g.number("forks5_pids_max_events") >= 1,
        "{}",
        g.diagnostics()
    );
    assert!(
        !g.value("forks5_log").contains("all-forked"),
        "{}",
        g.diagnostics()
    );
    assert_eq!(g.value("forks50_pids_max"), "50", "{}", g.diagnostics());
    assert_eq!(g.number("forks50_forked"), 10, "{}", g.diagnostics());
    assert!(
        g.value("forks50_log").contains("all-forked"),
        "{}",
        g.diagnostics()
    );
}

#[test]
fn systemd_cpu_quota_throttles() {
    require_uml!();
    let g = systemd_guest();
    assert_eq!(
        g.value("spin_cpu_max"),
        "50000 100000",
        "{}",
        g.diagnostics()
    );
    let used = g.number("spin_permille");
    assert!(
        used <= 550,
        "a busy loop under CPUQuota=50% used {used}‰ of a CPU\n{}",
        g.diagnostics()
    );
    assert!(g.number("spin_throttled") >= 5, "{}", g.diagnostics());
}
