//! Crash safety: SIGKILL `berth-runtime run` (and its container) mid-run, and
//! mid-start at many points; `delete --force` then leaves no mount, cgroup or
//! state behind, checked by listing the test namespace's mountinfo, the
//! cgroup tree and the state dir.

#[path = "support/runtime.rs"]
mod rt;
mod support;

use rt::{describe, sh_args, stdout, Sandbox};

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no '{key}=' line in:\n{out}"))
}

const CRASH: &str = r#"
cat /proc/self/mountinfo | cut -d' ' -f5 | sort > $STATE/../mounts.before
$RT run -b $BUNDLE c1 & RUN=$!
for i in $(seq 200); do [ -e $STATE/c1/state.json ] && break; sleep 0.02; done
sleep 0.2
PID=$($RT state c1 | tr -d ' \n' | sed 's/.*"pid":\([0-9]*\).*/\1/')
kill -9 $RUN; wait $RUN 2>/dev/null
[ "$KILL_INIT" = 1 ] && kill -9 $PID
sleep 0.1
echo status=$($RT state c1 | tr -d ' \n' | sed 's/.*"status":"\([a-z]*\)".*/\1/')
echo cgroup_before=$([ -d /sys/fs/cgroup/berth/c1 ] && echo yes || echo no)
$RT delete --force c1; echo delete=$?
echo alive=$(kill -0 $PID 2>/dev/null && echo yes || echo no)
echo state_left=$(ls -A $STATE | wc -l)
echo cgroup_left=$(ls -d /sys/fs/cgroup/*/ 2>/dev/null | wc -l)
cat /proc/self/mountinfo | cut -d' ' -f5 | sort > $STATE/../mounts.after
echo mounts_same=$(cmp -s $STATE/../mounts.before $STATE/../mounts.after && echo yes || echo no)
"#;

fn crash(kill_init: bool) {
    let sb = Sandbox::new();
    let bundle = sb.bundle("b", |c| {
        sh_args(c, "sleep 60");
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
        ));
    });
    let o = sb.sh(&format!(
        "BUNDLE={}\nKILL_INIT={}\n{CRASH}",
        bundle.display(),
        if kill_init { 1 } else { 0 }
    ));
    let out = stdout(&o);
    let d = describe(&o);
    let want = if kill_init { "stopped" } else { "running" };
    assert_eq!(line(&out, "status"), want, "{d}");
    assert_eq!(line(&out, "cgroup_before"), "yes", "{d}");
    assert_eq!(line(&out, "delete"), "0", "{d}");
    assert_eq!(line(&out, "alive"), "no", "{d}");
    assert_eq!(line(&out, "state_left"), "0", "{d}");
    assert_eq!(
        line(&out, "cgroup_left"),
        "0",
        "no cgroup directory left: {d}"
    );
    assert_eq!(line(&out, "mounts_same"), "yes", "{d}");
}

#[test]
fn killed_run_leaves_nothing_after_delete_force() {
    require_root!();
    require_program!("gcc");
    crash(false);
}

#[test]
fn killed_run_and_container_leave_nothing_after_delete_force() {
    require_root!();
    require_program!("gcc");
    crash(true);
}

/// SIGKILL `run` at 20 points spread over its start (0 to ~19 ms after the
/// exec, with the namespaces, mounts and cgroup half made); after each,
/// `delete --force` (or nothing, when the kill came before any state)
/// leaves no process, mount, cgroup or state.
const MID_START: &str = r#"
cat /proc/self/mountinfo | cut -d' ' -f5 | sort > $STATE/../mounts.before
bad=0 had_state=0
for i in $(seq 0 19); do
    $RT run -b $BUNDLE m$i >/dev/null 2>&1 & RUN=$!
    busybox usleep $((i * 1000))
    kill -9 $RUN; wait $RUN 2>/dev/null
    PID=$($RT state m$i 2>/dev/null | tr -d ' \n' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    [ -e $STATE/m$i ] && had_state=$((had_state + 1))
    $RT delete --force m$i >/dev/null 2>&1
    [ -n "$PID" ] && [ "$PID" != 0 ] && kill -0 $PID 2>/dev/null && { echo "alive after m$i: $PID"; bad=1; }
    [ -e $STATE/m$i ] && { echo "state left by m$i"; bad=1; }
    # Whether or not the kill came before any state: no berth process and
    # no container program may be left in the sandbox's PID namespace (an
    # init whose creator died exits on its own, so allow it a moment), and
    # no cgroup in its cgroup tree.
    for t in $(seq 100); do
        left=$(for c in /proc/[0-9]*/comm; do read n < $c 2>/dev/null && case "$n" in sleep|berth*) echo "${c%/comm}:$n";; esac; done)
        [ -z "$left" ] && break
        busybox usleep 10000
    done
    [ -n "$left" ] && { echo "processes left by m$i: $left"; bad=1; }
    cg=$(find /sys/fs/cgroup -mindepth 1 -type d | grep -v '^/sys/fs/cgroup/berth$')
    [ -n "$cg" ] && { echo "cgroups left by m$i: $cg"; bad=1; }
done
cat /proc/self/mountinfo | cut -d' ' -f5 | sort > $STATE/../mounts.after
echo mounts_same=$(cmp -s $STATE/../mounts.before $STATE/../mounts.after && echo yes || echo no)
echo state_left=$(ls -A $STATE | wc -l)
echo bad=$bad
echo had_state=$had_state
"#;

#[test]
fn killed_mid_start_leaves_nothing_after_delete_force() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("b", |c| {
        sh_args(c, "sleep 60");
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
        ));
    });
    let o = sb.sh(&format!("BUNDLE={}\n{MID_START}", bundle.display()));
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "bad"), "0", "{d}");
    // Some kills came after the start had recorded state (so cleanup had
    // something to undo), not all before it.
    let had: u32 = line(&out, "had_state").parse().unwrap();
    eprintln!("kills after the start began: {had} of 20");
    assert!(had >= 1, "no kill landed after the start began: {d}");
    assert_eq!(line(&out, "state_left"), "0", "{d}");
    assert_eq!(line(&out, "mounts_same"), "yes", "{d}");
}

/// A created container whose exec FIFO was replaced by a directory with a
/// file in it: removing that entry fails, and `delete --force` still kills
/// the init and removes the cgroups recorded after it and the state dir
/// recorded before it, then reports the failure naming the FIFO.
const STUCK: &str = r#"
$RT create -b $BUNDLE c1 </dev/null >/dev/null 2>&1; echo create=$?
PID=$($RT state c1 | tr -d ' \n' | sed 's/.*"pid":\([0-9]*\).*/\1/')
rm $STATE/c1/exec.fifo && mkdir $STATE/c1/exec.fifo && touch $STATE/c1/exec.fifo/stuck
$RT delete --force c1 2>$STATE/../delete.err; echo delete=$?
echo err=$(tr '\n' ' ' < $STATE/../delete.err)
for i in $(seq 250); do kill -0 $PID 2>/dev/null || break; sleep 0.02; done
echo alive=$(kill -0 $PID 2>/dev/null && echo yes || echo no)
echo state_left=$(ls -A $STATE | wc -l)
echo cgroup_left=$(ls -d /sys/fs/cgroup/*/ 2>/dev/null | wc -l)
"#;

#[test]
fn delete_goes_on_past_a_failing_removal_and_reports_it() {
    require_root!();
    require_program!("gcc");
    let sb = Sandbox::new();
    let bundle = sb.bundle("b", |c| sh_args(c, "sleep 60"));
    let o = sb.sh(&format!("BUNDLE={}\n{STUCK}", bundle.display()));
    let out = stdout(&o);
    let d = describe(&o);
    assert_eq!(line(&out, "create"), "0", "{d}");
    assert_ne!(
        line(&out, "delete"),
        "0",
        "the failure is not reported: {d}"
    );
    assert!(line(&out, "err").contains("/c1/exec.fifo"), "{d}");
    assert_eq!(line(&out, "alive"), "no", "{d}");
    assert_eq!(line(&out, "cgroup_left"), "0", "{d}");
    assert_eq!(
        line(&out, "state_left"),
        "0",
        "teardown stopped at the failure: {d}"
    );
}
