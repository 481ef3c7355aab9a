//! Network modes other than bridge, end to end on a real systemd (the box of
//! tests/support/systemd_box.rs): `mode = "container:NAME"` joins another
//! berth container's network namespace, as a sidecar or a pod member does.
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/r";

/// `web` serves its /etc over HTTP on port 80 of its own (bridge) network;
/// `side` joins its network namespace and fetches from 127.0.0.1.
#[test]
fn a_sidecar_joins_its_containers_network_starts_after_it_and_stops_with_it() {
    require_root!();
    let web = format!(
        "rootfs = \"{ROOTFS}\"\ninit = true\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/etc\"]\n"
    );
    let side = format!(
        "rootfs = \"{ROOTFS}\"\ninit = true\ncommand = [\"sh\", \"-c\", \"until timeout 2 wget -qO- http://127.0.0.1/hostname; do sleep 0.2; done; exec sleep 1000\"]\n\
         [network]\nmode = \"container:web\"\n"
    );
    let opts = BoxOptions::default()
        .with_berth()
        .file("/etc/berth/containers/web.toml", web)
        .file("/etc/berth/containers/side.toml", side);
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);

    // Starting the sidecar alone starts web first (BindsTo= + After=).
    b.sh_ok("systemctl start berth@side");
    let active = b.sh_ok("systemctl is-active berth@web berth@side; true");
    assert_eq!(
        active.trim(),
        "active\nactive",
        "{}",
        b.journal("berth@side")
    );
    // It reached web's server on the loopback they share.
    let log = b.wait_for(
        "journalctl --no-pager -b -o cat -u berth@side",
        |t| t.lines().any(|l| l == "web"),
        Duration::from_secs(10),
    );
    assert!(
        log.lines().any(|l| l == "web"),
        "side did not reach web on 127.0.0.1:\n{log}"
    );
    // One namespace: the same eth0 address, the same /etc/hosts.
    let addr = |n: &str| b.sh_ok(&format!("berth exec {n} ip -4 -o addr show dev eth0"));
    let (w, s) = (addr("web"), addr("side"));
    assert!(w.contains("inet 10.89.0."), "{w}");
    assert_eq!(
        w.split_whitespace().nth(3),
        s.split_whitespace().nth(3),
        "web: {w}\nside: {s}"
    );
    let hosts = |n: &str| b.sh_ok(&format!("berth exec {n} cat /etc/hosts"));
    assert_eq!(hosts("web"), hosts("side"));
    // Its own hostname (UTS is its own).
    assert_eq!(b.sh_ok("berth exec side hostname").trim(), "side");

    // Stopping web stops the sidecar too (BindsTo=).
    b.sh_ok("systemctl stop berth@web");
    let state = b.wait_for(
        "systemctl is-active berth@side; true",
        |t| t.trim() != "active" && t.trim() != "deactivating",
        Duration::from_secs(20),
    );
    assert_eq!(state.trim(), "inactive", "{}", b.journal("berth@side"));

    // Without web running, the sidecar's own start (what its unit runs;
    // under systemd its errors go to the journal) says why it cannot, and
    // its ExecStopPost leaves nothing.
    let out =
        b.sh("berth run --systemd side; echo rc=$?; journalctl -b -o cat --no-pager -n 5; true");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("joins the network of container \"web\"") && text.contains("not running"),
        "{text}"
    );
    b.sh_ok("berth cleanup side");
    assert_eq!(
        b.sh_ok("ls /run/berth/containers 2>/dev/null; ip -o link show type veth; true")
            .trim(),
        "",
        "left behind"
    );
    b.close().unwrap();
}

/// Ad hoc: `berth run -d -p HOST:CONT` publishes as a definition's
/// `publish` does, `berth port` lists it, and a stop closes it.
#[test]
fn berth_run_publishes_a_port_and_berth_port_lists_it() {
    require_root!();
    require_program!("curl");
    let b = SystemdBox::boot(BoxOptions::default().with_berth())
        .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    b.sh_ok(&format!(
        "berth run -d --name adhoc -p 8082:80 --init --rootfs {ROOTFS} httpd -f -p 80 -h /etc"
    ));
    let page = b.wait_until(
        "curl -fsS http://127.0.0.1:8082/hostname",
        Duration::from_secs(10),
    );
    assert_eq!(page.trim(), "adhoc");
    let port = b.sh_ok("berth port adhoc");
    assert!(port.contains("80/tcp -> 0.0.0.0:8082"), "{port}");
    let ps = b.sh_ok("berth ps");
    assert!(
        ps.contains("8082:80/tcp") && ps.contains("10.89.0."),
        "{ps}"
    );
    b.sh_ok("berth stop adhoc");
    let closed = b.sh("curl -fsS -m 2 http://127.0.0.1:8082/hostname");
    assert!(!closed.status.success(), "port 8082 still open after stop");
    let rules = b.sh_ok("nft list ruleset | grep -c 8082; true");
    assert_eq!(rules.trim(), "0", "a rule of adhoc is left");
    b.close().unwrap();
}

/// The host's firewall is the host's: a reload that flushes the whole
/// ruleset (`nft flush ruleset`, as nftables.service does) takes berth's
/// table with it, and the next start that publishes a port loads it again.
/// A host whose forward chain drops by policy gets a warning with the fix
/// when a bridge is made.
#[test]
fn a_flushed_table_comes_back_and_a_dropping_forward_policy_is_reported() {
    require_root!();
    require_program!("curl");
    let web = |port: u16| {
        format!(
            "rootfs = \"{ROOTFS}\"\ninit = true\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/etc\"]\n[network]\npublish = [\"{port}:80\"]\n"
        )
    };
    let opts = BoxOptions::default()
        .with_berth()
        .file("/etc/berth/containers/w1.toml", web(8091))
        .file("/etc/berth/containers/w2.toml", web(8092));
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    // Docker's iptables-nft leaves FORWARD with policy drop.
    b.sh_ok("nft add table ip filter; nft 'add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }'");
    b.sh_ok("systemctl start berth@w1");
    let log = b.sh_ok("journalctl -b -o cat --no-pager BERTH_EVENT=network-forward-policy");
    assert!(
        log.contains("table ip filter, chain FORWARD") && log.contains("DOCKER-USER -i berth0"),
        "no forward-policy warning: {log}"
    );
    b.sh_ok("nft delete table ip filter");
    assert_eq!(
        b.wait_until(
            "curl -fsS http://127.0.0.1:8091/hostname",
            Duration::from_secs(10)
        )
        .trim(),
        "w1"
    );
    // The flush: berth's table is gone, w1 is still up on its bridge.
    b.sh_ok("nft flush ruleset");
    b.sh_ok("systemctl start berth@w2");
    assert_eq!(
        b.wait_until(
            "curl -fsS http://127.0.0.1:8092/hostname",
            Duration::from_secs(10)
        )
        .trim(),
        "w2"
    );
    let rules = b.sh_ok("nft list table inet berth");
    assert!(
        rules.contains("masquerade") && rules.contains("8092"),
        "{rules}"
    );
    b.sh_ok("systemctl stop berth@w1 berth@w2");
    let left =
        b.sh_ok("nft list ruleset | grep -E 'element|809'; ip -o link show type bridge; true");
    assert_eq!(left.trim(), "", "left after stop");
    b.close().unwrap();
}

/// A network's `mtu` reaches its bridge and both ends of each veth; a
/// definition's `ip` is the address the container gets; `berth network
/// inspect` lists it there.
#[test]
fn a_fixed_address_and_a_networks_mtu_are_applied() {
    require_root!();
    let def = format!(
        "rootfs = \"{ROOTFS}\"\ninit = true\ncommand = [\"sleep\", \"1000\"]\n[network]\nnetworks = [\"app\"]\nip = {{ app = \"10.89.9.50\" }}\n"
    );
    let opts = BoxOptions::default()
        .with_berth()
        .file(
            "/etc/berth/networks/app.toml",
            "subnet = \"10.89.9.0/24\"\nmtu = 1400\n",
        )
        .file("/etc/berth/containers/fixed.toml", def);
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    b.sh_ok("systemctl start berth@fixed");
    let inner = b.sh_ok(
        "berth exec fixed ip -o addr show dev eth0; berth exec fixed cat /sys/class/net/eth0/mtu",
    );
    assert!(inner.contains("inet 10.89.9.50/24"), "{inner}");
    assert_eq!(inner.lines().last(), Some("1400"), "{inner}");
    let host = b.sh_ok("cat /sys/class/net/berth-app/mtu; ip -o link show master berth-app");
    assert!(
        host.starts_with("1400\n") && host.contains("mtu 1400"),
        "{host}"
    );
    let inspect = b.sh_ok("berth network inspect app");
    assert!(
        inspect.contains("10.89.9.50") && inspect.contains("fixed"),
        "{inspect}"
    );
    b.sh_ok("systemctl stop berth@fixed");
    b.close().unwrap();
}
