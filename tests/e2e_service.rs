//! End to end on a real systemd (the box of tests/support/systemd_box.rs):
//! `systemctl start berth@NAME` runs `berth run --systemd NAME`, which starts a
//! busybox container from a rootfs directory; what a user checks with
//! systemctl, journalctl and /sys/fs/cgroup is asserted here. Every scenario
//! also checks that a stop leaves no cgroup, state or overlay dir behind.
mod support;

use std::time::{Duration, Instant};

use support::systemd_box::{BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/web-root";

fn definition(body: &str) -> String {
    format!("rootfs = \"{ROOTFS}\"\n{body}")
}

/// Boot a box with berth installed and `defs` as (name, body) definitions
/// in /etc/berth/containers (the generator runs at boot), and a busybox
/// rootfs at /srv/web-root.
fn boot(defs: &[(&str, String)]) -> SystemdBox {
    boot_with(defs, &[])
}

/// [`boot`] with extra files written before boot.
fn boot_with(defs: &[(&str, String)], files: &[(&str, &str)]) -> SystemdBox {
    let mut opts = BoxOptions::default().with_berth();
    for (path, body) in files {
        opts = opts.file(path, body);
    }
    for (name, body) in defs {
        opts = opts.file(&format!("/etc/berth/containers/{name}.toml"), body);
    }
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    b
}

fn show(b: &SystemdBox, unit: &str, prop: &str) -> String {
    b.sh_ok(&format!("systemctl show -p {prop} --value {unit}"))
        .trim()
        .to_string()
}

/// The unit's messages without journal prefixes.
fn messages(b: &SystemdBox, unit: &str) -> String {
    b.sh_ok(&format!("journalctl --no-pager -b -o cat -u {unit}"))
}

/// Nothing of container `name` is left: run dir, overlay dirs, cgroups, and no
/// process of the box still runs the container's program.
fn assert_no_leftovers(b: &SystemdBox, name: &str) {
    let unit = format!("/sys/fs/cgroup/berth.slice/berth@{name}.service");
    let left = b.sh_ok(&format!(
        "for p in /run/berth/containers/{name} /var/lib/berth/containers/{name} {unit}/payload {unit}/supervisor; do [ -e $p ] && echo $p; done; true"
    ));
    assert_eq!(left.trim(), "", "left behind after stop");
    // The overlay lives in the container's mount namespace; no process may
    // still see it (its mountinfo names the upper dir).
    assert_eq!(
        overlay_mounts(b, name),
        0,
        "an overlay mount outlived the container"
    );
}

/// How many mount tables of processes in the box hold `name`'s overlay.
fn overlay_mounts(b: &SystemdBox, name: &str) -> usize {
    b.sh_ok(&format!(
        "grep -l 'upperdir=/var/lib/berth/containers/{name}/upper' /proc/[0-9]*/mountinfo 2>/dev/null; true"
    ))
    .lines()
    .count()
}

#[test]
fn web_runs_in_payload_logs_to_journal_and_stops_clean() {
    require_root!();
    require_program!("nsenter");
    // `exec sleep` makes sleep PID 1, which ignores SIGTERM (no handler, as
    // under Docker): a short stop_timeout keeps the stop quick.
    let web = definition(
        "command = [\"sh\", \"-c\", \"echo hello-from-web; hostname; exec sleep 1000\"]\n\
         [service]\nstop_timeout = \"1s\"\n",
    );
    let probe = definition(
        "command = [\"sh\", \"-c\", \"echo host=$(hostname); grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; touch /probe-file 2>/dev/null && echo root=writable || echo root=read-only; touch /tmp/x && echo tmp=writable; echo x > /dev/null && head -c1 /dev/zero >/dev/null && echo devices=ok; echo shared=$(cat /shared/hello); touch /shared/x 2>/dev/null || echo shared-read-only; echo secret=$(cat /run/secrets/probe-secret); id -u\"]\n\
         hostname = \"probe.example\"\nread_only = true\n\
         [security]\nno_new_privileges = true\n\
         [[volume]]\nsource = \"/srv/shared\"\ntarget = \"/shared\"\nread_only = true\n\
         [[secret]]\ncredential = \"probe-secret\"\ntarget = \"/run/secrets/probe-secret\"\n",
    );
    // The secret comes from the credential store systemd searches
    // (LoadCredential=probe-secret → /etc/credstore/probe-secret).
    let b = boot_with(
        &[("web", web), ("probe", probe)],
        &[
            ("/srv/shared/hello", "from-the-host"),
            ("/etc/credstore/probe-secret", "s3cret-file"),
        ],
    );

    let t = Instant::now();
    b.sh_ok("systemctl start berth@web");
    eprintln!("systemctl start berth@web took {:?}", t.elapsed());
    assert_eq!(b.sh_ok("systemctl is-active berth@web").trim(), "active");

    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@web",
        |t| t.contains("hello-from-web") && t.lines().any(|l| l == "web"),
        Duration::from_secs(10),
    );
    assert!(log.contains("container \"web\" started"), "{log}");
    // berth's own events are structured entries with CONTAINER_NAME=.
    let ev = b.sh_ok("journalctl --no-pager -b -o cat CONTAINER_NAME=web BERTH_EVENT=started");
    assert!(ev.contains("started"), "{ev}");
    // Bridge mode (the default): eth0 with a lease of `default`, and the
    // default route through its gateway.
    let ip = b.sh_ok("berth exec web ip -4 -o addr show dev eth0; berth exec web ip route");
    assert!(ip.contains("inet 10.89.0."), "no address on eth0: {ip}");
    assert!(ip.contains("default via 10.89.0.1 dev eth0"), "{ip}");

    // The container runs in <unit>/payload, the supervisor (MainPID) in <unit>/supervisor.
    let cg = "/sys/fs/cgroup/berth.slice/berth@web.service";
    // (`sh` prints, then execs `sleep`: wait for the exec.)
    b.wait_for(
        &format!("for p in $(cat {cg}/payload/cgroup.procs); do cat /proc/$p/comm; done"),
        |t| t == "sleep",
        Duration::from_secs(5),
    );
    let main = show(&b, "berth@web", "MainPID");
    // While nothing happens, the supervisor is its idle waiter (an
    // execve of a program of a few KiB, from a memfd), and systemd saw no
    // change of main process: the PID it started is the one it watches,
    // with its command line and name.
    assert_eq!(show(&b, "berth@web", "ExecMainPID"), main);
    let exe = b.sh_ok(&format!("readlink /proc/{main}/exe"));
    assert!(exe.starts_with("/memfd:"), "the idle supervisor runs {exe}");
    assert_eq!(b.sh_ok(&format!("cat /proc/{main}/comm")).trim(), "berth");
    let cmdline = b.sh_ok(&format!("tr '\\0' ' ' < /proc/{main}/cmdline"));
    assert!(cmdline.contains("berth run --systemd web"), "{cmdline}");
    assert!(
        !messages(&b, "berth@web").contains("waits in itself"),
        "{}",
        messages(&b, "berth@web")
    );
    // What it costs (issue 13's goal: at most 1 MiB resident).
    let rss = b.sh_ok(&format!("awk '/^VmRSS:/ {{print $2}}' /proc/{main}/status"));
    let rss_kb: u64 = rss.trim().parse().unwrap();
    eprintln!("idle supervisor: VmRSS {rss_kb} kB");
    assert!(rss_kb <= 1024, "the idle supervisor holds {rss_kb} KiB");
    let sup = b.sh_ok(&format!("cat {cg}/supervisor/cgroup.procs"));
    assert_eq!(sup.split_whitespace().collect::<Vec<_>>(), [main.as_str()]);
    assert_eq!(b.sh_ok(&format!("cat {cg}/cgroup.procs")).trim(), "");
    assert!(
        overlay_mounts(&b, "web") >= 1,
        "the container's overlay is not visible"
    );
    // Neither a manual cleanup nor a second supervisor touches a running container.
    let c = b.sh("berth cleanup web");
    assert!(!c.status.success());
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(err.contains("is running (supervisor pid"), "{err}");
    let second = b.sh("berth run --systemd web");
    assert!(!second.status.success());
    assert_eq!(b.sh_ok("systemctl is-active berth@web").trim(), "active");
    // Recorded state exists while it runs.
    b.sh_ok("test -f /run/berth/containers/web/state.json && test -d /var/lib/berth/containers/web/upper");

    let t = Instant::now();
    b.sh_ok("systemctl stop berth@web");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert_no_leftovers(&b, "web");
    assert!(messages(&b, "berth@web").contains("container \"web\" "));

    // Inside a container started by the service path.
    b.sh_ok("systemctl start berth@probe");
    let out = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@probe",
        |t| t.contains("exited with code"),
        Duration::from_secs(10),
    );
    let has = |s: &str| {
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == s)
    };
    assert!(has("host=probe.example"), "{out}");
    // Podman's 11 capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
    // SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP.
    assert!(has("CapEff: 00000000800405fb"), "{out}");
    assert!(has("CapBnd: 00000000800405fb"), "{out}");
    assert!(has("NoNewPrivs: 1"), "{out}");
    assert!(has("Seccomp: 2"), "{out}");
    assert!(has("root=read-only"), "{out}");
    assert!(has("tmp=writable"), "{out}");
    // The device filter (deny all, plus the default nodes) lets these through.
    assert!(has("devices=ok"), "{out}");
    assert!(has("shared=from-the-host"), "{out}");
    assert!(has("shared-read-only"), "{out}");
    // A [[secret]] is the credential's content at its target, read-only.
    assert!(has("secret=s3cret-file"), "{out}");
    assert!(has("0"), "{out}");
    assert!(
        out.contains("container \"probe\" exited with code 0"),
        "{out}"
    );
    b.wait_for(
        "systemctl is-active berth@probe",
        |t| t == "inactive",
        Duration::from_secs(5),
    );
    assert_no_leftovers(&b, "probe");
}

#[test]
fn exit_status_and_stop_timeout_reach_systemd() {
    require_root!();
    require_program!("nsenter");
    let dropin = "[Service]\nTimeoutStopSec=30s\n";
    let b = boot_with(&[
        (
            "fail",
            definition("command = [\"sh\", \"-c\", \"exit 3\"]\n"),
        ),
            (
                "flaky",
                definition(
                    "command = [\"sh\", \"-c\", \"echo attempt; exit 3\"]\n[service]\nrestart = \"on-failure\"\n",
                ),
            ),
        (
            "stubborn",
            definition(
                "command = [\"sh\", \"-c\", \"trap '' TERM; echo ignoring-term; sleep 1000\"]\n\
                 init = true\n[service]\nstop_timeout = \"2s\"\n",
            ),
        ),
    ],
        // systemd's own SIGKILL (TimeoutStopSec=, which the generator sets to
        // stop_timeout) comes much later here: only berth's can stop it in ~2 s.
        &[(
            "/etc/systemd/system/berth@stubborn.service.d/60-test.conf",
            dropin,
        )],
    );

    // The container's exit code is the unit's ExecMainStatus, so Restart=on-failure works.
    let _ = b.sh("systemctl start berth@fail");
    b.wait_for(
        "systemctl is-active berth@fail",
        |t| t == "failed",
        Duration::from_secs(10),
    );
    assert_eq!(show(&b, "berth@fail", "ExecMainStatus"), "3");
    assert_eq!(show(&b, "berth@fail", "Result"), "exit-code");
    let ev = b.sh_ok("journalctl --no-pager -b -o cat CONTAINER_NAME=fail BERTH_EVENT=exited");
    assert!(ev.contains("exited with code 3"), "{ev}");
    assert_no_leftovers(&b, "fail");

    // restart = "on-failure": systemd restarts it on the container's failure,
    // each start after the last one's cleanup.
    let _ = b.sh("systemctl start berth@flaky");
    b.wait_for(
        "systemctl show -p NRestarts --value berth@flaky",
        |t| t.parse::<u32>().unwrap_or(0) >= 2,
        Duration::from_secs(10),
    );
    let attempts = messages(&b, "berth@flaky")
        .lines()
        .filter(|l| *l == "attempt")
        .count();
    assert!(attempts >= 2, "{attempts} attempts");
    b.sh_ok("systemctl stop berth@flaky");
    assert_no_leftovers(&b, "flaky");

    // An app that ignores SIGTERM is killed once stop_timeout has passed.
    b.sh_ok("systemctl start berth@stubborn");
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@stubborn",
        |t| t.contains("ignoring-term"),
        Duration::from_secs(10),
    );
    let t = Instant::now();
    b.sh_ok("systemctl stop berth@stubborn");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "stop took {took:?}, expected about 2 s"
    );
    let ev = b.sh_ok("journalctl --no-pager -b -o cat CONTAINER_NAME=stubborn");
    assert!(ev.contains("did not stop within 2s, killing it"), "{ev}");
    assert!(ev.contains("killed by SIGKILL (status 137)"), "{ev}");
    assert_no_leftovers(&b, "stubborn");
}

#[test]
fn init_reaps_zombies_and_sigkilled_supervisor_is_cleaned_up() {
    require_root!();
    require_program!("nsenter");
    // A background child whose parent exits is re-parented to the
    // container's PID 1; `sleep` as PID 1 never waits for it.
    let cmd = "command = [\"sh\", \"-c\", \"(sleep 0.2 &); exec sleep 1000\"]\n[service]\nstop_timeout = \"1s\"\n";
    let b = boot(&[
        ("noinit", definition(cmd)),
        ("withinit", definition(&format!("init = true\n{cmd}"))),
        (
            "hup",
            definition(
                "command = [\"sh\", \"-c\", \"trap 'echo got-hup' HUP; echo trapping; while true; do sleep 0.1; done\"]\n[service]\nstop_timeout = \"1s\"\n",
            ),
        ),
        (
            "termapp",
            definition(
                "init = true\ncommand = [\"sleep\", \"1000\"]\n[service]\nstop_timeout = \"20s\"\n",
            ),
        ),
    ]);
    let zombies = |unit: &str| -> usize {
        let pids = b.sh_ok(&format!(
            "cat /sys/fs/cgroup/berth.slice/berth@{unit}.service/payload/cgroup.procs"
        ));
        // Zombies leave cgroup.procs; find them as children of the container's processes.
        let mut n = 0;
        for p in pids.split_whitespace() {
            let out = b.sh_ok(&format!(
                "for c in $(cat /proc/{p}/task/*/children 2>/dev/null); do grep -q '^State:.*Z' /proc/$c/status && echo Z; done; true"
            ));
            n += out.lines().filter(|l| *l == "Z").count();
        }
        n
    };
    b.sh_ok("systemctl start berth@noinit berth@withinit");
    // The orphan exits after 0.2 s: without init it becomes a zombie; with
    // it, it is gone (out of cgroup.procs, as zombies are too) and no zombie
    // is left. Polled until both hold, or 10 s.
    let procs = |unit: &str| {
        b.sh_ok(&format!(
            "cat /sys/fs/cgroup/berth.slice/berth@{unit}.service/payload/cgroup.procs"
        ))
        .lines()
        .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (z_no, z_with, n_with) = (zombies("noinit"), zombies("withinit"), procs("withinit"));
        if z_no == 1 && z_with == 0 && n_with == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "without init the orphan should stay a zombie ({z_no}), with berth's init be \
             reaped ({z_with} zombies, {n_with} processes: init and app)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // With init, PID 1 in the container is berth's init and the app is PID 2.
    let withinit = "/sys/fs/cgroup/berth.slice/berth@withinit.service/payload/cgroup.procs";
    let comms = b.sh_ok(&format!(
        "for p in $(cat {withinit}); do cat /proc/$p/comm; done"
    ));
    assert!(
        comms.lines().any(|l| l.starts_with("berth:[init]")),
        "{comms}"
    );
    assert!(comms.lines().any(|l| l == "sleep"), "{comms}");
    // The init is the container's own: the app's mount namespace and root
    // (tests/escapes/reaper.rs compares every namespace).
    let seen = b.sh_ok(&format!(
        "for p in $(cat {withinit}); do echo $(readlink /proc/$p/ns/mnt) $(readlink /proc/$p/root); done | sort -u"
    ));
    assert_eq!(seen.lines().count(), 1, "{seen}");

    // SIGHUP to the supervisor reaches the container's main process.
    b.sh_ok("systemctl start berth@hup");
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@hup",
        |t| t.contains("trapping"),
        Duration::from_secs(5),
    );
    b.sh_ok("systemctl kill --kill-whom=main -s HUP berth@hup");
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@hup",
        |t| t.contains("got-hup"),
        Duration::from_secs(5),
    );
    assert_eq!(b.sh_ok("systemctl is-active berth@hup").trim(), "active");
    b.sh_ok("systemctl stop berth@hup");
    assert_no_leftovers(&b, "hup");

    // Under berth's init the app is not PID 1, so the forwarded SIGTERM
    // ends it at once, and a stop that did what was asked is a clean exit.
    b.sh_ok("systemctl start berth@termapp");
    let t = Instant::now();
    b.sh_ok("systemctl stop berth@termapp");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(show(&b, "berth@termapp", "Result"), "success");
    assert_eq!(show(&b, "berth@termapp", "ExecMainStatus"), "0");
    assert_no_leftovers(&b, "termapp");

    // SIGKILL only the supervisor: systemd's stop and ExecStopPost=berth
    // cleanup remove the container, its cgroups and its state.
    b.sh_ok("systemctl kill --kill-whom=main -s KILL berth@noinit berth@withinit");
    for unit in ["noinit", "withinit"] {
        b.wait_for(
            &format!("systemctl is-active berth@{unit}"),
            |t| t == "failed" || t == "inactive",
            Duration::from_secs(10),
        );
        assert_no_leftovers(&b, unit);
    }
}

#[test]
fn notify_container_waits_for_the_apps_ready() {
    require_root!();
    require_program!("nsenter");
    // systemd-notify (dynamically linked) runs from the box's /usr, bound
    // read-only; the busybox rootfs gets the merged-/usr lib links.
    let app = definition(
        "command = [\"sh\", \"-c\", \"sleep 1; /usr/bin/systemd-notify --ready --status=app-ready; exec sleep 1000\"]\n\
         [[volume]]\nsource = \"/usr\"\ntarget = \"/usr\"\nread_only = true\n\
         [service]\nnotify = \"container\"\nstop_timeout = \"1s\"\n",
    );
    let b = boot(&[("app", app)]);
    b.sh_ok(&format!(
        "ln -s usr/lib {ROOTFS}/lib && ln -s usr/lib64 {ROOTFS}/lib64"
    ));
    let t = Instant::now();
    b.sh_ok("systemctl start berth@app");
    let took = t.elapsed();
    // Type=notify: `systemctl start` returns once the app itself said READY=1.
    assert!(took >= Duration::from_millis(900), "ready after {took:?}");
    assert_eq!(b.sh_ok("systemctl is-active berth@app").trim(), "active");
    assert_eq!(show(&b, "berth@app", "StatusText"), "app-ready");
    // The supervisor stays the main process (no MAINPID= from the container).
    let main = show(&b, "berth@app", "MainPID");
    assert_eq!(b.sh_ok(&format!("cat /proc/{main}/comm")).trim(), "berth");
    b.sh_ok("systemctl stop berth@app");
    assert_no_leftovers(&b, "app");
}

#[test]
fn detached_run_becomes_a_berth_unit() {
    require_root!();
    require_program!("nsenter");
    let b = boot(&[]);
    let out = b.sh_ok(&format!(
        "berth run -d --name adhoc --rootfs {ROOTFS} sh -c 'echo detached-hello; exec sleep 1000'"
    ));
    assert_eq!(out.trim(), "adhoc");
    assert_eq!(b.sh_ok("systemctl is-active berth@adhoc").trim(), "active");
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@adhoc",
        |t| t.contains("detached-hello"),
        Duration::from_secs(10),
    );
    assert!(b
        .sh_ok("cat /sys/fs/cgroup/berth.slice/berth@adhoc.service/payload/cgroup.procs")
        .trim()
        .parse::<u32>()
        .is_ok());
    // A name that is taken is refused.
    let again = b.sh(&format!("berth run -d --name adhoc --rootfs {ROOTFS} true"));
    assert!(!again.status.success());
    b.sh_ok("systemctl kill --kill-whom=all -s KILL berth@adhoc");
    b.wait_for(
        "systemctl is-active berth@adhoc",
        |t| t == "failed" || t == "inactive",
        Duration::from_secs(10),
    );
    assert_no_leftovers(&b, "adhoc");
    assert!(b.sh_ok("ls /run/berth/containers").contains("adhoc.toml"));
    // Once stopped, the name can be run again; with --rm its definition goes
    // when it stops.
    b.sh_ok(&format!(
        "berth run -d --rm --name adhoc --rootfs {ROOTFS} sh -c 'echo second-run; exec sleep 1000'"
    ));
    b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@adhoc",
        |t| t.contains("second-run"),
        Duration::from_secs(10),
    );
    b.sh_ok("systemctl kill --kill-whom=all -s KILL berth@adhoc");
    b.wait_for(
        "ls /run/berth/containers",
        |t| !t.contains("adhoc"),
        Duration::from_secs(10),
    );
    assert_no_leftovers(&b, "adhoc");
}

#[test]
fn health_checks_gate_readiness_and_kill_when_unhealthy() {
    require_root!();
    require_program!("nsenter");
    let app = definition(
        "command = [\"sh\", \"-c\", \"sleep 1; touch /tmp/ready; exec sleep 1000\"]\n\
         [health]\ncommand = [\"test\", \"-f\", \"/tmp/ready\"]\ninterval = \"200ms\"\ntimeout = \"2s\"\nretries = 2\nstart_period = \"10s\"\non_failure = \"kill\"\n\
         [service]\nnotify = \"healthy\"\n",
    );
    let b = boot(&[("app", app)]);
    let t = Instant::now();
    let started = b.sh("systemctl start berth@app");
    let took = t.elapsed();
    assert!(started.status.success(), "{}", messages(&b, "berth@app"));
    // Ready only once the check passed (the app creates the file after 1 s).
    assert!(took >= Duration::from_millis(900), "ready after {took:?}");
    assert_eq!(show(&b, "berth@app", "StatusText"), "running (healthy)");
    let st = b.sh_ok("cat /run/berth/containers/app/state.json");
    assert!(st.contains("\"health\": \"healthy\""), "{st}");
    let ev = b.sh_ok("journalctl --no-pager -b -o cat CONTAINER_NAME=app BERTH_EVENT=healthy");
    assert!(ev.contains("is healthy"), "{ev}");

    // The app stops being healthy: after `retries` failed checks it is killed
    // (once healthy, failures count even within start_period).
    let pid =
        b.sh_ok("cat /sys/fs/cgroup/berth.slice/berth@app.service/payload/cgroup.procs | head -1");
    b.sh_ok(&format!("nsenter -t {} -m rm /tmp/ready", pid.trim()));
    b.wait_for(
        "systemctl is-active berth@app",
        |t| t == "failed",
        Duration::from_secs(10),
    );
    let ev = b.sh_ok("journalctl --no-pager -b -o cat CONTAINER_NAME=app");
    assert!(ev.contains("container \"app\" is unhealthy"), "{ev}");
    assert!(ev.contains("killing unhealthy container"), "{ev}");
    assert_eq!(show(&b, "berth@app", "ExecMainStatus"), "137");
    assert_no_leftovers(&b, "app");
}

#[test]
fn foreground_run_gets_a_delegated_scope() {
    require_root!();
    require_program!("nsenter");
    let b = boot(&[]);
    // Output and exit status pass through systemd-run --scope.
    let out = b.sh_ok(&format!(
        "berth run --name fg --rootfs {ROOTFS} sh -c 'echo in-scope; exit 6'; echo rc=$?"
    ));
    assert!(
        out.contains("in-scope\n") && out.ends_with("rc=6\n"),
        "{out}"
    );
    // While it runs, its processes are in the scope's payload cgroup.
    b.sh_ok(&format!(
        "berth run --name fg2 --rootfs {ROOTFS} sleep 3 >/dev/null 2>&1 &"
    ));
    // (The container's init is placed there at clone, before it execs.)
    b.wait_for("for p in $(cat /sys/fs/cgroup/berth.slice/berth-run-fg2.scope/payload/cgroup.procs 2>/dev/null); do cat /proc/$p/comm; done",
        |t| t == "sleep",
        Duration::from_secs(5),
    );
    let sup = b.sh_ok("cat /sys/fs/cgroup/berth.slice/berth-run-fg2.scope/supervisor/cgroup.procs");
    assert_eq!(sup.lines().count(), 1, "{sup}");
    // Stopping the scope stops the container; nothing is left.
    b.sh_ok("systemctl stop berth-run-fg2.scope");
    b.wait_for("ls -d /sys/fs/cgroup/berth.slice/berth-run-fg2.scope /run/berth/containers/fg2 2>/dev/null; true",
        |t| t.is_empty(),
        Duration::from_secs(10),
    );
    assert_no_leftovers(&b, "fg");
    assert_no_leftovers(&b, "fg2");
}

/// Every process exec'd into a service-mode container gets the container's
/// confinement, as `berth-runtime exec` always did: `berth exec` (run from a
/// shell at 0) and a health check get the container's oom_score_adj (here
/// the unit's OOMScoreAdjust=, which the container inherits), not the
/// caller's. Issue 18 item 1: one constructor of the exec options.
#[test]
fn exec_and_health_checks_get_the_containers_oom_score_adj() {
    require_root!();
    require_program!("nsenter");
    let app = definition(
        "command = [\"sleep\", \"1000\"]\n\
         [health]\ncommand = [\"sh\", \"-c\", \"cat /proc/self/oom_score_adj > /tmp/health-adj\"]\ninterval = \"200ms\"\n",
    );
    let b = boot_with(
        &[("adj", app)],
        &[(
            "/etc/systemd/system/berth@adj.service.d/60-test.conf",
            "[Service]\nOOMScoreAdjust=321\n",
        )],
    );
    let started = b.sh("systemctl start berth@adj");
    assert!(started.status.success(), "{}", messages(&b, "berth@adj"));
    let shell = b.sh_ok("cat /proc/self/oom_score_adj");
    assert_eq!(
        shell.trim(),
        "0",
        "the caller's differs from the container's"
    );
    let container = b.sh_ok("berth exec adj cat /proc/1/oom_score_adj");
    assert_eq!(container.trim(), "321");
    // The supervisor is never the OOM killer's pick: -1000, or, where it
    // may not lower its own (no CAP_SYS_RESOURCE in the host's user
    // namespace, as in this box), a warning saying so.
    let sup = b.sh_ok("cat /proc/$(systemctl show -p MainPID --value berth@adj)/oom_score_adj");
    if sup.trim() != "-1000" {
        let journal = b.journal("berth@adj.service");
        assert!(
            journal.contains("cannot set the supervisor's oom_score_adj to -1000"),
            "supervisor at {sup}, and nothing says why:\n{journal}"
        );
    }
    let exec = b.sh_ok("berth exec adj cat /proc/self/oom_score_adj");
    assert_eq!(exec.trim(), "321", "berth exec's process");
    b.wait_for(
        "berth exec adj cat /tmp/health-adj",
        |t| t == "321",
        Duration::from_secs(10),
    );
    b.sh_ok("systemctl stop berth@adj");
    assert_no_leftovers(&b, "adj");
}

/// The init fails while the supervisor still loads the device filter and,
/// on a bridge, makes its links: the start reports the init's own error,
/// not the network namespace that vanished with the init (nor the sync
/// socket's broken pipe). `BERTH_TEST_PAUSE_AT=beside-init` holds the
/// supervisor 300 ms there, so the init always fails first (without it,
/// the race is lost now and then: CI saw both words). One init's working
/// directory is a file, one's program is not there. Nothing is left
/// behind.
#[test]
fn an_init_failing_beside_the_supervisors_work_is_the_error_reported() {
    require_root!();
    let cases = [
        (
            "lone",
            "none",
            "workdir = \"/bin/busybox\"\ncommand = [\"/bin/true\"]",
            "/bin/busybox",
        ),
        (
            "bridged",
            "bridge",
            "command = [\"/no/such/program\"]",
            "/no/such/program",
        ),
    ];
    let defs: Vec<(&str, String)> = cases
        .iter()
        .map(|(name, network, top, _)| {
            let body =
                format!("{top}\n[network]\nmode = \"{network}\"\n[service]\nrestart = \"no\"\n");
            (*name, definition(&body))
        })
        .collect();
    let b = boot(&defs);
    for (name, _, _, word) in cases {
        let unit = format!("berth@{name}.service");
        b.write_file(
            &format!("/run/systemd/system/{unit}.d/90-pause.conf"),
            b"[Service]\nEnvironment=BERTH_TEST_PAUSE_AT=beside-init\n",
        );
        b.sh_ok("systemctl daemon-reload");
        let started = b.sh(&format!("systemctl start {unit}"));
        assert!(!started.status.success(), "{name}: the start should fail");
        let log = messages(&b, &unit);
        assert!(
            log.contains(word) && !log.contains("Broken pipe") && !log.contains("network"),
            "{name}: the start should name {word}, and only that:\n{log}"
        );
        b.sh(&format!("systemctl stop {unit}"));
        assert_no_leftovers(&b, name);
    }
}
