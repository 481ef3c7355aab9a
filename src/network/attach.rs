//! A container on its bridge networks: the steps a start takes and the ones
//! a stop (or `berth cleanup` after a crash) takes to undo them.
//!
//! A start, in order: the networks resolved from their files; a lease per
//! network (before the container exists: its /etc/hosts names its address);
//! then, once the container's network namespace exists and before its
//! program runs, under each network's lock the bridge (made on first use),
//! a veth pair per network with the inner end made in the container's
//! namespace as `eth0`, `eth1`, …, its addresses and default route, and
//! one nftables transaction with the network's elements and the
//! container's published ports. Each of these is a `teardown::Resource`
//! recorded before it exists; undoing them is the functions at the end.
//!
//! Costs decide the shape (TESTING.md: netlink calls take microseconds,
//! an nft transaction milliseconds): a start runs nft only when it creates
//! a bridge or publishes a port, so a plain member of a running network
//! costs netlink calls only.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::config::{Addresses, Network};
use super::ipam::{self, IpamError, LeaseInfo};
use super::link::{self, InnerPlan, LinkError, Netlink, VethPlan};
use super::plan::{self, Attachment, Member, PlanError};
use crate::config::{Definition, NetworkDefinition, PortMapping};

/// Why a container could not join its networks, naming it and the network.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("container \"{container}\" ({file}): network \"{network}\" is not defined: add /etc/berth/networks/{network}.toml, or take it out of [network] networks (defined: {known})")]
    Unknown {
        container: String,
        file: PathBuf,
        network: String,
        known: String,
    },
    #[error("network \"{network}\" is broken, so container \"{container}\" cannot join it:\n{diagnostics}")]
    Broken {
        container: String,
        network: String,
        diagnostics: String,
    },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("container \"{container}\" on network \"{network}\": {source}")]
    Link {
        container: String,
        network: String,
        source: LinkError,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("container \"{container}\": {reason}")]
    Rules { container: String, reason: String },
}

/// A container's place on one network, decided before it exists.
#[derive(Debug, Clone)]
pub struct Joined {
    pub network: Network,
    pub addresses: Addresses,
    /// `eth0`, `eth1`, … in the definition's order.
    pub interface: String,
    pub host_veth: String,
}

/// The networks `def` joins, resolved from every networks file (a clash
/// between files shows only with all of them), in the definition's order.
pub fn resolve(
    def: &Definition,
    files: &[NetworkDefinition],
    file_errors: &[(String, crate::config::Diagnostics)],
    default_subnet: &str,
    globals_path: &Path,
) -> Result<Vec<Network>, AttachError> {
    let (nets, diags) = super::config::plan_networks(files, default_subnet, globals_path);
    let mut out = Vec::new();
    for name in &def.network.networks {
        if let Some((_, d)) = file_errors.iter().find(|(n, _)| n == name) {
            return Err(broken(def, name, d.to_string()));
        }
        let file = files.iter().find(|f| &f.name == name);
        let about_it: Vec<String> = diags
            .0
            .iter()
            .filter(|d| {
                file.and_then(|f| f.source_path.as_ref()) == Some(&d.file)
                    || d.key == "[network] default_subnet"
            })
            .map(|d| d.to_string())
            .collect();
        if !about_it.is_empty() {
            return Err(broken(def, name, about_it.join("\n")));
        }
        match nets.iter().find(|n| &n.name == name) {
            Some(n) => out.push(n.clone()),
            None => {
                let known: Vec<&str> = nets.iter().map(|n| n.name.as_str()).collect();
                return Err(AttachError::Unknown {
                    container: def.name.clone(),
                    file: def.source_path.clone(),
                    network: name.clone(),
                    known: known.join(", "),
                });
            }
        }
    }
    Ok(out)
}

fn broken(def: &Definition, network: &str, diagnostics: String) -> AttachError {
    AttachError::Broken {
        container: def.name.clone(),
        network: network.into(),
        diagnostics,
    }
}

/// The container's lease on `net` (its `index`th network), kept from a
/// crashed start of the same container, else the fixed or next free one.
pub fn lease(
    run: &Path,
    net: &Network,
    index: usize,
    (container, info): (&str, &LeaseInfo),
    fixed: Option<IpAddr>,
    alive: &dyn Fn(&str) -> bool,
) -> Result<Joined, AttachError> {
    let addresses = ipam::allocate(run, net, (container, info), fixed, alive)?;
    Ok(Joined {
        network: net.clone(),
        addresses,
        interface: format!("eth{index}"),
        host_veth: link::host_veth_name(container, &net.name),
    })
}

/// The plan's view of a container's networks.
fn member<'a>(container: &'a str, joined: &'a [Joined], publish: &'a [PortMapping]) -> Member<'a> {
    Member {
        container,
        attachments: joined
            .iter()
            .map(|j| Attachment {
                network: &j.network,
                addresses: j.addresses,
            })
            .collect(),
        publish,
    }
}

/// The `nft -f` text that removes the container's own elements (its
/// published ports); `None` when it publishes nothing.
pub fn rules_teardown(
    container: &str,
    joined: &[Joined],
    publish: &[PortMapping],
) -> Result<Option<String>, AttachError> {
    if publish.is_empty() {
        return Ok(None);
    }
    let t = plan::plan_stop(&member(container, joined, publish))?;
    Ok(Some(plan::render_nft(&t)))
}

/// The `nft -f` text that removes a network's elements with its bridge.
pub fn network_teardown(net: &Network) -> String {
    plan::render_nft(&plan::plan_network_teardown(net))
}

/// Once the container's network namespace exists (`netns`: an fd of its
/// `/proc/PID/ns/net`), before its program runs: bridges, veths, addresses,
/// routes and rules.
/// `alive` says whether a container that holds a port still runs (a
/// crashed one's port is taken back). Returns whether it made a bridge:
/// then [`after_first_member`] has housekeeping to do once the program runs.
pub fn attach(
    run: &Path,
    (container, alive): (&str, &dyn Fn(&str) -> bool),
    joined: &[Joined],
    publish: &[PortMapping],
    netns: std::os::fd::BorrowedFd<'_>,
) -> Result<bool, AttachError> {
    let link_err = |j: &Joined| {
        let (container, network) = (container.to_string(), j.network.name.clone());
        move |source| AttachError::Link {
            container,
            network,
            source,
        }
    };
    let host = Netlink::open().map_err(|source| AttachError::Link {
        container: container.into(),
        network: joined
            .first()
            .map(|j| j.network.name.clone())
            .unwrap_or_default(),
        source,
    })?;
    let mut created = false;
    for j in joined {
        let master = {
            let _lock = ipam::lock(&ipam::leases_dir(run, &j.network.name))?;
            let (index, new) = host.ensure_bridge(&j.network).map_err(link_err(j))?;
            if new {
                bridge_sysctls(&j.network).map_err(link_err(j))?;
            }
            created |= new;
            crate::trace::step(match new {
                true => "network: bridge made",
                false => "network: bridge found",
            });
            index
        };
        let v = VethPlan {
            host: &j.host_veth,
            inner: &j.interface,
            master,
            mtu: j.network.mtu,
            mac: link::mac_for(j.addresses.v4),
        };
        if let Err(e) = host.add_veth(&v, netns) {
            // A veth of this container's crashed start whose namespace
            // some process still holds: the name is ours, take it back.
            if !matches!(&e, LinkError::Netlink { source, .. } if source.raw_os_error() == Some(libc::EEXIST))
            {
                return Err(link_err(j)(e));
            }
            host.delete(&j.host_veth).map_err(link_err(j))?;
            host.add_veth(&v, netns).map_err(link_err(j))?;
        }
        crate::trace::step("network: veth");
    }
    drop(host);
    configure_inside(container, joined, netns)?;
    crate::trace::step("network: addresses and routes inside");
    if created {
        // The first member since the bridge went (all stopped, a crash, a
        // reboot): leases dead containers left go now (the name server
        // would answer for them); their ports after the start.
        let gone = |h: &str| h != container && !alive(h);
        for j in joined {
            let _ = ipam::reclaim(run, &j.network.name, &|h| !gone(h));
        }
        crate::trace::step("network: stale leases reclaimed");
    }
    if !created && publish.is_empty() {
        // A plain member of a running network: links only, no rules.
        return Ok(false);
    }
    let m = member(container, joined, publish);
    let full_plan = plan::plan_start(&m)?;
    // Reloading the table's skeleton (its chains flushed and written again)
    // makes the kernel wait 5-15 ms for what the flush destroyed
    // (benches/network-results.md), so a start adds its elements alone,
    // straight to the kernel (`nftnl`): the ports on a running bridge, and
    // a new bridge's elements too. Only when the table or one of its sets
    // is missing (never loaded since boot, or flushed by a firewall
    // reload) does the whole start go through nft.
    let ops = match created {
        true => full_plan.ops.clone(),
        false => plan::plan_published(&m)?
            .into_iter()
            .map(|e| (plan::Verb::Create, e))
            .collect(),
    };
    crate::trace::step("network: rules planned");
    apply_start(container, &ops, &full_plan, alive)?;
    Ok(created)
}

/// After the program of a bridge's first member runs (off the start's
/// critical path: each listing costs ~1.5 ms): ports dead containers left
/// are deleted (one in the way was taken back already), and the host's
/// forward policy is checked. Returns warnings for the journal.
pub fn after_first_member(
    container: &str,
    joined: &[Joined],
    alive: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    sweep_ports(container, alive);
    forward_policy(joined).into_iter().collect()
}

/// A start's transaction: `ops` by netlink, else through nft (which names
/// the holder of a taken port, or says what else is wrong). A port held by
/// a container that no longer runs (its supervisor was killed and no
/// cleanup ran yet) is stale: its element is deleted and the transaction
/// tried again, once per such port. `full` is applied instead when
/// berth's table or one of its sets is missing.
fn apply_start(
    container: &str,
    ops: &[(plan::Verb, plan::Element)],
    full: &plan::Transaction,
    alive: &dyn Fn(&str) -> bool,
) -> Result<(), AttachError> {
    use super::nft::NftError;
    use super::nftnl::ElementsError;
    let rules = |e: NftError| AttachError::Rules {
        container: container.into(),
        reason: e.to_string(),
    };
    // Loaded only if the kernel refuses the elements.
    let nft = super::nft::Session::open();
    let mut taken_back = 0;
    loop {
        let r = match super::nftnl::apply(ops) {
            Ok(()) => Ok(()),
            Err(ElementsError::Missing) => nft.apply(&plan::render_nft(full)),
            Err(_) => {
                let elements = plan::Transaction {
                    base: false,
                    ops: ops.to_vec(),
                };
                match nft.apply(&plan::render_nft(&elements)) {
                    Err(NftError::Rejected(m)) if m.contains("No such file or directory") => {
                        nft.apply(&plan::render_nft(full))
                    }
                    r => r,
                }
            }
        };
        match r {
            Err(NftError::PortTaken {
                holder, map, key, ..
            }) if holder != container && !alive(&holder) && taken_back < 64 => {
                let stale = format!("delete element {} {map} {{ {key} }}", plan::TABLE);
                nft.apply(&stale).map_err(rules)?;
                taken_back += 1;
            }
            r => return r.map_err(rules),
        }
    }
}

/// Published ports whose holder no longer runs (its supervisor was killed
/// and no `berth cleanup` ran). Best effort: what cannot be read now is
/// taken back when it is in the way.
fn sweep_ports(container: &str, alive: &dyn Fn(&str) -> bool) {
    let gone = |h: &str| h != container && !alive(h);
    let mut stale = String::new();
    for map in ["dnat4", "dnat4_host", "dnat6", "dnat6_host"] {
        let Ok(json) = super::nft::map_json(map) else {
            continue;
        };
        for (key, holder) in super::nft::elements_in_map(&json).unwrap_or_default() {
            if gone(&holder) {
                stale.push_str(&format!(
                    "delete element {} {map} {{ {key} }}\n",
                    plan::TABLE
                ));
            }
        }
    }
    if !stale.is_empty() {
        let _ = super::nft::apply(&stale);
    }
}

/// A new bridge: does the host's firewall drop what berth forwards? Said
/// once per bridge made, not at every start (it lists the ruleset).
fn forward_policy(joined: &[Joined]) -> Option<String> {
    let chains = match super::nft::foreign_forward_drops() {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot read the host's forward policy: {e}")),
    };
    let bridges: Vec<String> = joined.iter().map(|j| j.network.bridge.clone()).collect();
    super::nft::forward_policy_warning(&chains, &bridges)
}

/// Inside the container: each interface's addresses, up; the default
/// routes through the first network's gateways.
fn configure_inside(
    container: &str,
    joined: &[Joined],
    netns: std::os::fd::BorrowedFd<'_>,
) -> Result<(), AttachError> {
    let first = joined
        .first()
        .map(|j| j.network.name.clone())
        .unwrap_or_default();
    let inner = Netlink::open_in(netns).map_err(|source| AttachError::Link {
        container: container.into(),
        network: first,
        source,
    })?;
    for (i, j) in joined.iter().enumerate() {
        let n = &j.network;
        let mut addresses = vec![(j.addresses.v4, n.subnet.prefix)];
        if let (Some(v6), Some(s6)) = (j.addresses.v6, n.subnet6) {
            addresses.push((v6, s6.prefix));
        }
        let plan = InnerPlan {
            ifname: &j.interface,
            addresses,
            gateway4: match (i, n.gateway) {
                (0, IpAddr::V4(g)) => Some(g),
                _ => None,
            },
            gateway6: match (i, n.gateway6) {
                (0, Some(IpAddr::V6(g))) => Some(g),
                _ => None,
            },
        };
        inner
            .configure_inner(&plan)
            .map_err(|source| AttachError::Link {
                container: container.into(),
                network: n.name.clone(),
                source,
            })?;
    }
    Ok(())
}

/// What a new bridge needs of the host: forwarding (the way out and in),
/// and `route_localnet` on the bridge, so a port published on 127.0.0.1
/// can be DNATed to a member (Docker sets it when its userland proxy is
/// off: `daemon/libnetwork/drivers/bridge/setup_ip_tables_linux.go`).
fn bridge_sysctls(net: &Network) -> Result<(), LinkError> {
    link::ensure_sysctl("net/ipv4/ip_forward", "1")?;
    link::ensure_sysctl(&format!("net/ipv4/conf/{}/route_localnet", net.bridge), "1")?;
    if net.subnet6.is_some() {
        link::ensure_sysctl("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}

/// Undo: the container's rules — only the elements it holds (their
/// comment names it). A start that failed because another container holds
/// a port recorded that port too: deleting it by key alone would take the
/// other container's port away. An element already gone (a table flushed
/// by a firewall reload) is nothing to do.
pub fn remove_rules(container: &str, script: &str) -> Result<(), String> {
    let mut listed: Vec<(String, Option<String>)> = Vec::new();
    let mut mine = String::new();
    for line in script.lines() {
        let Some((map, key)) = parse_delete(line) else {
            continue;
        };
        let json = match listed.iter().find(|(m, _)| *m == map) {
            Some((_, j)) => j.clone(),
            None => {
                let j = super::nft::map_json(&map).ok();
                listed.push((map.clone(), j.clone()));
                j
            }
        };
        let holder = json.and_then(|j| super::nft::holder_in_map(&j, &key).ok().flatten());
        if holder.as_deref() == Some(container) {
            mine.push_str(line);
            mine.push('\n');
        }
    }
    if mine.is_empty() {
        return Ok(());
    }
    super::nft::apply(&mine).map_err(|e| e.to_string())
}

/// Undo: a network's elements (its subnets and bridge in the sets), which
/// only berth's networks own. One already gone fails a whole transaction,
/// so then each line is tried alone.
fn remove_network_elements(script: &str) -> Result<(), String> {
    if super::nft::apply(script).is_ok() {
        return Ok(());
    }
    let mut errors = Vec::new();
    for line in script.lines().filter(|l| !l.trim().is_empty()) {
        if let Err(e) = super::nft::apply(line) {
            let text = e.to_string();
            if !text.contains("No such file or directory") {
                errors.push(text);
            }
        }
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}

/// `delete element inet berth MAP { KEY }` → (MAP, KEY).
fn parse_delete(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix(&format!("delete element {} ", plan::TABLE))?;
    let (map, rest) = rest.split_once(" { ")?;
    let key = rest.strip_suffix(" }")?;
    Some((map.to_string(), key.trim().to_string()))
}

/// Undo: a veth pair, by its host end; one already gone (its namespace
/// died with the container) is fine.
pub fn remove_veth(name: &str) -> Result<(), LinkError> {
    Netlink::open()?.delete(name).map(|_| ())
}

/// Undo: a network's bridge and its elements, once no member holds a
/// lease on it (under the lock a start takes to use the bridge).
pub fn remove_bridge_if_unused(
    run: &Path,
    net_name: &str,
    bridge: &str,
    script: &str,
) -> Result<bool, String> {
    let dir = ipam::leases_dir(run, net_name);
    let _lock = ipam::lock(&dir).map_err(|e| e.to_string())?;
    if !ipam::read_leases(&dir)
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Ok(false);
    }
    let host = Netlink::open().map_err(|e| e.to_string())?;
    let removed = host.delete(bridge).map_err(|e| e.to_string())?;
    drop(host);
    remove_network_elements(script)?;
    Ok(removed)
}

/// The fd of a process's network namespace.
pub fn netns_of(pid: i32) -> Result<std::os::fd::OwnedFd, LinkError> {
    link::open_netns(Path::new(&format!("/proc/{pid}/ns/net")))
}
