//! units/berth@.service behaves under a real systemd as the runtime relies on:
//! the main process decides readiness (NotifyAccess=main: a READY=1 from any
//! other process of the unit is ignored) and may extend the start timeout,
//! the unit sits in berth.slice with a delegated cgroup the supervisor can
//! split, stop sends SIGTERM to the supervisor alone (KillMode=mixed) and
//! SIGKILL to the rest, ExecStopPost cleanup runs after a clean stop and after
//! a crash, and the output is logged under the container's name.
//!
//! The runtime is not needed for that: a small stand-in for `/usr/bin/berth`
//! (Python, installed over /usr/bin/berth after packaging/install.sh) plays the supervisor's part
//! and records what it saw in /run/fake/.
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

/// `berth run --systemd NAME` and `berth cleanup NAME`, as far as systemd can
/// tell. Files under /run/fake/ are its report; /run/fake/go-NAME lets it
/// send READY=1.
const FAKE_BERTH: &str = r#"#!/usr/bin/python3
import os, signal, socket, sys, time

def note(name, text=""):
    os.makedirs("/run/fake", exist_ok=True)
    with open("/run/fake/" + name, "w") as f:
        f.write(text)

def notify(msg):
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg.encode(), addr)

def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.01)

cmd, name = sys.argv[1], sys.argv[-1]
if cmd == "cleanup":
    note("cleanup-" + name, os.environ.get("SERVICE_RESULT", "") + " " + os.environ.get("EXIT_CODE", ""))
    sys.exit(0)
assert cmd == "run" and sys.argv[2] == "--systemd", sys.argv

print("supervisor of " + name + " starting", flush=True)
cg = "/sys/fs/cgroup" + open("/proc/self/cgroup").read().split("::", 1)[1].strip()
note("cgroup-" + name, cg)
# Delegate=yes: the supervisor may split its unit's cgroup (DESIGN.md §2).
os.mkdir(cg + "/supervisor")
os.mkdir(cg + "/payload")
with open(cg + "/supervisor/cgroup.procs", "w") as f:
    f.write("0")

# The "container": another process of the unit, in payload/.
child = os.fork()
if child == 0:
    with open(cg + "/payload/cgroup.procs", "w") as f:
        f.write("0")
    signal.signal(signal.SIGTERM, lambda *_: note("payload-got-sigterm-" + name))
    notify("READY=1")   # not the main process: systemd must ignore this
    note("payload-notified-" + name)
    while True:
        time.sleep(100)

signal.signal(signal.SIGTERM, lambda *_: (note("supervisor-got-sigterm-" + name), sys.exit(0)))
# After the payload's READY=1, a STATUS= of the main process: systemd reads
# its notify socket in order, so once it shows this status it has already
# handled (and ignored) the payload's READY=1.
wait_for("/run/fake/payload-notified-" + name)
notify("STATUS=payload has notified")
extend = os.environ.get("FAKE_EXTEND_USEC")
if extend:
    notify("EXTEND_TIMEOUT_USEC=" + extend)
wait_for("/run/fake/go-" + name)
notify("READY=1\nSTATUS=fake container running")
while True:
    time.sleep(100)
"#;

fn boot_with_fake_berth() -> SystemdBox {
    let b = SystemdBox::boot(BoxOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    b.write_file("/root/fake-berth", FAKE_BERTH.as_bytes());
    b.sh_ok(&format!(
        "chmod 755 /root/fake-berth && sh {}/packaging/install.sh --bin {}/berth \
         && install -m 755 /root/fake-berth /usr/bin/berth && systemctl daemon-reload",
        support::systemd_box::BOX_SRC,
        support::systemd_box::BOX_BIN_DIR
    ));
    b
}

fn active_state(b: &SystemdBox, unit: &str) -> String {
    b.show(unit, "ActiveState")["ActiveState"].clone()
}

#[test]
fn template_readiness_cgroup_stop_and_cleanup() {
    require_root!();
    require_program!("nsenter");
    if !std::path::Path::new("/usr/bin/python3").exists() {
        support::skip("/usr/bin/python3 is not installed (the stand-in supervisor needs it)");
        return;
    }
    let b = boot_with_fake_berth();
    b.sh_ok("systemctl start --no-block berth@web.service");

    // The payload's READY=1 arrives, and is ignored: still activating.
    b.wait_until(
        "systemctl show -p StatusText --value berth@web.service | grep -qx 'payload has notified'",
        Duration::from_secs(10),
    );
    assert_eq!(active_state(&b, "berth@web.service"), "activating");

    // Only the supervisor's READY=1 makes it active.
    b.sh_ok("touch /run/fake/go-web");
    b.wait_until(
        "systemctl is-active --quiet berth@web.service",
        Duration::from_secs(10),
    );
    let p = b.show("berth@web.service", "StatusText,ControlGroup,MainPID");
    assert_eq!(p["StatusText"], "fake container running");
    assert_eq!(p["ControlGroup"], "/berth.slice/berth@web.service");
    assert_eq!(
        b.read_file("/run/fake/cgroup-web"),
        b"/sys/fs/cgroup/berth.slice/berth@web.service"
    );
    // The split the supervisor made is left alone by systemd.
    let main_pid = &p["MainPID"];
    let supervisor =
        b.sh_ok("cat /sys/fs/cgroup/berth.slice/berth@web.service/supervisor/cgroup.procs");
    assert_eq!(supervisor.trim(), main_pid.as_str());
    let payload = b.sh_ok("cat /sys/fs/cgroup/berth.slice/berth@web.service/payload/cgroup.procs");
    assert_eq!(payload.lines().count(), 1, "payload: {payload}");

    // stdout is logged under the container's name.
    let by_name = b.sh_ok("journalctl --no-pager -b -t web -o cat");
    assert!(by_name.contains("supervisor of web starting"), "{by_name}");

    // Stop: SIGTERM to the supervisor only, SIGKILL to the payload.
    b.sh_ok("systemctl stop berth@web.service");
    b.sh_ok("test -e /run/fake/supervisor-got-sigterm-web");
    b.sh_ok("! test -e /run/fake/payload-got-sigterm-web");
    // The unit's cgroup, split included, is gone.
    b.sh_ok("! test -e /sys/fs/cgroup/berth.slice/berth@web.service");
    assert_eq!(b.read_file("/run/fake/cleanup-web"), b"success exited");

    // After a crash (the supervisor SIGKILLed) cleanup runs too.
    b.sh_ok("rm -f /run/fake/go-web; systemctl start --no-block berth@web.service; touch /run/fake/go-web");
    b.wait_until(
        "systemctl is-active --quiet berth@web.service",
        Duration::from_secs(10),
    );
    b.sh_ok("rm /run/fake/cleanup-web; systemctl kill -s KILL --kill-who=main berth@web.service");
    let cleanup = b.wait_until("cat /run/fake/cleanup-web", Duration::from_secs(10));
    assert_eq!(cleanup, "signal killed");
    assert_eq!(active_state(&b, "berth@web.service"), "failed");
}

#[test]
fn template_lets_the_supervisor_extend_the_start_timeout() {
    require_root!();
    require_program!("nsenter");
    if !std::path::Path::new("/usr/bin/python3").exists() {
        support::skip("/usr/bin/python3 is not installed (the stand-in supervisor needs it)");
        return;
    }
    let b = boot_with_fake_berth();
    // A short start timeout for both instances; "slow" asks for more time.
    b.write_file(
        "/etc/systemd/system/berth@.service.d/10-test.conf",
        b"[Service]\nTimeoutStartSec=1s\n",
    );
    b.write_file(
        "/etc/systemd/system/berth@slow.service.d/20-extend.conf",
        b"[Service]\nEnvironment=FAKE_EXTEND_USEC=5000000\n",
    );
    b.sh_ok("systemctl daemon-reload");
    b.sh_ok("systemctl start --no-block berth@slow.service berth@stuck.service");
    // Past TimeoutStartSec: "stuck" timed out, "slow" is still starting.
    b.wait_until(
        "systemctl show -p Result --value berth@stuck.service | grep -qx timeout",
        Duration::from_secs(10),
    );
    assert_eq!(active_state(&b, "berth@slow.service"), "activating");
    b.sh_ok("touch /run/fake/go-slow");
    b.wait_until(
        "systemctl is-active --quiet berth@slow.service",
        Duration::from_secs(10),
    );
}
