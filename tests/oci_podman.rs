//! Podman 4.3 (with conmon) drives `berth-runtime` end to end: what a Podman
//! user checks — exit codes, stdio, exec confinement, ttys, top, pause,
//! update, stop with SIGTERM and with the SIGKILL fallback, restart policies,
//! inspect, rm — and that nothing is left afterwards (no runtime state, no
//! mount, no cgroup). The main and the bridge-network scenarios also run
//! with crun, which shows the assertions hold for a runtime everyone trusts.
//!
//! Three tests run in a `Sandbox` (tests/support/runtime.rs): fresh mount, PID,
//! net, cgroup namespaces, a cgroup2 mount of a cgroup the test made, and a
//! tmpfs on /run, because Podman calls the runtime's `state` without `--root`
//! (libpod `UpdateContainerStatus`), so the runtime keeps its state under its
//! default root (/run/berth-runtime, /run/crun). Podman's configuration,
//! storage and run directories live in the test's temp dir. The fourth runs
//! Podman with its own defaults (systemd cgroup manager, journald logs) in
//! the real-systemd box.

#[path = "support/podman.rs"]
mod podman;
#[path = "support/runtime.rs"]
mod rt;
mod support;

use podman::Podman;
use rt::describe;

/// `key=value` lines of a script's output.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no '{key}=' line in:\n{out}"))
}

/// The scenario every runc-compatible runtime must pass under Podman with
/// `--cgroups=disabled` (the box has no cgroup controllers, TESTING.md).
const SCENARIO: &str = r#"
R="--cgroups=disabled --network none"
P run --rm $R $I sh -c 'echo hi; exit 3'; echo rc_run=$?
echo stdin-reaches-the-container | P run -i --rm $R $I cat
echo personality=$(P run --rm $R --personality LINUX32 $I uname -m)
P run --rm -t $R $I sh -c 'echo run_tty=$(tty); exit 4' > $T/runt.out; echo rc_runt=$?
tr -d '\r' < $T/runt.out
P run -d --name c --hostname box $R $I sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' >/dev/null; echo rc_rund=$?
echo ps_c=$(P ps --format '{{.Names}}:{{.Status}}' | grep '^c:' | cut -d' ' -f1)
echo rt_during=$(ls $RTROOT | wc -l)
echo overlays_during=$(grep -c ' - overlay ' /proc/self/mountinfo)
echo sandbox_pidns=$(readlink /proc/self/ns/pid)
# The exec'd process (x_) against the container's init (i_).
P exec c sh -c 'show() { echo "$1_host=$(hostname)"; for ns in pid mnt uts ipc net cgroup; do echo "$1_$ns=$(readlink /proc/$2/ns/$ns)"; done; echo "$1_cg=$(grep ^0:: /proc/$2/cgroup)"; for f in NoNewPrivs Seccomp CapEff CapBnd CapPrm; do echo "$1_$f=$(grep ^$f: /proc/$2/status | cut -f2)"; done; echo "$1_root=$(ls -di /proc/$2/root/. | cut -d" " -f1)"; }; show x self; show i 1; echo x_cwd=$(pwd); echo x_fds=$(ls /proc/self/fd | tr "\n" " ")'; echo rc_exec=$?
P exec c sh -c 'exit 7'; echo rc_exec7=$?
echo piped-into-exec | P exec -i c cat
P exec --user 1000:1000 -w /etc -e A=b c sh -c 'echo x_opts=$(id -u):$(id -g):$(pwd):$A'
P exec -t c tty > $T/exect.out; echo rc_exect=$?
echo x_tty=$(tr -d '\r' < $T/exect.out)
t0=$(date +%s%N); P stop -t 10 c >/dev/null; echo rc_stop=$?; echo stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo c_exit=$(P inspect c --format '{{.State.Status}}:{{.State.ExitCode}}')
P run -d --name d $R $I sh -c 'trap "" TERM; while :; do sleep 0.1; done' >/dev/null
t0=$(date +%s%N); P stop -t 1 d >/dev/null 2>&1; echo rc_stopd=$?; echo stopd_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo d_exit=$(P inspect d --format '{{.State.Status}}:{{.State.ExitCode}}')
# systemd's stop signal (`--systemd` containers): Podman sends it as 37.
P run -d --name f $R --stop-signal RTMIN+3 $I sh -c 'trap "exit 9" 37; while :; do sleep 0.1; done' >/dev/null
P stop -t 5 f >/dev/null; echo rc_stopf=$?
echo f_exit=$(P inspect f --format '{{.State.Status}}:{{.State.ExitCode}}')
P run -d --name e $R $I sh -c 'sleep 0.2; exit 5' >/dev/null
echo wait_e=$(P wait e)
echo e_exit=$(P inspect e --format '{{.State.Status}}:{{.State.ExitCode}}')
# --restart: Podman deletes and creates the same ID in the runtime again.
P run -d --name r $R --restart on-failure:2 $I sh -c 'echo once >> /dev/stderr; exit 1' >/dev/null
for i in $(seq 100); do [ "$(P inspect r --format '{{.RestartCount}}:{{.State.Status}}')" = 2:exited ] && break; sleep 0.1; done
echo r_state=$(P inspect r --format '{{.RestartCount}}:{{.State.Status}}:{{.State.ExitCode}}')
echo r_runs=$(P logs r 2>&1 | grep -c once)
P rm c d e f r >/dev/null; echo rc_rm=$?
echo ctrs_left=$(P ps -aq | wc -l)
echo rt_left=$(ls -A $RTROOT | wc -l)
echo overlays_left=$(grep -c ' - overlay ' /proc/self/mountinfo)
echo procs_left=$(cat /proc/[0-9]*/comm | grep -v -x -e sh -e cat -e grep -e tr | tr '\n' ' ')
"#;

fn check_scenario(name: &str, out: &str, d: &str) {
    let l = |k: &str| line(out, k);
    let msg = format!("{name}: {d}");
    assert_eq!(l("rc_run"), "3", "{msg}");
    assert!(out.lines().any(|x| x == "hi"), "{msg}");
    assert!(
        out.lines().any(|x| x == "stdin-reaches-the-container"),
        "{msg}"
    );
    assert_eq!(l("personality"), "i686", "{msg}");
    assert_eq!(l("rc_runt"), "4", "{msg}");
    assert!(l("run_tty").starts_with("/dev/pts/"), "{msg}");
    assert_eq!(l("rc_rund"), "0", "{msg}");
    assert_eq!(l("ps_c"), "c:Up", "{msg}");
    assert_eq!(
        l("rt_during"),
        "1",
        "the runtime's state is where we look: {msg}"
    );
    assert_ne!(l("overlays_during"), "0", "{msg}");
    assert_eq!(l("rc_exec"), "0", "{msg}");
    assert_eq!(l("x_host"), "box", "{msg}");
    assert_eq!(l("i_host"), "box", "{msg}");
    for k in [
        "pid",
        "mnt",
        "uts",
        "ipc",
        "net",
        "cgroup",
        "cg",
        "NoNewPrivs",
        "Seccomp",
        "CapEff",
        "CapBnd",
        "CapPrm",
        "root",
    ] {
        assert_eq!(
            l(&format!("x_{k}")),
            l(&format!("i_{k}")),
            "exec'd process differs from the init in {k}: {msg}"
        );
    }
    assert_ne!(l("x_pid"), l("sandbox_pidns"), "{msg}");
    assert_eq!(
        l("x_Seccomp"),
        "2",
        "Podman's default seccomp profile: {msg}"
    );
    assert_eq!(l("x_cwd"), "/", "{msg}");
    // 0-2 and the directory `ls` reads: no descriptor of conmon or podman.
    assert_eq!(l("x_fds"), "0 1 2 3", "{msg}");
    assert_eq!(l("rc_exec7"), "7", "{msg}");
    assert!(out.lines().any(|x| x == "piped-into-exec"), "{msg}");
    assert_eq!(l("x_opts"), "1000:1000:/etc:b", "{msg}");
    assert_eq!(l("rc_exect"), "0", "{msg}");
    assert!(l("x_tty").starts_with("/dev/pts/"), "{msg}");
    // SIGTERM reaches the container's trap, which exits 42, well before -t 10.
    assert_eq!(l("rc_stop"), "0", "{msg}");
    assert_eq!(l("c_exit"), "exited:42", "{msg}");
    assert!(l("stop_ms").parse::<u64>().unwrap() < 5000, "{msg}");
    // TERM ignored: SIGKILL after the 1 s stop timeout.
    assert_eq!(l("rc_stopd"), "0", "{msg}");
    assert_eq!(l("d_exit"), "exited:137", "{msg}");
    assert!(l("stopd_ms").parse::<u64>().unwrap() >= 1000, "{msg}");
    assert_eq!(l("rc_stopf"), "0", "{msg}");
    assert_eq!(l("f_exit"), "exited:9", "{msg}");
    assert_eq!(l("wait_e"), "5", "{msg}");
    assert_eq!(l("e_exit"), "exited:5", "{msg}");
    assert_eq!(l("r_state"), "2:exited:1", "{msg}");
    assert_eq!(l("r_runs"), "3", "{msg}");
    assert_eq!(l("rc_rm"), "0", "{msg}");
    assert_eq!(l("ctrs_left"), "0", "{msg}");
    assert_eq!(
        l("rt_left"),
        "0",
        "no state under the runtime's root: {msg}"
    );
    assert_eq!(l("overlays_left"), "0", "no rootfs mount left: {msg}");
    // Only the script's own shells and tools: no conmon, no container.
    assert_eq!(l("procs_left"), "", "{msg}");
}

#[test]
fn podman_runs_containers_with_berth_runtime_and_crun() {
    require_root!();
    require_program!("podman");
    require_program!("conmon");
    let pm = Podman::new();
    let berth = pm.sandbox.runtime();
    let o = pm.sh(&berth, &format!("{}\n{SCENARIO}", podman::IMPORT));
    let d = describe(&o);
    let out = rt::stdout(&o);
    assert_eq!(line(&out, "rc_import"), "0", "{d}");
    check_scenario("berth-runtime", &out, &d);

    if support::have_program("crun") {
        let o = pm.sh(std::path::Path::new("/usr/bin/crun"), SCENARIO);
        check_scenario("crun", &rt::stdout(&o), &describe(&o));
    } else {
        eprintln!("note: crun is not installed; the scenario ran with berth-runtime only");
    }
}

/// Podman's default network: netavark makes a bridge, a veth and iptables
/// NAT rules in the sandbox's own network namespace, and the runtime joins
/// the namespace Podman made by its path.
const BRIDGE_SCENARIO: &str = r#"
R="--cgroups=disabled --network bridge"
echo addr=$(P run --rm $R $I ip -o -4 addr show eth0 | grep -o 'inet [0-9.]*' | cut -d' ' -f2)
P run -d --name web $R -p 127.0.0.1:18080:80 $I httpd -f -p 80 -h /etc >/dev/null; echo rc_web=$?
for i in $(seq 50); do busybox wget -qO $T/got http://127.0.0.1:18080/passwd 2>/dev/null && break; sleep 0.1; done
echo fetched=$(head -c 5 $T/got)
P rm -f -t 0 web >/dev/null; echo rc_rm=$?
echo netns_left=$(ls -A /run/netns 2>/dev/null | wc -l)
echo rt_left=$(ls -A $RTROOT | wc -l)
"#;

#[test]
fn podman_bridge_network_and_published_port() {
    require_root!();
    require_program!("podman");
    require_program!("conmon");
    require_program!("iptables");
    if !std::path::Path::new("/usr/lib/podman/netavark").exists() {
        support::skip("netavark is not installed (tests/run installs it)");
        return;
    }
    let pm = Podman::new();
    let mut runtimes = vec![pm.sandbox.runtime()];
    if support::have_program("crun") {
        runtimes.push("/usr/bin/crun".into());
    }
    for (i, runtime) in runtimes.iter().enumerate() {
        let import = if i == 0 { podman::IMPORT } else { "" };
        let o = pm.sh(runtime, &format!("{import}\n{BRIDGE_SCENARIO}"));
        let d = format!("{}: {}", runtime.display(), describe(&o));
        let out = rt::stdout(&o);
        let l = |k: &str| line(&out, k);
        assert!(l("addr").starts_with("10.88."), "{d}");
        assert_eq!(l("rc_web"), "0", "{d}");
        assert_eq!(l("fetched"), "root:", "{d}");
        assert_eq!(l("rc_rm"), "0", "{d}");
        assert_eq!(l("netns_left"), "0", "{d}");
        assert_eq!(l("rt_left"), "0", "{d}");
    }
}

/// With cgroups (cgroupfs, no controllers in the box): `top`,
/// `pause`/`unpause` and `update` need them. runc and crun both fail to create a container
/// here (runc writes `pids.max`, crun raises RLIMIT_MEMLOCK, TESTING.md), so
/// this part runs with berth-runtime alone.
const CGROUP_SCENARIO: &str = r#"
R="--cgroups=enabled --network none"
P run -d --name c $R $I sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' >/dev/null 2>$T/rund.err; echo rc_rund=$?
ID=$(P inspect c --format '{{.Id}}')
CG=$(find /sys/fs/cgroup -type d -name "*$ID*" | head -1)
echo cg_found=$([ -n "$CG" ] && echo yes)
echo log_warnings=$(P logs c 2>&1 | grep -c warning)
P exec -d c sleep 77 >/dev/null; echo rc_execd=$?
echo exec_in_cg=$(for p in $(cat $CG/cgroup.procs); do tr '\0' ' ' < /proc/$p/cmdline; echo; done | grep -c '^sleep 77')
P top c > $T/top.out; echo rc_top=$?
echo top_sleep77=$(grep -c 'sleep 77' $T/top.out)
P pause c >/dev/null; echo rc_pause=$?
echo paused_status=$(P ps -a --format '{{.Status}}')
echo frozen_paused=$(grep frozen $CG/cgroup.events | cut -d' ' -f2)
P unpause c >/dev/null; echo rc_unpause=$?
echo frozen_resumed=$(grep frozen $CG/cgroup.events | cut -d' ' -f2)
echo resumed_status=$(P ps --format '{{.Status}}' | cut -d' ' -f1)
echo delegated=$(P run --rm $R --systemd=always --uidmap 0:100000:65536 --gidmap 0:100000:65536 $I sh -c 'mkdir /sys/fs/cgroup/sub && echo $$ > /sys/fs/cgroup/sub/cgroup.procs && grep ^0:: /proc/self/cgroup')
P update --memory 100m c >/dev/null 2>$T/update.err; echo rc_update=$?
echo update_warns=$(grep -c "no 'memory.max' (controller not enabled)" $T/update.err)
P stop c >/dev/null; echo rc_stop=$?
echo c_exit=$(P inspect c --format '{{.State.Status}}:{{.State.ExitCode}}')
P rm c >/dev/null; echo rc_rm=$?
echo cg_left=$([ -d "$CG" ] && echo yes || echo no)
echo rt_left=$(ls -A $RTROOT | wc -l)
echo overlays_left=$(grep -c ' - overlay ' /proc/self/mountinfo)
"#;

#[test]
fn podman_top_pause_and_cgroups_with_berth_runtime() {
    require_root!();
    require_program!("podman");
    require_program!("conmon");
    let pm = Podman::new();
    let o = pm.sh(
        &pm.sandbox.runtime(),
        &format!("{}\n{CGROUP_SCENARIO}", podman::IMPORT),
    );
    let d = describe(&o);
    let out = rt::stdout(&o);
    let l = |k: &str| line(&out, k);
    assert_eq!(l("rc_rund"), "0", "{d}");
    assert_eq!(l("cg_found"), "yes", "{d}");
    // Podman's default pids limit cannot be applied here; berth-runtime says
    // so in its --log, not in the container's own output.
    assert_eq!(l("log_warnings"), "0", "{d}");
    assert_eq!(l("rc_execd"), "0", "{d}");
    assert_eq!(
        l("exec_in_cg"),
        "1",
        "exec joins the container's cgroup: {d}"
    );
    assert_eq!(l("rc_top"), "0", "{d}");
    assert_eq!(l("top_sleep77"), "1", "{d}");
    assert_eq!(l("rc_pause"), "0", "{d}");
    assert_eq!(l("paused_status"), "Paused", "{d}");
    assert_eq!(l("frozen_paused"), "1", "{d}");
    assert_eq!(l("rc_unpause"), "0", "{d}");
    assert_eq!(l("frozen_resumed"), "0", "{d}");
    assert_eq!(l("resumed_status"), "Up", "{d}");
    // systemd mode in a user namespace: the container's root owns its cgroup.
    assert_eq!(l("delegated"), "0::/sub", "{d}");
    // `podman update` reaches the runtime's `update`; the box has no memory
    // controller, which berth-runtime says instead of pretending.
    assert_eq!(l("rc_update"), "0", "{d}");
    assert_eq!(l("update_warns"), "1", "{d}");
    assert_eq!(l("rc_stop"), "0", "{d}");
    assert_eq!(l("c_exit"), "exited:42", "{d}");
    assert_eq!(l("rc_rm"), "0", "{d}");
    assert_eq!(l("cg_left"), "no", "{d}");
    assert_eq!(l("rt_left"), "0", "{d}");
    assert_eq!(l("overlays_left"), "0", "{d}");
}

/// Podman as a systemd host runs it: its defaults (the systemd cgroup
/// manager, so `--systemd-cgroup` and a `machine.slice:libpod:ID`
/// cgroupsPath; the journald log driver), inside the real-systemd box.
const SYSTEMD_SCENARIO: &str = r#"
S=/var/lib/berth/podman
mkdir -p $S && tar -C /var/lib/berth/img -cf $S/bb.tar . || exit 90
P() { podman --root $S/storage --runroot /run/podman-test --storage-driver overlay --runtime /usr/bin/berth-runtime "$@"; }
echo manager=$(P info --format '{{.Host.CgroupManager}}')
P import $S/bb.tar localhost/bb >/dev/null; echo rc_import=$?
P run --rm --network none --name once localhost/bb sh -c 'echo hi-from-the-journal; exit 3'; echo rc_run=$?
P run -d --name c --network none localhost/bb sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' >/dev/null; echo rc_rund=$?
ID=$(P inspect c --format '{{.Id}}')
echo cg_is_scope=$([ -d /sys/fs/cgroup/machine.slice/libpod-$ID.scope ] && echo yes)
echo exec_cg=$(P exec c cat /proc/self/cgroup | grep '^0::')
echo top_lines=$(P top c | grep -c 'trap "exit 42"')
P pause c >/dev/null; echo rc_pause=$?
echo frozen=$(grep frozen /sys/fs/cgroup/machine.slice/libpod-$ID.scope/cgroup.events | cut -d' ' -f2)
P unpause c >/dev/null; echo rc_unpause=$?
P stop c >/dev/null; echo rc_stop=$?
echo c_exit=$(P inspect c --format '{{.State.Status}}:{{.State.ExitCode}}')
P rm c >/dev/null; echo rc_rm=$?
# journald stores what conmon sent asynchronously: give it a moment.
for i in $(seq 50); do journalctl --no-pager -o cat | grep -q hi-from-the-journal && break; sleep 0.1; done
echo journal=$(journalctl --no-pager -o cat | grep -c hi-from-the-journal)
echo rt_left=$(ls -A /run/berth-runtime | wc -l)
echo scopes_left=$(find /sys/fs/cgroup/machine.slice -name 'libpod-*' | wc -l)
"#;

#[test]
fn podman_with_its_systemd_defaults_in_a_systemd_box() {
    require_root!();
    require_program!("podman");
    require_program!("conmon");
    let b = support::systemd_box::SystemdBox::boot(
        support::systemd_box::BoxOptions::default().with_berth(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The storage must be a real directory: an overlay upper dir cannot live
    // on the box's overlay root (TESTING.md); /var/lib/berth is one.
    support::busybox_rootfs(&b.var_lib_berth().join("img"));
    let o = b.sh(SYSTEMD_SCENARIO);
    let d = describe(&o);
    let out = rt::stdout(&o);
    let l = |k: &str| line(&out, k);
    assert_eq!(l("manager"), "systemd", "{d}");
    assert_eq!(l("rc_import"), "0", "{d}");
    assert_eq!(l("rc_run"), "3", "{d}");
    assert_eq!(l("rc_rund"), "0", "{d}");
    // --systemd-cgroup maps machine.slice:libpod:ID to the scope's directory.
    assert_eq!(l("cg_is_scope"), "yes", "{d}");
    // The exec'd process shares the container's cgroup namespace and cgroup.
    assert_eq!(l("exec_cg"), "0::/", "{d}");
    // At least the container's shell: for a moment after each fork, the
    // child that goes on to execute `sleep` shows the same command line.
    let top: u32 = l("top_lines").parse().unwrap_or(0);
    assert!(top >= 1, "podman top shows the container's process\n{d}");
    assert_eq!(l("rc_pause"), "0", "{d}");
    assert_eq!(l("frozen"), "1", "{d}");
    assert_eq!(l("rc_unpause"), "0", "{d}");
    assert_eq!(l("rc_stop"), "0", "{d}");
    assert_eq!(l("c_exit"), "exited:42", "{d}");
    assert_eq!(l("rc_rm"), "0", "{d}");
    // conmon's journald log driver got the container's output.
    assert_ne!(l("journal"), "0", "{d}");
    assert_eq!(l("rt_left"), "0", "{d}");
    assert_eq!(l("scopes_left"), "0", "{d}");
}
