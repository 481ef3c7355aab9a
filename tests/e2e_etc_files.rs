//! End to end on a real systemd: `[network] dns`, `dns_search` and
//! `extra_hosts` as the container itself reads them in `/etc/resolv.conf`
//! and `/etc/hosts`, in the two modes whose files do not depend on bridge
//! wiring: `none` (a namespace of its own) and `host` (the host's files with
//! the keys applied, as Docker's --dns and --add-host do with --network
//! host); and in bridge mode its own name on its address, as `berth network
//! inspect` and `berth port` show them. Name service on a bridge network
//! (the gateway as resolv.conf's name server) is tests/e2e_network.rs's.
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

const ROOTFS: &str = "/srv/root";

fn definition(mode: &str, keys: &str) -> String {
    format!(
        "rootfs = \"{ROOTFS}\"\nhostname = \"box1\"\ncommand = [\"sleep\", \"1000\"]\n\
         [network]\nmode = \"{mode}\"\n{keys}\
         [service]\nstop_timeout = \"1s\"\nrestart = \"no\"\n"
    )
}

/// `file` as the running container `name` reads it (`berth exec`).
fn read_in(b: &SystemdBox, name: &str, file: &str) -> String {
    b.wait_for(
        &format!("berth exec {name} cat {file} 2>&1 && echo read-done"),
        |t| t.contains("read-done"),
        Duration::from_secs(20),
    )
    .split("read-done")
    .next()
    .unwrap_or_default()
    .to_string()
}

/// (hosts, resolv.conf) of `name`.
fn files(b: &SystemdBox, name: &str) -> (String, String) {
    (
        read_in(b, name, "/etc/hosts"),
        read_in(b, name, "/etc/resolv.conf"),
    )
}

fn nameservers(resolv: &str) -> Vec<&str> {
    resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect()
}

#[test]
fn dns_and_extra_hosts_reach_the_containers_files() {
    require_root!();
    require_program!("nsenter");
    let keys = "dns = [\"192.0.2.53\", \"2001:db8::53\"]\ndns_search = [\"example.org\"]\n\
                extra_hosts = [\"gw:192.0.2.1\", \"v6:2001:db8::1\"]\n";
    let opts = BoxOptions::default()
        .with_berth()
        .file("/etc/berth/containers/iso.toml", definition("none", keys))
        .file(
            "/etc/berth/containers/br.toml",
            definition(
                "bridge",
                "publish = [\"8080:80\"]\nextra_hosts = [\"gw:192.0.2.1\"]\n",
            ),
        )
        .file(
            "/etc/berth/containers/shared.toml",
            definition(
                "host",
                "dns = [\"192.0.2.54\"]\nextra_hosts = [\"gw:192.0.2.1\"]\n",
            ),
        );
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    support::busybox_rootfs(rootfs.path());
    b.copy_in(rootfs.path(), ROOTFS);
    b.sh_ok("berth check");
    b.sh_ok("systemctl start berth@iso berth@shared berth@br");

    // none: its own files; the extra hosts before its own name.
    let (hosts, resolv) = files(&b, "iso");
    let lines: Vec<&str> = hosts.lines().collect();
    let gw = lines.iter().position(|l| *l == "192.0.2.1\tgw");
    let own = lines.iter().position(|l| *l == "127.0.1.1\tbox1");
    assert!(gw.is_some() && own.is_some() && gw < own, "{hosts}");
    assert!(lines.contains(&"2001:db8::1\tv6"), "{hosts}");
    assert_eq!(
        nameservers(&resolv),
        ["192.0.2.53", "2001:db8::53"],
        "{resolv}"
    );
    assert!(
        resolv.lines().any(|l| l == "search example.org"),
        "{resolv}"
    );

    // host: the host's hosts file with the extra line, only the dns server.
    let (hosts, resolv) = files(&b, "shared");
    let box_hosts = String::from_utf8_lossy(&b.read_file("/etc/hosts")).into_owned();
    assert!(hosts.trim_end().ends_with("192.0.2.1\tgw"), "{hosts}");
    if let Some(first) = box_hosts.lines().find(|l| l.starts_with("127.0.0.1")) {
        assert!(hosts.contains(first), "{hosts}\nvs the host's\n{box_hosts}");
    }
    assert_eq!(nameservers(&resolv), ["192.0.2.54"], "{resolv}");

    // bridge: its own name on its address on `default`, which `berth
    // network inspect` shows from its lease, and `berth port` its mapping.
    let (hosts, _) = files(&b, "br");
    let net: serde_json::Value =
        serde_json::from_str(&b.sh_ok("berth network inspect default")).unwrap();
    let members = net[0]["members"].as_array().cloned().unwrap_or_default();
    let br = members
        .iter()
        .find(|m| m["name"] == "br")
        .unwrap_or_else(|| panic!("no member br in {net}"));
    let addr = br["addresses"][0].as_str().unwrap().to_string();
    assert!(addr.starts_with("10.89.0."), "{net}");
    assert!(hosts.lines().any(|l| l == "192.0.2.1\tgw"), "{hosts}");
    assert!(
        hosts.lines().any(|l| l == format!("{addr}\tbox1")),
        "{hosts}"
    );
    assert!(!hosts.contains("127.0.1.1"), "{hosts}");
    assert!(b.sh_ok("berth network ls").contains("berth0"));
    assert_eq!(b.sh_ok("berth port br"), "80/tcp -> 0.0.0.0:8080\n");
    b.close().unwrap();
}
