//! `berth network ls|inspect`: the networks of `/etc/berth/networks/` (and
//! the built-in `default`) as `network::config` resolves them (carved subnets
//! included), whether each bridge exists now, and the containers on each as
//! their lease files (`/run/berth/leases/NETWORK/ADDRESS`) record them.
//! Everything is read under the root prefix, `/sys/class/net` included.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::network::config::Network;

/// Show bridge networks: subnets, bridges and members
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  berth network ls\n  berth network inspect default app")]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List networks: bridge, subnets, gateway, whether internal and
    /// serving names, and how many containers are on each
    Ls,
    /// Show networks as JSON, with their members and addresses
    Inspect {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

/// A container on a network, from its lease files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// A network as these commands show it.
#[derive(Debug, Clone)]
pub struct View {
    pub network: Network,
    pub bridge_exists: bool,
    pub members: Vec<Member>,
}

/// Group leases (address → lease file text) by container. The text is the
/// container's name on line 1, then optional lines such as `aliases A B`;
/// lines not known here are ignored (COMMON.md's lease format).
pub fn members_from_leases(leases: &BTreeMap<IpAddr, String>) -> Vec<Member> {
    let mut by_name: BTreeMap<String, Member> = BTreeMap::new();
    for (ip, text) in leases {
        let name = crate::network::ipam::holder_of(text);
        if name.is_empty() {
            continue;
        }
        let m = by_name.entry(name.to_string()).or_insert_with(|| Member {
            name: name.to_string(),
            ..Member::default()
        });
        m.addresses.push(*ip);
        for l in text.lines().skip(1) {
            let mut words = l.split_whitespace();
            if words.next() == Some("aliases") {
                for a in words {
                    if !m.aliases.iter().any(|x| x == a) {
                        m.aliases.push(a.to_string());
                    }
                }
            }
        }
    }
    for m in by_name.values_mut() {
        // IPv4 first, as `ip addr` and `berth ps` list them.
        m.addresses.sort_by_key(|a| (a.is_ipv6(), *a));
    }
    by_name.into_values().collect()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn subnets(n: &Network) -> String {
    match n.subnet6 {
        Some(s6) => format!("{},{s6}", n.subnet),
        None => n.subnet.to_string(),
    }
}

/// The table of `berth network ls`.
pub fn render_ls(views: &[View]) -> String {
    let rows: Vec<[String; 7]> = views
        .iter()
        .map(|v| {
            let n = &v.network;
            [
                n.name.clone(),
                n.bridge.clone(),
                subnets(n),
                n.gateway.to_string(),
                yes_no(n.internal).into(),
                yes_no(n.dns).into(),
                v.members.len().to_string(),
            ]
        })
        .collect();
    let header = [
        "NAME", "BRIDGE", "SUBNETS", "GATEWAY", "INTERNAL", "DNS", "MEMBERS",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        l.push('\n');
        l
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// One network of `berth network inspect`.
pub fn inspect_json(v: &View) -> serde_json::Value {
    let n = &v.network;
    serde_json::json!({
        "name": n.name,
        "source_path": n.source_path,
        "driver": "bridge",
        "bridge": n.bridge,
        "bridge_exists": v.bridge_exists,
        "subnet": n.subnet.to_string(),
        "gateway": n.gateway,
        "subnet6": n.subnet6.map(|s| s.to_string()),
        "gateway6": n.gateway6,
        "internal": n.internal,
        "mtu": n.mtu,
        "dns": n.dns,
        "members": v.members,
    })
}

/// Each lease file in `dir`: address → its whole text (`ipam::read_leases`
/// keeps only the holder; the aliases are shown too). Read without the
/// lock: a lease being written shows at worst without its holder.
fn lease_texts(dir: &Path) -> anyhow::Result<BTreeMap<IpAddr, String>> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        out.insert(
            ip,
            std::fs::read_to_string(entry.path()).unwrap_or_default(),
        );
    }
    Ok(out)
}

/// Every network that resolves, with its bridge and members; each problem
/// is a warning (`berth check` reports them as errors).
fn gather(root: &Path) -> anyhow::Result<Vec<View>> {
    let globals = crate::config::load_globals(root)?;
    let (defs, errors) = crate::config::load_all_networks(root);
    for (name, diags) in &errors {
        for d in diags.iter() {
            eprintln!("berth: warning: network \"{name}\": {d}, skipping");
        }
    }
    let path = root.join(crate::config::global::GLOBAL_FILE);
    let (nets, diags) =
        crate::network::config::plan_networks(&defs, &globals.default_subnet, &path);
    for d in diags.iter() {
        eprintln!("berth: warning: {d}, skipping");
    }
    let run = crate::supervise::run_root(root);
    let mut out = Vec::new();
    for network in nets {
        let dir = crate::network::ipam::leases_dir(&run, &network.name);
        let leases = lease_texts(&dir)?;
        let bridge_exists = root.join("sys/class/net").join(&network.bridge).exists();
        out.push(View {
            members: members_from_leases(&leases),
            bridge_exists,
            network,
        });
    }
    Ok(out)
}

pub fn run(root: &Path, args: NetworkArgs) -> anyhow::Result<ExitCode> {
    let views = gather(root)?;
    match args.command {
        NetworkCommand::Ls => print!("{}", render_ls(&views)),
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            for name in &names {
                let Some(v) = views.iter().find(|v| &v.network.name == name) else {
                    let known: Vec<&str> = views.iter().map(|v| v.network.name.as_str()).collect();
                    anyhow::bail!(
                        "no network \"{name}\": the networks are {} (define one in /etc/berth/networks/{name}.toml)",
                        known.join(", ")
                    );
                };
                out.push(inspect_json(v));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::parse_subnet;

    fn net(name: &str, subnet: &str, subnet6: Option<&str>) -> Network {
        let s = parse_subnet(subnet).unwrap();
        let s6 = subnet6.map(|s| parse_subnet(s).unwrap());
        Network {
            name: name.into(),
            source_path: None,
            bridge: crate::network::config::bridge_name(name),
            subnet: s,
            gateway: s.nth_host(1).unwrap(),
            subnet6: s6,
            gateway6: s6.and_then(|s| s.nth_host(1)),
            internal: name == "app",
            mtu: None,
            dns: true,
        }
    }

    #[test]
    fn leases_group_by_container_and_unknown_lines_are_ignored() {
        let leases: BTreeMap<IpAddr, String> = [
            (
                "10.89.0.3",
                "web\naliases www api\ndns 192.0.2.53\nfuture x\n",
            ),
            ("fd00::3", "web\n"),
            ("10.89.0.2", "db\n"),
            ("10.89.0.9", ""),
        ]
        .into_iter()
        .map(|(ip, t)| (ip.parse().unwrap(), t.to_string()))
        .collect();
        let m = members_from_leases(&leases);
        assert_eq!(
            m,
            vec![
                Member {
                    name: "db".into(),
                    addresses: vec!["10.89.0.2".parse().unwrap()],
                    aliases: vec![],
                },
                Member {
                    name: "web".into(),
                    addresses: vec!["10.89.0.3".parse().unwrap(), "fd00::3".parse().unwrap()],
                    aliases: vec!["www".into(), "api".into()],
                },
            ]
        );
    }

    #[test]
    fn ls_lists_subnets_and_member_counts() {
        let views = [
            View {
                network: net("app", "10.89.1.0/24", Some("fd00:89:1::/64")),
                bridge_exists: true,
                members: vec![Member::default(), Member::default()],
            },
            View {
                network: net("default", "10.89.0.0/24", None),
                bridge_exists: false,
                members: vec![],
            },
        ];
        assert_eq!(
            render_ls(&views),
            "NAME     BRIDGE     SUBNETS                      GATEWAY    INTERNAL  DNS  MEMBERS\n\
             app      berth-app  10.89.1.0/24,fd00:89:1::/64  10.89.1.1  yes       yes  2\n\
             default  berth0     10.89.0.0/24                 10.89.0.1  no        yes  0\n"
        );
        let j = inspect_json(&views[0]);
        assert_eq!(j["subnet6"], "fd00:89:1::/64");
        assert_eq!(j["gateway6"], "fd00:89:1::1");
        assert_eq!(j["bridge_exists"], true);
    }
}
