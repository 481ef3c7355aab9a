//! The links of bridge networks, by rtnetlink in this process (no `ip`
//! spawned): a network's bridge with its gateway addresses, a container's
//! veth pair with the inner end created straight in the container's network
//! namespace as `eth0`, `eth1`, …, its addresses and default routes, and
//! the sysctls forwarding needs.
//!
//! Netlink calls run on a current-thread tokio runtime made per [`Netlink`]
//! and dropped with it: no thread outlives a call, so the supervisor stays
//! single-threaded for the clones that follow (health checks, `exec`).
//! A socket belongs to the network namespace it was created in, so one for
//! the container's namespace is created after `setns` into it and the
//! calling thread goes straight back (netavark's `core_utils::open_netlink
//! _sockets` does the same).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressFlags;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::config::Network;

/// Why a link could not be made, changed or removed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{op}: {source}")]
    Netlink { op: String, source: std::io::Error },
    #[error("{op}: {source}")]
    Io { op: String, source: std::io::Error },
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    move |e| LinkError::Netlink {
        op: op.into(),
        source: to_io(e),
    }
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> LinkError {
    move |source| LinkError::Io {
        op: op.into(),
        source,
    }
}

/// The kernel's errno of a netlink error, as an io::Error (`File exists`,
/// `No such device`) a user recognises.
fn to_io(e: rtnetlink::Error) -> std::io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    }
}

fn errno_of(e: &LinkError) -> Option<i32> {
    match e {
        LinkError::Netlink { source, .. } | LinkError::Io { source, .. } => source.raw_os_error(),
    }
}

/// One rtnetlink connection, in the namespace it was opened in.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

impl Netlink {
    /// A connection in the caller's network namespace.
    pub fn open() -> Result<Netlink, LinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(io("start a netlink runtime"))?;
        let (conn, handle, _) = {
            let _in_rt = rt.enter();
            rtnetlink::new_connection().map_err(io("open a netlink socket"))?
        };
        rt.spawn(conn);
        Ok(Netlink { rt, handle })
    }

    /// A connection in the network namespace `netns` (an fd of
    /// `/proc/PID/ns/net`); the calling thread is back in its own one when
    /// this returns, whatever happened.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Netlink, LinkError> {
        let own = open_netns(Path::new("/proc/thread-self/ns/net"))?;
        setns(netns, "enter the container's network namespace")?;
        let opened = Netlink::open();
        // Going back cannot be skipped: the thread would stay in the
        // container's namespace and every later host step would act there.
        if let Err(e) = setns(own.as_fd(), "return to the host's network namespace") {
            // Ending here is the only safe outcome: nothing more may run in
            // the wrong namespace (ExecStopPost cleans up after us).
            eprintln!("berth: {e}");
            std::process::abort();
        }
        opened
    }

    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// The index of link `name`, `None` when there is none.
    pub fn index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let found = self.run(async {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            links.try_next().await
        });
        match found {
            Ok(m) => Ok(m.map(|m| m.header.index)),
            Err(e) => {
                let e = nl(format!("look up link '{name}'"))(e);
                match errno_of(&e) {
                    Some(libc::ENODEV) => Ok(None),
                    _ => Err(e),
                }
            }
        }
    }

    /// The bridge of `net`, up, with its gateway addresses and MTU; creates
    /// it when missing. Returns (its index, whether this call created it).
    pub fn ensure_bridge(&self, net: &Network) -> Result<(u32, bool), LinkError> {
        if let Some(index) = self.index(&net.bridge)? {
            return Ok((index, false));
        }
        let mut msg = LinkBridge::new(&net.bridge);
        // A bridge without an address of its own takes the lowest of its
        // ports', so it changes as members come and go, and members keep
        // sending to the gateway's old MAC from their neighbour cache: the
        // gateway (name server, way out) goes silent for them. Docker and
        // netavark fix the bridge's MAC for the same reason.
        if let Some(mac) = mac_for(net.gateway) {
            msg = msg.address(mac.to_vec());
        }
        if let Some(mtu) = net.mtu {
            msg = msg.mtu(mtu);
        }
        let op = format!("create bridge '{}' of network \"{}\"", net.bridge, net.name);
        self.run(self.handle.link().add(msg.build()).execute())
            .map_err(nl(op.clone()))?;
        let index = self.index(&net.bridge)?.ok_or_else(|| LinkError::Io {
            op,
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })?;
        self.add_address(index, net.gateway, net.subnet.prefix, &net.bridge)?;
        if let (Some(gw6), Some(s6)) = (net.gateway6, net.subnet6) {
            self.add_address(index, gw6, s6.prefix, &net.bridge)?;
        }
        Ok((index, true))
    }

    /// Remove link `name` (a veth takes its peer with it); a missing one is
    /// fine. Returns whether there was one.
    pub fn delete(&self, name: &str) -> Result<bool, LinkError> {
        let Some(index) = self.index(name)? else {
            return Ok(false);
        };
        match self.run(self.handle.link().del(index).execute()) {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = nl(format!("remove link '{name}'"))(e);
                match errno_of(&e) {
                    Some(libc::ENODEV) => Ok(false),
                    _ => Err(e),
                }
            }
        }
    }

    /// A veth pair: `host` on the bridge `master`, up; its peer created
    /// directly in the namespace `netns` as `inner`, so no other process of
    /// the host ever sees it under a name a container chose.
    pub fn add_veth(&self, v: &VethPlan<'_>, netns: BorrowedFd<'_>) -> Result<(), LinkError> {
        let mut peer = LinkUnspec::new_with_name(v.inner).setns_by_fd(netns.as_raw_fd());
        if let Some(mac) = v.mac {
            peer = peer.address(mac.to_vec());
        }
        let mut host = LinkVeth::new(v.host, v.inner).controller(v.master).up();
        if let Some(mtu) = v.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        let msg = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        let op = format!("create veth '{}' for {}", v.host, v.inner);
        self.run(self.handle.link().add(msg).execute())
            .map_err(nl(op))
    }

    /// Inside the container: `ifname` up with its addresses, and the
    /// default routes through the gateways given.
    pub fn configure_inner(&self, c: &InnerPlan<'_>) -> Result<(), LinkError> {
        let index = self.index(c.ifname)?.ok_or_else(|| LinkError::Io {
            op: format!("find '{}' in the container", c.ifname),
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })?;
        for (addr, prefix) in &c.addresses {
            self.add_address(index, *addr, *prefix, c.ifname)?;
        }
        let up = LinkUnspec::new_with_index(index).up().build();
        self.run(self.handle.link().set(up).execute())
            .map_err(nl(format!("set '{}' up", c.ifname)))?;
        if let Some(gw) = c.gateway4 {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .output_interface(index)
                .gateway(gw)
                .build();
            self.run(self.handle.route().add(route).execute())
                .map_err(nl(format!("add the default route via {gw}")))?;
        }
        if let Some(gw) = c.gateway6 {
            let route = RouteMessageBuilder::<Ipv6Addr>::new()
                .output_interface(index)
                .gateway(gw)
                .build();
            self.run(self.handle.route().add(route).execute())
                .map_err(nl(format!("add the IPv6 default route via {gw}")))?;
        }
        Ok(())
    }

    /// An address on link `index`; IPv6 ones without duplicate address
    /// detection, which would hold them "tentative" (unusable) for a
    /// second after a start — the lease already makes them unique.
    fn add_address(&self, index: u32, addr: IpAddr, prefix: u8, on: &str) -> Result<(), LinkError> {
        let mut req = self.handle.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            use rtnetlink::packet_route::address::AddressAttribute;
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.run(req.execute())
            .map_err(nl(format!("add address {addr}/{prefix} to '{on}'")))
    }
}

/// A veth pair to create.
#[derive(Debug, Clone, Copy)]
pub struct VethPlan<'a> {
    pub host: &'a str,
    pub inner: &'a str,
    pub master: u32,
    pub mtu: Option<u32>,
    /// The inner end's MAC address ([`mac_for`]).
    pub mac: Option<[u8; 6]>,
}

/// The MAC address of a member with IPv4 address `ip`: 02:42 (locally
/// administered) and the address's four bytes, as Docker does. An address
/// handed to another container keeps its MAC, so peers' neighbour caches
/// stay right when a container restarts elsewhere and another takes its
/// address — with random MACs they would send to the old one until the
/// entry goes stale (seconds to minutes).
pub fn mac_for(ip: IpAddr) -> Option<[u8; 6]> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some([0x02, 0x42, o[0], o[1], o[2], o[3]])
        }
        IpAddr::V6(_) => None,
    }
}

/// The inner end's configuration.
#[derive(Debug, Clone, Default)]
pub struct InnerPlan<'a> {
    pub ifname: &'a str,
    pub addresses: Vec<(IpAddr, u8)>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
}

/// An fd of a network namespace file (`/proc/PID/ns/net`).
pub fn open_netns(path: &Path) -> Result<OwnedFd, LinkError> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(io(format!("open '{}'", path.display())))
}

fn setns(fd: BorrowedFd<'_>, op: &str) -> Result<(), LinkError> {
    nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| LinkError::Io {
        op: op.into(),
        source: std::io::Error::from(e),
    })
}

/// Write `value` to the sysctl file `path` under /proc/sys unless it
/// already holds it (a write to `ip_forward` resets other settings on some
/// kernels; an unneeded one is skipped).
pub fn ensure_sysctl(path: &str, value: &str) -> Result<(), LinkError> {
    let full = Path::new("/proc/sys").join(path);
    if std::fs::read_to_string(&full).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&full, value).map_err(io(format!("set {} to {value}", full.display())))
}

/// The host's half of a container's place on a network: deterministic, so
/// that `berth cleanup` and the next start find a crashed start's veth by
/// name alone. `bv` and 12 hex digits of sha256(container, network), within
/// IFNAMSIZ; berth's bridges start with `berth` or `bh-`, never `bv`.
pub fn host_veth_name(container: &str, network: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(container.as_bytes());
    h.update([0]);
    h.update(network.as_bytes());
    format!("bv{}", &hex::encode(h.finalize())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_mac_follows_its_ipv4_address() {
        let mac = mac_for("10.89.7.2".parse().unwrap()).unwrap();
        assert_eq!(mac, [0x02, 0x42, 10, 89, 7, 2]);
        // Locally administered, unicast.
        assert_eq!(mac[0] & 0b11, 0b10);
        assert_eq!(mac_for("fd00::2".parse().unwrap()), None);
    }

    #[test]
    fn host_veth_names_fit_and_differ() {
        let a = host_veth_name("web", "default");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("bv"));
        assert_ne!(a, host_veth_name("web", "app"));
        assert_ne!(a, host_veth_name("webd", "efault"));
        assert_eq!(a, host_veth_name("web", "default"));
    }
}
