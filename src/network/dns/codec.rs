//! DNS messages (RFC 1035) as `berth dns` reads and writes them: the one
//! question of a query, and the few answers it builds itself (A / AAAA,
//! NXDOMAIN, SERVFAIL, NOTIMP). Everything else is forwarded as it came.
//!
//! A container sends these packets, so every read is bounds-checked and
//! returns an error instead of panicking, and a compression pointer must
//! point strictly before the part of the name that led to it, so a name
//! can neither loop nor be longer than the packet.
//!
//! Pure: bytes in, bytes out.

use std::net::IpAddr;

/// The fixed header before the question.
pub const HEADER_LEN: usize = 12;
pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const CLASS_ANY: u16 = 255;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;
/// RFC 1035 §2.3.4: a name is at most 255 bytes on the wire.
const MAX_NAME: usize = 255;
/// Compression pointers followed in one name; each must point further back
/// than the last, so this only bounds the work on a long chain.
const MAX_JUMPS: usize = 64;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

/// Why a message was not a query berth can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("shorter than its header or question")]
    Short,
    #[error("a response, not a query")]
    NotAQuery,
    #[error("opcode {0}, not a standard query")]
    Opcode(u8),
    #[error("{0} questions, not one")]
    QuestionCount(u16),
    #[error("bad name: {0}")]
    Name(&'static str),
}

/// The question of a message, and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Recursion desired, copied into the answer.
    pub rd: bool,
    /// The labels as sent (case kept, for clients that check it: 0x20).
    pub labels: Vec<Vec<u8>>,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past the question (the question is `HEADER_LEN..end`
    /// when its name is not compressed).
    pub end: usize,
}

impl Question {
    /// The name in lower case without the trailing dot (`""` for the
    /// root), or `None` when a label holds a byte no host name has.
    pub fn name(&self) -> Option<String> {
        let mut out = String::new();
        for (i, l) in self.labels.iter().enumerate() {
            let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
            if !l.iter().all(ok) {
                return None;
            }
            if i > 0 {
                out.push('.');
            }
            out.extend(l.iter().map(|b| b.to_ascii_lowercase() as char));
        }
        Some(out)
    }

    /// Whether `other` asks the same thing (names compared without case).
    pub fn same_as(&self, other: &Question) -> bool {
        self.qtype == other.qtype
            && self.qclass == other.qclass
            && self.labels.len() == other.labels.len()
            && self
                .labels
                .iter()
                .zip(&other.labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    let b = msg.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The ID of a message, if it has a header.
pub fn id(msg: &[u8]) -> Option<u16> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    u16_at(msg, 0)
}

/// Whether a message with a header is a response (QR set).
pub fn is_response(msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && msg[2] & 0x80 != 0
}

/// Give `msg` another ID (forwarding replaces the client's ID with ours,
/// and the upstream's answer gets the client's back).
pub fn set_id(msg: &mut [u8], id: u16) {
    if let Some(b) = msg.get_mut(0..2) {
        b.copy_from_slice(&id.to_be_bytes());
    }
}

/// Read the name at `at`: its labels, and the offset after it where it
/// starts (after the first pointer when it is compressed).
fn read_name(msg: &[u8], at: usize) -> Result<(Vec<Vec<u8>>, usize), Malformed> {
    let mut labels = Vec::new();
    let mut pos = at;
    // Every pointer must point before `limit`, the start of the part read
    // last, so positions strictly decrease from jump to jump: no loops.
    let mut limit = at;
    let mut end = None;
    let mut wire_len = 0usize;
    let mut jumps = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(Malformed::Short)?;
        match len & 0xC0 {
            0xC0 => {
                let low = *msg.get(pos + 1).ok_or(Malformed::Short)?;
                let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                if target >= limit {
                    return Err(Malformed::Name("compression pointer forward or looping"));
                }
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return Err(Malformed::Name("too many compression pointers"));
                }
                end.get_or_insert(pos + 2);
                limit = target;
                pos = target;
            }
            0x00 if len == 0 => {
                return Ok((labels, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let len = usize::from(len);
                wire_len += len + 1;
                if wire_len + 1 > MAX_NAME {
                    return Err(Malformed::Name("longer than 255 bytes"));
                }
                let label = msg.get(pos + 1..pos + 1 + len).ok_or(Malformed::Short)?;
                labels.push(label.to_vec());
                pos += 1 + len;
            }
            _ => return Err(Malformed::Name("reserved label type")),
        }
    }
}

/// The one question of a message, whatever its kind.
fn question(msg: &[u8]) -> Result<Question, Malformed> {
    let id = id(msg).ok_or(Malformed::Short)?;
    let flags = u16_at(msg, 2).ok_or(Malformed::Short)?;
    let qdcount = u16_at(msg, 4).ok_or(Malformed::Short)?;
    if qdcount != 1 {
        return Err(Malformed::QuestionCount(qdcount));
    }
    let (labels, after) = read_name(msg, HEADER_LEN)?;
    let qtype = u16_at(msg, after).ok_or(Malformed::Short)?;
    let qclass = u16_at(msg, after + 2).ok_or(Malformed::Short)?;
    Ok(Question {
        id,
        rd: flags & FLAG_RD != 0,
        labels,
        qtype,
        qclass,
        end: after + 4,
    })
}

/// The question of a standard query.
pub fn parse_query(msg: &[u8]) -> Result<Question, Malformed> {
    let flags = u16_at(msg, 2).filter(|_| msg.len() >= HEADER_LEN);
    let flags = flags.ok_or(Malformed::Short)?;
    if flags & FLAG_QR != 0 {
        return Err(Malformed::NotAQuery);
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    if opcode != 0 {
        return Err(Malformed::Opcode(opcode));
    }
    question(msg)
}

/// Whether `resp` is a response to `asked` (same question), so that a
/// stray or spoofed packet with a matching ID is not relayed.
pub fn answers(resp: &[u8], asked: &Question) -> bool {
    is_response(resp) && question(resp).is_ok_and(|q| q.same_as(asked))
}

fn header(id: u16, flags: u16, qd: u16, an: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    for v in [id, flags, qd, an, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

fn flags(q: &Question, aa: bool, rcode: u8) -> u16 {
    let mut f = FLAG_QR | FLAG_RA | u16::from(rcode & 0xF);
    if aa {
        f |= FLAG_AA;
    }
    if q.rd {
        f |= FLAG_RD;
    }
    f
}

/// The question as it will be written back: the labels as sent,
/// uncompressed (a compressed question points into the query, not into
/// the answer).
fn push_question(out: &mut Vec<u8>, q: &Question) {
    for l in &q.labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out.extend_from_slice(&q.qtype.to_be_bytes());
    out.extend_from_slice(&q.qclass.to_be_bytes());
}

/// The addresses among `addrs` that answer `qtype`.
pub fn records_for(qtype: u16, addrs: &[IpAddr]) -> Vec<IpAddr> {
    addrs
        .iter()
        .copied()
        .filter(|a| match qtype {
            TYPE_A => a.is_ipv4(),
            TYPE_AAAA => a.is_ipv6(),
            TYPE_ANY => true,
            _ => false,
        })
        .collect()
}

/// An authoritative answer to `q` with the addresses of `addrs` its type
/// asks for (none: the name exists but has no such record, NOERROR with
/// no answers, so a v4-only name does not fail the client's AAAA lookup).
pub fn answer(q: &Question, addrs: &[IpAddr], ttl: u32) -> Vec<u8> {
    let records = records_for(q.qtype, addrs);
    let mut out = header(q.id, flags(q, true, 0), 1, records.len() as u16);
    push_question(&mut out, q);
    for a in records {
        // The name is a pointer to the question's, at the end of the header.
        out.extend_from_slice(&[0xC0, HEADER_LEN as u8]);
        let (rtype, data) = match a {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// An authoritative PTR answer to `q`: `target` (a member's name, which
/// is one label of the host-name alphabet; longer ones are cut at 63).
pub fn answer_ptr(q: &Question, target: &str, ttl: u32) -> Vec<u8> {
    let mut out = header(q.id, flags(q, true, 0), 1, 1);
    push_question(&mut out, q);
    out.extend_from_slice(&[0xC0, HEADER_LEN as u8]);
    out.extend_from_slice(&TYPE_PTR.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let mut data = Vec::new();
    for l in target.split('.').filter(|l| !l.is_empty()) {
        let l = &l.as_bytes()[..l.len().min(63)];
        data.push(l.len() as u8);
        data.extend_from_slice(l);
    }
    data.push(0);
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(&data);
    out
}

/// An error answer to `q` (NXDOMAIN, SERVFAIL, …), with its question.
pub fn error(q: &Question, rcode: u8) -> Vec<u8> {
    let aa = rcode == RCODE_NXDOMAIN;
    let mut out = header(q.id, flags(q, aa, rcode), 1, 0);
    push_question(&mut out, q);
    out
}

/// An error answer without a question, for a query whose question could
/// not be read (FORMERR) or whose opcode berth does not serve (NOTIMP);
/// `None` when `msg` has no header or is itself a response (answering a
/// response could start a loop between two servers).
pub fn bare_error(msg: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if is_response(msg) {
        return None;
    }
    let id = id(msg)?;
    let f = u16_at(msg, 2)?;
    let opcode_rd = f & (0x7800 | FLAG_RD);
    Some(header(
        id,
        FLAG_QR | FLAG_RA | opcode_rd | u16::from(rcode),
        0,
        0,
    ))
}

/// Whether a response was truncated (TC), for tests and logs.
pub fn truncated(msg: &[u8]) -> bool {
    u16_at(msg, 2).is_some_and(|f| msg.len() >= HEADER_LEN && f & FLAG_TC != 0)
}

/// A query for `name` (dots between labels, an optional trailing dot) of
/// type `qtype`, with recursion desired. For tests and the TCP client.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = header(id, FLAG_RD, 1, 0);
    for l in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(l.len().min(63) as u8);
        out.extend_from_slice(&l.as_bytes()[..l.len().min(63)]);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// The rcode and the A / AAAA addresses of a response (other records are
/// skipped), or `None` when it is malformed. For tests and logs.
pub fn parse_answers(msg: &[u8]) -> Option<(u8, Vec<IpAddr>)> {
    let q = question(msg).ok()?;
    let rcode = (u16_at(msg, 2)? & 0xF) as u8;
    let ancount = u16_at(msg, 6)?;
    let mut pos = q.end;
    let mut out = Vec::new();
    for _ in 0..ancount {
        let (_, after) = read_name(msg, pos).ok()?;
        let rtype = u16_at(msg, after)?;
        let rdlen = usize::from(u16_at(msg, after + 8)?);
        let data = msg.get(after + 10..after + 10 + rdlen)?;
        match (rtype, data.len()) {
            (TYPE_A, 4) => out.push(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
            (TYPE_AAAA, 16) => out.push(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => {}
        }
        pos = after + 10 + rdlen;
    }
    Some((rcode, out))
}

/// The first PTR target of a response, as text. For tests and logs.
pub fn parse_ptr(msg: &[u8]) -> Option<String> {
    let q = question(msg).ok()?;
    let ancount = u16_at(msg, 6)?;
    let mut pos = q.end;
    for _ in 0..ancount {
        let (_, after) = read_name(msg, pos).ok()?;
        let rtype = u16_at(msg, after)?;
        let rdlen = usize::from(u16_at(msg, after + 8)?);
        if rtype == TYPE_PTR {
            let (labels, _) = read_name(msg, after + 10).ok()?;
            let text: Vec<String> = labels
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            return Some(text.join("."));
        }
        pos = after + 10 + rdlen;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, qtype: u16) -> Vec<u8> {
        query(0x1234, name, qtype)
    }

    #[test]
    fn a_query_round_trips_and_names_are_lower_case() {
        let msg = q("Web.Example", TYPE_A);
        let parsed = parse_query(&msg).unwrap();
        assert_eq!(parsed.id, 0x1234);
        assert!(parsed.rd);
        assert_eq!(parsed.name().as_deref(), Some("web.example"));
        assert_eq!(parsed.end, msg.len());
        let a: IpAddr = "10.89.0.2".parse().unwrap();
        let b: IpAddr = "fd00::2".parse().unwrap();
        let resp = answer(&parsed, &[a, b], 0);
        assert_eq!(parse_answers(&resp), Some((0, vec![a])));
        assert!(answers(&resp, &parsed));
        // The question comes back as sent, case and all.
        assert_eq!(&resp[HEADER_LEN..parsed.end], &msg[HEADER_LEN..]);
        let six = parse_query(&q("web", TYPE_AAAA)).unwrap();
        assert_eq!(parse_answers(&answer(&six, &[a, b], 0)), Some((0, vec![b])));
        // A name with no record of the type: NOERROR, no answers.
        let mx = parse_query(&q("web", 15)).unwrap();
        assert_eq!(parse_answers(&answer(&mx, &[a], 0)), Some((0, vec![])));
        assert_eq!(
            parse_answers(&error(&parsed, RCODE_NXDOMAIN)),
            Some((3, vec![]))
        );
    }

    #[test]
    fn ptr_answers_carry_the_name() {
        let parsed = parse_query(&q("2.5.89.10.in-addr.arpa", TYPE_PTR)).unwrap();
        let resp = answer_ptr(&parsed, "web", 0);
        assert_eq!(parse_ptr(&resp).as_deref(), Some("web"));
        assert_eq!(parse_answers(&resp), Some((0, vec![])));
        for n in 0..resp.len() {
            let _ = parse_ptr(&resp[..n]);
        }
    }

    #[test]
    fn trailing_dot_and_root() {
        assert_eq!(
            parse_query(&q("web.", TYPE_A)).unwrap().name().unwrap(),
            "web"
        );
        assert_eq!(parse_query(&q(".", TYPE_A)).unwrap().name().unwrap(), "");
    }

    #[test]
    fn responses_and_other_opcodes_are_not_queries() {
        let mut msg = q("web", TYPE_A);
        msg[2] |= 0x80;
        assert_eq!(parse_query(&msg), Err(Malformed::NotAQuery));
        assert_eq!(bare_error(&msg, RCODE_FORMERR), None);
        let mut msg = q("web", TYPE_A);
        msg[2] |= 2 << 3; // STATUS
        assert_eq!(parse_query(&msg), Err(Malformed::Opcode(2)));
        let e = bare_error(&msg, RCODE_NOTIMP).unwrap();
        assert_eq!(e.len(), HEADER_LEN);
        assert_eq!(e[3] & 0xF, RCODE_NOTIMP);
        assert!(is_response(&e));
    }

    #[test]
    fn compression_pointers_backward_are_followed() {
        // Question name: pointer to a name placed... nowhere before the
        // question is possible, so build a response with a compressed answer.
        let parsed = parse_query(&q("web", TYPE_A)).unwrap();
        let resp = answer(&parsed, &["10.0.0.9".parse().unwrap()], 60);
        let (_, addrs) = parse_answers(&resp).unwrap();
        assert_eq!(addrs, vec!["10.0.0.9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn looping_and_forward_pointers_are_refused() {
        let mut msg = header(1, 0, 1, 0);
        // A pointer to itself.
        msg.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&msg), Err(Malformed::Name(_))));
        // A label, then a pointer back to that label: a loop.
        let mut msg = header(1, 0, 1, 0);
        msg.extend_from_slice(&[1, b'a', 0xC0, 12, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&msg), Err(Malformed::Name(_))));
        // A pointer forward.
        let mut msg = header(1, 0, 1, 0);
        msg.extend_from_slice(&[0xC0, 40, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&msg), Err(Malformed::Name(_))));
        // Reserved label types.
        let mut msg = header(1, 0, 1, 0);
        msg.extend_from_slice(&[0x40, 0, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&msg), Err(Malformed::Name(_))));
    }

    #[test]
    fn a_name_over_255_bytes_is_refused() {
        let mut msg = header(1, 0, 1, 0);
        for _ in 0..5 {
            msg.push(63);
            msg.extend_from_slice(&[b'a'; 63]);
        }
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(
            parse_query(&msg),
            Err(Malformed::Name("longer than 255 bytes"))
        );
    }

    #[test]
    fn every_truncation_and_every_byte_flip_is_an_error_or_a_question() {
        let msg = q("web.example.org", TYPE_AAAA);
        for n in 0..msg.len() {
            assert!(parse_query(&msg[..n]).is_err(), "truncated to {n}");
            let _ = parse_answers(&msg[..n]);
            let _ = bare_error(&msg[..n], RCODE_FORMERR);
        }
        // Every value of every byte: never a panic, and what parses can be
        // answered.
        for i in 0..msg.len() {
            for v in 0..=255u8 {
                let mut m = msg.clone();
                m[i] = v;
                if let Ok(parsed) = parse_query(&m) {
                    let _ = parsed.name();
                    let _ = answer(&parsed, &["10.0.0.1".parse().unwrap()], 0);
                    let _ = error(&parsed, RCODE_SERVFAIL);
                }
                let _ = parse_answers(&m);
            }
        }
    }

    #[test]
    fn pseudo_random_packets_never_panic() {
        // A small xorshift: deterministic, no crate.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut m: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if m.len() > 5 && next() % 2 == 0 {
                // Often a plausible header, so the name parser is reached.
                m[2] = 0;
                m[4] = 0;
                m[5] = 1;
            }
            if let Ok(parsed) = parse_query(&m) {
                let _ = answer(&parsed, &[], 0);
            }
            let _ = parse_answers(&m);
            let _ = bare_error(&m, RCODE_FORMERR);
        }
    }

    #[test]
    fn set_id_and_answers_check_the_question() {
        let msg = q("web", TYPE_A);
        let parsed = parse_query(&msg).unwrap();
        let mut resp = error(&parsed, RCODE_NXDOMAIN);
        set_id(&mut resp, 7);
        assert_eq!(id(&resp), Some(7));
        assert!(answers(&resp, &parsed));
        let other = parse_query(&q("db", TYPE_A)).unwrap();
        assert!(!answers(&resp, &other));
        assert!(!answers(&msg, &parsed), "a query is not an answer");
    }
}
