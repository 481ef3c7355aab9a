//! A start's set and map elements sent to nf_tables over netlink, without
//! libnftables: one batch, one message per element operation.
//!
//! Why: a start of a bridge's member adds only elements to sets and maps
//! that berth's table already has (`network::plan`'s shape), and
//! libnftables spends ~4 ms on that before the program may run — loading
//! itself and its libraries (1.2-1.6 ms), a context (0.35 ms), and a
//! transaction that first lists the table's sets and their elements
//! (~2 ms, 19 netlink round trips for a start with one port), where the
//! kernel's own work is a fraction of a millisecond (berth@net in
//! benches/unit_start.rs). So the elements go here as nft itself would
//! encode them (`nft --debug=netlink`: the same keys, data, interval ends
//! and comments), and everything else — the table's skeleton when it is
//! missing, a refused element's message, listings — stays with
//! `network::nft`, which names the holder of a taken port.
//!
//! Layout (`linux/netfilter/nf_tables.h`): each field of a concatenated
//! key or datum takes a multiple of four bytes; an interface name is 16
//! bytes; protocol one byte, port two in network order; an interval
//! `a/n` is the element `a` and an element flagged "interval end" at the
//! address after it (and one at 0 before it: nft's gap below the first
//! interval). A comment is nft's user data TLV (type 0).
//!
//! The encoding is pure ([`encode`]); [`apply`] is the one socket.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::plan::{Element, Verb};
use crate::config::values::{Protocol, Subnet};

/// Why the kernel did not take a batch. Nothing of it was applied.
#[derive(Debug, thiserror::Error)]
pub enum ElementsError {
    /// Berth's table, or one of its sets, is not there (flushed by a
    /// firewall reload, or never loaded since boot).
    #[error("berth's nftables table or one of its sets is missing")]
    Missing,
    /// Operation `index` was refused with `errno` (`EEXIST`: a created
    /// element is there already — a published port another holds).
    #[error("nftables refused element operation {index}: {}", std::io::Error::from_raw_os_error(*errno))]
    Refused { index: usize, errno: i32 },
    /// The socket, or a batch too big for one send.
    #[error("nftables over netlink: {0}")]
    Io(#[from] std::io::Error),
}

const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFPROTO_INET: u8 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// nftnl's `NFTNL_UDATA_SET_ELEM_COMMENT`.
const UDATA_COMMENT: u8 = 0;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
/// A batch larger than the socket's default send buffer (212992 bytes)
/// would need it raised; thousands of published ports are rare enough to
/// go through nft instead.
const MAX_BATCH: usize = 128 * 1024;

/// One key or datum element as the kernel stores it, with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    pub key: Vec<u8>,
    pub data: Option<Vec<u8>>,
    pub interval_end: bool,
    pub comment: Option<String>,
}

/// A field of a concatenation: its bytes, padded to four.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ifname(out: &mut Vec<u8>, name: &str) {
    let mut b = [0u8; 16];
    let n = name.as_bytes();
    b[..n.len().min(15)].copy_from_slice(&n[..n.len().min(15)]);
    out.extend_from_slice(&b);
}

fn protocol(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => libc::IPPROTO_TCP as u8,
        Protocol::Udp => libc::IPPROTO_UDP as u8,
    }
}

/// An interval set's elements for `s`, as nft sends them.
fn interval(s: &Subnet) -> Vec<Wire> {
    let (start, after, width): (u128, Option<u128>, u32) = match s.addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(s.prefix)).unwrap_or(0);
            let start = u32::from(a) & mask;
            let end = start | !mask;
            (u128::from(start), end.checked_add(1).map(u128::from), 4)
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(s.prefix))
                .unwrap_or(0);
            let start = u128::from(a) & mask;
            let end = start | !mask;
            (start, end.checked_add(1), 16)
        }
    };
    let bytes = |v: u128| v.to_be_bytes()[16 - width as usize..].to_vec();
    let wire = |v: u128, end: bool| Wire {
        key: bytes(v),
        data: None,
        interval_end: end,
        comment: None,
    };
    let mut out = Vec::new();
    if start != 0 {
        out.push(wire(0, true));
    }
    out.push(wire(start, false));
    if let Some(a) = after {
        out.push(wire(a, true));
    }
    out
}

/// The set an element goes to, and its elements on the wire. Pure.
pub fn wire(e: &Element) -> (&'static str, Vec<Wire>) {
    let plain = |key: Vec<u8>| Wire {
        key,
        data: None,
        interval_end: false,
        comment: None,
    };
    let set = e.set();
    let wires = match e {
        Element::Subnet(s) | Element::Masquerade(s) => interval(s),
        Element::Bridge(b) | Element::Internal(b) => {
            let mut k = Vec::new();
            ifname(&mut k, b);
            vec![plain(k)]
        }
        Element::Intra(b) => {
            let mut k = Vec::new();
            ifname(&mut k, b);
            ifname(&mut k, b);
            vec![plain(k)]
        }
        Element::Dnat(d) => {
            let mut key = Vec::new();
            if let Some(ip) = d.host_ip {
                field(&mut key, &ip_bytes(ip));
            }
            field(&mut key, &[protocol(d.protocol)]);
            field(&mut key, &d.host_port.to_be_bytes());
            let mut data = Vec::new();
            field(&mut data, &ip_bytes(d.to));
            field(&mut data, &d.to_port.to_be_bytes());
            vec![Wire {
                key,
                data: Some(data),
                interval_end: false,
                comment: Some(d.container.clone()),
            }]
        }
    };
    (set, wires)
}

/// Netlink attributes, appended in place.
struct Writer(Vec<u8>);

impl Writer {
    fn pad(&mut self) {
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
    }

    fn string(&mut self, ty: u16, s: &str) {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.attr(ty, &b);
    }

    fn nest(&mut self, ty: u16, inner: impl FnOnce(&mut Writer)) {
        let at = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        inner(self);
        let len = u16::try_from(self.0.len() - at).unwrap_or(u16::MAX);
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// A message: header, nfgenmsg, then `body`'s attributes.
    fn message(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        res_id: u16,
        body: impl FnOnce(&mut Writer),
    ) {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(&flags.to_ne_bytes());
        self.0.extend_from_slice(&seq.to_ne_bytes());
        self.0.extend_from_slice(&0u32.to_ne_bytes());
        let family = match ty {
            NFNL_MSG_BATCH_BEGIN | NFNL_MSG_BATCH_END => 0,
            _ => NFPROTO_INET,
        };
        self.0.extend_from_slice(&[family, 0]);
        self.0.extend_from_slice(&res_id.to_be_bytes());
        body(self);
        let len = u32::try_from(self.0.len() - at).unwrap_or(u32::MAX);
        self.0[at..at + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// The batch for `ops` in berth's table: a message per operation, its
/// sequence number `first_seq + 1 + index` (the batch's begin and end are
/// `first_seq` and after the last). Pure.
pub fn encode(table: &str, ops: &[(Verb, Element)], first_seq: u32) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    let subsys = NFNL_SUBSYS_NFTABLES;
    w.message(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        first_seq,
        subsys,
        |_| {},
    );
    let mut seq = first_seq;
    for (verb, e) in ops {
        seq += 1;
        let (set, wires) = wire(e);
        let (ty, flags) = match verb {
            Verb::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
            Verb::Create => (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL),
            Verb::Delete => (NFT_MSG_DELSETELEM, 0),
        };
        let delete = *verb == Verb::Delete;
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | ty;
        w.message(ty, NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0, |w| {
            w.string(NFTA_SET_ELEM_LIST_TABLE, table);
            w.string(NFTA_SET_ELEM_LIST_SET, set);
            w.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |w| {
                for x in &wires {
                    w.nest(NFTA_LIST_ELEM, |w| {
                        w.nest(NFTA_SET_ELEM_KEY, |w| w.attr(NFTA_DATA_VALUE, &x.key));
                        if x.interval_end {
                            w.attr(
                                NFTA_SET_ELEM_FLAGS,
                                &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
                            );
                        }
                        if delete {
                            return;
                        }
                        if let Some(d) = &x.data {
                            w.nest(NFTA_SET_ELEM_DATA, |w| w.attr(NFTA_DATA_VALUE, d));
                        }
                        if let Some(c) = &x.comment {
                            let c = &c.as_bytes()[..c.len().min(254)];
                            let mut u = vec![UDATA_COMMENT, c.len() as u8 + 1];
                            u.extend_from_slice(c);
                            u.push(0);
                            w.attr(NFTA_SET_ELEM_USERDATA, &u);
                        }
                    });
                }
            });
        });
    }
    w.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1, subsys, |_| {});
    w.0
}

/// What the kernel answered a batch: (sequence number, errno or 0) per
/// message it acknowledged. Pure.
pub fn replies(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let word = |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let len = word(at) as usize;
        let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if len < 16 || at + len > buf.len() {
            break;
        }
        // nlmsgerr: the error, then the header of the message it answers.
        if ty == NLMSG_ERROR && len >= 16 + 4 + 16 {
            let errno = -(word(at + 16) as i32);
            let seq = word(at + 20 + 8);
            out.push((seq, errno));
        }
        at += (len + 3) & !3;
    }
    out
}

/// Apply `ops` to berth's table `inet berth` as one transaction: all of
/// them, or none. Only elements: the table and its sets must be there
/// ([`ElementsError::Missing`] when not).
pub fn apply(ops: &[(Verb, Element)]) -> Result<(), ElementsError> {
    const FIRST: u32 = 1;
    let batch = encode("berth", ops, FIRST);
    if batch.len() > MAX_BATCH {
        return Err(std::io::Error::from_raw_os_error(libc::EMSGSIZE).into());
    }
    // SAFETY: a plain socket call; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fd was just returned by socket() and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // Acknowledgements without a copy of each message: small replies.
    // SAFETY: a valid fd and an int option.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_NETLINK,
            libc::NETLINK_CAP_ACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // Unconnected netlink sends go to the kernel. The kernel handles the
    // whole batch inside this call, so every reply is queued when it
    // returns (as nft's mnl_batch_talk relies on).
    // SAFETY: the buffer is valid for its length.
    let sent = unsafe { libc::send(sock.as_raw_fd(), batch.as_ptr().cast(), batch.len(), 0) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let mut answered = vec![false; ops.len()];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                break;
            }
            return Err(e.into());
        }
        if n == 0 {
            break;
        }
        for (seq, errno) in replies(&buf[..n as usize]) {
            let Some(index) = seq.checked_sub(FIRST + 1).map(|i| i as usize) else {
                // The batch's own header: the kernel could not queue the
                // replies (ENOMEM) and aborted it.
                return Err(std::io::Error::from_raw_os_error(errno.max(1)).into());
            };
            match (errno, answered.get_mut(index)) {
                (0, Some(a)) => *a = true,
                (libc::ENOENT, _) => return Err(ElementsError::Missing),
                (e, Some(_)) => return Err(ElementsError::Refused { index, errno: e }),
                (e, None) => return Err(std::io::Error::from_raw_os_error(e.max(1)).into()),
            }
        }
    }
    match answered.iter().position(|a| !a) {
        // Every operation acknowledged: the batch was committed.
        None => Ok(()),
        Some(index) => Err(ElementsError::Refused {
            index,
            errno: libc::EPROTO,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::parse_subnet;
    use crate::network::plan::Dnat;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // The expected bytes are what `nft --debug=netlink` (nftables 1.0.6)
    // shows it sends for the same `add`/`create element` lines.
    #[test]
    fn keys_and_data_are_laid_out_as_nft_sends_them() {
        let (set, w) = wire(&Element::Subnet(parse_subnet("10.89.0.0/24").unwrap()));
        assert_eq!(set, "subnets4");
        let got: Vec<(String, bool)> = w.iter().map(|w| (hex(&w.key), w.interval_end)).collect();
        assert_eq!(
            got,
            [
                ("00000000".to_string(), true),
                ("0a590000".to_string(), false),
                ("0a590100".to_string(), true)
            ]
        );
        let (set, w) = wire(&Element::Intra("berth0".into()));
        assert_eq!(set, "intra");
        assert_eq!(
            hex(&w[0].key),
            "6265727468300000000000000000000062657274683000000000000000000000"
        );
        let d = |host_ip: Option<&str>| {
            Element::Dnat(Dnat {
                host_ip: host_ip.map(|h| h.parse().unwrap()),
                protocol: Protocol::Tcp,
                host_port: 8443,
                to: "10.89.0.2".parse().unwrap(),
                to_port: 443,
                container: "web".into(),
            })
        };
        let (set, w) = wire(&d(Some("127.0.0.1")));
        assert_eq!(set, "dnat4_host");
        assert_eq!(hex(&w[0].key), "7f0000010600000020fb0000");
        assert_eq!(hex(w[0].data.as_ref().unwrap()), "0a59000201bb0000");
        let (set, w) = wire(&d(None));
        assert_eq!(set, "dnat4");
        assert_eq!(hex(&w[0].key), "0600000020fb0000");
        assert_eq!(w[0].comment.as_deref(), Some("web"));
    }

    #[test]
    fn intervals_at_the_edges_of_the_address_space_have_no_gap_or_no_end() {
        let w = interval(&parse_subnet("0.0.0.0/8").unwrap());
        assert_eq!(w.len(), 2, "no gap below an interval that starts at 0");
        assert_eq!(hex(&w[1].key), "01000000");
        let w = interval(&parse_subnet("255.0.0.0/8").unwrap());
        assert_eq!(w.len(), 2, "no end after the last address");
        let w = interval(&parse_subnet("fd00:89::/64").unwrap());
        assert_eq!(hex(&w[1].key), "fd000089000000000000000000000000");
        assert_eq!(hex(&w[2].key), "fd000089000000010000000000000000");
        // Host bits are not the interval's.
        let w = interval(&parse_subnet("10.89.0.7/24").unwrap());
        assert_eq!(hex(&w[1].key), "0a590000");
    }

    #[test]
    fn a_batch_numbers_its_messages_and_its_replies_map_back() {
        let ops = vec![
            (Verb::Add, Element::Bridge("berth0".into())),
            (Verb::Create, Element::Bridge("berth1".into())),
        ];
        let b = encode("berth", &ops, 7);
        let mut at = 0;
        let mut seen = Vec::new();
        while at < b.len() {
            let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(b[at + 4..at + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(b[at + 6..at + 8].try_into().unwrap());
            let seq = u32::from_ne_bytes(b[at + 8..at + 12].try_into().unwrap());
            seen.push((ty, flags & NLM_F_EXCL != 0, seq));
            assert_eq!(len % 4, 0);
            at += len;
        }
        let newsetelem = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
        assert_eq!(
            seen,
            [
                (NFNL_MSG_BATCH_BEGIN, false, 7),
                (newsetelem, false, 8),
                (newsetelem, true, 9),
                (NFNL_MSG_BATCH_END, false, 10)
            ]
        );
        // An ack of 8 and EEXIST for 9, as the kernel words them.
        let mut r = Vec::new();
        for (seq, err) in [(8u32, 0i32), (9, -libc::EEXIST)] {
            r.extend_from_slice(&36u32.to_ne_bytes());
            r.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            r.extend_from_slice(&[0; 10]);
            r.extend_from_slice(&err.to_ne_bytes());
            r.extend_from_slice(&[0; 8]);
            r.extend_from_slice(&seq.to_ne_bytes());
            r.extend_from_slice(&[0; 4]);
        }
        assert_eq!(replies(&r), [(8, 0), (9, libc::EEXIST)]);
    }
}
