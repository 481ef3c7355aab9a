//! The nftables plan of `network::plan`, loaded by the real `nft` into the
//! test's own network namespace (never the host's): a start's transaction
//! loads, a second container publishing the same host port fails as a whole
//! (nothing of it is left), a stop removes every element naming the
//! container, and the last member's teardown empties the network's sets.
//! Then the same through `network::nft` (libnftables in the process, and
//! `nft -f -`): the error of a taken port names its holder, and a foreign
//! forward chain that drops is found. And a start's elements sent by
//! `network::nftnl` (netlink, no libnftables) make the very ruleset nft
//! makes of the same start, which nft's stop and teardown then undo.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use berth::config::values::{parse_port, parse_subnet, PortMapping};
use berth::network::config::{bridge_name, Addresses, Network};
use berth::network::nft::{self as nftapi, Backend, NftError};
use berth::network::nftnl::{self, ElementsError};
use berth::network::plan::{
    plan_network_teardown, plan_start, plan_stop, render_nft, Attachment, Member, Transaction,
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

/// This thread, and every nft it starts, in a network namespace of its own.
fn private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
}

fn ports(p: &[&str]) -> Vec<PortMapping> {
    p.iter().map(|p| parse_port(p).unwrap()).collect()
}

#[test]
fn apply_loads_a_start_and_a_stop_through_either_backend() {
    require_root!();
    require_program!("nft");
    for backend in [Backend::Library, Backend::Program] {
        private_netns();
        let default = net("default", "10.89.0.0/24");
        let web_ports = ports(&["8080:80", "5353:53/udp"]);
        let web = member("web", &default, "10.89.0.2", &web_ports);
        assert!(!nftapi::table_exists().unwrap());
        nftapi::apply_via(backend, &render_nft(&plan_start(&web).unwrap()))
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        assert!(nftapi::table_exists().unwrap());
        let rules = ruleset();
        assert!(
            rules.contains("tcp . 8080 comment \"web\" : 10.89.0.2 . 80")
                && rules.contains("udp . 5353 comment \"web\" : 10.89.0.2 . 53")
                && rules.contains("type nat hook prerouting"),
            "{backend:?}: {rules}"
        );
        nftapi::apply_via(backend, &render_nft(&plan_stop(&web).unwrap()))
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let rules = ruleset();
        assert!(!rules.contains("\"web\""), "{backend:?}: {rules}");
        // The network's elements stay until its last member stops.
        assert!(rules.contains("\"berth0\""), "{backend:?}: {rules}");
        // A bad script fails with nft's own message.
        let e = nftapi::apply_via(backend, "add element inet berth nosuchset { 1.2.3.4 }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nothing was changed") && e.contains("nosuchset"),
            "{backend:?}: {e}"
        );
    }
}

#[test]
fn a_taken_port_names_its_holder_and_changes_nothing() {
    require_root!();
    require_program!("nft");
    for backend in [Backend::Library, Backend::Program] {
        private_netns();
        let default = net("default", "10.89.0.0/24");
        let app = net("app", "10.89.1.0/24");
        let web_ports = ports(&["8080:80", "127.0.0.1:9000:90"]);
        let web = member("web", &default, "10.89.0.2", &web_ports);
        nftapi::apply(&render_nft(&plan_start(&web).unwrap())).unwrap();
        let before = ruleset();
        for (taken, what) in [
            ("8080:5432", "8080/tcp"),
            ("127.0.0.1:9000:5432", "127.0.0.1:9000/tcp"),
        ] {
            // A free port first, so the taken one is not the script's only create.
            let db_ports = ports(&["7000:7000", taken]);
            let db = member("db", &app, "10.89.1.2", &db_ports);
            let e = nftapi::apply_via(backend, &render_nft(&plan_start(&db).unwrap())).unwrap_err();
            match &e {
                NftError::PortTaken {
                    what: w, holder, ..
                } => {
                    assert_eq!(
                        (w.as_str(), holder.as_str()),
                        (what, "web"),
                        "{backend:?}: {e}"
                    )
                }
                other => panic!("{backend:?}: not PortTaken: {other}"),
            }
            let text = e.to_string();
            assert!(
                text.contains(&format!("{what} is already published by container \"web\"")),
                "{text}"
            );
            assert_eq!(
                ruleset(),
                before,
                "{backend:?}: the failed start changed the ruleset"
            );
        }
        assert_eq!(
            nftapi::port_holder("dnat4", "tcp . 8080")
                .unwrap()
                .as_deref(),
            Some("web")
        );
        assert_eq!(nftapi::port_holder("dnat4", "tcp . 8081").unwrap(), None);
    }
}

#[test]
fn a_foreign_forward_drop_is_found() {
    require_root!();
    require_program!("nft");
    private_netns();
    let default = net("default", "10.89.0.0/24");
    let web = member("web", &default, "10.89.0.2", &[]);
    nftapi::apply(&render_nft(&plan_start(&web).unwrap())).unwrap();
    // berth's own forward chain, and a foreign one that accepts: nothing to say.
    let (ok, err) = nft("add table inet mine\n\
         add chain inet mine fw { type filter hook forward priority 0; policy accept; }\n");
    assert!(ok, "{err}");
    assert_eq!(
        nftapi::foreign_forward_drops().unwrap(),
        Vec::<String>::new()
    );
    // iptables-nft's filter table with Docker's FORWARD DROP.
    let (ok, err) = nft("add table ip filter\n\
         add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }\n");
    assert!(ok, "{err}");
    let chains = nftapi::foreign_forward_drops().unwrap();
    assert_eq!(chains, ["table ip filter, chain FORWARD"]);
    let w = nftapi::forward_policy_warning(&chains, std::slice::from_ref(&default.bridge)).unwrap();
    assert!(
        w.contains("table ip filter, chain FORWARD")
            && w.contains("iptables -I DOCKER-USER -i berth0 -j ACCEPT"),
        "{w}"
    );
}

#[test]
fn elements_by_netlink_are_the_elements_nft_makes() {
    require_root!();
    require_program!("nft");
    // Dual stack, an internal network beside it, ports on any address, on
    // 127.0.0.1 and on an IPv6 address, a range, udp.
    let mut default = net("default", "10.89.0.0/24");
    default.subnet6 = Some(parse_subnet("fd00:89::/64").unwrap());
    default.gateway6 = default.subnet6.and_then(|s| s.nth_host(1));
    let mut back = net("back", "10.90.0.0/16");
    back.internal = true;
    let web_ports = ports(&[
        "8080:80",
        "127.0.0.1:8443:443/tcp",
        "[fd00:89::1]:8053:53/udp",
        "9000-9001:90-91",
    ]);
    let web = Member {
        container: "web",
        attachments: vec![
            Attachment {
                network: &default,
                addresses: Addresses {
                    v4: "10.89.0.2".parse().unwrap(),
                    v6: Some("fd00:89::2".parse().unwrap()),
                },
            },
            Attachment {
                network: &back,
                addresses: Addresses {
                    v4: "10.90.0.2".parse().unwrap(),
                    v6: None,
                },
            },
        ],
        publish: &web_ports,
    };
    let start = plan_start(&web).unwrap();

    private_netns();
    let (ok, err) = nft(&render_nft(&start));
    assert!(ok, "{err}");
    let by_nft = ruleset();

    private_netns();
    // Without the table there is nothing to add to.
    match nftnl::apply(&start.ops) {
        Err(ElementsError::Missing) => {}
        other => panic!("elements without berth's table: {other:?}"),
    }
    let skeleton = Transaction {
        base: true,
        ops: Vec::new(),
    };
    let (ok, err) = nft(&render_nft(&skeleton));
    assert!(ok, "{err}");
    nftnl::apply(&start.ops).unwrap();
    let by_netlink = ruleset();
    assert_eq!(by_netlink, by_nft);
    assert!(
        by_netlink.contains("fd00:89::1 . udp . 8053 comment \"web\" : fd00:89::2 . 53")
            && by_netlink.contains("10.90.0.0/16"),
        "{by_netlink}"
    );

    // A second member of the network: its elements are there already
    // (added again, no error), its port is taken (the whole batch fails,
    // naming the operation), and nothing changed.
    let db_ports = ports(&["7000:7000", "8080:5432"]);
    let db = member("db", &default, "10.89.0.3", &db_ports);
    let db_ops = plan_start(&db).unwrap().ops;
    let taken = db_ops
        .iter()
        .position(
            |(_, e)| matches!(e, berth::network::plan::Element::Dnat(d) if d.host_port == 8080),
        )
        .unwrap();
    match nftnl::apply(&db_ops) {
        Err(ElementsError::Refused { index, errno }) => {
            assert_eq!((index, errno), (taken, libc::EEXIST))
        }
        other => panic!("a taken port: {other:?}"),
    }
    assert_eq!(ruleset(), by_nft, "the refused batch changed the ruleset");

    // nft's stop and teardown undo what netlink added.
    let (ok, err) = nft(&render_nft(&plan_stop(&web).unwrap()));
    assert!(ok, "{err}");
    for n in [&default, &back] {
        let (ok, err) = nft(&render_nft(&plan_network_teardown(n)));
        assert!(ok, "{err}");
    }
    let (ok, err) = nft(&render_nft(&skeleton));
    assert!(ok, "{err}");
    let empty = ruleset();
    private_netns();
    let (ok, err) = nft(&render_nft(&skeleton));
    assert!(ok, "{err}");
    assert_eq!(empty, ruleset(), "elements left behind");
}
