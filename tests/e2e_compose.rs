//! `berth compose convert` end to end on a real systemd (issue 15: "the
//! group starts"): the tutorial's two-service shape — web publishing a
//! port and depending on a healthy backend found by name through an
//! environment variable, the backend with a named volume and a healthcheck —
//! converted inside the box as a user would, then started with
//! `systemctl start berth-GROUP.target` and reached on the published port,
//! listed by `berth ps --group`, and stopped as one.
//!
//! Both services run busybox from an OCI layout (no registry needed): the
//! "backend" stands in for redis with an httpd that answers PONG, and web's
//! page is what it fetched from the backend by name at its start — so the
//! page proves the order (the backend, which answers only 2 s after its
//! start, was healthy first: with notify = "started" web sees nothing), the
//! project's network and its names, and the published port.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

const COMPOSE: &str = r#"services:
  web:
    image: oci:/srv/img:1
    command: ["sh", "-c", "mkdir -p /www && echo \"web sees $$(wget -qO- http://$${REDIS_HOST}:6379/ping)\" > /www/index.html && exec httpd -f -p 5000 -h /www"]
    init: true
    ports:
      - "8000:5000"
    environment:
      REDIS_HOST: redis
    depends_on:
      redis:
        condition: service_healthy
    stop_grace_period: 2s
  redis:
    image: oci:/srv/img:1
    command: sh -c "sleep 2 && mkdir -p /www && echo PONG > /www/ping && echo kept > /data/kept && exec httpd -f -p 6379 -h /www"
    init: true
    volumes:
      - redis-data:/data
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:6379/ping"]
      interval: 1s
      retries: 30
    stop_grace_period: 2s
volumes:
  redis-data:
"#;

fn fail(b: &SystemdBox, what: &str) -> ! {
    panic!(
        "{what}\n--- berth@redis ---\n{}\n--- berth@web ---\n{}",
        b.journal("berth@redis"),
        b.journal("berth@web")
    )
}

#[test]
fn a_converted_compose_app_starts_as_a_group_and_serves_its_port() {
    require_root!();
    for prog in ["nsenter", "curl", "nft"] {
        require_program!(prog);
    }
    let b = SystemdBox::boot(BoxOptions::default().with_berth())
        .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let work = tempfile::tempdir().unwrap();
    let layout = reg::busybox_image_layout(work.path());
    b.copy_in(&layout, "/srv/img");
    b.write_file("/srv/tut/docker-compose.yml", COMPOSE.as_bytes());

    let conv = b.sh("cd /srv/tut && berth compose convert --group tut");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&conv.stdout),
        String::from_utf8_lossy(&conv.stderr)
    );
    assert!(conv.status.success(), "convert failed: {said}");
    assert!(
        said.contains("wrote /etc/berth/containers/web.toml"),
        "{said}"
    );
    let check = b.sh("berth check");
    assert!(
        check.status.success(),
        "berth check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    b.sh_ok("systemctl daemon-reload");
    let start = b.sh("systemctl start berth-tut.target");
    if !start.status.success() {
        fail(
            &b,
            &format!(
                "systemctl start berth-tut.target: {}",
                String::from_utf8_lossy(&start.stderr)
            ),
        );
    }
    for unit in ["berth@redis", "berth@web"] {
        let state = b.sh_ok(&format!("systemctl show -p ActiveState --value {unit}"));
        if state.trim() != "active" {
            fail(&b, &format!("{unit} is {state} after the group started"));
        }
    }
    // web started only once redis was healthy, reached it by name, and
    // is served on the published port.
    let page = b.wait_for(
        "curl -fsS --max-time 3 http://127.0.0.1:8000/",
        |t| !t.is_empty(),
        Duration::from_secs(20),
    );
    if page != "web sees PONG" {
        fail(&b, &format!("the page on :8000 is {page:?}"));
    }
    let ps = b.sh_ok("berth ps --group tut");
    assert!(ps.contains("web") && ps.contains("redis"), "{ps}");
    let vols = b.sh_ok("berth volume ls -q");
    assert!(vols.lines().any(|l| l.trim() == "tut_redis-data"), "{vols}");

    b.sh_ok("systemctl stop berth-tut.target");
    for unit in ["berth@redis", "berth@web"] {
        b.wait_for(
            &format!("systemctl show -p ActiveState --value {unit}"),
            |s| s == "inactive" || s == "failed",
            Duration::from_secs(30),
        );
    }
    b.close().unwrap();
}
