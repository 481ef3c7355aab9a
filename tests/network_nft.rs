//! The nftables plan of `network::plan`, loaded by the real `nft` into the
//! test's own network namespace (never the host's): a start's transaction
//! loads, a second container publishing the same host port fails as a whole
//! (nothing of it is left), a stop removes every element naming the
//! container, and the last member's teardown empties the network's sets.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use berth::config::values::{parse_port, parse_subnet, PortMapping};
use berth::network::config::{bridge_name, Addresses, Network};
use berth::network::plan::{
    plan_network_teardown, plan_start, plan_stop, render_nft, Attachment, Member,
};

fn net(name: &str, subnet: &str) -> Network {
    let s = parse_subnet(subnet).unwrap();
    Network {
        name: name.into(),
        source_path: None,
        bridge: bridge_name(name),
        subnet: s,
        gateway: s.nth_host(1).unwrap(),
        subnet6: None,
        gateway6: None,
        internal: false,
        mtu: None,
        dns: true,
    }
}

/// `nft -f -` with `text`: (success, stderr).
fn nft(text: &str) -> (bool, String) {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into()
}

fn member<'a>(name: &'a str, n: &'a Network, ip: &str, publish: &'a [PortMapping]) -> Member<'a> {
    Member {
        container: name,
        attachments: vec![Attachment {
            network: n,
            addresses: Addresses {
                v4: ip.parse().unwrap(),
                v6: None,
            },
        }],
        publish,
    }
}

#[test]
fn start_conflict_stop_and_teardown_in_a_private_netns() {
    require_root!();
    require_program!("nft");
    // This thread, and so every nft it starts, in a network namespace of
    // its own: the host's tables are never touched, and the namespace goes
    // with the thread.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let default = net("default", "10.89.0.0/24");
    let app = net("app", "10.89.1.0/24");
    let web_ports: Vec<_> = ["8080:80", "5353:53/udp", "127.0.0.1:9000-9001:90-91"]
        .iter()
        .map(|p| parse_port(p).unwrap())
        .collect();
    let db_ports = vec![parse_port("8080:5432").unwrap()];
    let web = member("web", &default, "10.89.0.2", &web_ports);
    let db = member("db", &app, "10.89.1.2", &db_ports);

    let (ok, err) = nft(&render_nft(&plan_start(&web).unwrap()));
    assert!(ok, "{err}");
    // Loading the skeleton again (the next start) keeps the elements.
    let (ok, err) = nft(&render_nft(
        &plan_start(&member("x", &default, "10.89.0.3", &[])).unwrap(),
    ));
    assert!(ok, "{err}");
    let rules = ruleset();
    assert!(
        rules.contains("tcp . 8080 comment \"web\" : 10.89.0.2 . 80"),
        "{rules}"
    );
    assert!(
        rules.contains("127.0.0.1 . tcp . 9001 comment \"web\" : 10.89.0.2 . 91"),
        "{rules}"
    );

    // Another container on the same host port: the whole start fails,
    // its network's elements included.
    let (ok, err) = nft(&render_nft(&plan_start(&db).unwrap()));
    assert!(!ok, "a second container published 8080/tcp");
    assert!(err.contains("File exists"), "{err}");
    let rules = ruleset();
    assert!(
        !rules.contains("berth-app") && !rules.contains("\"db\""),
        "{rules}"
    );

    // Even one that maps it to the very same address and port (it got
    // web's address after web died without a cleanup): the port is web's
    // until web's elements are gone. An `add` would take it silently.
    let web2 = member("web2", &default, "10.89.0.2", &web_ports[..1]);
    let (ok, _) = nft(&render_nft(&plan_start(&web2).unwrap()));
    assert!(!ok, "a second container took 8080/tcp with the same target");

    let (ok, err) = nft(&render_nft(&plan_stop(&web).unwrap()));
    assert!(ok, "{err}");
    let rules = ruleset();
    assert!(!rules.contains("\"web\""), "{rules}");
    // Now db's start goes through.
    let (ok, err) = nft(&render_nft(&plan_start(&db).unwrap()));
    assert!(ok, "{err}");

    let (ok, err) = nft(&render_nft(&plan_network_teardown(&default)));
    assert!(ok, "{err}");
    let rules = ruleset();
    assert!(
        !rules.contains("berth0") && !rules.contains("10.89.0.0/24"),
        "{rules}"
    );
    assert!(rules.contains("berth-app"), "{rules}");
}
