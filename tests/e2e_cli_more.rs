//! End to end on a real systemd (tests/support/systemd_box.rs), one box for
//! issue 15's commands: `berth kill [-s SIG]` (seen by the container's trap;
//! a stopped container is an error naming it), `berth events [-f]` (started
//! and exited after a start and a stop, a new event printed as it happens),
//! `berth logs` of two names (interleaved in time order, prefixed, `-f`
//! follows both), `berth system df` (its figures against `du`), and the
//! registration with systemd-machined (`machinectl list|status`, the new
//! leader after a restart, gone after a stop; silence where machined cannot
//! run).
#[path = "support/runtime.rs"]
mod rt;
mod support;

use std::time::Duration;

use support::systemd_box::{boot_berth, BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/root";
const LONG: Duration = Duration::from_secs(20);

fn boot(defs: &[(&str, String)]) -> SystemdBox {
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    boot_berth(BoxOptions::default(), defs, rootfs.path(), ROOTFS)
}

/// (exit code, stdout, stderr) of a command in the box.
fn run(b: &SystemdBox, script: &str) -> (i32, String, String) {
    let o = b.sh(script);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A container that prints `NAME-1..3` in turn with its peer, through the
/// shared volume `pingpong` (NAME-i after the peer's i-th line when `waits`,
/// else before it: web-1, db-1, web-2…, whatever their start times), then
/// one `NAME-late` line each time /tmp/go appears; a USR1 trap prints
/// `NAME-got-usr1`. `before` runs first.
fn pingpong(name: &str, peer: &str, waits: bool, before: &str, volumes: &str) -> String {
    let wait = format!("while [ ! -f /sync/{peer}-$i ]; do sleep 0.05; done");
    let say = format!("echo {name}-$i; sleep 0.1; touch /sync/{name}-$i");
    let body = match waits {
        true => format!("{wait}; {say}"),
        false => format!("{say}; {wait}"),
    };
    format!(
        "rootfs = \"{ROOTFS}\"\n\
         command = [\"sh\", \"-c\", \"trap 'echo {name}-got-usr1' USR1; trap 'exit 0' TERM; {before} for i in 1 2 3; do {body}; done; while true; do if [ -f /tmp/go ]; then rm /tmp/go; echo {name}-late; fi; sleep 0.1; done\"]\n\
         [[volume]]\nsource = \"pingpong\"\ntarget = \"/sync\"\n{volumes}\
         [service]\nrestart = \"no\"\nstop_timeout = \"2s\"\n"
    )
}

/// Whether machined can run in this box; else why not.
fn machined_in_box(b: &SystemdBox) -> Result<(), String> {
    if !std::path::Path::new("/lib/systemd/systemd-machined").exists() {
        return Err("systemd-machined is not installed (Debian package systemd-container; scripts/install-deps installs it)".into());
    }
    let (code, out, err) = run(
        b,
        "busctl --system call org.freedesktop.machine1 /org/freedesktop/machine1 org.freedesktop.machine1.Manager ListMachines",
    );
    match code {
        0 => Ok(()),
        _ => Err(format!(
            "systemd-machined does not answer in the box: {out}{err}{}",
            b.sh_ok("systemctl status --no-pager systemd-machined 2>&1 || true")
        )),
    }
}

#[test]
fn kill_events_logs_df_and_machined_on_real_systemd() {
    require_root!();
    require_program!("nsenter");
    // web also fills its volume with 1 MiB, for `system df`.
    let web = pingpong(
        "web",
        "db",
        false,
        "head -c 1048576 /dev/urandom > /data/blob;",
        "[[volume]]\nsource = \"webdata\"\ntarget = \"/data\"\n",
    );
    let db = pingpong("db", "web", true, "", "");
    let evt = format!(
        "rootfs = \"{ROOTFS}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 0.1; done\"]\n[service]\nstop_timeout = \"2s\"\n"
    );
    let idle = format!("rootfs = \"{ROOTFS}\"\ncommand = [\"true\"]\n");
    let img = "image = \"local/bb:1\"\ncommand = [\"sleep\", \"1000\"]\n[service]\nstop_timeout = \"1s\"\n".to_string();
    let again = format!(
        "rootfs = \"{ROOTFS}\"\ncommand = [\"sleep\", \"1000\"]\n[service]\nrestart = \"always\"\nstop_timeout = \"1s\"\n"
    );
    let b = boot(&[
        ("again", again),
        ("web", web),
        ("db", db),
        ("evt", evt),
        ("idle", idle),
        ("img", img),
    ]);

    logs_of_two_names(&b);
    machined_shows_them(&b);
    if machined_in_box(&b).is_ok() {
        machined_follows_a_restart(&b);
    }
    kill(&b);
    events(&b);
    // ---- machined forgets a stopped container
    if machined_in_box(&b).is_ok() {
        b.wait_for(
            "machinectl list --no-legend --no-pager",
            |t| !t.contains("db ") && !t.contains("evt "),
            LONG,
        );
    }

    system_df(&b);
    b.sh_ok("berth stop web img");
    if machined_in_box(&b).is_ok() {
        b.wait_for(
            "machinectl list --no-legend --no-pager | wc -l",
            |t| t == "0",
            LONG,
        );
    }
    b.close().unwrap();
}

fn logs_of_two_names(b: &SystemdBox) {
    // ---- logs of two names, interleaved in time order, prefixed
    b.sh_ok("systemctl start berth@web berth@db");
    b.wait_for(
        "journalctl -q -o cat -u berth@web -u berth@db | grep -c -- '-3$'",
        |t| t == "2",
        LONG,
    );
    let logs = b.sh_ok("berth logs web db");
    eprintln!("$ berth logs web db\n{logs}");
    let ours: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("web-") || l.contains("db-"))
        .collect();
    let want_order: Vec<String> = ours
        .iter()
        .map(|l| l.split(" | ").nth(1).unwrap_or("").to_string())
        .collect();
    for n in 1..=3 {
        assert!(ours.contains(&format!("web | web-{n}").as_str()), "{logs}");
        assert!(ours.contains(&format!("db  | db-{n}").as_str()), "{logs}");
    }
    // Time order: they print in turn (pingpong), so merged by time the
    // lines alternate.
    assert_eq!(
        want_order,
        ["web-1", "db-1", "web-2", "db-2", "web-3", "db-3"],
        "{logs}"
    );
    let stamped = b.sh_ok("berth logs -t web db");
    let times: Vec<&str> = stamped
        .lines()
        .filter_map(|l| l.split(" | ").nth(1))
        .filter_map(|r| r.split(' ').next())
        .collect();
    assert!(times.len() >= 6, "{stamped}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{stamped}");
    let (code, _, err) = run(b, "berth logs web nosuch");
    assert_ne!(code, 0);
    assert!(err.contains("no container \"nosuch\""), "{err}");

    // -f follows both
    b.sh_ok("berth logs -f web db > /tmp/follow 2>&1 & echo $! > /tmp/follow.pid");
    b.wait_for("grep -c 'db  | db-3' /tmp/follow", |t| t == "1", LONG);
    b.sh_ok("berth exec web touch /tmp/go; berth exec db touch /tmp/go");
    let f = b.wait_for(
        "cat /tmp/follow",
        |t| t.contains("web | web-late") && t.contains("db  | db-late"),
        LONG,
    );
    eprintln!("$ berth logs -f web db\n{f}");
    b.sh_ok("kill $(cat /tmp/follow.pid)");
}

fn machined_shows_them(b: &SystemdBox) {
    // ---- machined
    match machined_in_box(b) {
        Err(why) => support::skip(&format!("machined part: {why}")),
        Ok(()) => {
            let list = b.wait_for(
                "machinectl list --no-legend --no-pager",
                |t| t.contains("web") && t.contains("db"),
                LONG,
            );
            eprintln!("$ machinectl list\n{list}");
            let web_line = list.lines().find(|l| l.starts_with("web ")).unwrap();
            assert!(
                web_line.contains("container") && web_line.contains("berth"),
                "{web_line}"
            );
            let status = b.sh_ok("machinectl status --no-pager web");
            eprintln!("$ machinectl status web\n{status}");
            let leader = b
                .sh_ok("busctl --system get-property org.freedesktop.machine1 /org/freedesktop/machine1/machine/web org.freedesktop.machine1.Machine Leader")
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string();
            let ps: serde_json::Value =
                serde_json::from_str(&b.sh_ok("berth ps --format json")).unwrap();
            let web_pid = ps
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == "web")
                .unwrap()["pid"]
                .as_i64()
                .unwrap();
            assert_eq!(leader, web_pid.to_string(), "{status}");
            assert!(status.contains(&format!("Leader: {web_pid}")), "{status}");
            assert!(status.contains("Unit: berth@web.service"), "{status}");
            assert!(status.contains(&format!("Root: {ROOTFS}")), "{status}");
            assert!(
                status.contains("Service: berth; class container"),
                "{status}"
            );
            // The call's runtime and connection are gone: the supervisor is
            // single-threaded again (health checks and exec clone from it).
            let main = b.sh_ok("systemctl show -p MainPID --value berth@web");
            let threads = b.sh_ok(&format!("grep '^Threads:' /proc/{}/status", main.trim()));
            assert_eq!(threads.split_whitespace().nth(1), Some("1"), "{threads}");
        }
    }
}

fn kill(b: &SystemdBox) {
    // ---- kill
    let out = b.sh_ok("berth kill -s USR1 web");
    assert_eq!(out.trim(), "web");
    b.wait_for(
        "journalctl -q -o cat -u berth@web | grep -c web-got-usr1",
        |t| t == "1",
        LONG,
    );
    assert_eq!(
        b.sh_ok("systemctl is-active berth@web").trim(),
        "active",
        "USR1 is trapped, the container goes on"
    );
    b.sh_ok("berth kill -s 10 db");
    b.wait_for(
        "journalctl -q -o cat -u berth@db | grep -c db-got-usr1",
        |t| t == "1",
        LONG,
    );
    let (code, _, err) = run(b, "berth kill -s USR1 idle");
    assert_ne!(code, 0);
    assert!(err.contains("container \"idle\" is not running"), "{err}");
    let (code, _, err) = run(b, "berth kill nosuch");
    assert_ne!(code, 0);
    assert!(err.contains("no container \"nosuch\""), "{err}");
    let (code, _, err) = run(b, "berth kill -s BOGUS web");
    assert_ne!(code, 0);
    assert!(err.contains("unknown signal \"BOGUS\""), "{err}");
    // The default is SIGKILL, to the container (not its supervisor, whose
    // exit status says how the container died).
    b.sh_ok("berth kill db");
    b.wait_for(
        "systemctl show -p ExecMainStatus --value berth@db; systemctl is-active berth@db",
        |t| t == "137\nfailed",
        LONG,
    );
}

fn events(b: &SystemdBox) {
    // ---- events: -f prints a new event as it happens; started/exited after
    // a start and a stop
    let since = b.sh_ok("date '+%Y-%m-%d %H:%M:%S'");
    b.sh_ok(&format!(
        "berth events -f --since '{}' --filter container=evt > /tmp/events 2>&1 & echo $! > /tmp/events.pid",
        since.trim()
    ));
    b.sh_ok("berth start evt");
    b.wait_for("cat /tmp/events", |t| t.contains("  evt  started  "), LONG);
    b.sh_ok("berth stop evt");
    let ev = b.wait_for("cat /tmp/events", |t| t.contains("  evt  exited  "), LONG);
    eprintln!("$ berth events -f --filter container=evt\n{ev}");
    assert!(!ev.contains("  web  "), "{ev}");
    b.sh_ok("kill $(cat /tmp/events.pid)");
    let listed = b.sh_ok("berth events --filter container=evt --filter container=db");
    eprintln!("$ berth events --filter container=evt --filter container=db\n{listed}");
    for want in [
        "  evt  started  ",
        "  evt  exited  ",
        "  db  started  ",
        "  db  exited  ",
    ] {
        assert!(listed.contains(want), "{want:?} in:\n{listed}");
    }
    let json = b.sh_ok("berth events --filter container=evt --filter event=exited --format json");
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty(), "{json}");
    assert!(
        lines
            .iter()
            .all(|e| e["container"] == "evt" && e["event"] == "exited"),
        "{json}"
    );
    let (code, _, err) = run(b, "berth events --filter image=x");
    assert_ne!(code, 0);
    assert!(err.contains("container=NAME"), "{err}");
}

fn system_df(b: &SystemdBox) {
    // ---- system df against du
    b.sh_ok(&format!(
        "tar -C {ROOTFS} -cf /tmp/root.tar . && berth import /tmp/root.tar local/bb:1"
    ));
    b.sh_ok("berth start img");
    let df = b.sh_ok("berth system df");
    eprintln!("$ berth system df\n{df}");
    assert!(df.starts_with("TYPE"), "{df}");
    for kind in ["Images", "Containers", "Local Volumes", "Build Cache"] {
        assert!(df.lines().any(|l| l.starts_with(kind)), "{kind} in\n{df}");
    }
    let v = b.sh_ok("berth system df -v");
    eprintln!("$ berth system df -v\n{v}");
    assert!(
        v.contains("docker.io/local/bb:1") || v.contains("local/bb:1"),
        "{v}"
    );
    assert!(v.lines().any(|l| l.starts_with("webdata")), "{v}");
    let summary: serde_json::Value =
        serde_json::from_str(&b.sh_ok("berth system df --format json")).unwrap();
    let row = |kind: &str| {
        summary
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == kind)
            .unwrap_or_else(|| panic!("{kind} in {summary}"))
            .clone()
    };
    let du = |dirs: &str| -> u64 {
        b.sh_ok(&format!("du -s -c --block-size=1 {dirs} | tail -n 1"))
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let close = |what: &str, ours: u64, theirs: u64| {
        let tol = (theirs / 20).max(64 * 1024);
        assert!(
            ours.abs_diff(theirs) <= tol,
            "{what}: berth system df says {ours}, du says {theirs}"
        );
    };
    let images = row("Images");
    close(
        "images",
        images["size"].as_u64().unwrap(),
        du("/var/lib/berth/blobs /var/lib/berth/layers"),
    );
    assert_eq!(images["total"], 1);
    assert_eq!(images["active"], 1, "img runs on it");
    assert_eq!(
        images["reclaimable"], 0,
        "its only image is in use: {images}"
    );
    assert!(images["size"].as_u64().unwrap() > 1_000_000, "{images}");
    let containers = row("Containers");
    close(
        "containers",
        containers["size"].as_u64().unwrap(),
        du("/var/lib/berth/containers/*"),
    );
    assert_eq!(containers["total"], 6);
    assert_eq!(containers["active"], 2, "web and img: {containers}");
    let volumes = row("Local Volumes");
    close(
        "volumes",
        volumes["size"].as_u64().unwrap(),
        du("/var/lib/berth/volumes/*"),
    );
    assert!(volumes["size"].as_u64().unwrap() >= 1_048_576, "{volumes}");
    assert_eq!(volumes["active"], 2, "webdata and pingpong: {volumes}");
    assert_eq!(row("Build Cache")["size"], 0);
}

/// The leader machined shows for `name` (its `Leader` property).
fn machine_leader(b: &SystemdBox, name: &str) -> Option<String> {
    let o = b.sh(&format!("busctl --system get-property org.freedesktop.machine1 /org/freedesktop/machine1/machine/{name} org.freedesktop.machine1.Machine Leader"));
    o.status.success().then(|| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string()
    })
}

/// The container's PID as `berth ps` reports it.
fn container_pid(b: &SystemdBox, name: &str) -> Option<i64> {
    let ps: serde_json::Value = serde_json::from_str(&b.sh_ok("berth ps --format json")).ok()?;
    ps.as_array()?.iter().find(|r| r["name"] == name)?["pid"].as_i64()
}

/// systemd restarts a killed container (restart = "always"): machined shows
/// the new leader, not the dead one.
fn machined_follows_a_restart(b: &SystemdBox) {
    b.sh_ok("berth start again");
    let first = b.wait_for(
        "busctl --system get-property org.freedesktop.machine1 /org/freedesktop/machine1/machine/again org.freedesktop.machine1.Machine Leader 2>/dev/null",
        |t| t.starts_with("u "),
        LONG,
    );
    let first_pid = container_pid(b, "again").unwrap();
    assert_eq!(first, format!("u {first_pid}"));
    b.sh_ok("berth kill again");
    b.wait_for(
        "systemctl show -p NRestarts --value berth@again; systemctl is-active berth@again",
        |t| t == "1\nactive",
        LONG,
    );
    let now = container_pid(b, "again").unwrap();
    assert_ne!(now, first_pid);
    let start = std::time::Instant::now();
    while machine_leader(b, "again") != Some(now.to_string()) {
        assert!(
            start.elapsed() < LONG,
            "machined shows leader {:?} for again, its container is {now}\n{}",
            machine_leader(b, "again"),
            b.sh_ok("journalctl --no-pager -q -u berth@again -u systemd-machined | tail -n 30")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    b.sh_ok("berth stop again");
}

/// A host whose machined cannot run (its unit masked, as on a host without
/// the package): the container starts and nothing is said about machined.
#[test]
fn without_machined_nothing_is_said() {
    require_root!();
    require_program!("nsenter");
    let mut opts = BoxOptions::default();
    opts.extra_masks.push("systemd-machined.service".into());
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    let quiet = format!(
        "rootfs = \"{ROOTFS}\"\ncommand = [\"sleep\", \"1000\"]\n[service]\nstop_timeout = \"1s\"\n"
    );
    let b = boot_berth(opts, &[("quiet", quiet)], rootfs.path(), ROOTFS);
    b.sh_ok("berth start quiet");
    assert_eq!(b.sh_ok("systemctl is-active berth@quiet").trim(), "active");
    let (code, _, _) = run(&b, "machinectl list --no-legend --no-pager");
    let log = b.sh_ok("journalctl --no-pager -q -o cat -u berth@quiet");
    eprintln!("machinectl exit {code}; berth@quiet's journal:\n{log}");
    assert!(log.contains("container \"quiet\" started"), "{log}");
    assert!(!log.contains("machined"), "{log}");
    b.sh_ok("berth stop quiet");
    let log = b.sh_ok("journalctl --no-pager -q -o cat -u berth@quiet");
    assert!(!log.contains("machined"), "{log}");
    b.close().unwrap();
}
