//! Who answers to which name: the members of each network as their lease
//! files say (`/run/berth/leases/NETWORK/ADDRESS`: line 1 the container's
//! name, then optional `aliases …` and `dns …` lines), and which of them a
//! client may see — the members of every network the client is on, never
//! those of another network (as Podman's aardvark-dns answers a container
//! only from the networks it joined).
//!
//! Pure: the server reads the files and passes their text.

use std::net::{IpAddr, SocketAddr};

/// One lease file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub aliases: Vec<String>,
    /// The container's own upstream resolvers (`[network] dns`).
    pub dns: Vec<IpAddr>,
}

/// A lease file's text; `None` for one just created and not yet written.
/// Unknown lines are ignored, as the format promises.
pub fn parse_lease(text: &str) -> Option<Lease> {
    let mut lines = text.lines();
    let name = lines.next()?.trim();
    if name.is_empty() {
        return None;
    }
    let mut lease = Lease {
        name: name.to_string(),
        aliases: Vec::new(),
        dns: Vec::new(),
    };
    for line in lines {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("aliases") => lease.aliases.extend(words.map(str::to_string)),
            Some("dns") => lease
                .dns
                .extend(words.filter_map(|w| w.parse::<IpAddr>().ok())),
            _ => {}
        }
    }
    Some(lease)
}

/// A member of a network: one address and its lease (a dual-stack member
/// has two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub addr: IpAddr,
    pub lease: Lease,
}

/// The members of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub network: String,
    pub members: Vec<Member>,
}

/// The member of `network` at `addr` (the client of a query), if any.
pub fn member_at<'a>(nets: &'a [Members], network: &str, addr: IpAddr) -> Option<&'a Member> {
    nets.iter()
        .filter(|n| n.network == network)
        .flat_map(|n| &n.members)
        .find(|m| m.addr == addr)
}

/// The addresses that answer `name` (lower case, no trailing dot) for a
/// client that asked on network `via` and is the container `client` (when
/// its address is a lease): members of `via` and of every other network
/// `client` is on, matched by name or alias without case. `None` when no
/// visible member has that name.
pub fn lookup(
    nets: &[Members],
    via: &str,
    client: Option<&str>,
    name: &str,
) -> Option<Vec<IpAddr>> {
    if name.is_empty() {
        return None;
    }
    let visible = |n: &Members| {
        n.network == via || client.is_some_and(|c| n.members.iter().any(|m| m.lease.name == c))
    };
    let matches = |m: &Member| {
        m.lease.name.eq_ignore_ascii_case(name)
            || m.lease.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    };
    let mut out: Vec<IpAddr> = nets
        .iter()
        .filter(|n| visible(n))
        .flat_map(|n| &n.members)
        .filter(|m| matches(m))
        .map(|m| m.addr)
        .collect();
    if out.is_empty() {
        return None;
    }
    // The asking network's addresses first would be better for a client on
    // two networks; stable order (v4 before v6, then by address) is enough
    // for one address per family per network.
    out.sort();
    out.dedup();
    Some(out)
}

/// The address a reverse name stands for: `d.c.b.a.in-addr.arpa` or the 32
/// nibbles of `….ip6.arpa` (lower case, no trailing dot); `None` for any
/// other name, or a partial one.
pub fn reverse_address(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        for (i, p) in parts.iter().rev().enumerate() {
            // No leading zeros or signs: one spelling per address.
            if p.is_empty()
                || (p.len() > 1 && p.starts_with('0'))
                || !p.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            octets[i] = p.parse().ok()?;
        }
        return Some(IpAddr::from(octets));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = rest.split('.').collect();
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, n) in nibbles.iter().rev().enumerate() {
        if n.len() != 1 {
            return None;
        }
        let v = u8::from_str_radix(n, 16).ok()?;
        bytes[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
    }
    Some(IpAddr::from(bytes))
}

/// The name of the member at `addr` that a client asking on `via` as
/// `client` may see (the same visibility as [`lookup`]).
pub fn lookup_address(
    nets: &[Members],
    via: &str,
    client: Option<&str>,
    addr: IpAddr,
) -> Option<String> {
    let visible = |n: &Members| {
        n.network == via || client.is_some_and(|c| n.members.iter().any(|m| m.lease.name == c))
    };
    nets.iter()
        .filter(|n| visible(n))
        .flat_map(|n| &n.members)
        .find(|m| m.addr == addr)
        .map(|m| m.lease.name.clone())
}

/// The nameservers of a resolv.conf's text, port 53, at most three (as
/// glibc reads them). A link-local IPv6 address with a `%zone` is skipped:
/// it names an interface of the host's, which the text alone cannot turn
/// into a scope id.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .take(3)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(addr: &str, text: &str) -> Member {
        Member {
            addr: addr.parse().unwrap(),
            lease: parse_lease(text).unwrap(),
        }
    }

    fn nets() -> Vec<Members> {
        vec![
            Members {
                network: "app".into(),
                members: vec![
                    member("10.89.1.2", "web\naliases www api\n"),
                    member("fd00::2", "web\naliases www api\n"),
                    member("10.89.1.3", "db\nfuture line\ndns 192.0.2.53 nonsense\n"),
                ],
            },
            Members {
                network: "other".into(),
                members: vec![member("10.89.2.2", "secret\n"), member("10.89.2.3", "db\n")],
            },
        ]
    }

    fn ips(v: &[&str]) -> Option<Vec<IpAddr>> {
        Some(v.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn leases_parse_and_ignore_unknown_lines() {
        assert_eq!(parse_lease(""), None);
        assert_eq!(parse_lease("\n"), None);
        let l = parse_lease("db\nfuture line\ndns 192.0.2.53 nonsense\n").unwrap();
        assert_eq!(l.name, "db");
        assert!(l.aliases.is_empty());
        assert_eq!(l.dns, vec!["192.0.2.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(parse_lease("web").unwrap().name, "web");
    }

    #[test]
    fn names_and_aliases_of_the_asking_network_answer_without_case() {
        let n = nets();
        assert_eq!(
            lookup(&n, "app", None, "web"),
            ips(&["10.89.1.2", "fd00::2"])
        );
        assert_eq!(
            lookup(&n, "app", Some("db"), "api"),
            ips(&["10.89.1.2", "fd00::2"])
        );
        assert_eq!(
            lookup(&n, "app", None, "WWW"),
            ips(&["10.89.1.2", "fd00::2"])
        );
        assert_eq!(lookup(&n, "app", None, "nobody"), None);
        assert_eq!(lookup(&n, "app", None, ""), None);
    }

    #[test]
    fn another_networks_members_are_not_answered_unless_the_client_is_on_it() {
        let n = nets();
        assert_eq!(lookup(&n, "app", Some("web"), "secret"), None);
        assert_eq!(lookup(&n, "app", None, "db"), ips(&["10.89.1.3"]));
        // db is on both networks: it sees both, and both of its addresses.
        assert_eq!(lookup(&n, "app", Some("db"), "secret"), ips(&["10.89.2.2"]));
        assert_eq!(lookup(&n, "other", Some("secret"), "web"), None);
        assert_eq!(
            lookup(&n, "other", Some("secret"), "db"),
            ips(&["10.89.2.3"])
        );
    }

    #[test]
    fn the_client_is_found_by_its_address() {
        let n = nets();
        let m = member_at(&n, "app", "10.89.1.3".parse().unwrap()).unwrap();
        assert_eq!(m.lease.name, "db");
        assert!(member_at(&n, "other", "10.89.1.3".parse().unwrap()).is_none());
    }

    #[test]
    fn reverse_names_and_their_members() {
        let n = nets();
        let a = reverse_address("2.1.89.10.in-addr.arpa").unwrap();
        assert_eq!(a, "10.89.1.2".parse::<IpAddr>().unwrap());
        assert_eq!(lookup_address(&n, "app", None, a).as_deref(), Some("web"));
        let six = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(reverse_address(six), Some("fd00::2".parse().unwrap()));
        let hidden = reverse_address("2.2.89.10.in-addr.arpa").unwrap();
        assert_eq!(lookup_address(&n, "app", Some("web"), hidden), None);
        for bad in [
            "1.89.10.in-addr.arpa",
            "01.1.89.10.in-addr.arpa",
            "256.1.89.10.in-addr.arpa",
            "x.ip6.arpa",
            "web",
            "-1.1.89.10.in-addr.arpa",
        ] {
            assert_eq!(reverse_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn nameservers_of_resolv_conf() {
        let text = "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0\nsearch lan\nnameserver fe80::1%eth0\nnameserver ::1\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n";
        let got: Vec<String> = nameservers(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, vec!["127.0.0.53:53", "[::1]:53", "1.1.1.1:53"]);
    }
}
