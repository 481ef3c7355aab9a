//! The firewall of bridge networks as data: berth's own nftables table
//! (`inet berth`, never the host's), and the transactions that a start, a
//! stop and a network's last stop apply to it, rendered as `nft -f` text.
//!
//! Shape: the table's chains hold a fixed set of rules that only look
//! things up in sets and maps; a network adds set elements (its subnets,
//! its bridge), a container adds map elements (its published ports). So a
//! start is one transaction of `add`/`create element` lines, a stop one of
//! `delete element` lines, and no rule handle is ever needed — netavark
//! (`src/firewall/nft.rs`) builds rules per network and must find them again
//! by handle to delete them. The chains are flushed and written again in
//! each start's transaction: that is idempotent, keeps a table someone
//! edited by hand honest, and leaves the sets' elements alone.
//!
//! Published ports are `create element`s: a host port that another
//! container holds fails the whole start transaction (EEXIST), so nothing
//! is half set up — even when its element maps to the same address and
//! port, which an `add` would accept silently. Each carries the container's name as its comment, so the
//! apply layer can name the holder and reconcile after a crash.
//!
//! Pure: no nft, no netlink, no files (STYLE.md §1; `tests/purity.rs`).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::config::{Addresses, Network};
use crate::config::values::{PortMapping, Protocol, Subnet};

/// The family and name of berth's table.
pub const TABLE: &str = "inet berth";

/// A problem that makes a start's rules impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("container \"{container}\": publish \"{mapping}\" binds an IPv6 host address, but the container has no IPv6 address on network \"{network}\": give the network a subnet6, or bind an IPv4 address")]
    NoIpv6 {
        container: String,
        mapping: String,
        network: String,
    },
    #[error("container \"{container}\": publish \"{mapping}\" needs a network to reach it on: it joins none")]
    NoNetwork { container: String, mapping: String },
}

/// What an element is added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Added if absent (a network's elements: every member's start adds them).
    Add,
    /// Added, failing the transaction if present (a published port).
    Create,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "add",
            Verb::Create => "create",
            Verb::Delete => "delete",
        }
    }
}

/// One element of one of the table's sets or maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// A berth subnet (`subnets4`/`subnets6`): never masqueraded to.
    Subnet(Subnet),
    /// A subnet whose traffic out is masqueraded (not `internal`).
    Masquerade(Subnet),
    /// A berth bridge (`bridges`): networks are isolated from each other,
    /// and nothing unsolicited comes in from outside.
    Bridge(String),
    /// Traffic in and out of the same bridge (`intra`): allowed, as a
    /// member reaching another's published port through the host (hairpin).
    Intra(String),
    /// The bridge of an `internal` network: no way out, no way in.
    Internal(String),
    /// A published port: host address (any local one when `None`), protocol
    /// and port, to the container's address and port.
    Dnat(Dnat),
}

/// One published host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    pub host_ip: Option<IpAddr>,
    pub protocol: Protocol,
    pub host_port: u16,
    pub to: IpAddr,
    pub to_port: u16,
    /// The container that publishes it (the element's comment).
    pub container: String,
}

impl Element {
    /// The set or map it belongs to.
    pub fn set(&self) -> &'static str {
        self.parts().0
    }

    /// (set or map, key, `: data` when a map, comment).
    fn parts(&self) -> (&'static str, String, Option<String>, Option<&str>) {
        let v4 = |s: &Subnet| s.addr.is_ipv4();
        match self {
            Element::Subnet(s) => (
                if v4(s) { "subnets4" } else { "subnets6" },
                s.to_string(),
                None,
                None,
            ),
            Element::Masquerade(s) => (
                if v4(s) { "masquerade4" } else { "masquerade6" },
                s.to_string(),
                None,
                None,
            ),
            Element::Bridge(b) => ("bridges", quote(b), None, None),
            Element::Intra(b) => ("intra", format!("{} . {}", quote(b), quote(b)), None, None),
            Element::Internal(b) => ("internal", quote(b), None, None),
            Element::Dnat(d) => {
                let map = match (d.to.is_ipv4(), d.host_ip.is_some()) {
                    (true, false) => "dnat4",
                    (true, true) => "dnat4_host",
                    (false, false) => "dnat6",
                    (false, true) => "dnat6_host",
                };
                let key = match d.host_ip {
                    Some(ip) => format!("{ip} . {} . {}", d.protocol, d.host_port),
                    None => format!("{} . {}", d.protocol, d.host_port),
                };
                let data = format!("{} . {}", d.to, d.to_port);
                (map, key, Some(data), Some(d.container.as_str()))
            }
        }
    }
}

/// Interface names go in quotes: nft would read `berth0` as a symbol.
/// Bridge names are berth's own (`network::config::bridge_name`), so they
/// hold no quote.
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// One `nft -f` transaction: the table's skeleton first when `base`, then
/// the element operations in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub base: bool,
    pub ops: Vec<(Verb, Element)>,
}

/// The table's sets, maps and chains: `add` leaves existing ones as they
/// are, with their elements.
const SKELETON: &str = "\
add table inet berth
add set inet berth subnets4 { type ipv4_addr; flags interval; }
add set inet berth subnets6 { type ipv6_addr; flags interval; }
add set inet berth masquerade4 { type ipv4_addr; flags interval; }
add set inet berth masquerade6 { type ipv6_addr; flags interval; }
add set inet berth bridges { type ifname; }
add set inet berth intra { type ifname . ifname; }
add set inet berth internal { type ifname; }
add map inet berth dnat4 { type inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet berth dnat4_host { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet berth dnat6 { type inet_proto . inet_service : ipv6_addr . inet_service; }
add map inet berth dnat6_host { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
add chain inet berth prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain inet berth output { type nat hook output priority -100; policy accept; }
add chain inet berth postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain inet berth forward { type filter hook forward priority filter; policy accept; }
add chain inet berth published
flush chain inet berth prerouting
flush chain inet berth output
flush chain inet berth postrouting
flush chain inet berth forward
flush chain inet berth published
";

/// The rules, each with why. Only lookups: what changes per network or
/// container is in the sets and maps above.
const RULES: &[(&str, &str)] = &[
    // Published ports, for packets to any of the host's own addresses: from
    // outside (prerouting) and from the host itself, 127.0.0.1 included
    // (output; the bridge then needs route_localnet, which the apply layer
    // sets, as Docker does when its userland proxy is off).
    ("prerouting", "fib daddr type local jump published"),
    ("output", "fib daddr type local jump published"),
    ("published", "meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @dnat4_host"),
    ("published", "meta nfproto ipv4 meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @dnat4"),
    ("published", "meta l4proto { tcp, udp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6_host"),
    ("published", "meta nfproto ipv6 meta l4proto { tcp, udp } dnat ip6 to meta l4proto . th dport map @dnat6"),
    // The way out: the host's address for traffic leaving a berth subnet
    // that is not internal, for anywhere but another berth subnet.
    ("postrouting", "ip saddr @masquerade4 ip daddr != @subnets4 masquerade"),
    ("postrouting", "ip6 saddr @masquerade6 ip6 daddr != @subnets6 masquerade"),
    // A published port reached from 127.0.0.1: the container could not
    // answer a loopback source. So is one reached from its own bridge
    // (hairpin), which would otherwise be answered directly, not through
    // the host.
    ("postrouting", "oifname @bridges ip saddr 127.0.0.0/8 masquerade"),
    ("postrouting", "oifname @bridges ct status dnat iifname . oifname @intra masquerade"),
    // Forwarding: within one bridge, yes; internal networks: nothing else;
    // published ports: from anywhere; between networks: no; in from
    // outside: only replies; out: yes.
    ("forward", "iifname . oifname @intra accept"),
    ("forward", "iifname @internal drop"),
    ("forward", "oifname @internal drop"),
    ("forward", "oifname @bridges ct status dnat accept"),
    ("forward", "iifname @bridges oifname @bridges drop"),
    ("forward", "oifname @bridges ct state established,related accept"),
    ("forward", "oifname @bridges drop"),
    ("forward", "iifname @bridges accept"),
];

/// A container's place on one network.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub network: &'a Network,
    pub addresses: Addresses,
}

/// What a start or stop of one container is planned from.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    pub container: &'a str,
    /// In the definition's order: published ports go to the first.
    pub attachments: Vec<Attachment<'a>>,
    pub publish: &'a [PortMapping],
}

/// A network's own elements.
pub fn plan_network_elements(net: &Network) -> Vec<Element> {
    let mut out = Vec::new();
    for s in std::iter::once(net.subnet).chain(net.subnet6) {
        out.push(Element::Subnet(s));
        if !net.internal {
            out.push(Element::Masquerade(s));
        }
    }
    out.push(Element::Bridge(net.bridge.clone()));
    out.push(Element::Intra(net.bridge.clone()));
    if net.internal {
        out.push(Element::Internal(net.bridge.clone()));
    }
    out
}

/// A container's published ports, one element per port of each range and
/// family: a mapping without a host address goes to both of the first
/// network's addresses, one with an address to that family's only.
pub fn plan_published(m: &Member<'_>) -> Result<Vec<Element>, PlanError> {
    let mut out = Vec::new();
    for p in m.publish {
        let Some(first) = m.attachments.first() else {
            return Err(PlanError::NoNetwork {
                container: m.container.into(),
                mapping: p.to_string(),
            });
        };
        let a = first.addresses;
        let targets: Vec<IpAddr> = match p.host_ip {
            None => std::iter::once(a.v4).chain(a.v6).collect(),
            Some(IpAddr::V4(_)) => vec![a.v4],
            Some(IpAddr::V6(_)) => match a.v6 {
                Some(v6) => vec![v6],
                None => {
                    return Err(PlanError::NoIpv6 {
                        container: m.container.into(),
                        mapping: p.to_string(),
                        network: first.network.name.clone(),
                    })
                }
            },
        };
        for to in targets {
            for (host_port, to_port) in p.pairs() {
                out.push(Element::Dnat(Dnat {
                    host_ip: p.host_ip,
                    protocol: p.protocol,
                    host_port,
                    to,
                    to_port,
                    container: m.container.into(),
                }));
            }
        }
    }
    Ok(out)
}

/// A start: the skeleton, each network's elements (added if absent), then
/// the container's ports (created: a port held by another fails it all).
pub fn plan_start(m: &Member<'_>) -> Result<Transaction, PlanError> {
    let mut ops: Vec<(Verb, Element)> = m
        .attachments
        .iter()
        .flat_map(|a| plan_network_elements(a.network))
        .map(|e| (Verb::Add, e))
        .collect();
    ops.extend(plan_published(m)?.into_iter().map(|e| (Verb::Create, e)));
    Ok(Transaction { base: true, ops })
}

/// A stop: the container's ports go. Its networks' elements stay until the
/// last member stops ([`plan_network_teardown`]).
pub fn plan_stop(m: &Member<'_>) -> Result<Transaction, PlanError> {
    let ops = plan_published(m)?
        .into_iter()
        .map(|e| (Verb::Delete, e))
        .collect();
    Ok(Transaction { base: false, ops })
}

/// The last member of `net` stopped: its elements go with its bridge.
pub fn plan_network_teardown(net: &Network) -> Transaction {
    let ops = plan_network_elements(net)
        .into_iter()
        .map(|e| (Verb::Delete, e))
        .collect();
    Transaction { base: false, ops }
}

/// `nft -f` text of a transaction (nft applies one file as one transaction).
pub fn render_nft(t: &Transaction) -> String {
    let mut out = String::new();
    if t.base {
        out.push_str(SKELETON);
        for (chain, rule) in RULES {
            let _ = writeln!(out, "add rule {TABLE} {chain} {rule}");
        }
    }
    for (verb, e) in &t.ops {
        let (set, key, data, comment) = e.parts();
        let comment = comment.map_or(String::new(), |c| format!(" comment {}", quote(c)));
        // A deletion names the key only.
        let data = match (verb, data) {
            (Verb::Delete, _) | (_, None) => String::new(),
            (_, Some(d)) => format!(" : {d}"),
        };
        let comment = if *verb == Verb::Delete {
            String::new()
        } else {
            comment
        };
        let _ = writeln!(
            out,
            "{} element {TABLE} {set} {{ {key}{comment}{data} }}",
            verb.as_str()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::{parse_port, parse_subnet};

    fn net(name: &str, subnet: &str, subnet6: Option<&str>, internal: bool) -> Network {
        let s = parse_subnet(subnet).unwrap();
        let s6 = subnet6.map(|t| parse_subnet(t).unwrap());
        Network {
            name: name.into(),
            source_path: None,
            bridge: crate::network::config::bridge_name(name),
            subnet: s,
            gateway: s.nth_host(1).unwrap(),
            subnet6: s6,
            gateway6: s6.and_then(|s| s.nth_host(1)),
            internal,
            mtu: None,
            dns: true,
        }
    }

    fn addrs(v4: &str, v6: Option<&str>) -> Addresses {
        Addresses {
            v4: v4.parse().unwrap(),
            v6: v6.map(|a| a.parse().unwrap()),
        }
    }

    fn ports(p: &[&str]) -> Vec<PortMapping> {
        p.iter().map(|s| parse_port(s).unwrap()).collect()
    }

    fn elements(text: &str) -> String {
        text.lines()
            .filter(|l| l.contains(" element "))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn a_start_adds_the_network_and_creates_each_published_port() {
        let default = net("default", "10.89.0.0/24", None, false);
        let publish = ports(&[
            "8080:80",
            "127.0.0.1:8443:443/tcp",
            "5353:53/udp",
            "8000-8002:90-92",
        ]);
        let m = Member {
            container: "web",
            attachments: vec![Attachment {
                network: &default,
                addresses: addrs("10.89.0.2", None),
            }],
            publish: &publish,
        };
        let text = render_nft(&plan_start(&m).unwrap());
        assert!(text.starts_with(SKELETON), "{text}");
        assert!(
            text.contains("add rule inet berth forward iifname @bridges oifname @bridges drop\n")
        );
        assert_eq!(
            elements(&text),
            "\
add element inet berth subnets4 { 10.89.0.0/24 }
add element inet berth masquerade4 { 10.89.0.0/24 }
add element inet berth bridges { \"berth0\" }
add element inet berth intra { \"berth0\" . \"berth0\" }
create element inet berth dnat4 { tcp . 8080 comment \"web\" : 10.89.0.2 . 80 }
create element inet berth dnat4_host { 127.0.0.1 . tcp . 8443 comment \"web\" : 10.89.0.2 . 443 }
create element inet berth dnat4 { udp . 5353 comment \"web\" : 10.89.0.2 . 53 }
create element inet berth dnat4 { tcp . 8000 comment \"web\" : 10.89.0.2 . 90 }
create element inet berth dnat4 { tcp . 8001 comment \"web\" : 10.89.0.2 . 91 }
create element inet berth dnat4 { tcp . 8002 comment \"web\" : 10.89.0.2 . 92 }
"
        );
        assert_eq!(
            render_nft(&plan_stop(&m).unwrap()),
            "\
delete element inet berth dnat4 { tcp . 8080 }
delete element inet berth dnat4_host { 127.0.0.1 . tcp . 8443 }
delete element inet berth dnat4 { udp . 5353 }
delete element inet berth dnat4 { tcp . 8000 }
delete element inet berth dnat4 { tcp . 8001 }
delete element inet berth dnat4 { tcp . 8002 }
"
        );
    }

    #[test]
    fn internal_and_dual_stack_networks() {
        let back = net("back", "10.90.0.0/24", None, true);
        let app = net("app", "10.91.0.0/24", Some("fd00:91::/64"), false);
        let publish = ports(&["[2001:db8::1]:53:53/udp", "80:80"]);
        let m = Member {
            container: "db",
            attachments: vec![
                Attachment {
                    network: &app,
                    addresses: addrs("10.91.0.2", Some("fd00:91::2")),
                },
                Attachment {
                    network: &back,
                    addresses: addrs("10.90.0.2", None),
                },
            ],
            publish: &publish,
        };
        let text = render_nft(&plan_start(&m).unwrap());
        assert_eq!(
            elements(&text),
            "\
add element inet berth subnets4 { 10.91.0.0/24 }
add element inet berth masquerade4 { 10.91.0.0/24 }
add element inet berth subnets6 { fd00:91::/64 }
add element inet berth masquerade6 { fd00:91::/64 }
add element inet berth bridges { \"berth-app\" }
add element inet berth intra { \"berth-app\" . \"berth-app\" }
add element inet berth subnets4 { 10.90.0.0/24 }
add element inet berth bridges { \"berth-back\" }
add element inet berth intra { \"berth-back\" . \"berth-back\" }
add element inet berth internal { \"berth-back\" }
create element inet berth dnat6_host { 2001:db8::1 . udp . 53 comment \"db\" : fd00:91::2 . 53 }
create element inet berth dnat4 { tcp . 80 comment \"db\" : 10.91.0.2 . 80 }
create element inet berth dnat6 { tcp . 80 comment \"db\" : fd00:91::2 . 80 }
"
        );
        assert_eq!(
            render_nft(&plan_network_teardown(&back)),
            "\
delete element inet berth subnets4 { 10.90.0.0/24 }
delete element inet berth bridges { \"berth-back\" }
delete element inet berth intra { \"berth-back\" . \"berth-back\" }
delete element inet berth internal { \"berth-back\" }
"
        );
    }

    #[test]
    fn an_ipv6_host_address_needs_an_ipv6_member() {
        let default = net("default", "10.89.0.0/24", None, false);
        let publish = ports(&["[2001:db8::1]:80:80"]);
        let mut m = Member {
            container: "web",
            attachments: vec![Attachment {
                network: &default,
                addresses: addrs("10.89.0.2", None),
            }],
            publish: &publish,
        };
        let e = plan_start(&m).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "container \"web\": publish \"[2001:db8::1]:80:80/tcp\" binds an IPv6 host address"
            ),
            "{e}"
        );
        m.attachments.clear();
        assert!(matches!(plan_start(&m), Err(PlanError::NoNetwork { .. })));
    }
}
