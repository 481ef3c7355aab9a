//! The socket loop of `berth dns`: one UDP socket and one TCP listener on
//! port 53 of each gateway address of each network with `dns = true`, one
//! poll loop over them, the queries forwarded upstream and still waiting,
//! inotify on the directories that say which networks exist, and a
//! signalfd (SIGHUP reloads, SIGTERM stops).
//!
//! A UDP query never waits for another: a forwarded one is kept in a table
//! under a fresh random ID and answered when its upstream's reply arrives,
//! or with SERVFAIL once every upstream has timed out. A TCP connection
//! (clients retry a truncated answer over TCP) is served by a thread of its
//! own, at most `MAX_TCP` at once.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::codec::{self, Malformed, Question};
use super::names::{self, Members};
use crate::config::values::Subnet;
use crate::network::config::plan_networks;
use crate::network::ipam::leases_dir;

/// TTL of a member's address: 0, so that a peer that restarts with a new
/// address is found there at once, also by a caching resolver inside a
/// system container.
const TTL: u32 = 0;
/// How long one upstream has to answer before the next is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded UDP queries waiting at once; more get SERVFAIL at once
/// rather than memory without bound.
const MAX_PENDING: usize = 4096;
/// TCP connections served at once; more are closed.
const MAX_TCP: usize = 64;
/// TCP: queries per connection, and how long the client may be silent.
const TCP_QUERIES: usize = 16;
const TCP_IDLE: Duration = Duration::from_secs(5);

/// Why `berth dns` could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("berth dns: cannot {what}: {source}")]
    Setup {
        what: &'static str,
        source: std::io::Error,
    },
}

fn setup(what: &'static str) -> impl FnOnce(std::io::Error) -> DnsError {
    move |source| DnsError::Setup { what, source }
}

/// A network served: its name and ranges (a client must be in one).
#[derive(Debug, Clone)]
struct NetInfo {
    name: String,
    subnet: Subnet,
    subnet6: Option<Subnet>,
    /// `internal = true`: no way out, not even by DNS.
    internal: bool,
}

/// What every query needs to be answered, shared with the TCP threads;
/// replaced whole on reload.
#[derive(Debug)]
struct Ctx {
    root: PathBuf,
    nets: Vec<NetInfo>,
    /// The addresses berth dns listens on, never an upstream (a host whose
    /// resolv.conf names one would loop: containers/aardvark-dns#415).
    listening: Vec<IpAddr>,
}

/// One listening address.
struct Served {
    network: String,
    addr: IpAddr,
    udp: UdpSocket,
    tcp: Option<TcpListener>,
}

/// A forwarded UDP query.
struct Pending {
    client: SocketAddr,
    client_id: u16,
    /// The address it came to, which the answer must come from.
    local: IpAddr,
    question: Question,
    /// The query under our ID.
    msg: Vec<u8>,
    upstreams: Vec<SocketAddr>,
    /// Index of the upstream asked last.
    asked: usize,
    deadline: Instant,
}

/// What to do with one query.
enum Decision {
    Reply(Vec<u8>),
    Forward {
        question: Question,
        upstreams: Vec<SocketAddr>,
    },
    Drop,
}

/// The members of every network served, from their lease files. Read at
/// each query: a few small files on tmpfs, and never stale.
fn read_members(ctx: &Ctx) -> Vec<Members> {
    let run = crate::supervise::run_root(&ctx.root);
    ctx.nets
        .iter()
        .map(|n| {
            let mut members = Vec::new();
            if let Ok(entries) = std::fs::read_dir(leases_dir(&run, &n.name)) {
                for e in entries.flatten() {
                    let Some(addr) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                        continue;
                    };
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    if let Some(lease) = names::parse_lease(&text) {
                        members.push(names::Member { addr, lease });
                    }
                }
            }
            Members {
                network: n.name.clone(),
                members,
            }
        })
        .collect()
}

/// Answer a query from `client` that came to network `network`'s address,
/// or say where to forward it.
fn decide(ctx: &Ctx, network: &str, client: IpAddr, msg: &[u8]) -> Decision {
    let q = match codec::parse_query(msg) {
        Ok(q) => q,
        Err(Malformed::NotAQuery) => return Decision::Drop,
        Err(Malformed::Opcode(_)) => {
            return codec::bare_error(msg, codec::RCODE_NOTIMP)
                .map_or(Decision::Drop, Decision::Reply)
        }
        Err(_) => {
            return codec::bare_error(msg, codec::RCODE_FORMERR)
                .map_or(Decision::Drop, Decision::Reply)
        }
    };
    let members = read_members(ctx);
    let me = names::member_at(&members, network, client);
    if matches!(q.qclass, codec::CLASS_IN | codec::CLASS_ANY) {
        if let Some(reply) = local_answer(ctx, &members, network, me, &q) {
            return Decision::Reply(reply);
        }
    }
    // A network with no way out gets none through its name server either
    // (queries can carry data out): outside names are refused unless the
    // client is also on a network that is not internal, as aardvark-dns
    // does since containers/aardvark-dns#447 (a data-exfiltration channel).
    if !may_forward(ctx, &members, network, me.map(|m| m.lease.name.as_str())) {
        return Decision::Reply(codec::error(&q, codec::RCODE_REFUSED));
    }
    // The container's own resolvers (`[network] dns`), else the host's:
    // this process runs in the host's network namespace, so a resolv.conf
    // naming systemd-resolved's 127.0.0.53 works here as it does not in a
    // container.
    let usable = |u: &SocketAddr| !ctx.listening.contains(&u.ip());
    let own: Vec<SocketAddr> = me
        .map(|m| {
            m.lease
                .dns
                .iter()
                .map(|a| SocketAddr::new(*a, 53))
                .collect()
        })
        .unwrap_or_default();
    let mut upstreams: Vec<SocketAddr> = own.into_iter().filter(usable).collect();
    if upstreams.is_empty() {
        let text = std::fs::read_to_string(ctx.root.join("etc/resolv.conf")).unwrap_or_default();
        upstreams = names::nameservers(&text)
            .into_iter()
            .filter(usable)
            .collect();
    }
    if upstreams.is_empty() {
        return Decision::Reply(codec::error(&q, codec::RCODE_SERVFAIL));
    }
    Decision::Forward {
        question: q,
        upstreams,
    }
}

/// The answer from the leases, if the question is theirs: a member's name
/// or alias (A / AAAA), or the reverse name of an address in a served
/// range (PTR; NXDOMAIN when no member the client sees holds it, so a
/// private address is never asked of the host's resolvers).
fn local_answer(
    ctx: &Ctx,
    members: &[Members],
    network: &str,
    me: Option<&names::Member>,
    q: &Question,
) -> Option<Vec<u8>> {
    let name = q.name()?;
    let client = me.map(|m| m.lease.name.as_str());
    if let Some(addrs) = names::lookup(members, network, client, &name) {
        return Some(codec::answer(q, &addrs, TTL));
    }
    let addr = names::reverse_address(&name)?;
    let served = ctx
        .nets
        .iter()
        .any(|n| n.subnet.contains(addr) || n.subnet6.is_some_and(|s| s.contains(addr)));
    if !served {
        return None;
    }
    Some(
        match names::lookup_address(members, network, client, addr) {
            Some(target) if matches!(q.qtype, codec::TYPE_PTR | codec::TYPE_ANY) => {
                codec::answer_ptr(q, &target, TTL)
            }
            Some(_) => codec::answer(q, &[], TTL),
            None => codec::error(q, codec::RCODE_NXDOMAIN),
        },
    )
}

/// Whether a query that came to `network` from container `client` may be
/// forwarded out: the network is not internal, or the client is a member
/// of one that is not.
fn may_forward(ctx: &Ctx, members: &[Members], network: &str, client: Option<&str>) -> bool {
    let open = |name: &str| ctx.nets.iter().any(|n| n.name == name && !n.internal);
    open(network)
        || client.is_some_and(|c| {
            members
                .iter()
                .any(|n| open(&n.network) && n.members.iter().any(|m| m.lease.name == c))
        })
}

/// A socket bound to `addr` even before the address exists (the bridge is
/// made when its first member starts): IP_FREEBIND / IPV6_FREEBIND, as
/// systemd's `FreeBind=` does for socket units.
fn bind_free(addr: SocketAddr, stream: bool) -> std::io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let kind = if stream {
        libc::SOCK_STREAM
    } else {
        libc::SOCK_DGRAM
    };
    // SAFETY: socket() takes no pointers; the descriptor is owned at once.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (level, opt) = if addr.is_ipv4() {
        (libc::SOL_IP, libc::IP_FREEBIND)
    } else {
        (libc::SOL_IPV6, libc::IPV6_FREEBIND)
    };
    set_int(&fd, level, opt)?;
    if stream {
        // A restart must not wait for the last connections' TIME_WAIT.
        set_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    }
    raw_bind(&fd, addr)?;
    // SAFETY: listen() on a socket this function owns; no pointers.
    if stream && unsafe { libc::listen(fd.as_raw_fd(), 64) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// bind(2) with the sockaddr built by hand (nix's socket addresses need
/// its `net` feature, for this one call).
fn raw_bind(fd: &OwnedFd, addr: SocketAddr) -> std::io::Result<()> {
    let r = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sin` outlives the call and its size is passed.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: `sin6` outlives the call and its size is passed.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_int(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn serve(network: &str, addr: IpAddr) -> std::io::Result<Served> {
    let sa = SocketAddr::new(addr, 53);
    let udp = UdpSocket::from(bind_free(sa, false)?);
    let tcp = match bind_free(sa, true) {
        Ok(fd) => Some(TcpListener::from(fd)),
        Err(e) => {
            tracing::warn!("berth dns: network \"{network}\": no TCP on {sa} ({e}): answers too long for UDP will fail");
            None
        }
    };
    Ok(Served {
        network: network.to_string(),
        addr,
        udp,
        tcp,
    })
}

/// The networks with `dns = true` as the files say now, with the
/// addresses to listen on.
fn wanted(root: &Path) -> Vec<(NetInfo, Vec<IpAddr>)> {
    let globals = crate::config::load_globals(root).unwrap_or_else(|e| {
        tracing::warn!("berth dns: {e}; using the default [network] default_subnet");
        crate::config::Globals::default()
    });
    let (defs, errors) = crate::config::load_all_networks(root);
    for (name, diags) in &errors {
        for d in diags.iter() {
            tracing::warn!("berth dns: network \"{name}\" not served: {d}");
        }
    }
    let path = root.join(crate::config::global::GLOBAL_FILE);
    let (nets, diags) = plan_networks(&defs, &globals.default_subnet, &path);
    for d in diags.iter() {
        tracing::warn!("berth dns: {d}");
    }
    nets.into_iter()
        .filter(|n| n.dns)
        .map(|n| {
            let addrs = std::iter::once(n.gateway).chain(n.gateway6).collect();
            let info = NetInfo {
                name: n.name,
                subnet: n.subnet,
                subnet6: n.subnet6,
                internal: n.internal,
            };
            (info, addrs)
        })
        .collect()
}

/// inotify on the directories whose changes may add or remove a network:
/// the network definition directories, /etc/berth (berth.toml, a new
/// networks/), and /run/berth/leases (a network's lease directory appears
/// when its first member starts). Not recursive: lease files themselves
/// are read at each query.
struct Watch {
    fd: OwnedFd,
    /// Watches on the parent of a directory that does not exist yet (/run
    /// before /run/berth is made), dropped once it does.
    parents: Vec<i32>,
}

impl Watch {
    fn new() -> Result<Watch, DnsError> {
        // SAFETY: no pointers; the descriptor is owned at once.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(setup("inotify_init1")(std::io::Error::last_os_error()));
        }
        // SAFETY: a descriptor just returned and owned by nobody else.
        Ok(Watch {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            parents: Vec::new(),
        })
    }

    fn watch(&self, path: &Path) -> Option<i32> {
        let mask = libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_CLOSE_WRITE
            | libc::IN_ONLYDIR;
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        (wd >= 0).then_some(wd)
    }

    /// (Re)watch every directory that exists now, and the parent of one
    /// that does not, so that its creation causes a reload (which calls
    /// this again before it reads anything: nothing made in between is
    /// missed).
    fn add(&mut self, root: &Path) {
        let mut dirs = vec!["run/berth", "run/berth/leases", "etc/berth"];
        dirs.extend(crate::config::load::NETWORK_DIRS);
        let mut real = Vec::new();
        let mut parents = Vec::new();
        for d in dirs {
            let path = root.join(d);
            match self.watch(&path) {
                Some(wd) => real.push(wd),
                None => parents.extend(path.parent().and_then(|p| self.watch(p))),
            }
        }
        parents.retain(|wd| !real.contains(wd));
        for wd in std::mem::take(&mut self.parents) {
            if !real.contains(&wd) && !parents.contains(&wd) {
                // SAFETY: no pointers; an inotify descriptor this owns.
                unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
            }
        }
        self.parents = parents;
    }

    /// Read every pending event; whether there was one.
    fn drain(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut any = false;
        // SAFETY: `buf` outlives the call and its length is passed.
        while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
            any = true;
        }
        any
    }
}

/// A random query ID (forwarded queries must not be guessable by whoever
/// could spoof an upstream's answer).
fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: `b` outlives the call and its length is passed.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 2 {
        u16::from_ne_bytes(b)
    } else {
        Instant::now().elapsed().subsec_nanos() as u16
    }
}

struct Server {
    root: PathBuf,
    ctx: Arc<Ctx>,
    served: Vec<Served>,
    up4: UdpSocket,
    up6: Option<UdpSocket>,
    pending: HashMap<u16, Pending>,
    tcp_active: Arc<AtomicUsize>,
    buf: Vec<u8>,
}

impl Server {
    fn new(root: &Path) -> Result<Server, DnsError> {
        let up4 = UdpSocket::bind("0.0.0.0:0").map_err(setup("bind an upstream socket"))?;
        up4.set_nonblocking(true)
            .map_err(setup("set an upstream socket non-blocking"))?;
        // A host without IPv6 still serves v4.
        let up6 = UdpSocket::bind("[::]:0")
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        Ok(Server {
            root: root.to_path_buf(),
            ctx: Arc::new(Ctx {
                root: root.to_path_buf(),
                nets: Vec::new(),
                listening: Vec::new(),
            }),
            served: Vec::new(),
            up4,
            up6,
            pending: HashMap::new(),
            tcp_active: Arc::new(AtomicUsize::new(0)),
            buf: vec![0; 65535],
        })
    }

    /// Listen on the addresses of every network served now, and stop
    /// listening on those of networks gone or changed.
    fn reload(&mut self) {
        let wanted = wanted(&self.root);
        let pairs: Vec<(String, IpAddr)> = wanted
            .iter()
            .flat_map(|(n, addrs)| addrs.iter().map(|a| (n.name.clone(), *a)))
            .collect();
        self.served
            .retain(|s| pairs.iter().any(|(n, a)| *n == s.network && *a == s.addr));
        for (network, addr) in &pairs {
            if self
                .served
                .iter()
                .any(|s| s.addr == *addr && s.network == *network)
            {
                continue;
            }
            match serve(network, *addr) {
                Ok(s) => self.served.push(s),
                Err(e) => tracing::warn!(
                    "berth dns: network \"{network}\": cannot listen on {addr} port 53: {e} (another DNS server bound to all addresses? `systemctl reload berth-dns` retries)"
                ),
            }
        }
        self.ctx = Arc::new(Ctx {
            root: self.root.clone(),
            nets: wanted.into_iter().map(|(n, _)| n).collect(),
            listening: self.served.iter().map(|s| s.addr).collect(),
        });
        let addrs: Vec<String> = self.served.iter().map(|s| s.addr.to_string()).collect();
        crate::systemd::notify(&format!(
            "STATUS=serving {} networks on {}",
            self.ctx.nets.len(),
            if addrs.is_empty() {
                "no address".to_string()
            } else {
                addrs.join(" ")
            }
        ));
    }

    /// Whether `client` may ask on network `network`: only its members'
    /// ranges, so the gateway address never serves as an open resolver
    /// to other hosts.
    fn in_range(&self, network: &str, client: IpAddr) -> bool {
        self.ctx.nets.iter().any(|n| {
            n.name == network
                && (n.subnet.contains(client) || n.subnet6.is_some_and(|s| s.contains(client)))
        })
    }

    fn on_query(&mut self, i: usize) {
        // At most a batch per wake-up, so one busy network cannot starve
        // the others or the upstream replies.
        for _ in 0..64 {
            let (len, client) = match self.served[i].udp.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(_) => return,
            };
            let network = self.served[i].network.clone();
            let local = self.served[i].addr;
            if !self.in_range(&network, client.ip()) {
                continue;
            }
            let msg = self.buf[..len].to_vec();
            match decide(&self.ctx, &network, client.ip(), &msg) {
                Decision::Drop => {}
                Decision::Reply(r) => {
                    let _ = self.served[i].udp.send_to(&r, client);
                }
                Decision::Forward {
                    question,
                    upstreams,
                } => self.forward(msg, question, upstreams, client, local),
            }
        }
    }

    fn forward(
        &mut self,
        mut msg: Vec<u8>,
        question: Question,
        upstreams: Vec<SocketAddr>,
        client: SocketAddr,
        local: IpAddr,
    ) {
        if self.pending.len() >= MAX_PENDING {
            self.reply(
                local,
                client,
                &codec::error(&question, codec::RCODE_SERVFAIL),
            );
            return;
        }
        let id = loop {
            let id = random_u16();
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let client_id = question.id;
        codec::set_id(&mut msg, id);
        let p = Pending {
            client,
            client_id,
            local,
            question,
            msg,
            upstreams,
            asked: usize::MAX,
            deadline: Instant::now(),
        };
        self.pending.insert(id, p);
        self.ask_next(id);
    }

    /// Send pending query `id` to its next upstream, or answer SERVFAIL
    /// when none is left.
    fn ask_next(&mut self, id: u16) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let mut next = p.asked.wrapping_add(1);
        while next < p.upstreams.len() {
            let up = p.upstreams[next];
            let sock = if up.is_ipv4() {
                Some(&self.up4)
            } else {
                self.up6.as_ref()
            };
            if sock.is_some_and(|s| s.send_to(&p.msg, up).is_ok()) {
                p.asked = next;
                p.deadline = Instant::now() + UPSTREAM_TIMEOUT;
                return;
            }
            next += 1;
        }
        if let Some(p) = self.pending.remove(&id) {
            let mut q = p.question;
            q.id = p.client_id;
            self.reply(p.local, p.client, &codec::error(&q, codec::RCODE_SERVFAIL));
        }
    }

    fn reply(&self, local: IpAddr, client: SocketAddr, msg: &[u8]) {
        if let Some(s) = self.served.iter().find(|s| s.addr == local) {
            let _ = s.udp.send_to(msg, client);
        }
    }

    fn on_upstream(&mut self, v6: bool) {
        for _ in 0..64 {
            let sock = if v6 {
                self.up6.as_ref()
            } else {
                Some(&self.up4)
            };
            let Some(Ok((len, from))) = sock.map(|s| s.recv_from(&mut self.buf)) else {
                return;
            };
            let Some(id) = codec::id(&self.buf[..len]) else {
                continue;
            };
            // Only the upstream asked, answering the question asked: a
            // spoofed or late packet with a matching ID is dropped.
            let ok = self.pending.get(&id).is_some_and(|p| {
                p.upstreams.get(p.asked) == Some(&from)
                    && codec::answers(&self.buf[..len], &p.question)
            });
            if !ok {
                continue;
            }
            if let Some(p) = self.pending.remove(&id) {
                let mut resp = self.buf[..len].to_vec();
                codec::set_id(&mut resp, p.client_id);
                self.reply(p.local, p.client, &resp);
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.ask_next(id);
        }
    }

    fn on_accept(&mut self, i: usize) {
        let Some(listener) = &self.served[i].tcp else {
            return;
        };
        while let Ok((stream, peer)) = listener.accept() {
            if !self.in_range(&self.served[i].network, peer.ip())
                || self.tcp_active.load(Ordering::Relaxed) >= MAX_TCP
            {
                continue;
            }
            let ctx = Arc::clone(&self.ctx);
            let network = self.served[i].network.clone();
            let active = Arc::clone(&self.tcp_active);
            active.fetch_add(1, Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name("dns-tcp".into())
                .spawn(move || {
                    serve_tcp(&ctx, &network, stream, peer.ip());
                    active.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                self.tcp_active.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn poll_timeout(&self) -> libc::c_int {
        match self.pending.values().map(|p| p.deadline).min() {
            None => -1,
            Some(d) => {
                let ms = d.saturating_duration_since(Instant::now()).as_millis();
                (ms + 1).min(60_000) as libc::c_int
            }
        }
    }
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_frame(s: &mut TcpStream, msg: &[u8]) -> bool {
    let Ok(len) = u16::try_from(msg.len()) else {
        return false;
    };
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out).is_ok()
}

/// Ask `upstreams` over TCP in turn; the first answer to `q`.
fn forward_tcp(msg: &[u8], q: &Question, upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    upstreams.iter().find_map(|up| {
        let mut s = TcpStream::connect_timeout(up, UPSTREAM_TIMEOUT).ok()?;
        s.set_read_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
        s.set_write_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
        if !write_frame(&mut s, msg) {
            return None;
        }
        read_frame(&mut s).filter(|r| codec::answers(r, q) && codec::id(r) == Some(q.id))
    })
}

/// One TCP connection: up to `TCP_QUERIES` queries, each answered before
/// the next is read (RFC 7766 allows that order).
fn serve_tcp(ctx: &Ctx, network: &str, mut s: TcpStream, client: IpAddr) {
    if s.set_nonblocking(false).is_err()
        || s.set_read_timeout(Some(TCP_IDLE)).is_err()
        || s.set_write_timeout(Some(TCP_IDLE)).is_err()
    {
        return;
    }
    for _ in 0..TCP_QUERIES {
        let Some(msg) = read_frame(&mut s) else {
            return;
        };
        let out = match decide(ctx, network, client, &msg) {
            Decision::Drop => return,
            Decision::Reply(r) => r,
            Decision::Forward {
                question,
                upstreams,
            } => forward_tcp(&msg, &question, &upstreams)
                .unwrap_or_else(|| codec::error(&question, codec::RCODE_SERVFAIL)),
        };
        if !write_frame(&mut s, &out) {
            return;
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Serve until SIGTERM or SIGINT. `root` is the host's root (`/`, or
/// `$BERTH_ROOT` in tests): networks from `ROOT/etc/berth/`, leases from
/// `ROOT/run/berth/leases/`, upstreams from `ROOT/etc/resolv.conf`.
pub fn run(root: &Path) -> Result<(), DnsError> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(s);
    }
    // Blocked before any thread starts, so every TCP thread inherits it
    // and the signals only ever arrive through the signalfd.
    mask.thread_block()
        .map_err(|e| setup("block signals")(e.into()))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| setup("create a signalfd")(e.into()))?;
    let mut watch = Watch::new()?;
    watch.add(root);
    let mut server = Server::new(root)?;
    server.reload();
    crate::systemd::notify("READY=1");
    loop {
        let mut fds = vec![
            pollfd(signals.as_fd().as_raw_fd()),
            pollfd(watch.fd.as_raw_fd()),
            pollfd(server.up4.as_raw_fd()),
            pollfd(server.up6.as_ref().map_or(-1, |s| s.as_raw_fd())),
        ];
        for s in &server.served {
            fds.push(pollfd(s.udp.as_raw_fd()));
            fds.push(pollfd(s.tcp.as_ref().map_or(-1, |t| t.as_raw_fd())));
        }
        let timeout = server.poll_timeout();
        // SAFETY: `fds` outlives the call and its length is passed.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(setup("poll")(e));
        }
        let ready = |i: usize| fds[i].revents != 0;
        if ready(0) {
            while let Ok(Some(info)) = signals.read_signal() {
                if info.ssi_signo == Signal::SIGHUP as u32 {
                    crate::systemd::notify("RELOADING=1");
                    watch.add(root);
                    server.reload();
                    crate::systemd::notify("READY=1");
                } else {
                    crate::systemd::notify("STOPPING=1");
                    return Ok(());
                }
            }
        }
        if ready(1) && watch.drain() {
            watch.add(root);
            server.reload();
            // The sockets may have changed: poll the new set.
            continue;
        }
        if ready(2) {
            server.on_upstream(false);
        }
        if ready(3) {
            server.on_upstream(true);
        }
        for i in 0..server.served.len() {
            if ready(4 + 2 * i) {
                server.on_query(i);
            }
            if ready(5 + 2 * i) {
                server.on_accept(i);
            }
        }
        server.expire();
    }
}
