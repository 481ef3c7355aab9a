//! The files a container sees in `/etc` that berth writes: `hostname`,
//! `hosts`, `resolv.conf`. Rendering is pure; `write_etc_files` writes them
//! into the container's run dir, from where the spec binds them.

use std::net::IpAddr;
use std::path::Path;

use super::SuperviseError;

/// `/etc/hostname`.
pub fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// What a container's `/etc/hosts` and `resolv.conf` say about its network
/// beyond what the host's files say. `from_definition` fills the keys;
/// the start path adds what only it knows (addresses, name server).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcNetwork {
    /// Its addresses on its first network (IPv4 first), which its own
    /// hostname resolves to; empty when it has none (none mode, or before
    /// the start path attaches it).
    pub addresses: Vec<IpAddr>,
    /// The gateway of its first network that serves names (`dns = true`):
    /// berth's name server listens there and forwards to `dns` or the
    /// host's resolvers. `None`: no network of its serves names.
    pub nameserver: Option<IpAddr>,
    /// `[network] dns`
    pub dns: Vec<IpAddr>,
    /// `[network] dns_search`
    pub dns_search: Vec<String>,
    /// `[network] extra_hosts`
    pub extra_hosts: Vec<(String, IpAddr)>,
}

impl EtcNetwork {
    /// The definition's keys; no addresses, no name server.
    pub fn from_definition(def: &crate::config::Definition) -> EtcNetwork {
        EtcNetwork {
            addresses: Vec::new(),
            nameserver: None,
            dns: def.network.dns.clone(),
            dns_search: def.network.dns_search.clone(),
            extra_hosts: def.network.extra_hosts.clone(),
        }
    }
}

/// `/etc/hosts` in a network namespace of its own: loopback names, then
/// `extra_hosts` (before its own name, as Docker writes them, so that a
/// user's entry wins a lookup), then its own name on each of its addresses,
/// or on 127.0.1.1 (Debian's convention) when it has none, so `hostname -f`
/// and self-lookups work without DNS.
pub fn render_hosts(hostname: &str, net: &EtcNetwork) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short == hostname {
        hostname.to_string()
    } else {
        format!("{hostname} {short}")
    };
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str(&render_extra_hosts(&net.extra_hosts));
    if net.addresses.is_empty() {
        out.push_str(&format!("127.0.1.1\t{names}\n"));
    }
    for a in &net.addresses {
        out.push_str(&format!("{a}\t{names}\n"));
    }
    out
}

/// `extra_hosts` as hosts(5) lines.
fn render_extra_hosts(hosts: &[(String, IpAddr)]) -> String {
    hosts
        .iter()
        .map(|(name, ip)| format!("{ip}\t{name}\n"))
        .collect()
}

/// `/etc/resolv.conf`. The base is the host's: with the host's network
/// namespace copied as is; in one of its own, loopback nameservers (a local
/// stub like systemd-resolved's 127.0.0.53) are unreachable and dropped, as
/// Docker does, and `fallback` (systemd-resolved's upstream list,
/// /run/systemd/resolve/resolv.conf) is used instead when that leaves none.
/// Then, as Docker's libnetwork sandbox_dns_unix.go builds it: the
/// nameservers are berth's name server on the first network's gateway when
/// one serves names (in its own namespace), else `dns` when set, else the
/// base's; `search` is `dns_search` when set, else the base's; the base's
/// `options` and comments stay.
pub fn render_resolv_conf(
    host: &str,
    fallback: Option<&str>,
    own_netns: bool,
    net: &EtcNetwork,
) -> String {
    let base = base_resolv_conf(host, fallback, own_netns);
    let nameservers = match net.nameserver {
        Some(gw) if own_netns => vec![gw],
        _ => net.dns.clone(),
    };
    if nameservers.is_empty() && net.dns_search.is_empty() {
        return base;
    }
    let (mut ns, mut search, mut rest) = (String::new(), String::new(), String::new());
    for l in base.lines() {
        match l.split_whitespace().next() {
            Some("nameserver") => ns.push_str(&format!("{l}\n")),
            Some("search" | "domain") => search.push_str(&format!("{l}\n")),
            _ if l == NO_NAMESERVER => {}
            _ => rest.push_str(&format!("{l}\n")),
        }
    }
    if !nameservers.is_empty() {
        ns = nameservers
            .iter()
            .map(|a| format!("nameserver {a}\n"))
            .collect();
    }
    if !net.dns_search.is_empty() {
        search = format!("search {}\n", net.dns_search.join(" "));
    }
    if ns.is_empty() {
        ns = format!("{NO_NAMESERVER}\n");
    }
    format!("{ns}{search}{rest}")
}

const NO_NAMESERVER: &str = "# no nameserver reachable from the container";

/// The host's resolv.conf as the container may use it (see `render_resolv_conf`).
fn base_resolv_conf(host: &str, fallback: Option<&str>, own_netns: bool) -> String {
    if !own_netns {
        return host.to_string();
    }
    let is_loopback_ns = |l: &str| {
        let mut w = l.split_whitespace();
        w.next() == Some("nameserver")
            && w.next().is_some_and(|a| {
                a.parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false)
            })
    };
    let has_ns = |t: &str| {
        t.lines()
            .any(|l| l.trim_start().starts_with("nameserver") && !is_loopback_ns(l))
    };
    let src = match fallback {
        Some(f) if !has_ns(host) && has_ns(f) => f,
        _ => host,
    };
    let mut out: String = src
        .lines()
        .filter(|l| !is_loopback_ns(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if out.is_empty() {
        out.push_str(&format!("{NO_NAMESERVER}\n"));
    }
    out
}

/// Write the three files into `run_dir`, reading the host's resolv.conf
/// (and, sharing the host's network, its hosts) under `root`.
pub fn write_etc_files(
    run_dir: &Path,
    root: &Path,
    hostname: &str,
    own_netns: bool,
    net: &EtcNetwork,
) -> Result<(), SuperviseError> {
    let host = std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap_or_default();
    let fallback = std::fs::read_to_string(root.join("run/systemd/resolve/resolv.conf")).ok();
    // Sharing the host's network, the container also sees the host's names
    // (Docker does the same for --network host), with `extra_hosts` added.
    let hosts = match own_netns {
        true => render_hosts(hostname, net),
        false => match std::fs::read_to_string(root.join("etc/hosts")) {
            Ok(mut h) => {
                if !h.is_empty() && !h.ends_with('\n') {
                    h.push('\n');
                }
                h.push_str(&render_extra_hosts(&net.extra_hosts));
                h
            }
            Err(_) => render_hosts(hostname, net),
        },
    };
    for (file, text) in [
        ("hostname", render_hostname(hostname)),
        ("hosts", hosts),
        (
            "resolv.conf",
            render_resolv_conf(&host, fallback.as_deref(), own_netns, net),
        ),
    ] {
        let p = run_dir.join(file);
        std::fs::write(&p, text).map_err(|e| SuperviseError::io("write", &p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_names() {
        let none = EtcNetwork::default();
        assert!(render_hosts("web", &none).ends_with("127.0.1.1\tweb\n"));
        assert!(render_hosts("web.example", &none).ends_with("127.0.1.1\tweb.example web\n"));
    }

    #[test]
    fn hosts_on_a_bridge_network() {
        let net = EtcNetwork {
            addresses: vec![ip("10.89.0.20"), ip("fd00:89::20")],
            extra_hosts: vec![
                ("gw".into(), ip("192.0.2.1")),
                ("v6".into(), ip("2001:db8::1")),
            ],
            ..Default::default()
        };
        assert_eq!(
            render_hosts("web", &net),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             192.0.2.1\tgw\n2001:db8::1\tv6\n\
             10.89.0.20\tweb\nfd00:89::20\tweb\n"
        );
    }

    #[test]
    fn host_network_shares_the_hosts_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, run) = (tmp.path().join("root"), tmp.path().join("run"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(root.join("etc/hosts"), "10.0.0.1 db\n").unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.53\n").unwrap();
        let none = EtcNetwork::default();
        write_etc_files(&run, &root, "web", false, &none).unwrap();
        assert_eq!(
            std::fs::read_to_string(run.join("hosts")).unwrap(),
            "10.0.0.1 db\n"
        );
        assert_eq!(
            std::fs::read_to_string(run.join("resolv.conf")).unwrap(),
            "nameserver 127.0.0.53\n"
        );
        // extra_hosts and dns apply with the host's network too (Docker's
        // --add-host and --dns with --network host).
        let keys = EtcNetwork {
            dns: vec![ip("192.0.2.53")],
            extra_hosts: vec![("gw".into(), ip("192.0.2.1"))],
            ..Default::default()
        };
        write_etc_files(&run, &root, "web", false, &keys).unwrap();
        assert_eq!(
            std::fs::read_to_string(run.join("hosts")).unwrap(),
            "10.0.0.1 db\n192.0.2.1\tgw\n"
        );
        assert_eq!(
            std::fs::read_to_string(run.join("resolv.conf")).unwrap(),
            "nameserver 192.0.2.53\n"
        );
        write_etc_files(&run, &root, "web", true, &none).unwrap();
        assert!(std::fs::read_to_string(run.join("hosts"))
            .unwrap()
            .ends_with("127.0.1.1\tweb\n"));
        assert_eq!(
            std::fs::read_to_string(run.join("hostname")).unwrap(),
            "web\n"
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_in_own_netns() {
        let none = EtcNetwork::default();
        let host = "nameserver 127.0.0.53\noptions edns0\nsearch lan\n";
        assert_eq!(render_resolv_conf(host, None, false, &none), host);
        assert_eq!(
            render_resolv_conf(host, None, true, &none),
            "options edns0\nsearch lan\n"
        );
        let upstream = "nameserver 192.0.2.1\n";
        assert_eq!(
            render_resolv_conf(host, Some(upstream), true, &none),
            "nameserver 192.0.2.1\n"
        );
        assert!(render_resolv_conf("", None, true, &none).starts_with('#'));
    }

    #[test]
    fn resolv_conf_on_a_network_that_serves_names() {
        let host = "# host\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let net = EtcNetwork {
            nameserver: Some(ip("10.89.0.1")),
            // The name server forwards to these; the container asks it.
            dns: vec![ip("192.0.2.53")],
            ..Default::default()
        };
        assert_eq!(
            render_resolv_conf(host, None, true, &net),
            "nameserver 10.89.0.1\nsearch lan\n# host\noptions edns0 trust-ad\n"
        );
        let net = EtcNetwork {
            dns_search: vec!["example.org".into(), "corp".into()],
            ..net
        };
        assert_eq!(
            render_resolv_conf(host, None, true, &net),
            "nameserver 10.89.0.1\nsearch example.org corp\n# host\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn resolv_conf_without_a_name_server_uses_dns_else_the_hosts() {
        let host = "nameserver 127.0.0.53\noptions edns0\n";
        let upstream = "nameserver 192.0.2.1\nnameserver 192.0.2.2\n";
        let dns = EtcNetwork {
            dns: vec![ip("192.0.2.53"), ip("2001:db8::53")],
            ..Default::default()
        };
        assert_eq!(
            render_resolv_conf(host, Some(upstream), true, &dns),
            "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
        );
        // No dns: today's behaviour, the stub replaced by its upstreams.
        let none = EtcNetwork::default();
        assert_eq!(
            render_resolv_conf(host, Some(upstream), true, &none),
            upstream
        );
        // Only dns_search: the host's servers, the new search list.
        let search = EtcNetwork {
            dns_search: vec!["example.org".into()],
            ..Default::default()
        };
        assert_eq!(
            render_resolv_conf(host, Some(upstream), true, &search),
            "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch example.org\n"
        );
        // Nothing reachable and no dns: say so, with the search list.
        assert_eq!(
            render_resolv_conf("nameserver 127.0.0.53\n", None, true, &search),
            "# no nameserver reachable from the container\nsearch example.org\n"
        );
    }
}
