//! berth's main job, end to end, as a sysadmin does it — and the script behind
//! the README's first command (`scripts/demo` runs this test with its narration
//! shown).
//!
//! On a real systemd booted in fresh namespaces: an image built on the spot from
//! Debian's busybox-static with umoci is pushed with skopeo to a real
//! `docker-registry` on the box's own loopback; a definition in
//! /etc/berth/containers declares a web server from it; `systemctl start` pulls,
//! unpacks and runs it; it answers on its port; its log lines are in the journal
//! under the unit; `systemctl stop` leaves nothing behind.
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

/// Print a step of the story; visible with `--nocapture` (scripts/demo).
fn say(what: &str) {
    eprintln!("\n\x1b[1m==> {what}\x1b[0m");
}

/// Show a command's output the way a user would see it in their terminal.
fn show(b: &SystemdBox, script: &str) -> String {
    let out = b.sh_ok(script);
    eprintln!("# {script}");
    for line in out.lines() {
        eprintln!("  {line}");
    }
    out
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OCI layout holding `demo:1`: busybox, a page to serve, and a config whose
/// Cmd runs busybox httpd in the foreground, logging each request.
fn build_image(layout: &Path, work: &Path) {
    let l = layout.display().to_string();
    run(Command::new("umoci").args(["init", "--layout", &l]));
    run(Command::new("umoci").args(["new", "--image", &format!("{l}:1")]));
    let bundle = work.join("bundle");
    run(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{l}:1"),
        &bundle.display().to_string(),
    ]));
    let rootfs = support::busybox_rootfs(&bundle.join("rootfs"));
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::write(
        rootfs.join("www/index.html"),
        "<h1>hello from a berth container</h1>\n",
    )
    .unwrap();
    run(Command::new("umoci").args([
        "repack",
        "--image",
        &format!("{l}:1"),
        &bundle.display().to_string(),
    ]));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &format!("{l}:1"),
        "--config.cmd",
        "httpd",
        "--config.cmd",
        "-f",
        "--config.cmd",
        "-v",
        "--config.cmd",
        "-p",
        "--config.cmd",
        "80",
        "--config.cmd",
        "-h",
        "--config.cmd",
        "/www",
        "--config.exposedports",
        "80/tcp",
        "--config.env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]));
}

const BERTH_TOML: &str = "# The box's registry speaks plain http on loopback.
[[registry]]
host = \"127.0.0.1:5000\"
insecure = true
";

const WEB_TOML: &str = "# /etc/berth/containers/web.toml
image = \"127.0.0.1:5000/demo/httpd:1\"
hostname = \"web\"
# A small init as PID 1 forwards systemctl stop's SIGTERM to httpd (a PID 1
# without handlers would ignore it) and reaps zombies.
init = true

# Bridge mode (the default) on the `default` network, its port 80 published
# on the host's port 8080.
[network]
publish = [\"8080:80\"]

[resources]
memory = \"64M\"
pids = 50

[service]
restart = \"on-failure\"
stop_timeout = \"5s\"
wanted_by = [\"multi-user.target\"]
";

#[test]
fn declared_container_is_started_by_systemd_reachable_and_logged() {
    require_root!();
    for prog in ["nsenter", "umoci", "skopeo", "docker-registry"] {
        require_program!(prog);
    }

    say("booting a real systemd as PID 1 in fresh namespaces, with berth installed");
    let b = SystemdBox::boot(BoxOptions::default().with_berth())
        .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    eprintln!("  booted in {:?}", b.boot_time());

    say("building an image on the spot: busybox-static + a page, packed by umoci");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    build_image(&layout, work.path());
    b.copy_in(&layout, "/srv/demo-layout");

    say("starting a real OCI registry on the box's loopback and pushing with skopeo");
    b.serve_registry();
    show(
        &b,
        "skopeo copy --quiet --dest-tls-verify=false oci:/srv/demo-layout:1 docker://127.0.0.1:5000/demo/httpd:1 && echo pushed 127.0.0.1:5000/demo/httpd:1",
    );

    say("declaring the container: one file in /etc/berth/containers");
    b.write_file("/etc/berth/berth.toml", BERTH_TOML.as_bytes());
    b.write_file("/etc/berth/containers/web.toml", WEB_TOML.as_bytes());
    eprintln!("{WEB_TOML}");
    show(
        &b,
        "berth check && systemctl daemon-reload && echo reloaded",
    );
    let unit = show(&b, "systemctl cat berth@web.service");
    // 64M for the container, and the supervisor's share (cgroup/limits.rs).
    let max = 64 * 1024 * 1024 + berth::cgroup::limits::SUPERVISOR_MEMORY;
    assert!(unit.contains(&format!("MemoryMax={max}")), "{unit}");
    // The image is not in the store yet: the first start may pull, so the
    // unit waits for the network.
    assert!(unit.contains("Wants=network-online.target"), "{unit}");
    let deps = b.sh_ok("systemctl list-dependencies --plain multi-user.target");
    assert!(deps.contains("berth@web.service"), "{deps}");

    say("systemctl start berth@web: pull, unpack, run under systemd");
    show(
        &b,
        "systemctl start berth@web && systemctl is-active berth@web",
    );
    show(
        &b,
        "systemctl status --no-pager --lines=0 berth@web | head -n 12",
    );

    say("the container answers on its published port");
    show(&b, "berth ps");
    let page = b.wait_until("curl -fsS http://127.0.0.1:8080/", Duration::from_secs(10));
    eprintln!("# curl http://127.0.0.1:8080/\n  {}", page.trim());
    assert_eq!(page.trim(), "<h1>hello from a berth container</h1>");

    say("its logs are in the journal, under the unit");
    let log = b.wait_until(
        "journalctl --no-pager -o cat -u berth@web | grep -q 'response:200' && journalctl --no-pager -o short -u berth@web",
        Duration::from_secs(10),
    );
    eprintln!("# journalctl -u berth@web\n{log}");
    assert!(log.contains("pulled image"), "berth's pull event: {log}");
    assert!(
        log.contains("response:200"),
        "httpd's request log line: {log}"
    );
    let images = show(&b, "berth images");
    assert!(images.contains("127.0.0.1:5000/demo/httpd"), "{images}");
    // Now it is: after a reload the next start no longer waits for the network.
    b.sh_ok("systemctl daemon-reload");
    let unit = b.sh_ok("systemctl cat berth@web.service");
    assert!(!unit.contains("network-online.target"), "{unit}");

    say("systemctl stop berth@web: a clean stop, nothing left behind");
    let cursor = b.journal_cursor();
    show(
        &b,
        "systemctl stop berth@web; systemctl is-active berth@web || true",
    );
    let stop_log = b.journal_after(&cursor);
    let result = b.show("berth@web.service", "Result,ExecMainStatus");
    assert_eq!(
        result.get("Result").map(String::as_str),
        Some("success"),
        "{result:?}\n{stop_log}"
    );
    // The box's own root is an overlay and the harness binds /var/lib/berth
    // itself: look for mounts below berth's store and state directories.
    let left = b.sh_ok(
        "awk '$5 ~ \"^(/var/lib/berth/|/run/berth)\"' /proc/self/mountinfo; \
         ls /run/berth/containers 2>/dev/null; \
         ls -d /sys/fs/cgroup/berth.slice/berth@web.service 2>/dev/null; \
         ls /run/berth/leases/default 2>/dev/null; \
         ip -o link show type veth; ip -o link show type bridge; \
         nft list ruleset | grep -E 'element|8080'; true",
    );
    assert_eq!(
        left.trim(),
        "",
        "left behind after stop: {left}\n{stop_log}"
    );
    say("done");
}
