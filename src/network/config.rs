//! The networks as the rest of `network` uses them: every network file that
//! `crate::config` validated one by one, resolved together. A network without
//! `subnet` (the built-in `default` first) gets the next free /24 carved from
//! berth.toml's `[network] default_subnet`, as Podman's `default_subnet_pools`
//! do; subnets that two files claim are refused here, with file:line:column.
//!
//! Pure: no files, no syscalls (the files are read by `crate::config::load`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::values::{parse_subnet, Subnet};
use crate::config::{Diagnostic, Diagnostics, NetworkDefinition};

/// The name of the network that exists without a file.
pub const DEFAULT_NETWORK: &str = crate::config::defaults::NETWORK;
/// The bridge of `default`.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The prefix of a subnet carved from `default_subnet`.
pub const CARVED_PREFIX: u8 = 24;

/// A network resolved: every range and name the apply layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// The file it came from; `None` for `default` without one.
    pub source_path: Option<PathBuf>,
    /// The bridge's interface name (at most 15 bytes, IFNAMSIZ - 1).
    pub bridge: String,
    pub subnet: Subnet,
    /// The bridge's address and the members' default route.
    pub gateway: IpAddr,
    pub subnet6: Option<Subnet>,
    /// The first host of `subnet6`.
    pub gateway6: Option<IpAddr>,
    pub internal: bool,
    pub mtu: Option<u32>,
    pub dns: bool,
}

impl Network {
    /// Whether `ip` may be leased to a member: a host address of one of the
    /// subnets that is not a gateway.
    pub fn can_lease(&self, ip: IpAddr) -> bool {
        let in4 = self.subnet.is_host(ip) && ip != self.gateway;
        let in6 = self
            .subnet6
            .is_some_and(|s| s.is_host(ip) && Some(ip) != self.gateway6);
        in4 || in6
    }
}

/// The addresses of a container on one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub v4: IpAddr,
    /// Set when the network has `subnet6`.
    pub v6: Option<IpAddr>,
}

/// The bridge name of network `name`: `berth0` for `default`, `berth-NAME`
/// when that fits in IFNAMSIZ, else `bh-` and 12 hex digits of the name's
/// sha256 (a short name never starts with `bh-`, so the two never meet).
pub fn bridge_name(name: &str) -> String {
    if name == DEFAULT_NETWORK {
        return DEFAULT_BRIDGE.to_string();
    }
    let short = format!("berth-{name}");
    if short.len() <= 15 {
        return short;
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!("bh-{}", &digest[..12])
}

/// Resolve every network. `defs` are the networks `crate::config` loaded
/// (`default` among them); `default_subnet` is berth.toml's value, and
/// `globals_path` the file it is reported against. Returns the networks that
/// resolved, by name, and a diagnostic per problem (a network with one is
/// left out; the others still resolve).
pub fn plan_networks(
    defs: &[NetworkDefinition],
    default_subnet: &str,
    globals_path: &Path,
) -> (Vec<Network>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let pool = match parse_pool(default_subnet) {
        Ok(p) => Some(p),
        Err(e) => {
            diags.push(Diagnostic::file(
                globals_path,
                "[network] default_subnet",
                e,
            ));
            None
        }
    };
    let mut defs: Vec<&NetworkDefinition> = defs.iter().collect();
    // `default` carves first, so it keeps the first range whatever other
    // networks are added later.
    defs.sort_by_key(|d| (d.name != DEFAULT_NETWORK, d.name.clone()));
    let mut bad = overlaps(&defs, &mut diags);
    // Every explicit range is taken before anything is carved.
    let mut taken: Vec<Subnet> = defs
        .iter()
        .filter(|d| !bad.contains(&d.name))
        .flat_map(|d| d.subnet.iter().chain(d.subnet6.iter()).copied())
        .collect();
    let mut out = Vec::new();
    for d in defs {
        if bad.contains(&d.name) {
            continue;
        }
        let subnet = match (d.subnet, pool) {
            (Some(s), _) => s,
            (None, None) => continue,
            (None, Some(pool)) => match carve(pool, &taken) {
                Some(s) => {
                    taken.push(s);
                    s
                }
                None => {
                    let (file, fix) = match &d.source_path {
                        Some(p) => (
                            p.as_path(),
                            format!("set subnet = \"…\" in {}", p.display()),
                        ),
                        None => (globals_path, "widen [network] default_subnet".to_string()),
                    };
                    diags.push(Diagnostic::file(
                        file,
                        "subnet",
                        format!(
                            "network \"{}\": no free /{CARVED_PREFIX} left in default_subnet {pool}: {fix}",
                            d.name
                        ),
                    ));
                    bad.insert(d.name.clone());
                    continue;
                }
            },
        };
        // Validation guarantees a subnet with room for a gateway and a member.
        let Some(gateway) = d.gateway.or_else(|| subnet.nth_host(1)) else {
            continue;
        };
        out.push(Network {
            name: d.name.clone(),
            source_path: d.source_path.clone(),
            bridge: bridge_name(&d.name),
            subnet,
            gateway,
            subnet6: d.subnet6,
            gateway6: d.subnet6.and_then(|s| s.nth_host(1)),
            internal: d.internal,
            mtu: d.mtu,
            dns: d.dns,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    diags.sort();
    (out, diags)
}

/// `default_subnet`: an IPv4 prefix with no host bits, room for a /24 or
/// itself small enough to be one network.
fn parse_pool(text: &str) -> Result<Subnet, String> {
    let s = parse_subnet(text)?;
    if !s.addr.is_ipv4() {
        return Err(format!(
            "\"{text}\" is IPv6: expected an IPv4 prefix such as \"10.89.0.0/16\" (IPv6 ranges are per network, subnet6)"
        ));
    }
    if s.network() != s {
        return Err(format!(
            "host bits set in \"{text}\": expected \"{}\"",
            s.network()
        ));
    }
    if s.nth_host(2).is_none() {
        return Err(format!(
            "\"{text}\" has no room for a gateway and a member: expected a prefix of at most /30"
        ));
    }
    Ok(s)
}

/// The first /24 (or the pool itself, when it is smaller) that overlaps
/// nothing taken.
fn carve(pool: Subnet, taken: &[Subnet]) -> Option<Subnet> {
    let prefix = pool.prefix.max(CARVED_PREFIX);
    (0u128..)
        .map_while(|i| pool.carve(prefix, i))
        .find(|c| !taken.iter().any(|t| t.overlaps(c)))
}

/// Report each explicit range that overlaps one of a network before it (in
/// name order), at the later one's key; returns the networks refused.
fn overlaps(defs: &[&NetworkDefinition], diags: &mut Diagnostics) -> BTreeSet<String> {
    let mut bad = BTreeSet::new();
    for (i, d) in defs.iter().enumerate() {
        for (s, at, key) in ranges(d) {
            let clash = defs[..i]
                .iter()
                .filter(|e| !bad.contains(&e.name))
                .find_map(|e| {
                    ranges(e)
                        .into_iter()
                        .find(|(t, _, _)| t.overlaps(&s))
                        .map(|(t, t_at, _)| (e, t, t_at))
                });
            let Some((other, t, t_at)) = clash else {
                continue;
            };
            let where_ = match (&other.source_path, t_at) {
                (Some(p), Some((l, c))) => format!(" ({}:{l}:{c})", p.display()),
                (Some(p), None) => format!(" ({})", p.display()),
                (None, _) => String::new(),
            };
            let file = d.source_path.clone().unwrap_or_default();
            let (line, column) = at.unwrap_or((0, 0));
            diags.push(Diagnostic {
                file,
                line,
                column,
                key: key.to_string(),
                message: format!(
                    "{s} overlaps {t} of network \"{}\"{where_}: expected a range no other network uses",
                    other.name
                ),
            });
            bad.insert(d.name.clone());
        }
    }
    bad
}

/// A network's explicit ranges: (range, its (line, column), its key).
type Range = (Subnet, Option<(usize, usize)>, &'static str);

fn ranges(d: &NetworkDefinition) -> Vec<Range> {
    [
        (d.subnet, d.subnet_at, "subnet"),
        (d.subnet6, d.subnet6_at, "subnet6"),
    ]
    .into_iter()
    .filter_map(|(s, at, key)| s.map(|s| (s, at, key)))
    .collect()
}

/// Each definition's fixed `ip` against the network it names, now that the
/// subnets are resolved (a carved one is known only here): a host address of
/// that network's subnet (or subnet6) that is not its gateway, and no
/// address fixed by two containers. Reported at the `ip` value, file:line:col.
/// A network that did not resolve has its own error already and is skipped.
pub fn check_fixed_ips(defs: &[crate::config::Definition], nets: &[Network]) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut owners: std::collections::BTreeMap<(&str, IpAddr), &str> = Default::default();
    for d in defs {
        for (net_name, &ip) in &d.network.ip {
            let Some(net) = nets.iter().find(|n| &n.name == net_name) else {
                continue;
            };
            let (file, line, column) = d
                .network
                .ip_at
                .get(net_name)
                .cloned()
                .unwrap_or_else(|| (d.source_path.clone(), 0, 0));
            let mut at = |message: String| {
                diags.push(Diagnostic {
                    file: file.clone(),
                    line,
                    column,
                    key: "[network] ip".into(),
                    message,
                })
            };
            if !net.can_lease(ip) {
                let ranges = match net.subnet6 {
                    Some(s6) => format!("{} or {s6}", net.subnet),
                    None => net.subnet.to_string(),
                };
                let why = match ip == net.gateway || Some(ip) == net.gateway6 {
                    true => "is the gateway of",
                    false => "is not a host address in",
                };
                at(format!(
                    "{ip} {why} network \"{net_name}\" ({ranges}): expected a free host address of that range"
                ));
            } else if let Some(other) = owners.insert((net_name.as_str(), ip), d.name.as_str()) {
                at(format!(
                    "{ip} on network \"{net_name}\" is also the fixed address of container \"{other}\": expected an address no other container fixes"
                ));
            }
        }
    }
    diags.sort();
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, subnet: Option<&str>) -> NetworkDefinition {
        NetworkDefinition {
            name: name.into(),
            source_path: Some(PathBuf::from(format!("/etc/berth/networks/{name}.toml"))),
            subnet: subnet.map(|s| parse_subnet(s).unwrap()),
            gateway: None,
            subnet6: None,
            internal: false,
            mtu: None,
            dns: true,
            subnet_at: subnet.map(|_| (1, 10)),
            subnet6_at: None,
        }
    }

    fn builtin() -> NetworkDefinition {
        NetworkDefinition {
            source_path: None,
            subnet_at: None,
            ..def(DEFAULT_NETWORK, None)
        }
    }

    #[test]
    fn default_takes_the_first_24_and_others_carve_around_explicit_ones() {
        let defs = [def("app", None), def("db", Some("10.89.1.0/24")), builtin()];
        let (nets, diags) = plan_networks(&defs, "10.89.0.0/16", Path::new("/b.toml"));
        assert!(diags.is_empty(), "{diags}");
        let got: Vec<_> = nets
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.bridge.as_str(),
                    n.subnet.to_string(),
                    n.gateway.to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "app",
                    "berth-app",
                    "10.89.2.0/24".to_string(),
                    "10.89.2.1".to_string()
                ),
                (
                    "db",
                    "berth-db",
                    "10.89.1.0/24".to_string(),
                    "10.89.1.1".to_string()
                ),
                (
                    "default",
                    "berth0",
                    "10.89.0.0/24".to_string(),
                    "10.89.0.1".to_string()
                ),
            ]
        );
    }

    #[test]
    fn overlapping_subnets_name_both_files() {
        let defs = [
            builtin(),
            def("a", Some("10.90.0.0/16")),
            def("b", Some("10.90.3.0/24")),
        ];
        let (nets, diags) = plan_networks(&defs, "10.89.0.0/16", Path::new("/b.toml"));
        assert_eq!(
            diags.to_string(),
            "error: /etc/berth/networks/b.toml:1:10: subnet: 10.90.3.0/24 overlaps 10.90.0.0/16 of network \"a\" (/etc/berth/networks/a.toml:1:10): expected a range no other network uses"
        );
        let names: Vec<_> = nets.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["a", "default"]);
    }

    #[test]
    fn a_full_pool_and_a_bad_pool_are_errors() {
        let defs = [builtin(), def("x", None)];
        let (nets, diags) = plan_networks(&defs, "10.89.0.0/24", Path::new("/b.toml"));
        assert_eq!(nets.len(), 1);
        assert!(
            diags.to_string().starts_with("error: /etc/berth/networks/x.toml: subnet: network \"x\": no free /24 left in default_subnet 10.89.0.0/24"),
            "{diags}"
        );
        let (nets, diags) = plan_networks(&defs, "10.89.0.1/16", Path::new("/b.toml"));
        assert!(nets.is_empty());
        assert_eq!(
            diags.to_string(),
            "error: /b.toml: [network] default_subnet: host bits set in \"10.89.0.1/16\": expected \"10.89.0.0/16\""
        );
    }

    #[test]
    fn bridge_names_fit_ifnamsiz() {
        assert_eq!(bridge_name("default"), "berth0");
        assert_eq!(bridge_name("abcdefghi"), "berth-abcdefghi");
        let long = bridge_name("abcdefghij");
        assert!(long.starts_with("bh-") && long.len() == 15, "{long}");
        assert_ne!(long, bridge_name("abcdefghik"));
    }
}
