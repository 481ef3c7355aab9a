//! End to end on a real systemd: a definition with `[build]` instead of
//! `image`. `systemctl start berth@app` builds its context (a Containerfile
//! FROM an `oci:` layout made on the spot, COPY of a file, CMD printing it)
//! into `localhost/berth-build:app` and runs it with the environment,
//! workdir and user the Containerfile gave it; a changed file in the
//! context is in the container after `systemctl restart`, an unchanged one
//! is all cache hits and the same digest; a broken Containerfile fails the
//! start naming its line. One box boot for all of it.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

const UNIT: &str = "berth@app.service";
const IMAGE: &str = "localhost/berth-build:app";

const CONTAINERFILE: &str = "FROM oci:/srv/img:1\n\
ARG GREETING=hi\n\
ENV GREETING=$GREETING\n\
WORKDIR /srv/www\n\
COPY msg.txt /msg.txt\n\
USER web\n\
CMD [\"sh\", \"-c\", \"echo \\\"$GREETING: $(cat /msg.txt) in $(pwd) as $(id -u):$(id -g)\\\"; exec sleep 1000\"]\n";

/// What the running container prints: its environment, file, workdir and
/// user as the Containerfile wrote them.
fn seen(version: &str) -> String {
    format!("hello: version {version} in /srv/www as 101:101")
}

fn active(b: &SystemdBox, unit: &str) {
    b.wait_for(
        &format!("systemctl is-active {unit}"),
        |s| s == "active" || s == "failed",
        Duration::from_secs(120),
    );
    let state = b.sh_ok(&format!("systemctl is-active {unit} || true"));
    assert_eq!(
        state.trim(),
        "active",
        "{unit} did not start:\n{}",
        b.journal(unit)
    );
}

/// The digest `berth images` shows for the built image (its one row).
fn built_digest(b: &SystemdBox) -> String {
    let images = b.sh_ok("berth images");
    let row = images
        .lines()
        .find(|l| l.starts_with(&format!("{IMAGE} ")))
        .unwrap_or_else(|| panic!("berth images does not list {IMAGE}:\n{images}"));
    row.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in {row:?}"))
        .to_string()
}

/// The build's lines in the journal after `cursor` (berth's events for
/// the container carry "build localhost/berth-build:app: ...").
fn build_lines(b: &SystemdBox, cursor: &str) -> Vec<String> {
    b.journal_after(cursor)
        .lines()
        .filter(|l| l.contains(&format!("build {IMAGE}: ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn declared_build_builds_runs_and_rebuilds_on_change() {
    require_root!();
    let opts = BoxOptions::default()
        .with_berth()
        .file(
            "/etc/berth/containers/app.toml",
            "[build]\ncontext = \"/srv/app\"\nargs = { GREETING = \"hello\" }\n\
             [service]\nstop_timeout = \"1s\"\n",
        )
        .file("/srv/app/Containerfile", CONTAINERFILE)
        .file("/srv/app/msg.txt", "version one\n")
        .file(
            "/etc/berth/containers/bad.toml",
            "[build]\ncontext = \"/srv/bad\"\n",
        )
        .file(
            "/srv/bad/Containerfile",
            "FROM oci:/srv/img:1\nCOPY missing.txt /x\n",
        );
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let work = tempfile::tempdir().unwrap();
    let layout = reg::busybox_image_layout(work.path());
    b.copy_in(&layout, "/srv/img");

    // The generator: the FROM is an oci: layout, so no network wait; the
    // context's file system is mounted first.
    let deps = b.show(UNIT, "Wants,After,RequiresMountsFor");
    assert!(
        !deps["Wants"].contains("network-online") && !deps["After"].contains("network-online"),
        "{deps:?}"
    );
    assert!(deps["RequiresMountsFor"].contains("/srv/app"), "{deps:?}");

    // First start: built (no cache hit for the COPY), then run.
    let cursor = b.journal_cursor();
    b.sh_ok(&format!("systemctl start {UNIT}"));
    active(&b, UNIT);
    b.wait_until(
        &format!(
            "journalctl -u {UNIT} --no-pager | grep -q '{}'",
            seen("one")
        ),
        Duration::from_secs(30),
    );
    let lines = build_lines(&b, &cursor);
    let copy = lines
        .iter()
        .find(|l| l.contains("COPY msg.txt /msg.txt"))
        .unwrap_or_else(|| panic!("no COPY step in the journal's build lines: {lines:#?}"));
    assert!(!copy.contains("(cached)"), "{copy}");
    let first = built_digest(&b);
    // berth ps/inspect name the built image.
    let ps = b.sh_ok("berth ps");
    assert!(ps.contains(IMAGE), "{ps}");

    // Restart with nothing changed: every step a cache hit, same digest.
    let cursor = b.journal_cursor();
    b.sh_ok(&format!("systemctl restart {UNIT}"));
    active(&b, UNIT);
    let lines = build_lines(&b, &cursor);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("COPY msg.txt /msg.txt") && l.contains("(cached)")),
        "{lines:#?}"
    );
    assert_eq!(built_digest(&b), first);

    // A changed file in the context: rebuilt from its COPY, the container
    // prints the new content.
    b.write_file("/srv/app/msg.txt", b"version two\n");
    let cursor = b.journal_cursor();
    b.sh_ok(&format!("systemctl restart {UNIT}"));
    active(&b, UNIT);
    b.wait_until(
        &format!(
            "journalctl -u {UNIT} --no-pager | grep -q '{}'",
            seen("two")
        ),
        Duration::from_secs(30),
    );
    let lines = build_lines(&b, &cursor);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("COPY msg.txt /msg.txt") && !l.contains("(cached)")),
        "{lines:#?}"
    );
    assert_ne!(built_digest(&b), first);
    b.sh_ok(&format!("systemctl stop {UNIT}"));

    // A build that fails: the start fails, the journal names the
    // Containerfile's line.
    let out = b.sh("systemctl start berth@bad.service");
    assert!(!out.status.success(), "a broken build started");
    let journal = b.journal("berth@bad.service");
    assert!(
        journal.contains("building [build] context \"/srv/bad\" failed")
            && journal.contains("/srv/bad/Containerfile:2"),
        "{journal}"
    );

    check_status_while_building(&b);
}

/// `systemctl status` shows the build's STATUS= while it runs: a context
/// with a large file whose COPY takes a moment, StatusText polled.
fn check_status_while_building(b: &SystemdBox) {
    b.sh_ok(
        "mkdir -p /srv/big && head -c 30000000 /dev/urandom > /srv/big/blob && \
         printf 'FROM oci:/srv/img:1\\nCOPY blob /blob\\nCMD [\"sleep\", \"1000\"]\\n' > /srv/big/Containerfile && \
         printf '[build]\\ncontext = \"/srv/big\"\\n[service]\\nstop_timeout = \"1s\"\\n' > /etc/berth/containers/big.toml && \
         systemctl daemon-reload && systemctl start --no-block berth@big.service",
    );
    let status = b.wait_for(
        "systemctl status --no-pager berth@big.service | grep 'Status:' || true",
        |s| s.contains("building localhost/berth-build:big"),
        Duration::from_secs(60),
    );
    assert!(status.contains("building"), "{status}");
    active(b, "berth@big.service");
    b.sh_ok("systemctl stop berth@big.service");
}
