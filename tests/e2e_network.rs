//! Bridge networking end to end (issue 14, "Tests that must pass"), on a
//! real systemd in a box with berth installed: containers are declared in
//! /etc/berth/containers, networks in /etc/berth/networks, started with
//! `systemctl start berth@NAME`, and checked the way a user would — a page
//! fetched by name with busybox wget, a published port reached with curl and
//! a udp datagram from an "outside host", and what is left in `ip link`,
//! the lease files and `nft list ruleset` after a stop.
//!
//! Everything lives in the box's own network namespace and the outside host
//! made inside it (tests/support/network.rs); the machine's own network is
//! never touched. Containers run busybox httpd on port 80 (their page says
//! their name) and a udp echo on port 53 (`name:` + the datagram), from one
//! busybox rootfs copied into the box.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::network::{self as net, OutsideHost, BOX_ADDR, BOX_UDP, OUT_ADDR};
use support::systemd_box::{BoxOptions, SystemdBox};

/// What every test here needs on the machine.
macro_rules! require_net {
    () => {
        require_root!();
        for prog in ["nsenter", "gcc", "nft", "ip", "curl"] {
            require_program!(prog);
        }
    };
}

/// How long a container may take to answer after its unit is active, and
/// a name to resolve after a peer's start.
const SETTLE: Duration = Duration::from_secs(20);

/// Boot a box with berth installed, `defs` as (name, body) definitions and
/// `networks` as (name, body) networks files (the generator runs at boot),
/// and the network rootfs at /srv/net-root.
fn boot(defs: &[(String, String)], networks: &[(&str, &str)]) -> SystemdBox {
    let mut opts = BoxOptions::default().with_berth();
    for (name, body) in networks {
        opts = opts.file(&format!("/etc/berth/networks/{name}.toml"), body);
    }
    for (name, body) in defs {
        opts = opts.file(&format!("/etc/berth/containers/{name}.toml"), body);
    }
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    net::install_net_rootfs(&b);
    b
}

/// (name, definition) of a web container with `network` as its `[network]`.
fn web(name: &str, network: &str) -> (String, String) {
    (name.to_string(), net::web_definition(name, network))
}

/// Panic with `what` and the journals of `containers` (and berth's name
/// servers, addresses, routes and rule set).
#[track_caller]
fn fail(b: &SystemdBox, containers: &[&str], what: &str) -> ! {
    panic!("{what}\n{}", net::network_journals(b, containers))
}

#[track_caller]
fn ensure(b: &SystemdBox, ok: bool, containers: &[&str], what: &str) {
    if !ok {
        fail(b, containers, what);
    }
}

/// `systemctl start` the containers, in one command; fails the test with
/// their journals when the start fails.
#[track_caller]
fn start(b: &SystemdBox, names: &[&str], all: &[&str]) {
    let units: Vec<String> = names.iter().map(|n| format!("berth@{n}")).collect();
    let out = b.sh(&format!("systemctl start {}", units.join(" ")));
    if !out.status.success() {
        fail(
            b,
            all,
            &format!(
                "systemctl start {} failed: {}",
                units.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
}

fn stop(b: &SystemdBox, names: &[&str]) {
    let units: Vec<String> = names.iter().map(|n| format!("berth@{n}")).collect();
    b.sh_ok(&format!("systemctl stop {}", units.join(" ")));
}

/// The unit of `name` has settled in inactive or failed.
#[track_caller]
fn settled(b: &SystemdBox, name: &str, all: &[&str]) {
    if let Err(e) = net::eventually(
        b,
        &format!("systemctl show -p ActiveState --value berth@{name}"),
        |s| s == "inactive" || s == "failed",
        Duration::from_secs(60),
    ) {
        fail(b, all, &format!("berth@{name} did not stop: {e}"));
    }
}

/// Inside container `from`, busybox wget of `url` (TESTING.md: its `-T`
/// crashes, so `timeout` bounds it).
fn wget_in(from: &str, url: &str) -> String {
    format!("berth exec {from} timeout 5 wget -qO- {url}")
}

/// `from` fetches `url` and gets the page `want`, within [`SETTLE`].
#[track_caller]
fn expect_page(b: &SystemdBox, from: &str, url: &str, want: &str, all: &[&str], what: &str) {
    if let Err(e) = net::eventually(b, &wget_in(from, url), |t| t == want, SETTLE) {
        // What the name resolves to from there, if the URL names one.
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        let lookup = b.sh(&format!(
            "berth exec {from} timeout 5 nslookup {host} 2>&1; \
             echo '--- from the host, to the gateways:'; \
             for gw in $(ip -4 -o addr show | awk '$2 ~ /^(berth|bh-)/ {{sub(\"/.*\", \"\", $4); print $4}}'); do \
             timeout 5 busybox nslookup {host} $gw 2>&1; done"
        ));
        fail(
            b,
            all,
            &format!(
                "{what}: container {from:?} fetching {url} should get {want:?}: {e}\n\
                 --- nslookup {host} in {from} ({}) ---\n{}",
                lookup.status,
                String::from_utf8_lossy(&lookup.stdout)
            ),
        );
    }
}

/// `from` cannot fetch `url`: one try, bounded by wget's timeout.
#[track_caller]
fn expect_no_page(b: &SystemdBox, from: &str, url: &str, all: &[&str], what: &str) {
    let out = b.sh(&wget_in(from, url));
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        b,
        !out.status.success() && text.trim().is_empty(),
        all,
        &format!("{what}: container {from:?} fetching {url} should fail, got {text:?}"),
    );
}

/// A box-side script's stdout is `want` within [`SETTLE`].
#[track_caller]
fn expect_output(b: &SystemdBox, script: &str, want: &str, all: &[&str], what: &str) {
    if let Err(e) = net::eventually(b, script, |t| t == want, SETTLE) {
        fail(b, all, &format!("{what}: expected {want:?}: {e}"));
    }
}

/// A box-side script fails (once): a port closed, a peer unreachable.
#[track_caller]
fn expect_failure(b: &SystemdBox, script: &str, all: &[&str], what: &str) {
    let out = b.sh(script);
    ensure(
        b,
        !out.status.success(),
        all,
        &format!(
            "{what}: `{script}` should fail, but printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        ),
    );
}

/// The one IPv4 lease of `name` on `network`.
#[track_caller]
fn lease4(b: &SystemdBox, network: &str, name: &str, all: &[&str]) -> String {
    let v4: Vec<String> = net::leases_of(b, network, name)
        .into_iter()
        .filter(|a| !a.contains(':'))
        .collect();
    if v4.len() != 1 {
        fail(
            b,
            all,
            &format!("container {name:?} should hold one IPv4 lease on network {network:?}, holds {v4:?}"),
        );
    }
    v4[0].clone()
}

/// The addresses on `eth0` inside container `name`, as busybox `ip` shows
/// them (without prefix lengths).
fn eth0_addrs(b: &SystemdBox, name: &str) -> Vec<String> {
    b.sh(&format!("berth exec {name} ip -o addr show dev eth0"))
        .stdout
        .split(|c| *c == b'\n')
        .filter_map(|l| {
            let l = String::from_utf8_lossy(l);
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet" || *x == "inet6")?;
            w.next()
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
        })
        .collect()
}

#[test]
fn peers_on_a_network_reach_each_other_by_name_in_any_order_and_after_a_new_address() {
    require_net!();
    let app = "networks = [\"app\"]";
    let all = ["a", "b", "c"];
    let b = boot(
        &[
            web("a", &format!("{app}\naliases = [\"www\"]")),
            web("b", app),
            web("c", app),
        ],
        &[("app", "subnet = \"10.89.7.0/24\"\n")],
    );

    // a first, then b.
    start(&b, &["a"], &all);
    start(&b, &["b"], &all);
    expect_page(&b, "b", "http://a/", "a", &all, "a started before b");
    expect_page(&b, "b", "http://www/", "a", &all, "a's alias www");
    expect_page(&b, "a", "http://b/", "b", &all, "a started before b");
    stop(&b, &["a", "b"]);

    // b first, then a.
    start(&b, &["b"], &all);
    start(&b, &["a"], &all);
    expect_page(&b, "b", "http://a/", "a", &all, "b started before a");
    expect_page(&b, "a", "http://b/", "b", &all, "b started before a");
    let old = lease4(&b, "app", "a", &all);
    ensure(
        &b,
        eth0_addrs(&b, "a").contains(&old),
        &all,
        &format!("a's eth0 does not hold its lease {old}"),
    );

    // a restarts with another address: c takes a's while a is stopped.
    stop(&b, &["a"]);
    ensure(
        &b,
        net::leases_of(&b, "app", "a").is_empty(),
        &all,
        "a stopped but still holds a lease on app",
    );
    start(&b, &["c"], &all);
    let c_addr = lease4(&b, "app", "c", &all);
    start(&b, &["a"], &all);
    let new = lease4(&b, "app", "a", &all);
    ensure(
        &b,
        new != old && c_addr == old,
        &all,
        &format!("the test wants a at a new address and c at a's old one: a was {old}, is {new}; c is {c_addr}"),
    );
    expect_page(
        &b,
        "b",
        "http://a/",
        "a",
        &all,
        &format!("after a restarted at {new} (was {old}, now c's)"),
    );
    expect_page(&b, "b", "http://c/", "c", &all, "c took a's old address");
    expect_page(
        &b,
        "b",
        "http://www/",
        "a",
        &all,
        "a's alias www after a restarted at a new address",
    );
    expect_page(
        &b,
        "b",
        &format!("http://{new}/"),
        "a",
        &all,
        "a by its new address",
    );
    // The member with the lowest address leaves: the others, who know the
    // gateway's MAC from a lookup just before, still reach the name server
    // on it (a bridge whose MAC followed its lowest port's would move, and
    // their neighbour entries would go stale).
    expect_page(&b, "c", "http://a/", "a", &all, "before b left the network");
    expect_page(&b, "a", "http://c/", "c", &all, "before b left the network");
    stop(&b, &["b"]);
    expect_page(&b, "c", "http://a/", "a", &all, "after b left the network");
    expect_page(&b, "a", "http://c/", "c", &all, "after b left the network");
    stop(&b, &["a", "c"]);
}

#[test]
fn a_container_on_default_reaches_the_outside_host_through_nat() {
    require_net!();
    let all = ["nat"];
    let b = boot(&[web("nat", "")], &[]);
    let out = OutsideHost::attach(&b);
    out.serve_http(80, "outside");
    start(&b, &["nat"], &all);
    let inside = lease4(&b, "default", "nat", &all);

    expect_page(
        &b,
        "nat",
        &format!("http://{OUT_ADDR}/"),
        "outside",
        &all,
        "the way out through NAT",
    );
    // The outside host's request log: every peer is the box's address,
    // never the container's.
    let peers = out.http_peers(80);
    let log = out.http_log(80);
    ensure(
        &b,
        !peers.is_empty() && peers.iter().all(|p| p == BOX_ADDR),
        &all,
        &format!("the outside host should see only {BOX_ADDR} (the host), not {inside} (the container): peers {peers:?}\n{log}"),
    );
    stop(&b, &all);
}

#[test]
fn published_ports_reach_the_container_from_outside_the_host_and_loopback_and_close_on_stop() {
    require_net!();
    let name = "pubweb";
    let all = [name];
    let b = boot(
        &[web(name, "publish = [\"8080:80\", \"5353:53/udp\"]")],
        &[],
    );
    let out = OutsideHost::attach(&b);
    start(&b, &[name], &all);
    let addrs = net::leases_of(&b, "default", name);
    let mut words: Vec<&str> = addrs.iter().map(String::as_str).collect();
    words.push(name);
    let rules = net::nft_lines_naming(&b, &words);
    ensure(
        &b,
        !addrs.is_empty() && !rules.is_empty(),
        &all,
        &format!("pubweb should hold a lease on default ({addrs:?}) and the rule set should name it:\n{rules}"),
    );

    let tcp = |from_out: bool, addr: &str| {
        let curl = format!("curl -fsS --max-time 3 http://{addr}:8080/");
        if from_out {
            out.wrap(&curl)
        } else {
            curl
        }
    };
    let udp = |from_out: bool, addr: &str| {
        let ask = format!("{BOX_UDP} ask {addr} 5353 hello");
        if from_out {
            out.wrap(&ask)
        } else {
            ask
        }
    };
    let cases = [
        (
            true,
            BOX_ADDR,
            "from the outside host to the host's address",
        ),
        (false, BOX_ADDR, "from the host to its own address"),
        (false, "127.0.0.1", "from the host to 127.0.0.1"),
    ];
    for (from_out, addr, what) in cases {
        expect_output(
            &b,
            &tcp(from_out, addr),
            name,
            &all,
            &format!("tcp 8080 {what}"),
        );
        expect_output(
            &b,
            &udp(from_out, addr),
            "pubweb:hello",
            &all,
            &format!("udp 5353 {what}"),
        );
    }

    stop(&b, &[name]);
    for (from_out, addr, what) in cases {
        expect_failure(
            &b,
            &tcp(from_out, addr),
            &all,
            &format!("after stop, tcp 8080 {what} is closed"),
        );
        expect_failure(
            &b,
            &udp(from_out, addr),
            &all,
            &format!("after stop, udp 5353 {what} is closed"),
        );
    }
    let left = net::nft_lines_naming(&b, &words);
    ensure(
        &b,
        left.is_empty(),
        &all,
        &format!("after stop, the rule set still names {words:?}:\n{left}"),
    );
}

#[test]
fn an_internal_network_has_no_way_out_and_networks_are_isolated() {
    require_net!();
    let all = ["cx", "cy", "ci"];
    let b = boot(
        &[
            web("cx", "networks = [\"x\"]"),
            web("cy", "networks = [\"y\"]"),
            web("ci", "networks = [\"sealed\"]"),
        ],
        &[
            ("x", "subnet = \"10.89.11.0/24\"\n"),
            ("y", "subnet = \"10.89.12.0/24\"\n"),
            ("sealed", "subnet = \"10.89.13.0/24\"\ninternal = true\n"),
        ],
    );
    let out = OutsideHost::attach(&b);
    out.serve_http(80, "outside");
    start(&b, &all, &all);
    let outside = format!("http://{OUT_ADDR}/");

    // The way out works from a network that is not internal...
    expect_page(&b, "cx", &outside, "outside", &all, "x is not internal");
    // ...and the internal one's container runs and answers the host...
    let ci = lease4(&b, "sealed", "ci", &all);
    expect_output(
        &b,
        &format!("curl -fsS --max-time 3 http://{ci}/"),
        "ci",
        &all,
        "the host reaches a container of the internal network",
    );
    // ...but cannot reach the outside host.
    expect_no_page(&b, "ci", &outside, &all, "internal network \"sealed\"");

    // x and y: each container answers the host, not the other network.
    let cx = lease4(&b, "x", "cx", &all);
    let cy = lease4(&b, "y", "cy", &all);
    for (who, addr) in [("cx", &cx), ("cy", &cy)] {
        expect_output(
            &b,
            &format!("curl -fsS --max-time 3 http://{addr}/"),
            who,
            &all,
            &format!("the host reaches {who} at {addr}"),
        );
    }
    expect_no_page(
        &b,
        "cx",
        &format!("http://{cy}/"),
        &all,
        "network x must not reach network y",
    );
    expect_no_page(
        &b,
        "cy",
        &format!("http://{cx}/"),
        &all,
        "network y must not reach network x",
    );
    stop(&b, &all);
}

#[test]
fn fifty_containers_started_at_once_get_distinct_addresses_reach_each_other_and_leave_nothing() {
    require_net!();
    const N: usize = 50;
    let names: Vec<String> = (1..=N).map(|i| format!("c{i}")).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let defs: Vec<(String, String)> = names
        .iter()
        .map(|n| web(n, "networks = [\"many\"]"))
        .collect();
    let b = boot(&defs, &[("many", "subnet = \"10.89.20.0/24\"\n")]);
    // Only the first containers' journals in failure messages: 50 are too many.
    let shown = &all[..3];

    let t = Instant::now();
    start(&b, &all, shown);
    eprintln!("systemctl start of {N} containers took {:?}", t.elapsed());

    // 50 leases, one per container, and each container's eth0 holds its own.
    let leases: BTreeMap<String, String> = net::all_leases(&b, "many")
        .into_iter()
        .filter(|(a, _)| !a.contains(':'))
        .map(|(a, h)| (h, a))
        .collect();
    let distinct: BTreeSet<&String> = leases.values().collect();
    ensure(
        &b,
        leases.len() == N && distinct.len() == N,
        shown,
        &format!("{N} containers should hold {N} distinct leases on \"many\": {leases:?}"),
    );
    let mut seen = BTreeMap::new();
    for n in &all {
        let addrs = eth0_addrs(&b, n);
        let v4: Vec<&String> = addrs.iter().filter(|a| !a.contains(':')).collect();
        ensure(
            &b,
            v4.len() == 1 && leases.get(*n) == Some(v4[0]),
            shown,
            &format!(
                "container {n}'s eth0 has {addrs:?}, its lease is {:?}",
                leases.get(*n)
            ),
        );
        if let Some(other) = seen.insert(v4[0].clone(), n.to_string()) {
            fail(
                &b,
                shown,
                &format!("{n} and {other} both have {} on eth0", v4[0]),
            );
        }
    }

    // Every one reachable by name from c1 (all fetches at once, so that one
    // round is bounded by wget's timeout however many fail).
    let probe = format!(
        "berth exec c1 sh -c 'for i in $(seq 1 {N}); do \
         (r=$(timeout 5 wget -qO- http://c$i/ 2>/dev/null); \
         [ \"$r\" = c$i ] && echo ok || echo \"c$i: ${{r:-nothing}}\") & done; wait'"
    );
    if let Err(e) = net::eventually(
        &b,
        &probe,
        |t| t.lines().filter(|l| *l == "ok").count() == N,
        SETTLE,
    ) {
        fail(
            &b,
            shown,
            &format!("c1 should reach all {N} containers by name: {e}"),
        );
    }

    let t = Instant::now();
    stop(&b, &all);
    eprintln!("systemctl stop of {N} containers took {:?}", t.elapsed());
    let veths = net::berth_veths(&b);
    ensure(
        &b,
        veths.is_empty(),
        shown,
        &format!("veths left after all {N} stopped: {veths:?}"),
    );
    let files = net::lease_files(&b);
    ensure(
        &b,
        files.is_empty(),
        shown,
        &format!("lease files left after all {N} stopped:\n{files}"),
    );
    let elements = net::berth_table_elements(&b);
    ensure(
        &b,
        elements.is_empty(),
        shown,
        &format!("elements left in table inet berth after all {N} stopped:\n{elements}"),
    );
    ensure(
        &b,
        !net::link_exists(&b, "berth-many"),
        shown,
        "bridge berth-many is still there after its last container stopped",
    );
}

#[test]
fn a_sigkilled_supervisor_leaves_no_veth_lease_or_rule() {
    require_net!();
    let name = "victim";
    let all = [name];
    let b = boot(&[web(name, "publish = [\"8081:80\"]")], &[]);
    start(&b, &[name], &all);
    expect_output(
        &b,
        "curl -fsS --max-time 3 http://127.0.0.1:8081/",
        name,
        &all,
        "the published port before the kill",
    );
    // What the kill must not leave: its veth, its lease, its rules.
    let veths = net::bridge_ports(&b, "berth0");
    let addrs = net::leases_of(&b, "default", name);
    let mut words: Vec<&str> = addrs.iter().map(String::as_str).collect();
    words.push(name);
    let rules = net::nft_lines_naming(&b, &words);
    ensure(
        &b,
        veths.len() == 1 && !addrs.is_empty() && !rules.is_empty(),
        &all,
        &format!("before the kill, victim should have a veth on berth0 ({veths:?}), a lease ({addrs:?}) and rules naming it:\n{rules}"),
    );
    let main = b.sh_ok("systemctl show -p MainPID --value berth@victim");

    b.sh_ok("systemctl kill -s KILL --kill-whom=main berth@victim");
    settled(&b, name, &all);
    let show = b.show("berth@victim.service", "ExecMainCode,ExecMainStatus");
    ensure(
        &b,
        show.get("ExecMainStatus").map(String::as_str) == Some("9"),
        &all,
        &format!(
            "the supervisor (pid {}) was not SIGKILLed: {show:?}",
            main.trim()
        ),
    );
    let left: Vec<&String> = veths.iter().filter(|v| net::link_exists(&b, v)).collect();
    ensure(
        &b,
        left.is_empty(),
        &all,
        &format!("veth left after the supervisor's SIGKILL: {left:?}"),
    );
    let leases = net::leases_of(&b, "default", name);
    ensure(
        &b,
        leases.is_empty(),
        &all,
        &format!("lease left after the supervisor's SIGKILL: {leases:?}"),
    );
    let rules = net::nft_lines_naming(&b, &words);
    ensure(
        &b,
        rules.is_empty(),
        &all,
        &format!("rules naming {words:?} left after the supervisor's SIGKILL:\n{rules}"),
    );
    expect_failure(
        &b,
        "curl -fsS --max-time 3 http://127.0.0.1:8081/",
        &all,
        "after the supervisor's SIGKILL, port 8081 is closed",
    );
}

#[test]
fn a_dual_stack_network_gives_both_addresses_and_a_peer_answers_over_ipv6() {
    require_net!();
    let all = ["a6", "b6"];
    let dual = "networks = [\"dual\"]";
    let b = boot(
        &[web("a6", dual), web("b6", dual)],
        &[(
            "dual",
            "subnet = \"10.89.30.0/24\"\nsubnet6 = \"fd00:89:1::/64\"\n",
        )],
    );
    start(&b, &all, &all);
    let leases = net::leases_of(&b, "dual", "a6");
    let v4: Vec<&String> = leases.iter().filter(|a| !a.contains(':')).collect();
    let v6: Vec<&String> = leases.iter().filter(|a| a.contains(':')).collect();
    ensure(
        &b,
        v4.len() == 1 && v6.len() == 1 && v6[0].starts_with("fd00:89:1:"),
        &all,
        &format!("a6 should lease one IPv4 and one IPv6 address on \"dual\": {leases:?}"),
    );
    let (v4, v6) = (v4[0].clone(), v6[0].clone());
    let eth0 = eth0_addrs(&b, "a6");
    ensure(
        &b,
        eth0.contains(&v4) && eth0.contains(&v6),
        &all,
        &format!("a6's eth0 should hold {v4} and {v6}: {eth0:?}"),
    );
    expect_page(
        &b,
        "b6",
        &format!("http://[{v6}]/"),
        "a6",
        &all,
        "a peer over IPv6",
    );
    expect_page(
        &b,
        "b6",
        &format!("http://{v4}/"),
        "a6",
        &all,
        "a peer over IPv4",
    );
    stop(&b, &all);
}

/// A start that must fail: its unit's messages name `needles`, and nothing
/// of it is set up (veth, lease, rule, bridge `bridge` when given).
#[track_caller]
fn expect_refused(
    b: &SystemdBox,
    name: &str,
    needles: &[&str],
    bridge: Option<&str>,
    all: &[&str],
) {
    let veths_before = net::berth_veths(b);
    let cursor = b.journal_cursor();
    let out = b.sh(&format!("systemctl start berth@{name}"));
    ensure(
        b,
        !out.status.success(),
        all,
        &format!("berth@{name} should fail to start"),
    );
    settled(b, name, all);
    // Every problem at once: a vague message and a half setup are
    // independent faults.
    let mut problems = Vec::new();
    let text = b.sh_ok(&format!(
        "journalctl --sync; journalctl --no-pager -o cat -u berth@{name} --after-cursor='{cursor}'; \
         systemctl status --no-pager -n 0 berth@{name}; true"
    ));
    for n in needles {
        if !text.contains(n) {
            problems.push(format!("its messages do not say {n:?}"));
        }
    }
    let veths = net::berth_veths(b);
    if veths != veths_before {
        problems.push(format!("the veths changed: {veths_before:?} -> {veths:?}"));
    }
    let leases = b.sh_ok(&format!(
        "grep -rlx -- {name} /run/berth/leases 2>/dev/null; true"
    ));
    if !leases.trim().is_empty() {
        problems.push(format!("it holds leases: {}", leases.trim()));
    }
    let rules = net::nft_lines_naming(b, &[name]);
    if !rules.is_empty() {
        problems.push(format!("the rule set names it:\n{rules}"));
    }
    if let Some(br) = bridge.filter(|br| net::link_exists(b, br)) {
        problems.push(format!("its bridge {br} was made"));
    }
    if !problems.is_empty() {
        fail(
            b,
            all,
            &format!(
                "the refused start of {name:?}: {}\n--- its messages ---\n{text}",
                problems.join("; ")
            ),
        );
    }
}

/// Declare container `name` (and networks files) in the running box, as a
/// sysadmin does: write, then `systemctl daemon-reload`.
fn declare(b: &SystemdBox, name: &str, network: &str, networks: &[(&str, &str)]) {
    for (n, body) in networks {
        b.write_file(&format!("/etc/berth/networks/{n}.toml"), body.as_bytes());
    }
    let (_, def) = web(name, network);
    b.write_file(
        &format!("/etc/berth/containers/{name}.toml"),
        def.as_bytes(),
    );
    b.sh_ok("systemctl daemon-reload");
}

/// Take back what [`declare`] wrote.
fn undeclare(b: &SystemdBox, name: &str, networks: &[&str]) {
    let mut files = vec![format!("/etc/berth/containers/{name}.toml")];
    files.extend(
        networks
            .iter()
            .map(|n| format!("/etc/berth/networks/{n}.toml")),
    );
    b.sh_ok(&format!(
        "rm -f {} && systemctl daemon-reload",
        files.join(" ")
    ));
}

#[test]
fn bad_network_input_fails_the_start_clearly_and_sets_nothing_up() {
    require_net!();
    let all = ["p1", "p2", "ov", "gw", "unk"];
    // Each broken case is declared only while it is tried, so that the one
    // good container, p1, never shares a configuration with it.
    let b = boot(
        &[
            web("p1", "publish = [\"8090:80\"]"),
            web("p2", "publish = [\"8090:80\"]"),
        ],
        &[],
    );
    let p1_serves = |when: &str| {
        expect_output(
            &b,
            "curl -fsS --max-time 3 http://127.0.0.1:8090/",
            "p1",
            &all,
            &format!("p1's published port {when}"),
        )
    };

    // A running container the refused starts must not disturb.
    start(&b, &["p1"], &all);
    p1_serves("before the refused starts");

    // A network named by no file.
    declare(&b, "unk", "networks = [\"nope\"]", &[]);
    expect_refused(
        &b,
        "unk",
        &[
            "unknown network",
            "\"nope\"",
            "/etc/berth/containers/unk.toml",
        ],
        None,
        &all,
    );
    undeclare(&b, "unk", &[]);
    p1_serves("after unk's refused start");

    // Overlapping subnets: the error names the file (and the other one).
    declare(
        &b,
        "ov",
        "networks = [\"over2\"]",
        &[
            ("over1", "subnet = \"10.89.40.0/24\"\n"),
            ("over2", "subnet = \"10.89.40.0/25\"\n"),
        ],
    );
    expect_refused(
        &b,
        "ov",
        &[
            "overlaps",
            "/etc/berth/networks/over2.toml",
            "/etc/berth/networks/over1.toml",
        ],
        Some("berth-over2"),
        &all,
    );
    undeclare(&b, "ov", &["over1", "over2"]);
    p1_serves("after ov's refused start");

    // A gateway outside its subnet.
    declare(
        &b,
        "gw",
        "networks = [\"gwout\"]",
        &[(
            "gwout",
            "subnet = \"10.89.41.0/24\"\ngateway = \"10.89.42.1\"\n",
        )],
    );
    expect_refused(
        &b,
        "gw",
        &["outside subnet", "/etc/berth/networks/gwout.toml"],
        Some("berth-gwout"),
        &all,
    );
    undeclare(&b, "gw", &["gwout"]);
    p1_serves("after gw's refused start");

    // A port another running container publishes: p2 names p1.
    expect_refused(&b, "p2", &["8090", "\"p1\""], None, &all);
    p1_serves("after p2's refused start");
    stop(&b, &["p1"]);
}

/// The harness itself, without bridge networking: a `mode = "host"`
/// container shares the box's network, so the outside host sees the box's
/// address and reaches its tcp and udp servers directly. When this fails,
/// the tests above cannot tell berth's faults from the harness's.
#[test]
fn the_outside_host_reaches_a_host_mode_container_and_back() {
    require_net!();
    let all = ["hostnet"];
    let b = boot(&[web("hostnet", "mode = \"host\"")], &[]);
    let out = OutsideHost::attach(&b);
    out.serve_http(8000, "outside");
    start(&b, &all, &all);
    expect_page(
        &b,
        "hostnet",
        &format!("http://{OUT_ADDR}:8000/"),
        "outside",
        &all,
        "host mode to the outside host",
    );
    let peers = out.http_peers(8000);
    ensure(
        &b,
        peers.iter().any(|p| p == BOX_ADDR),
        &all,
        &format!("the outside host's log should show {BOX_ADDR}: {peers:?}"),
    );
    expect_output(
        &b,
        &out.wrap(&format!("curl -fsS --max-time 3 http://{BOX_ADDR}/")),
        "hostnet",
        &all,
        "the outside host to a host-mode container's tcp port",
    );
    expect_output(
        &b,
        &out.wrap(&format!("{BOX_UDP} ask {BOX_ADDR} 53 hi")),
        "hostnet:hi",
        &all,
        "the outside host to a host-mode container's udp port",
    );
    stop(&b, &all);
    expect_failure(
        &b,
        &out.wrap(&format!("{BOX_UDP} ask {BOX_ADDR} 53 hi")),
        &all,
        "udp port 53 after the stop",
    );
}

/// The outside host and the box's side of their link over IPv6
/// (documentation prefix, no duplicate address detection to wait for).
const BOX_ADDR6: &str = "2001:db8:1::1";
const OUT_ADDR6: &str = "2001:db8:1::2";

#[test]
fn a_port_published_on_a_dual_stack_network_answers_over_ipv6_and_closes_on_stop() {
    require_net!();
    let name = "pub6";
    let all = [name];
    let b = boot(
        &[web(name, "networks = [\"dual\"]\npublish = [\"8086:80\"]")],
        &[(
            "dual",
            "subnet = \"10.89.31.0/24\"\nsubnet6 = \"fd00:89:31::/64\"\n",
        )],
    );
    let out = OutsideHost::attach(&b);
    b.sh_ok(&format!(
        "set -e
         ip addr add {BOX_ADDR6}/64 dev out0 nodad
         ip -n out addr add {OUT_ADDR6}/64 dev eth0 nodad
         ip -6 route add default via {OUT_ADDR6}"
    ));
    start(&b, &[name], &all);
    let curl = |addr: &str| format!("curl -g -fsS --max-time 3 http://[{addr}]:8086/");
    let cases = [
        (
            out.wrap(&curl(BOX_ADDR6)),
            "from the outside host to the host's IPv6 address",
        ),
        (curl(BOX_ADDR6), "from the host to its own IPv6 address"),
        (
            out.wrap(&format!("curl -fsS --max-time 3 http://{BOX_ADDR}:8086/")),
            "from the outside host over IPv4",
        ),
    ];
    for (script, what) in &cases {
        expect_output(&b, script, name, &all, &format!("tcp 8086 {what}"));
    }
    stop(&b, &[name]);
    for (script, what) in &cases {
        expect_failure(&b, script, &all, &format!("after stop, tcp 8086 {what}"));
    }
}
