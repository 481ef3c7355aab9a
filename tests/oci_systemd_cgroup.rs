//! `berth-runtime --systemd-cgroup` against a real systemd (one box, see
//! tests/support/systemd_box.rs): `create` registers the container's scope
//! over D-Bus with the spec's limits and `org.systemd.property.*`
//! annotations, the init runs in that scope's cgroup (and sees it as its
//! cgroup namespace's root), `delete` stops the scope and nothing is left.
//! Bad annotations and a missing bus fail `create` with a clear message and
//! leave nothing. The bus's absence is made with a private mount namespace
//! around one command; systemd's private socket is then the fallback.
//! Last, `berth run` in the foreground gets its own scope the same way.
//! The box has no cgroup controllers: limits are checked as systemd shows
//! them, not enforced (tests/uml_limits.rs covers enforcement).

#[path = "support/runtime.rs"]
mod rt;
mod support;

use std::collections::HashMap;

use serde_json::json;
use support::systemd_box::{BoxOptions, SystemdBox};

const STATE: &str = "/run/berth-oci";
const RT: &str = "berth-runtime --root /run/berth-oci --systemd-cgroup";

/// (exit code, stdout, stderr) of a command in the box.
fn run(b: &SystemdBox, script: &str) -> (i32, String, String) {
    let o = b.sh(script);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `create` as a shim runs it; `prefix` wraps the command. The container's
/// init keeps the stdio it is given, so the box shell gets files, not pipes.
fn create(b: &SystemdBox, prefix: &str, bundle: &str, id: &str) {
    b.sh_ok(&format!(
        "{prefix} {RT} create -b /srv/{bundle} {id} </dev/null >/dev/null 2>/tmp/{id}.err || {{ cat /tmp/{id}.err >&2; exit 1; }}"
    ));
}

fn show(b: &SystemdBox, unit: &str) -> HashMap<String, String> {
    b.show(
        unit,
        "LoadState,ActiveState,Slice,Delegate,ControlGroup,MemoryMax,TasksMax,TimeoutStopUSec,CollectMode,DefaultDependencies",
    )
}

/// The scope is gone: systemd forgot it (or keeps it inactive) and its
/// cgroup directory is removed.
fn assert_gone(b: &SystemdBox, unit: &str, cgroup: &str) {
    let s = show(b, unit);
    assert!(
        s["LoadState"] == "not-found" || s["ActiveState"] == "inactive",
        "{unit} is still there: {s:?}"
    );
    b.sh_ok(&format!("test ! -e /sys/fs/cgroup{cgroup}"));
}

#[test]
fn scopes_are_registered_limited_and_removed() {
    require_root!();
    require_program!("gcc");
    let sb = rt::Sandbox::new();
    let bundle = |name: &str, cgroups_path: &str, annotations: serde_json::Value| {
        sb.bundle(name, |c| {
            c["process"]["args"] = json!(["sleep", "60"]);
            c["linux"]["cgroupsPath"] = json!(cgroups_path);
            c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
            c["linux"]["resources"]["pids"] = json!({"limit": 50});
            c["annotations"] = annotations;
        })
    };
    let good = json!({
        "org.systemd.property.TimeoutStopUSec": "uint64 123456789",
        "org.systemd.property.CollectMode": "'inactive-or-failed'",
    });
    let b1 = bundle("b1", "berth.slice:test:c1", good.clone());
    let b2 = bundle("b2", ":prefix:c2", json!({}));
    let b3 = bundle(
        "b3",
        "berth.slice:bad:c3",
        json!({"org.systemd.property.CollectMode": "inactive"}),
    );
    let b4 = bundle("b4", "berth.slice:p2p:c4", good);

    let b = SystemdBox::boot(BoxOptions::default().with_berth())
        .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    for (dir, name) in [(&b1, "b1"), (&b2, "b2"), (&b3, "b3"), (&b4, "b4")] {
        b.copy_in(dir, &format!("/srv/{name}"));
    }

    // create: the scope exists with what the spec and annotations ask.
    create(&b, "", "b1", "c1");
    let s = show(&b, "test-c1.scope");
    assert_eq!(s["ActiveState"], "active", "{s:?}");
    assert_eq!(s["Slice"], "berth.slice");
    assert_eq!(s["Delegate"], "yes");
    assert_eq!(s["DefaultDependencies"], "no");
    assert_eq!(s["ControlGroup"], "/berth.slice/test-c1.scope");
    assert_eq!(s["MemoryMax"], "67108864");
    assert_eq!(s["TasksMax"], "50");
    assert_eq!(s["TimeoutStopUSec"], "2min 3.456789s");
    assert_eq!(s["CollectMode"], "inactive-or-failed");
    let pid = b
        .sh_ok(&format!(
            "{RT} state c1 | tr -d ' \\n' | sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'"
        ))
        .trim()
        .to_string();
    assert_eq!(
        b.sh_ok(&format!("grep ^0:: /proc/{pid}/cgroup")).trim(),
        "0::/berth.slice/test-c1.scope"
    );

    // start: the process runs in the scope, and its own cgroup namespace is
    // rooted there (unshared after systemd moved it, not at clone).
    b.sh_ok(&format!("{RT} start c1"));
    b.wait_for(
        &format!("cat /proc/{pid}/comm"),
        |c| c == "sleep",
        std::time::Duration::from_secs(5),
    );
    assert_eq!(
        b.sh_ok("grep -c . /sys/fs/cgroup/berth.slice/test-c1.scope/cgroup.procs")
            .trim(),
        "1"
    );
    assert_eq!(
        b.sh_ok(&format!("{RT} exec c1 grep ^0:: /proc/self/cgroup"))
            .trim(),
        "0::/"
    );

    // kill + delete: the scope and its cgroup are gone.
    b.sh_ok(&format!("{RT} kill c1 KILL"));
    b.wait_for(
        &format!("{RT} state c1 | grep -o '\"status\": \"[a-z]*\"'"),
        |s| s.contains("stopped"),
        std::time::Duration::from_secs(5),
    );
    b.sh_ok(&format!("{RT} delete c1"));
    assert_gone(&b, "test-c1.scope", "/berth.slice/test-c1.scope");
    b.sh_ok(&format!("test ! -e {STATE}/c1"));

    // An empty slice is system.slice; delete --force of a created container.
    create(&b, "", "b2", "c2");
    let s = show(&b, "prefix-c2.scope");
    assert_eq!(s["ActiveState"], "active", "{s:?}");
    assert_eq!(s["Slice"], "system.slice");
    assert_eq!(s["ControlGroup"], "/system.slice/prefix-c2.scope");
    b.sh_ok(&format!("{RT} delete --force c2"));
    assert_gone(&b, "prefix-c2.scope", "/system.slice/prefix-c2.scope");

    // A bad annotation value: a clear error before anything exists.
    let (code, _, err) = run(&b, &format!("{RT} create -b /srv/b3 c3 </dev/null"));
    assert_ne!(code, 0);
    assert!(
        err.contains("annotation 'org.systemd.property.CollectMode' value 'inactive'")
            && err.contains("unknown word 'inactive'"),
        "{err}"
    );
    assert_eq!(show(&b, "bad-c3.scope")["LoadState"], "not-found");
    b.sh_ok(&format!("test ! -e {STATE}/c3"));

    // No system bus: systemd's private socket serves instead.
    let hide_bus = "unshare -m sh -c 'mount -t tmpfs none /run/dbus && exec \"$0\" \"$@\"'";
    create(&b, hide_bus, "b4", "c4");
    let s = show(&b, "p2p-c4.scope");
    assert_eq!(s["ActiveState"], "active", "{s:?}");
    assert_eq!(s["CollectMode"], "inactive-or-failed");
    b.sh_ok(&format!("{hide_bus} {RT} delete --force c4"));
    assert_gone(&b, "p2p-c4.scope", "/berth.slice/p2p-c4.scope");

    // Neither bus nor private socket: create fails, says so, leaves nothing.
    let no_systemd = "unshare -m sh -c 'mount -t tmpfs none /run/dbus && mount -t tmpfs none /run/systemd && exec \"$0\" \"$@\"'";
    let (code, _, err) = run(
        &b,
        &format!("{no_systemd} {RT} create -b /srv/b4 c5 </dev/null"),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot reach systemd over D-Bus")
            && err.contains("run without --systemd-cgroup"),
        "{err}"
    );
    assert_eq!(show(&b, "p2p-c4.scope")["LoadState"], "not-found");
    b.sh_ok(&format!("test ! -e {STATE}/c5"));
    b.sh_ok("test -z \"$(ls /sys/fs/cgroup/berth.slice | grep scope)\"");

    // `berth run` in the foreground asks for its scope over the same bus
    // (not systemd-run, which would describe it by its command line).
    b.sh_ok("berth run --name adhoc --rootfs /srv/b1/rootfs sleep 2 >/dev/null 2>&1 &");
    b.wait_for(
        "systemctl show -p ActiveState --value berth-run-adhoc.scope",
        |s| s == "active",
        std::time::Duration::from_secs(10),
    );
    let s = b.show("berth-run-adhoc.scope", "Description,Slice,Delegate");
    assert_eq!(s["Description"], "berth run adhoc");
    assert_eq!(s["Slice"], "berth.slice");
    assert_eq!(s["Delegate"], "yes");
    b.wait_for(
        "cat /sys/fs/cgroup/berth.slice/berth-run-adhoc.scope/payload/cgroup.procs 2>/dev/null | wc -l",
        |n| n == "1",
        std::time::Duration::from_secs(10),
    );
    // When the run ends, systemd collects its scope.
    b.wait_for(
        "ls -d /sys/fs/cgroup/berth.slice/berth-run-adhoc.scope 2>/dev/null; true",
        |t| t.is_empty(),
        std::time::Duration::from_secs(10),
    );

    b.close().unwrap();
}
