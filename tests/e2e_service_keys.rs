//! End to end on a real systemd: the `[service]`, `[health]` and `[[secret]]`
//! keys of issue 15, in one box boot. What a user checks is asserted:
//! `systemctl start|stop|reload` and `systemctl show`, `berth ps --group`,
//! what the container's own shell traps and environment see, and the health
//! state berth reports.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use reg::{Layout, Member};
use support::systemd_box::{BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/root";

/// A busybox rootfs container running `script` under `sh`, with the box's
/// /srv/shared writable at /shared.
fn definition(script: &str, rest: &str) -> String {
    format!(
        "rootfs = \"{ROOTFS}\"\ncommand = [\"sh\", \"-c\", {script:?}]\n\
         [[volume]]\nsource = \"/srv/shared\"\ntarget = \"/shared\"\n{rest}"
    )
}

/// Sleeps in short steps so that sh runs its traps promptly.
const IDLE: &str = "while :; do sleep 0.1; done";

/// busybox with a HEALTHCHECK passing once /tmp/ok exists.
fn write_health_image(dir: &std::path::Path) {
    let layout = Layout::new(dir);
    let busybox: &'static [u8] =
        Box::leak(std::fs::read("/bin/busybox").unwrap().into_boxed_slice());
    let layer = reg::tar_of(&[
        Member::Dir("bin/", 0o755, 0, 0),
        Member::Dir("tmp/", 0o1777, 0, 0),
        Member::File("bin/busybox", busybox, 0o755, 0, 0),
        Member::Symlink("bin/sh", "busybox"),
        Member::Symlink("bin/sleep", "busybox"),
        Member::Symlink("bin/touch", "busybox"),
        Member::Symlink("bin/test", "busybox"),
    ]);
    let config = serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["sleep 0.3; touch /tmp/ok; exec sleep 1000"],
        "Env": ["PATH=/bin"],
        "Healthcheck": {
            "Test": ["CMD-SHELL", "test -f /tmp/ok"],
            "Interval": 200_000_000u64,
            "Timeout": 2_000_000_000u64,
            "Retries": 2,
        },
    });
    let built = layout.image(&[layer], "amd64", config);
    let mut layout = layout;
    layout.tag(&built, "1");
}

fn show(b: &SystemdBox, unit: &str, prop: &str) -> String {
    b.sh_ok(&format!("systemctl show -p {prop} --value {unit}"))
        .trim()
        .to_string()
}

fn monotonic(b: &SystemdBox, unit: &str, prop: &str) -> u64 {
    let v = show(b, unit, prop);
    v.parse()
        .unwrap_or_else(|_| panic!("{unit} {prop} = {v:?}"))
}

#[test]
fn service_keys_reach_systemd_and_the_container() {
    require_root!();
    require_program!("nsenter");
    let stop_quick = "[service]\nstop_timeout = \"2s\"\n";
    let db = definition(
        &format!("trap 'exit 0' TERM; {IDLE}"),
        "[service]\ngroup = \"app\"\nstop_timeout = \"2s\"\n",
    );
    let web = definition(
        &format!("trap 'exit 0' TERM; {IDLE}"),
        "[service]\ngroup = \"app\"\nrequires = [\"db\"]\nstop_timeout = \"2s\"\n",
    );
    // Traps record which signal arrived: reload_signal (USR2) and
    // stop_signal (USR1); SIGTERM would also end it, recorded as such.
    let sig = definition(
        &format!(
            "trap 'echo reload-usr2 >> /shared/sig.log' USR2; \
             trap 'echo stop-usr1 >> /shared/sig.log; exit 0' USR1; \
             trap 'echo stop-term >> /shared/sig.log; exit 0' TERM; \
             echo up >> /shared/sig.log; {IDLE}"
        ),
        "[service]\nstop_signal = \"SIGUSR1\"\nreload_signal = \"SIGUSR2\"\nstop_timeout = \"5s\"\n\
         restart_sec = \"3s\"\nstart_limit_burst = 7\n\
         wants = [\"aux\"]\nbinds_to = [\"aux\"]\npart_of = [\"aux\"]\nbefore = [\"multi-user.target\"]\n",
    );
    let aux = definition(&format!("trap 'exit 0' TERM; {IDLE}"), stop_quick);
    let cmd = definition(
        IDLE,
        "[service]\nreload_command = [\"sh\", \"-c\", \"echo reload-command $$ >> /shared/cmd.log\"]\nstop_timeout = \"1s\"\n",
    );
    let envsec = definition(
        &format!("echo \"password=[$DB_PASSWORD]\"; trap 'exit 0' TERM; {IDLE}"),
        "[service]\nstop_timeout = \"2s\"\n[[secret]]\ncredential = \"db-password\"\ntype = \"env\"\nname = \"DB_PASSWORD\"\n",
    );
    // Found in /etc/credstore.encrypted when the generator runs: loaded
    // with LoadCredentialEncrypted= without `encrypted = true`.
    let envenc = definition(
        &format!("echo \"token=[$TOKEN]\"; trap 'exit 0' TERM; {IDLE}"),
        "[service]\nstop_timeout = \"2s\"\n[[secret]]\ncredential = \"enc-token\"\ntype = \"env\"\nname = \"TOKEN\"\n",
    );
    let hc = "image = \"oci:/srv/img:1\"\n[service]\nstop_timeout = \"1s\"\n".to_string();
    let mut opts = BoxOptions::default()
        .with_berth()
        .file("/etc/credstore/db-password", "s3cret-env");
    for (name, body) in [
        ("db", &db),
        ("web", &web),
        ("sig", &sig),
        ("aux", &aux),
        ("cmd", &cmd),
        ("envsec", &envsec),
        ("envenc", &envenc),
        ("hc", &hc),
    ] {
        opts = opts.file(&format!("/etc/berth/containers/{name}.toml"), body);
    }
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    b.sh_ok("mkdir -p /srv/shared");
    let img = tempfile::tempdir().unwrap();
    write_health_image(img.path());
    b.copy_in(img.path(), "/srv/img");

    check_group(&b);
    check_signals_and_unit_properties(&b);
    check_reload_command(&b);
    check_env_secret(&b);
    check_image_healthcheck(&b);
}

/// `systemctl start berth-app.target` starts db then web (web requires db),
/// `berth ps --group app` lists both, `systemctl stop` stops both, web first.
fn check_group(b: &SystemdBox) {
    b.sh_ok("systemctl start berth-app.target");
    for u in ["berth@db", "berth@web", "berth-app.target"] {
        assert_eq!(show(b, u, "ActiveState"), "active", "{u}");
    }
    let db_up = monotonic(b, "berth@db", "ActiveEnterTimestampMonotonic");
    let web_start = monotonic(b, "berth@web", "ExecMainStartTimestampMonotonic");
    assert!(
        web_start >= db_up,
        "web started ({web_start}) before db was up ({db_up})"
    );
    let ps = b.sh_ok("berth ps --group app");
    let names: Vec<&str> = ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["db", "web"], "{ps}");
    assert!(ps.lines().skip(1).all(|l| l.contains("running")), "{ps}");
    assert_eq!(b.sh_ok("berth ps --group nope").lines().count(), 1);

    b.sh_ok("systemctl stop berth-app.target");
    for u in ["berth@db", "berth@web"] {
        b.wait_for(
            &format!("systemctl is-active {u}; true"),
            |t| t == "inactive",
            Duration::from_secs(15),
        );
    }
    let web_down = monotonic(b, "berth@web", "InactiveEnterTimestampMonotonic");
    let db_stopping = monotonic(b, "berth@db", "ActiveExitTimestampMonotonic");
    assert!(
        web_down <= db_stopping,
        "db began stopping ({db_stopping}) before web was down ({web_down})"
    );
}

/// reload_signal and stop_signal as the container's traps see them, and the
/// dependency and restart keys as `systemctl show` has them.
fn check_signals_and_unit_properties(b: &SystemdBox) {
    b.sh_ok("systemctl start berth@sig");
    b.wait_for(
        "cat /srv/shared/sig.log 2>/dev/null",
        |t| t == "up",
        Duration::from_secs(10),
    );
    // Wants= pulled aux in.
    assert_eq!(show(b, "berth@aux", "ActiveState"), "active");
    b.sh_ok("systemctl reload berth@sig");
    b.wait_for(
        "cat /srv/shared/sig.log",
        |t| t == "up\nreload-usr2",
        Duration::from_secs(10),
    );
    let p = b.show(
        "berth@sig",
        "RestartUSec,StartLimitBurst,StartLimitIntervalUSec,Wants,BindsTo,PartOf,Before",
    );
    assert_eq!(p["RestartUSec"], "3s", "{p:?}");
    assert_eq!(p["StartLimitBurst"], "7", "{p:?}");
    assert_eq!(p["StartLimitIntervalUSec"], "42s", "{p:?}");
    for (prop, unit) in [
        ("Wants", "berth@aux.service"),
        ("BindsTo", "berth@aux.service"),
        ("PartOf", "berth@aux.service"),
        ("Before", "multi-user.target"),
    ] {
        assert!(
            p[prop].split_whitespace().any(|u| u == unit),
            "{prop}={:?} lacks {unit}",
            p[prop]
        );
    }
    b.sh_ok("systemctl stop berth@sig");
    assert_eq!(
        b.sh_ok("cat /srv/shared/sig.log"),
        "up\nreload-usr2\nstop-usr1\n"
    );
    b.sh_ok("systemctl stop berth@aux");
}

/// reload_command runs inside the container (its own PID namespace: the
/// shell's `$$` is small) and `systemctl reload` waits for it.
fn check_reload_command(b: &SystemdBox) {
    b.sh_ok("systemctl start berth@cmd");
    b.sh_ok("systemctl reload berth@cmd");
    let log = b.sh_ok("cat /srv/shared/cmd.log");
    assert!(log.starts_with("reload-command "), "{log}");
    let pid: u32 = log.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(pid < 100, "not run in the container's PID namespace: {log}");
    b.sh_ok("systemctl stop berth@cmd");
}

/// `[[secret]] type = "env"`: the credential's content in the environment,
/// and in no file of berth's state but the 0600 ones.
fn check_env_secret(b: &SystemdBox) {
    // (The box's / is shared, as a host's: tests/support/systemd_box.rs.)
    let _ = b.sh("systemctl start berth@envsec");
    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@envsec",
        |t| t.contains("password=") || t.contains("error"),
        Duration::from_secs(15),
    );
    assert!(log.lines().any(|l| l == "password=[s3cret-env]"), "{log}");
    // On disk, only in berth's 0600 state files (exec.json, for `berth
    // exec` and health checks to get the same environment).
    let files = b.sh_ok(
        "grep -rl s3cret-env /run/berth /var/lib/berth 2>/dev/null | xargs -r stat -c '%a %n'; true",
    );
    assert!(
        !files.is_empty(),
        "the running container's exec.json holds its environment"
    );
    for l in files.lines() {
        assert!(
            l.starts_with("600 "),
            "secret in a file others may read: {l}"
        );
    }
    b.sh_ok("systemctl stop berth@envsec");

    // An encrypted credential (systemd-creds, with the box's host key),
    // put in place before the generator runs again.
    b.sh_ok(
        "mkdir -p /etc/credstore.encrypted && printf enc-s3cret | systemd-creds encrypt --name=enc-token - /etc/credstore.encrypted/enc-token && systemctl daemon-reload",
    );
    let unit = b.sh_ok("systemctl cat berth@envenc");
    assert!(unit.contains("LoadCredentialEncrypted=enc-token"), "{unit}");
    let _ = b.sh("systemctl start berth@envenc");
    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@envenc",
        |t| t.contains("token=") || t.contains("error"),
        Duration::from_secs(15),
    );
    assert!(log.lines().any(|l| l == "token=[enc-s3cret]"), "{log}");
    b.sh_ok("systemctl stop berth@envenc");
}

/// An image's HEALTHCHECK, with no [health] in the definition: healthy once
/// /tmp/ok exists, unhealthy after 2 failed checks once it is gone.
fn check_image_healthcheck(b: &SystemdBox) {
    b.sh_ok("systemctl start berth@hc");
    b.wait_for(
        "cat /run/berth/containers/hc/state.json",
        |t| t.contains("\"health\": \"healthy\""),
        Duration::from_secs(15),
    );
    let pid =
        b.sh_ok("cat /sys/fs/cgroup/berth.slice/berth@hc.service/payload/cgroup.procs | head -1");
    b.sh_ok(&format!(
        "nsenter -t {} -m /bin/busybox rm /tmp/ok",
        pid.trim()
    ));
    b.wait_for(
        "cat /run/berth/containers/hc/state.json",
        |t| t.contains("\"health\": \"unhealthy\""),
        Duration::from_secs(15),
    );
    let ev = b.sh_ok("journalctl --no-pager -b -o cat CONTAINER_NAME=hc");
    assert!(ev.contains("container \"hc\" is unhealthy"), "{ev}");
    // on_failure stays "none" for an image's check: it keeps running.
    assert_eq!(show(b, "berth@hc", "ActiveState"), "active");
    b.sh_ok("systemctl stop berth@hc");
}
