//! End to end on a real systemd (tests/support/systemd_box.rs): the container
//! commands of the `berth` CLI, as a user types them in one box with several
//! containers — `ps [-a]`, `start|stop`, `logs`, `exec` (with the container's
//! confinement), `top`, `stats`, `pause|unpause`, `volume`, `network`,
//! `inspect` — and the errors for an unknown or stopped container.
#[path = "support/runtime.rs"]
mod rt;
mod support;

use std::time::Duration;

use support::systemd_box::{boot_berth, BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/root";

fn boot(defs: &[(&str, String)]) -> SystemdBox {
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    std::fs::copy(rt::probe_binary(), rootfs.path().join("probe")).unwrap();
    boot_berth(BoxOptions::default(), defs, rootfs.path(), ROOTFS)
}

/// Status column of `name` in `berth ps -a`.
fn ps_status(ps: &str, name: &str) -> String {
    let line = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in:\n{ps}"));
    // STATUS may be two words: "exited (0)".
    let rest: Vec<&str> = line.split_whitespace().skip(1).collect();
    if rest.get(1).is_some_and(|w| w.starts_with('(')) {
        format!("{} {}", rest[0], rest[1])
    } else {
        rest[0].to_string()
    }
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

fn counter(b: &SystemdBox) -> u64 {
    b.sh_ok("cat /var/lib/berth/volumes/webdata/_data/counter")
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn container_commands_on_real_systemd() {
    require_root!();
    require_program!("nsenter");
    let web = format!(
        "rootfs = \"{ROOTFS}\"\nhostname = \"web.example\"\n\
         command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo hello-from-web; i=0; while true; do i=$((i+1)); echo $i > /data/counter; sleep 0.05; done\"]\n\
         [[volume]]\nsource = \"webdata\"\ntarget = \"/data\"\n\
         [[tmpfs]]\ntarget = \"/scratch\"\nsize = \"8M\"\nmode = \"0750\"\n\
         [security]\nno_new_privileges = true\ncap_drop = [\"ALL\"]\ncap_add = [\"CHOWN\", \"NET_BIND_SERVICE\"]\n\
         [service]\nstop_timeout = \"1s\"\n"
    );
    let done = format!("rootfs = \"{ROOTFS}\"\ncommand = [\"sh\", \"-c\", \"echo done\"]\n");
    let bad = format!(
        "rootfs = \"{ROOTFS}\"\ncommand = [\"sh\", \"-c\", \"exit 3\"]\n[service]\nrestart = \"no\"\n"
    );
    let idle = format!("rootfs = \"{ROOTFS}\"\ncommand = [\"true\"]\n");
    // Fails before READY=1: its root does not exist.
    let broken = "rootfs = \"/nonexistent\"\n[service]\nrestart = \"no\"\n".to_string();
    // berth's init as PID 1: exec joins the PID namespace the init made.
    let initc = format!(
        "rootfs = \"{ROOTFS}\"\ninit = true\ncommand = [\"sleep\", \"1000\"]\n[service]\nstop_timeout = \"1s\"\n"
    );
    let b = boot(&[
        ("web", web),
        ("done", done),
        ("bad", bad),
        ("idle", idle),
        ("initc", initc),
        ("broken", broken),
    ]);

    // start through systemd, and its errors
    b.sh_ok("berth start web");
    assert_eq!(b.sh_ok("systemctl is-active berth@web").trim(), "active");
    let _ = b.sh("systemctl start berth@done berth@bad");
    b.wait_for(
        "systemctl is-active berth@bad; systemctl is-active berth@done",
        |t| t == "failed\ninactive",
        Duration::from_secs(10),
    );
    let (code, _, err) = run(&b, "berth start nosuch");
    assert_ne!(code, 0);
    assert!(err.contains("no container \"nosuch\""), "{err}");
    // A start job systemd ends other than `done` is an error naming the unit.
    let (code, _, err) = run(&b, "berth start broken");
    assert_ne!(code, 0);
    assert!(
        err.contains("berth@broken.service") && err.contains("'failed'"),
        "{err}"
    );

    // ps: running and failed ones by default; -a adds exited and never-started
    let ps = b.sh_ok("berth ps");
    assert_eq!(ps_status(&ps, "web"), "running", "{ps}");
    assert_eq!(ps_status(&ps, "bad"), "failed (3)", "{ps}");
    assert!(!ps.contains("idle"), "{ps}");
    let ps = b.sh_ok("berth ps -a");
    eprintln!("$ berth ps -a\n{ps}");
    assert_eq!(ps_status(&ps, "done"), "exited (0)", "{ps}");
    assert_eq!(ps_status(&ps, "idle"), "stopped", "{ps}");
    let pid: i32 = b
        .sh_ok("systemctl show -p MainPID --value berth@web")
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    let json: serde_json::Value =
        serde_json::from_str(&b.sh_ok("berth ps -a --format json")).unwrap();
    let web_row = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap()
        .clone();
    let cpid = web_row["pid"].as_i64().unwrap();
    let payload = "/sys/fs/cgroup/berth.slice/berth@web.service/payload";
    assert!(
        b.sh_ok(&format!("cat {payload}/cgroup.procs"))
            .lines()
            .any(|l| l.trim() == cpid.to_string()),
        "ps pid {cpid} not in the payload"
    );

    // logs
    let logs = b.wait_for(
        "berth logs web",
        |t| t.contains("hello-from-web"),
        Duration::from_secs(10),
    );
    assert!(logs.lines().any(|l| l == "hello-from-web"), "{logs}");
    let (code, _, err) = run(&b, "berth logs nosuch");
    assert_ne!(code, 0);
    assert!(err.contains("no container \"nosuch\""), "{err}");

    // exec: the container's confinement
    // The PIDs come from a glob, not `ls`: ls stats each entry, and the app's
    // short-lived `sleep` may exit between the listing and the stat.
    let status = b.sh_ok(
        "berth exec web sh -c 'cat /proc/self/status; hostname; for p in /proc/[0-9]*; do echo ${p#/proc/}; done'",
    );
    let field = |s: &str, k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field(&status, "NoNewPrivs:"), "1", "{status}");
    assert_eq!(field(&status, "Seccomp:"), "2", "{status}");
    let theirs = b.sh_ok(&format!("cat /proc/{cpid}/status"));
    assert_eq!(
        field(&status, "CapEff:"),
        field(&theirs, "CapEff:"),
        "exec'd CapEff differs from the container's"
    );
    assert_ne!(
        field(&status, "CapEff:"),
        field(&b.sh_ok("cat /proc/self/status"), "CapEff:")
    );
    assert!(status.lines().any(|l| l == "web.example"), "{status}");
    // Same PID namespace: only the container's PIDs (the app is PID 1).
    let pids: Vec<u32> = status
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(pids.contains(&1), "{status}");
    assert!(
        pids.len() <= 6,
        "more PIDs than the container has: {pids:?}"
    );
    // [[tmpfs]]: a tmpfs of the asked size and mode.
    let scratch = b
        .sh_ok("berth exec web sh -c 'stat -c %a /scratch; grep \" /scratch \" /proc/self/mounts'");
    assert!(
        scratch.starts_with("750\ntmpfs /scratch tmpfs "),
        "{scratch}"
    );
    assert!(scratch.contains("size=8192k"), "{scratch}");
    let (code, _, _) = run(&b, "berth exec web sh -c 'exit 7'");
    assert_eq!(code, 7);
    // No NET_RAW among the default capabilities, yet ping works: berth opens
    // net.ipv4.ping_group_range in the container's own network namespace.
    let (code, out, err) = run(&b, "berth exec web /probe ping");
    assert_eq!(code, 0, "ping inside the container failed: {out}{err}");
    assert!(out.contains("raw: Operation not permitted"), "{out}");
    assert!(out.contains("icmp: reply type 0"), "{out}");
    // No inherited host descriptors: only 0, 1, 2 (and ls's own).
    let fds = b.sh_ok("exec 7</dev/null; berth exec web ls /proc/self/fd");
    assert!(!fds.lines().any(|l| l.trim() == "7"), "fd 7 leaked: {fds}");
    let env = b.sh_ok("berth exec -e FOO=bar -w /tmp web sh -c 'echo $FOO; pwd'");
    assert_eq!(env.trim(), "bar\n/tmp");
    // -t: a pty inside the container, relayed; the status still comes back.
    let mounts_before = b.sh_ok("berth exec web cat /proc/1/mountinfo");
    let (code, out, err) = run(&b, "berth exec -t web sh -c 'tty; echo tty-ok; exit 4'");
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        out.contains("/dev/pts/") && out.contains("tty-ok\r\n"),
        "{out:?}"
    );
    // -t: resizing the user's terminal (SIGWINCH) resizes the container's.
    // `script` gives `berth exec` a terminal whose size the shell then
    // changes every 0.2 s until the command inside has seen a change.
    b.write_file(
        "/tmp/winch.sh",
        br#"berth exec -t web sh -c 'a=$(stty size); i=0
while [ "$(stty size)" = "$a" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
echo "size $a -> $(stty size)"' </dev/tty &
p=$!
for c in $(seq 101 175); do stty rows 30 cols $c; sleep 0.2; kill -0 $p 2>/dev/null || break; done
wait $p
"#,
    );
    let out = b.sh_ok("script -qec 'sh /tmp/winch.sh' /dev/null");
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("size "))
        .unwrap_or_else(|| panic!("no size line in {out:?}"));
    let (before, after) = line.split_once(" -> ").expect("before -> after");
    assert_ne!(before, after, "the container's terminal kept its size");
    assert!(after.starts_with("30 1"), "{line}");
    // An exec's terminal is its own: the container's mounts (/dev/console
    // among them) are as they were before the two `exec -t`.
    let mounts_after = b.sh_ok("berth exec web cat /proc/1/mountinfo");
    assert_eq!(mounts_before, mounts_after);
    let (code, _, err) = run(&b, "berth exec idle true");
    assert_ne!(code, 0);
    assert!(err.contains("container \"idle\" is not running"), "{err}");
    assert!(err.contains("systemctl start berth@idle"), "{err}");

    b.sh_ok("berth start initc");
    let seen = b.sh_ok("berth exec initc sh -c 'cat /proc/2/cmdline; echo; for p in /proc/[0-9]*; do echo ${p#/proc/}; done'");
    assert!(
        seen.starts_with("sleep"),
        "the app is PID 2 under berth's init: {seen}"
    );
    b.sh_ok("berth stop initc");

    // top and stats
    let top = b.sh_ok("berth top web");
    eprintln!("$ berth top web\n{top}");
    assert!(top.starts_with("PID"), "{top}");
    assert!(
        top.lines()
            .any(|l| l.starts_with(&cpid.to_string()) && l.contains("sh -c")),
        "{top}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&b.sh_ok("berth stats web --format json")).unwrap();
    assert!(stats[0]["pids"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats[0]["cpu_usec"].as_u64().is_some(), "{stats}");
    let table = b.sh_ok("berth stats");
    eprintln!("$ berth stats\n{table}");
    assert!(table.lines().any(|l| l.starts_with("web")), "{table}");

    // pause / unpause: frozen, no progress, then progress again
    let out = b.sh_ok("berth pause web");
    assert_eq!(out.trim(), "web: paused");
    assert!(b
        .sh_ok(&format!("cat {payload}/cgroup.events"))
        .contains("frozen 1"));
    let c1 = counter(&b);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(counter(&b), c1, "the counter advanced while paused");
    assert_eq!(ps_status(&b.sh_ok("berth ps"), "web"), "paused");
    let out = b.sh_ok("berth unpause web");
    assert_eq!(out.trim(), "web: running");
    assert!(b
        .sh_ok(&format!("cat {payload}/cgroup.events"))
        .contains("frozen 0"));
    b.wait_for(
        "cat /var/lib/berth/volumes/webdata/_data/counter",
        |t| t.parse::<u64>().is_ok_and(|n| n > c1),
        Duration::from_secs(5),
    );

    // volumes
    let ls = b.sh_ok("berth volume ls");
    assert!(
        ls.lines()
            .any(|l| l.starts_with("webdata") && l.contains("web (running)")),
        "{ls}"
    );
    let (code, _, err) = run(&b, "berth volume rm webdata");
    assert_ne!(code, 0);
    assert!(
        err.contains("used by running container(s) \"web\""),
        "{err}"
    );
    assert!(b
        .sh_ok("test -d /var/lib/berth/volumes/webdata/_data && echo kept")
        .contains("kept"));

    // inspect: the container, then an unknown name falls back to images
    let ins: serde_json::Value = serde_json::from_str(&b.sh_ok("berth inspect web")).unwrap();
    assert_eq!(ins["running"], true);
    assert_eq!(ins["pid"].as_i64(), Some(cpid));
    assert_eq!(ins["unit"]["properties"]["ActiveState"], "active");
    assert_eq!(ins["definition"]["hostname"], "web.example");
    assert_eq!(ins["definition"]["security"]["no_new_privileges"], true);
    assert_eq!(ins["definition"]["service"]["stop_timeout_seconds"], 1.0);
    assert_eq!(ins["definition"]["volumes"][0]["source"], "webdata");
    assert_eq!(ins["state"]["container_pid"].as_i64(), Some(cpid));
    let (code, _, err) = run(&b, "berth inspect nosuch");
    assert_ne!(code, 0);
    assert!(err.contains("nosuch"), "{err}");

    // network: the resolved default network
    let net: serde_json::Value =
        serde_json::from_str(&b.sh_ok("berth network inspect default")).unwrap();
    assert_eq!(net[0]["name"], "default");
    assert_eq!(net[0]["bridge"], "berth0");
    assert!(b.sh_ok("berth network ls").contains("berth0"));

    // restart: a new container process
    b.sh_ok("berth restart web");
    let json: serde_json::Value = serde_json::from_str(&b.sh_ok("berth ps --format json")).unwrap();
    let row = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap();
    assert_eq!(row["status"], "running");
    assert_ne!(
        row["pid"].as_i64(),
        Some(cpid),
        "restart kept the old process"
    );

    // stop through systemd; ps -a then shows it exited, volume rm is allowed
    b.sh_ok("berth stop web");
    assert_eq!(
        b.sh("systemctl is-active berth@web").stdout,
        b"inactive\n".to_vec()
    );
    let ps = b.sh_ok("berth ps -a");
    assert_eq!(ps_status(&ps, "web"), "exited (0)", "{ps}");
    let (code, _, err) = run(&b, "berth top web");
    assert_ne!(code, 0);
    assert!(err.contains("container \"web\" is not running"), "{err}");
    b.sh_ok("berth volume rm webdata");
    assert!(!b.sh_ok("berth volume ls -q").contains("webdata"));

    // No definition here opts in to updates (tests/e2e_auto_update.rs).
    let out = b.sh_ok("berth auto-update");
    assert!(
        out.contains("no definition sets [service] auto_update = true"),
        "{out}"
    );
}
